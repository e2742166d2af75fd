"""The response cache (L1), one package: canonical keys, the stored entry format, request controls,
the conversions between streamed and non-streamed answers, the pipeline stage (`stage.py`) and its
store operations on each store (`store_memory.py`, `store_redis.py`)."""
