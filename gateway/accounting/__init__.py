"""Token and cost accounting: prices, cost in integer micro-USD, spend per key/team/alias/deployment
and day, budgets, and the usage log. `gateway.stages.accounting` plugs it into the pipeline."""
