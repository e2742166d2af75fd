"""Client dialects: pure codecs between a client API's wire shapes and the canonical OpenAI Chat
Completions form the pipeline runs on (no I/O, no Starlette, nothing from routes or the pipeline)."""
