"""POSTs to one URL over pooled keep-alive HTTP/1.1 connections, each response's body handed
over as it arrives: the transport of the native chat client (`providers.native_chat`).

It does what a streaming chat request needs and no more: a request head rendered once per URL,
the body read as it comes (chunked, sized, or to the connection's close; gzip or deflate if a
server sends them unasked), connections kept and reused (each opened with happy eyeballs, as
aiohttp does), TLS, and the environment's proxy (`HTTP(S)_PROXY`/`NO_PROXY`: the absolute URL
for `http://`, a `CONNECT` tunnel for `https://`).
The response is parsed by `httptools` (llhttp, the parser uvicorn serves with), in the
connection's protocol callback, so a streamed chunk costs one parser call and one wake-up of the
reading task. It replaced aiohttp on this path, whose request and per-chunk machinery cost more
CPU per relayed token (`loadtests/BENCHMARKS.md`, "What moved the figures").

A connection that was idle in the pool may have been closed by the server just as it is taken;
a request on it that fails before any byte of the response arrived is sent once more, on a new
connection (the server cannot have acted on it). Every buffer is bounded: past `_HIGH_WATER`
unread body bytes the connection stops reading from its socket until the reader catches up.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import functools
import socket
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import cast
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies_environment, proxy_bypass

import aiohappyeyeballs
import httptools

__all__ = ["HttpStatusError", "HttpStream", "HttpStreamError", "Response", "default_ssl_context"]

# Unread body bytes past which a connection stops reading its socket (until the next read,
# which takes all that is buffered).
_HIGH_WATER = 256 * 1024
# A connection idle longer than this is closed instead of reused (servers close theirs after
# 5 s to a few minutes; a stale one costs a resend).
KEEPALIVE_S = 30.0
# How long a connection attempt to one address runs before the next address is tried too.
HAPPY_EYEBALLS_DELAY_S = 0.25
# A response head (or a proxy's answer to CONNECT) larger than this is refused.
_MAX_HEAD = 64 * 1024


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """The system's trust store, loaded once per process: loading it parses every CA
    certificate, which must not happen on a request's path (an `HttpStream` for `https://`
    takes it when made)."""
    return ssl.create_default_context()


class HttpStreamError(Exception):
    """The connection failed or closed, or the response could not be read."""


class HttpStatusError(Exception):
    """A response with an error status (the cause a provider error is raised from)."""

    def __init__(self, status: int, url: str, body: bytes) -> None:
        super().__init__(f"HTTP {status} from {url}: {body[:200]!r}")
        self.status = status


class Response:
    """One response: its status and headers, then its body as it arrives (`read`)."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.status = 0
        self.headers: dict[str, str] = {}  # names lower-cased
        self.head_bytes = 0
        self._head = asyncio.get_running_loop().create_future()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._error: HttpStreamError | None = None
        self._inflate: zlib._Decompress | None = None
        self.got_bytes = False  # any byte of the response arrived
        self.keep_alive = False
        self.to_close = False  # the body has no length: it ends when the connection closes
        self._released = False

    async def read(self) -> bytes:
        """The body's bytes that arrived since the last read (waits for some); b"" at its end.
        Raises `HttpStreamError` if the connection failed first."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        self._conn.resume()
        return data

    async def read_all(self, limit: int) -> bytes:
        """The rest of the body, at most `limit` bytes (the rest is left unread)."""
        parts: list[bytes] = []
        size = 0
        while size < limit and (data := await self.read()):
            parts.append(data)
            size += len(data)
        return b"".join(parts)[:limit]

    def at_eof(self) -> bool:
        return self._complete and not self._chunks

    def release(self) -> None:
        """Done with the response: a whole, keep-alive response gives its connection back to
        the pool; any other closes it."""
        if self._released:
            return
        self._released = True
        reusable = self.at_eof() and self.keep_alive and self._error is None
        self._conn.finished(reusable=reusable)

    # ---- fed by the connection's protocol callbacks

    def _on_head(self, status: int, keep_alive: bool) -> None:
        self.status, self.keep_alive = status, keep_alive
        encoding = self.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._inflate = zlib.decompressobj(wbits=47)  # zlib or gzip, by its header
        elif encoding != "identity":
            self._fail(HttpStreamError(f"unsupported content-encoding {encoding!r}"))
            return
        if not self._head.done():
            self._head.set_result(None)

    def _on_body(self, data: bytes) -> None:
        if (inflate := self._inflate) is not None:
            try:
                data = inflate.decompress(data, _HIGH_WATER)
            except zlib.error as exc:
                self._fail(HttpStreamError(f"undecodable compressed body: {exc}"))
                return
            if inflate.unconsumed_tail:  # one read that inflates past the bound: a bomb
                self._fail(HttpStreamError(f"compressed body inflates past {_HIGH_WATER} bytes"))
                self._conn.close()
                return
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered > _HIGH_WATER:
                self._conn.pause()
            self._wake()

    def _on_complete(self) -> None:
        self._complete = True
        self._wake()

    def _fail(self, error: HttpStreamError) -> None:
        if self._error is None and not self._complete:
            self._error = error
        if not self._head.done():
            self._head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request at a time, its response parsed as it arrives."""

    def __init__(self, pool: HttpStream) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._response: Response | None = None
        self._paused = False
        self.closed = False
        self.idle_since = 0.0
        self._tunnel: asyncio.Future[bytes] | None = None  # a proxy's answer to CONNECT
        self._tunnel_buf = b""

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel_data(data)
            return
        response = self._response
        if response is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        response.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response._fail(HttpStreamError(f"unreadable HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.discard(self)
        if self._tunnel is not None and not self._tunnel.done():
            self._tunnel.set_exception(HttpStreamError("the proxy closed the connection"))
        response = self._response
        if response is not None and not response._complete:
            if response.to_close and exc is None:  # a body without a length ends at the close
                response._on_complete()
            else:
                why = f": {exc}" if exc else ""
                response._fail(HttpStreamError(f"the upstream closed the connection{why}"))

    # ---- httptools callbacks

    def on_message_begin(self) -> None:
        assert self._response is not None
        if self._response._complete:  # more after a whole response: not a connection to reuse
            self._response.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self._response
        assert response is not None
        response.head_bytes += len(name) + len(value)
        if response.head_bytes > _MAX_HEAD:
            if not response._head.done():
                response._fail(HttpStreamError(f"response head over {_MAX_HEAD} bytes"))
                self.close()
            return
        response.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        assert self._response is not None
        status = self._parser.get_status_code()
        if status < 200:  # an informational answer (103 Early Hints): the response follows
            self._response.headers.clear()
            return
        response = self._response
        headers = response.headers
        response.to_close = (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
            and status not in (204, 304)
        )
        response._on_head(status, self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        assert self._response is not None
        self._response._on_body(body)

    def on_message_complete(self) -> None:
        assert self._response is not None
        if self._response.status:  # not the end of an informational answer
            self._response._on_complete()

    # ---- used by the pool and the response

    def send(self, data: bytes) -> Response:
        assert self.transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self._response = response = Response(self)
        self.transport.write(data)
        return response

    def finished(self, *, reusable: bool) -> None:
        self._response = None
        self.resume()
        if reusable and not self.closed:
            self._pool.put_back(self)
        else:
            self.close()
        self._pool.slot_free()

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def tunnel(self, request: bytes) -> None:
        """Send `CONNECT` and wait for the proxy's 2xx (the caller bounds the wait)."""
        assert self.transport is not None
        self._tunnel = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            head = await self._tunnel
        finally:
            self._tunnel = None
        status_line = head.split(b"\r\n", 1)[0]
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[1].startswith(b"2"):
            raise HttpStreamError(f"the proxy refused the tunnel: {status_line.decode('latin-1')}")

    def _tunnel_data(self, data: bytes) -> None:
        assert self._tunnel is not None
        if self._tunnel.done():  # answered already: the TLS handshake will tell the rest
            return
        buf = self._tunnel_buf + data
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            self._tunnel_buf = b""
            if len(buf) > end + 4:  # the server cannot speak before our TLS hello
                self._tunnel.set_exception(HttpStreamError("bytes after the proxy's answer"))
                return
            self._tunnel.set_result(buf[:end])
        elif len(buf) > _MAX_HEAD:
            self._tunnel.set_exception(HttpStreamError("the proxy's answer is too long"))
        else:
            self._tunnel_buf = buf


class HttpStream:
    """POSTs to `url` with `headers`, each over a pooled connection (see the module docstring).

    `connect_timeout_s` bounds connecting (proxy tunnel and TLS included) and the wait for a
    response's head; reading the body is the caller's to bound. At most `max_connections`
    requests run at once; more wait for one to finish."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        connect_timeout_s: float,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._ssl = (ssl_context or default_ssl_context()) if self._tls else None
        self._connect_timeout_s = connect_timeout_s
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_connections
        self._idle: collections.deque[_Connection] = collections.deque()
        self._open: set[_Connection] = set()
        self._closed = False

        authority = f"{self._host}:{self._port}" if parts.port else self._host
        if ":" in self._host:  # an IPv6 literal
            authority = f"[{self._host}]" + (f":{self._port}" if parts.port else "")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._proxy = _env_proxy(parts.scheme, self._host)
        for name, value in headers.items():
            if any(c in name + value for c in "\r\n\0"):  # it would inject a header
                raise ValueError(f"header {name!r}: a line break or NUL in its name or value")
        lines = [f"Host: {authority}", "Accept-Encoding: identity"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if self._proxy is not None and not self._tls:
            # Through a proxy, plain HTTP goes in absolute form; HTTPS through a tunnel.
            target = f"http://{authority}{target}"
            if self._proxy.authorization:
                lines.append(f"Proxy-Authorization: {self._proxy.authorization}")
        self._head = (f"POST {target} HTTP/1.1\r\n" + "\r\n".join(lines) + "\r\n").encode()
        self._connect_head = b""
        if self._proxy is not None and self._tls:
            tunnel = [f"CONNECT {self._host}:{self._port} HTTP/1.1", f"Host: {authority}"]
            if self._proxy.authorization:
                tunnel.append(f"Proxy-Authorization: {self._proxy.authorization}")
            self._connect_head = ("\r\n".join(tunnel) + "\r\n\r\n").encode()

    async def post(self, body: bytes) -> Response:
        """Send the request; returns once the response's head arrived. The caller reads the
        body and must `release()` the response. Raises `HttpStreamError` or `TimeoutError`."""
        if self._closed:
            raise HttpStreamError("the client is closed")
        request = self._head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        await self._slots.acquire()
        try:
            while True:
                conn, reused = await self._connection()
                response = conn.send(request)
                try:
                    async with asyncio.timeout(self._connect_timeout_s):
                        await response._head
                except BaseException as exc:
                    conn.close()  # whatever failed, the connection is not one to reuse
                    stale = isinstance(exc, HttpStreamError) and reused and not response.got_bytes
                    if stale:  # closed by the server while idle: once more, on a new one
                        continue
                    raise
                return response
        except BaseException:
            self._slots.release()
            raise

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._open):
            conn.close()
        self._idle.clear()

    # ---- used by the connections

    def put_back(self, conn: _Connection) -> None:
        if self._closed or len(self._idle) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    def discard(self, conn: _Connection) -> None:
        self._open.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)

    def slot_free(self) -> None:
        self._slots.release()

    # ---- connections

    async def _connection(self) -> tuple[_Connection, bool]:
        """The most recently used idle connection, or a new one; and whether it was idle."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < KEEPALIVE_S:
                self._expire_idle(now)
                return conn, True
            conn.close()
        return await self._connect(), False

    def _expire_idle(self, now: float) -> None:
        while self._idle and now - self._idle[0].idle_since >= KEEPALIVE_S:
            self._idle.popleft().close()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        proxy = self._proxy
        host, port = (proxy.host, proxy.port) if proxy is not None else (self._host, self._port)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                # Happy eyeballs (RFC 8305), as aiohttp connects: a host whose first address
                # (often IPv6) does not answer is reached on the next one a moment later.
                sock = await aiohappyeyeballs.start_connection(
                    infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S, interleave=1
                )
                direct_tls = self._ssl if proxy is None else None
                try:
                    _, protocol = await loop.create_connection(
                        lambda: _Connection(self),
                        sock=sock,
                        ssl=direct_tls,
                        server_hostname=self._host if direct_tls is not None else None,
                    )
                except BaseException:
                    sock.close()
                    raise
                conn = protocol
                self._open.add(conn)
                if proxy is not None and self._ssl is not None:
                    try:
                        await self._tunnel_tls(conn)
                    except BaseException:
                        conn.close()
                        raise
        except OSError as exc:  # refused, unreachable, TLS failures (ssl.SSLError)
            raise HttpStreamError(f"cannot connect to {host}:{port}: {exc}") from exc
        return conn

    async def _tunnel_tls(self, conn: _Connection) -> None:
        """Through the proxy: `CONNECT`, then TLS with the upstream inside the tunnel."""
        assert self._ssl is not None
        await conn.tunnel(self._connect_head)
        assert conn.transport is not None
        transport = await asyncio.get_running_loop().start_tls(
            conn.transport, conn, self._ssl, server_hostname=self._host
        )
        if transport is None:
            raise HttpStreamError("TLS through the proxy did not start")
        conn.transport = transport


@dataclass(frozen=True, slots=True)
class _Proxy:
    host: str
    port: int
    authorization: str | None  # the Proxy-Authorization value, from the proxy URL's user info


def _env_proxy(scheme: str, host: str) -> _Proxy | None:
    """The proxy HTTP(S)_PROXY/ALL_PROXY name for `scheme`, unless NO_PROXY names `host`; as the
    SDKs' httpx client reads them, once per client."""
    proxies = getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url or proxy_bypass(host):
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"unsupported proxy {url!r}: only http:// proxies")
    authorization = None
    if parts.username is not None:
        user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(user_pass.encode()).decode()
    return _Proxy(parts.hostname, parts.port or 80, authorization)
