"""The streaming HTTP/1.1 client under the native chat adapters, against raw loopback servers
that answer the way real ones may: sized, chunked and to-the-close bodies, compression sent
unasked, an informational answer first, a kept connection closed while idle, a body faster than
its reader, TLS direct and through a proxy's tunnel. (The chat conformance suite runs it against
the sim and its failures as well.)"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trustme

from providers import http_stream
from providers.http_stream import HttpStream, HttpStreamError, Response

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[int, list[int]]]:
    """A loopback server running `handler` per connection; yields its port and a list that
    gets one entry per connection accepted."""
    accepted: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ssl_context)
    async with server:
        yield server.sockets[0].getsockname()[1], accepted


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


def client(port: int, *, scheme: str = "http", **kw: object) -> HttpStream:
    options: dict[str, object] = {"connect_timeout_s": 5.0, "max_connections": 10, **kw}
    return HttpStream(f"{scheme}://127.0.0.1:{port}/v1/chat", {"X-Test": "1"}, **options)  # type: ignore[arg-type]


async def body_of(response: Response) -> bytes:
    try:
        return await response.read_all(1 << 30)
    finally:
        response.release()


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


OK_CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
GZIPPED = gzip.compress(b"hello")
SIZED_HELLO = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"


async def test_a_request_and_a_chunked_reply_then_the_connection_is_reused() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(OK_CHUNKED + chunked(b"data: a\n\n", b"data: b\n\n"))

    async with raw_server(handler) as (port, accepted):
        http = client(port)
        for _ in range(3):
            response = await http.post(b'{"q": 1}')
            assert response.status == 200
            assert await body_of(response) == b"data: a\n\ndata: b\n\n"
        await http.aclose()
    assert len(accepted) == 1  # three requests, one connection
    head, _, body = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nX-Test: 1" in head and b"\r\nAccept-Encoding: identity" in head
    assert body == b'{"q": 1}'


@pytest.mark.parametrize(
    ("reply", "expected_connections"),
    [
        ((SIZED_HELLO,), 1),
        # No length: the body runs to the close, and the connection is not kept.
        ((b"HTTP/1.1 200 OK\r\n\r\nhello",), 2),
        ((b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n", SIZED_HELLO), 1),
        (
            (
                b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n",
                chunked(GZIPPED[:10], GZIPPED[10:]),
            ),
            1,
        ),
    ],
    ids=["sized", "to-the-close", "informational-first", "gzip-unasked"],
)
async def test_bodies_of_every_framing(reply: tuple[bytes, ...], expected_connections: int) -> None:
    whole = b"".join(reply)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            for part in reply:  # each part in a read of its own
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.02)
            if b"content-length" not in whole and b"chunked" not in whole:
                return  # closing ends the body

    async with raw_server(handler) as (port, accepted):
        http = client(port)
        for _ in range(2):
            response = await http.post(b"{}")
            assert (response.status, await body_of(response)) == (200, b"hello")
        await http.aclose()
    assert len(accepted) == expected_connections


async def test_an_idle_connection_the_server_dropped_is_retried_once_on_a_new_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await read_request(reader)  # the next request on this connection: dropped unanswered

    async with raw_server(handler) as (port, accepted):
        http = client(port)
        assert await body_of(await http.post(b"{}")) == b"ok"
        assert await body_of(await http.post(b"{}")) == b"ok"  # resent on a new connection
        await http.aclose()
    assert len(accepted) == 2


async def test_a_new_connection_that_drops_is_an_error_not_a_retry() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # and close without a word

    async with raw_server(handler) as (port, accepted):
        http = client(port)
        with pytest.raises(HttpStreamError, match="closed the connection"):
            await http.post(b"{}")
        await http.aclose()
    assert len(accepted) == 1


async def test_a_connection_idle_past_the_keepalive_is_not_reused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_stream, "KEEPALIVE_S", 0.0)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    async with raw_server(handler) as (port, accepted):
        http = client(port)
        for _ in range(2):
            assert await body_of(await http.post(b"{}")) == b"ok"
        await http.aclose()
    assert len(accepted) == 2


async def test_garbage_or_a_body_cut_short_fails_the_read() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n")

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
        await writer.drain()

    async with raw_server(garbage) as (port, _):
        http = client(port)
        with pytest.raises(HttpStreamError, match="unreadable"):
            await http.post(b"{}")
        await http.aclose()
    async with raw_server(cut) as (port, _):
        http = client(port)
        response = await http.post(b"{}")
        assert await response.read() == b"half"
        with pytest.raises(HttpStreamError, match="closed the connection"):
            await response.read()
        response.release()
        await http.aclose()


async def test_a_compressed_read_that_inflates_past_the_bound_fails_the_body() -> None:
    bomb = gzip.compress(b"\0" * (16 << 20))  # 16 MiB of zeros in about 16 KiB

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        head = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n"
        writer.write(head % len(bomb) + bomb)
        await writer.drain()
        await asyncio.sleep(5)

    async with raw_server(handler) as (port, _):
        http = client(port)
        response = await http.post(b"{}")
        with pytest.raises(HttpStreamError, match="inflates past 262144 bytes"):
            await response.read_all(1 << 30)
        response.release()
        await http.aclose()


async def test_a_response_head_past_its_bound_fails_the_request() -> None:
    async def endless_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(10_000):  # 10,000 headers of 30 bytes: past the 64 KiB bound
            writer.write(b"x-filler-%05d: %s\r\n" % (i, b"y" * 14))
            await writer.drain()
        await asyncio.sleep(5)

    async with raw_server(endless_head) as (port, _):
        http = client(port)
        with pytest.raises(HttpStreamError, match="response head over 65536 bytes"):
            await http.post(b"{}")
        await http.aclose()


async def test_no_response_head_in_time_is_a_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with raw_server(silent) as (port, _):
        http = client(port, connect_timeout_s=0.2)
        with pytest.raises(TimeoutError):
            await http.post(b"{}")
        await http.aclose()


async def test_a_body_faster_than_its_reader_is_held_to_the_high_water_mark() -> None:
    part = b"x" * 16384
    parts = 256  # 4 MiB

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK_CHUNKED)
        for _ in range(parts):
            writer.write(chunked(part)[: -len(b"0\r\n\r\n")])
            await writer.drain()
        writer.write(b"0\r\n\r\n")

    async with raw_server(handler) as (port, _):
        http = client(port)
        response = await http.post(b"{}")
        got, most_buffered = 0, 0
        while True:
            await asyncio.sleep(0.002)  # a slow reader
            most_buffered = max(most_buffered, response._buffered)
            data = await response.read()
            if not data:
                break
            got += len(data)
        response.release()
        await http.aclose()
    assert got == len(part) * parts
    # Reading stops past the mark; what was already in flight may still land.
    assert most_buffered < http_stream._HIGH_WATER + 512 * 1024


async def test_at_most_max_connections_requests_at_once() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    async with raw_server(handler) as (port, accepted):
        http = client(port, max_connections=2)
        first, second = await http.post(b"{}"), await http.post(b"{}")
        third = asyncio.create_task(http.post(b"{}"))
        await asyncio.sleep(0.05)
        assert not third.done()  # waits for a connection
        assert await body_of(first) == b"ok"
        assert await body_of(await third) == b"ok"  # on the connection `first` gave back
        assert await body_of(second) == b"ok"
        await http.aclose()
    assert len(accepted) == 2


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) for 127.0.0.1 under a throwaway CA."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server, client_ctx


async def ok_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()


async def test_https_verifies_the_server(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    async with raw_server(ok_forever, server_ctx) as (port, accepted):
        http = client(port, scheme="https", ssl_context=client_ctx)
        for _ in range(2):
            assert await body_of(await http.post(b"{}")) == b"ok"
        await http.aclose()
        untrusting = client(port, scheme="https")  # the system's CAs do not know this one
        with pytest.raises(HttpStreamError, match="cannot connect"):
            await untrusting.post(b"{}")
        await untrusting.aclose()
    assert len(accepted) == 1  # two requests over one connection; the refused handshake is none


@contextlib.asynccontextmanager
async def tunnel_proxy(refuse: bool = False) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback proxy that answers CONNECT by piping bytes to the named host:port."""
    heads: list[bytes] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        if refuse:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
            await reader.read()  # and keep the connection until the client closes it
            return
        host, port = head.split(b" ")[1].rsplit(b":", 1)
        up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async with raw_server(handler) as (port, _):
        yield f"http://user:p%40ss@127.0.0.1:{port}", heads


async def test_https_through_the_environments_proxy_tunnels_with_connect(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    server_ctx, client_ctx = tls
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with raw_server(ok_forever, server_ctx) as (port, accepted):
        async with tunnel_proxy() as (proxy_url, heads):
            monkeypatch.setenv("HTTPS_PROXY", proxy_url)
            http = client(port, scheme="https", ssl_context=client_ctx)
            for _ in range(2):
                assert await body_of(await http.post(b"{}")) == b"ok"
            await http.aclose()
        async with tunnel_proxy(refuse=True) as (proxy_url, _):
            monkeypatch.setenv("HTTPS_PROXY", proxy_url)
            http = client(port, scheme="https", ssl_context=client_ctx)
            with pytest.raises(HttpStreamError, match=r"refused the tunnel: HTTP/1\.1 407"):
                await http.post(b"{}")
            await asyncio.sleep(0.01)
            assert not http._open  # the refused connection was closed, not left behind
            await http.aclose()
    assert len(accepted) == 1 and len(heads) == 1  # one tunnel, reused
    assert heads[0].startswith(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n".encode())
    assert b"\r\nProxy-Authorization: Basic dXNlcjpwQHNz" in heads[0]  # user:p@ss


def test_the_trust_store_is_loaded_once_not_per_client() -> None:
    first = HttpStream("https://example.com/x", {}, connect_timeout_s=1, max_connections=1)
    second = HttpStream("https://example.org/y", {}, connect_timeout_s=1, max_connections=1)
    assert first._ssl is second._ssl is http_stream.default_ssl_context()


def test_only_http_proxies_urls_and_single_line_headers_are_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="not an http"):
        HttpStream("ftp://example.com/x", {}, connect_timeout_s=1, max_connections=1)
    with pytest.raises(ValueError, match="a line break"):
        key = {"Authorization": "Bearer sk-1\r\nX-Injected: 1"}
        HttpStream("http://example.com/x", key, connect_timeout_s=1, max_connections=1)
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    with pytest.raises(ValueError, match="only http:// proxies"):
        HttpStream("https://example.com/x", {}, connect_timeout_s=1, max_connections=1)


@pytest.mark.parametrize(
    ("head", "body", "error"),
    [
        (b"content-encoding: br\r\ncontent-length: 2\r\n", b"ok", "unsupported content-encoding"),
        (b"content-encoding: gzip\r\ncontent-length: 9\r\n", b"not gzip!", "undecodable"),
    ],
    ids=["unknown-encoding", "broken-gzip"],
)
async def test_a_body_it_cannot_decode_fails_and_closes_the_connection(
    head: bytes, body: bytes, error: str
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n" + body)
        await reader.read()  # and keep the connection until the client closes it

    async with raw_server(handler) as (port, _):
        http = client(port)
        with pytest.raises(HttpStreamError, match=error):
            await body_of(await http.post(b"{}"))
        await asyncio.sleep(0.01)
        assert not http._open  # closed, not left behind
        await http.aclose()
        with pytest.raises(HttpStreamError, match="the client is closed"):
            await http.post(b"{}")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"HTTP/1.1 200 Connection established\r\n\r\nsurprise", "bytes after the proxy"),
        (b"HTTP/1.1 200 OK\r\n" + b"x-pad: " + b"y" * (70 * 1024), "answer is too long"),
        (b"HTTP/1.1 200 OK\r\n", "the proxy closed the connection"),
    ],
    ids=["bytes-after", "too-long", "closed"],
)
async def test_a_proxy_answer_that_is_no_tunnel_fails_the_connect(
    answer: bytes, error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        if error != "the proxy closed the connection":
            await reader.read()

    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with raw_server(proxy) as (proxy_port, _):
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy_port}")
        http = client(443, scheme="https")
        with pytest.raises(HttpStreamError, match=error):
            await http.post(b"{}")
        await asyncio.sleep(0.01)
        assert not http._open
        await http.aclose()
