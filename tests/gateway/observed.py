"""A gateway on loopback with the observability module wired in, and an OTLP/HTTP receiver.

`create_app` wires observability itself once the lead lands the wiring; until then `wire`
adds the same middleware, routes and lifespan step to a built app (and does nothing if the app
already has them).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.app import create_app
from gateway.observability import middleware, observability_routes, open_observability
from gateway.server import GatewayServer, RunningGateway, uvicorn_config
from gateway.settings import Settings


def wire(app: Starlette, settings: Settings) -> None:
    if any(getattr(route, "path", None) == "/metrics" for route in app.routes):
        return
    app.router.routes.extend(observability_routes())
    for item in middleware(settings):
        app.add_middleware(item.cls, *item.args, **item.kwargs)
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Starlette) -> AsyncIterator[None]:
        async with original(a), AsyncExitStack() as stack:
            await open_observability(a.state.gateway, stack)
            yield

    app.router.lifespan_context = lifespan


@asynccontextmanager
async def _serve(app: Any, config: uvicorn.Config, server: uvicorn.Server) -> AsyncIterator[int]:
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server did not start")
            await asyncio.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def observed_gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    app = create_app(settings)
    wire(app, settings)
    config = uvicorn_config(app, settings, host="127.0.0.1", port=0)
    server = GatewayServer(config)
    async with _serve(app, config, server) as port:
        yield RunningGateway(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", app, server)


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status_code: int
    resource: dict[str, Any]


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def _attrs(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


@dataclass
class OtlpReceiver:
    """Collects spans POSTed to `/v1/traces` (OTLP/HTTP protobuf)."""

    url: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0

    async def handle(self, request: Request) -> Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        self.requests += 1
        for resource_spans in message.resource_spans:
            resource = _attrs(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes=_attrs(span.attributes),
                            events=[(e.name, _attrs(e.attributes)) for e in span.events],
                            status_code=span.status.code,
                            resource=resource,
                        )
                    )
        return Response(b"", media_type="application/x-protobuf")

    def named(self, prefix: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.name.startswith(prefix)]


@asynccontextmanager
async def otlp_receiver() -> AsyncIterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    app = Starlette(routes=[Route("/v1/traces", receiver.handle, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    async with _serve(app, config, server) as port:
        receiver.url = f"http://127.0.0.1:{port}"
        yield receiver
