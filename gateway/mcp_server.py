"""`/mcp`: the agent's server tools for MCP clients, over streamable HTTP with the official
`mcp` SDK.

The read tools answer from the caller's own data; the write tools only propose a change that
the user accepts in the app (or `POST /v1/changes/{id}/accept`), exactly as in a chat turn: a
call runs `gateway.agent_tools.run_tool` as the token's user.

Authentication is the gateway's own: the same bearer JWT as `/v1` (a 401 in the gateway's JSON
error shape without one, before the SDK sees the request). The SDK runs stateless, with JSON
responses: no MCP session lives in one process, so any replica answers any request. Its session
manager needs a running task group, opened by the app's lifespan (`open_mcp`).
"""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from typing import Any

import mcp_types as types
import orjson
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.requests import Request
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from gateway.agent_tools import ToolContext, run_tool
from gateway.auth import authenticate_request
from gateway.errors import ApiError
from gateway.runtime import Gateway, gateway_of
from gateway.tool_specs import tool_specs
from providers.chat import ToolCall

__all__ = ["MCP_PATH", "McpRoute", "mcp_routes", "mcp_server", "open_mcp"]

MCP_PATH = "/mcp"
_INSTRUCTIONS = (
    "Tools over the authenticated user's own practice data: progress, sessions, assessments, "
    "the drill catalog and a practice plan. propose_focus_change and remember only propose: "
    "nothing changes until the user accepts in the coaching app."
)


def mcp_routes() -> list[BaseRoute]:
    return [McpRoute()]


class McpRoute(BaseRoute):
    """`/mcp` exactly (no redirect to `/mcp/`), every method the transport speaks; the SDK
    answers the methods it does not. Not a `Route`: it is a protocol endpoint, described in
    docs/protocol.md rather than in the OpenAPI document."""

    path = MCP_PATH

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["path"] == MCP_PATH:
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        principal = await authenticate_request(request)  # a 401 ApiError: the app answers it
        manager = gateway_of(request).mcp
        if manager is None:
            raise ApiError(503, "mcp_unavailable", "MCP is not running on this gateway")
        token = AccessToken(
            token="", client_id=principal.user_id, subject=principal.user_id, scopes=[]
        )
        # The SDK binds what it keeps per client to this user, and the tools read it back.
        scope["user"] = AuthenticatedUser(token)
        await manager.handle_request(scope, receive, send)


def mcp_server(gateway: Gateway) -> Server[Any]:
    """The MCP server of `gateway`'s tools: the read tools, and the write tools as proposals."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tools = [
            types.Tool(name=s.name, description=s.description, input_schema=s.parameters)
            for s in tool_specs()
        ]
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        user_id = _caller(ctx)
        arguments = orjson.dumps(params.arguments or {}).decode()
        call = ToolCall(f"mcp-{uuid.uuid4().hex[:16]}", params.name, arguments)
        outcome = await run_tool(ToolContext(gateway, user_id), call)
        structured = orjson.loads(outcome.content)
        return types.CallToolResult(
            content=[types.TextContent(text=outcome.content)],
            structured_content=structured if isinstance(structured, dict) else None,
            is_error=not outcome.ok,
        )

    return Server(
        "coach-gateway",
        version="0.1.0",
        instructions=_INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _caller(ctx: ServerRequestContext[Any]) -> str:
    """The user `McpRoute` authenticated for the HTTP request carrying this message."""
    request = ctx.request
    user = request.scope.get("user") if isinstance(request, Request) else None
    if not isinstance(user, AuthenticatedUser):  # only reachable past McpRoute by a bug
        raise PermissionError("an MCP call without an authenticated user")
    return str(user.access_token.client_id)


async def open_mcp(gateway: Gateway, stack: AsyncExitStack) -> StreamableHTTPSessionManager:
    """Start the SDK's session manager for `gateway` (stopped when `stack` closes)."""
    manager = StreamableHTTPSessionManager(mcp_server(gateway), stateless=True, json_response=True)
    await stack.enter_async_context(manager.run())
    gateway.mcp = manager
    return manager
