"""CORS for the endpoints the widget calls from other sites, answered for the allowed origins only."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from rag.channels.widget import origin_of
from rag.http.errors import error_response
from rag.http.paths import app_path

WIDGET_PATHS = frozenset({"/ask", "/feedback", "/handoff", "/widget/config"})
ALLOWED_HEADERS = "Authorization, Content-Type, X-Rag-Channel"


class WidgetOrigins:
    """CORS for the endpoints the widget calls, answered for the allowed origins only: a request from any other
    site gets a 403 (and its browser no answer). Requests without ``Origin``, or from this service's own pages,
    pass as they are."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = {origin_of(o) for o in allowed if origin_of(o)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or app_path(scope) not in WIDGET_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin", "").lower()
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()
        if not origin or origin == own:
            await self.app(scope, receive, send)
            return
        if origin not in self.allowed:
            refusal = error_response(
                403, "origin_not_allowed", f"{origin} may not use this service; add it to RAG_WIDGET_ORIGINS"
            )
            await refusal(scope, receive, send)
            return
        cors = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"vary", b"Origin"),
        ]
        if scope["method"] == "OPTIONS":
            preflight = [
                *cors,
                (b"access-control-allow-methods", b"GET, POST"),
                (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                (b"access-control-max-age", b"600"),
                (b"content-length", b"0"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": preflight})
            await send({"type": "http.response.body", "body": b""})
            return

        async def with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.app(scope, receive, with_cors)
