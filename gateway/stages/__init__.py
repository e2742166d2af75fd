"""Pipeline stages that belong to no feature package (load shedding) and the shutdown drain; each
feature's stage lives in its own package (`ratelimit/`, `cache/`, `accounting/`, `conversations/`,
`routing/`)."""
