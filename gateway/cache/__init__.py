"""The response cache (L1): canonical keys, the stored entry format, request controls and the
conversions between streamed and non-streamed answers. The pipeline stage that uses them lives in
`gateway.stages.cache`; the store operations in `gateway.store.cache_memory` / `cache_redis`."""
