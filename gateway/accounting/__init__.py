"""Token and cost accounting, one package: prices, cost in integer micro-USD, spend per
key/team/alias/deployment and day, budgets, the usage log, the pipeline stage (`stage.py`), the retry
queue for writes the store did not take, and its store operations on each store (`store_memory.py`,
`store_redis.py`)."""
