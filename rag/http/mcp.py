"""The MCP endpoint of the API (``/mcp/``): a fresh MCP server for each run of the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.types import ASGIApp, Receive, Scope, Send

from rag.channels.mcp import Collections, make_server
from rag.channels.respond import Responder
from rag.http.errors import error_response


class McpEndpoint:
    """Its session manager runs once per instance, so each app start (its lifespan) makes a new one."""

    def __init__(self, responder: Responder, host: str) -> None:
        self.responder, self.host = responder, host
        self.collections: Collections | None = None  # at the root of several collections: their tools' argument
        self._app: ASGIApp | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        server = make_server(self.responder, self.collections)
        self._app = server.streamable_http_app(streamable_http_path="/", host=self.host, stateless_http=True)
        try:
            async with server.session_manager.run():
                yield
        finally:
            self._app = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            await error_response(503, "not_started", "the service is starting; retry in a moment")(scope, receive, send)
            return
        await self._app(scope, receive, send)
