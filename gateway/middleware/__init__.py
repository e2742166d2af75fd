"""Pure-ASGI middleware (no BaseHTTPMiddleware: it costs a task and a copy per request)."""
