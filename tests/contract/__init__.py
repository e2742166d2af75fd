"""Contract suites: one set of cases run against every provider adapter and both stores."""
