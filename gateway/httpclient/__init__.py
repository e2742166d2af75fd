"""A keep-alive HTTP/1.1 client on asyncio protocols and the httptools parser, for upstream calls.

Why not aiohttp: measured with `bench/instructions.sh` (same gateway, same nginx mock, one exchange at
a time), a tuned aiohttp 3.14 session (no cookie jar, no tracing, `auto_decompress=False`) behind
`gateway.upstream`'s client protocol costs the whole gateway 1,055 k instructions per non-streamed
request against 785 k with this client (+34%), and 1,337 k against 1,066 k per streamed one (+26%).
The bounds, checks and proxy support below added 0.2% (non-streamed) and 0.9% (streamed) to this
client's side of that comparison.
What this client gives up: HTTP/2, SOCKS and https:// proxies, client certificates, cookies,
redirects, request bodies of unknown length. What it does:

- one pool of keep-alive connections per origin, bounded (`pool_size`); an idle connection is
  reused only while it is open, silent, and within its idle time (the provider's `idle_timeout`,
  shortened by a `Keep-Alive: timeout=` the server sends), and after a second idle only when its
  socket has nothing unread (a close the loop has not seen). A request is never sent twice: once its
  bytes went out, a failure is the caller's (the router counts it as an attempt);
- request headers checked (no CR, LF or NUL can split one into two); answers' headers bounded in size
  and count, interim 1xx answers skipped; bodies framed by Content-Length, chunked encoding or a clean
  end of the connection (a reset is an error); gzip/deflate bodies decoded with a bound;
- connections through HTTP_PROXY / HTTPS_PROXY (CONNECT tunnels for https) unless NO_PROXY names the
  host, or through a per-provider proxy; addresses raced across families (happy eyeballs);
- TLS with the system's trust store (or a given CA file) and hostname verification;
- streaming with back-pressure: reading from the socket pauses while unread data piles up.

Errors are plain exceptions (`ConnectError` before the request left, `ProtocolError` after,
`HeaderError` for a request it refuses to write); `gateway.upstream` maps them.
"""

from gateway.httpclient.connection import ConnectError, HeaderError, ProtocolError
from gateway.httpclient.dial import DIRECT
from gateway.httpclient.pool import Client, Pool, PoolWaitObserver, Response

__all__ = ["DIRECT", "Client", "ConnectError", "HeaderError", "Pool", "PoolWaitObserver", "ProtocolError",
           "Response"]
