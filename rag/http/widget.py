"""The widget's access from other sites: the origins allowed to call the endpoints it uses (CORS, answered here
and refused for any other origin), and, when API keys are on, the public tokens it asks and votes with — signed,
bound to one allowed origin, valid for an hour, accepted on those endpoints only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_response

WIDGET_PATHS = frozenset({"/ask", "/feedback", "/handoff", "/widget/config"})
TOKEN_PATHS = frozenset({"/ask", "/feedback", "/handoff"})  # what a widget token may do: ask, vote, hand off
TOKEN_PREFIX = "wt."
TOKEN_SECONDS = 3600
ALLOWED_HEADERS = "Authorization, Content-Type, X-Rag-Channel"


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower case (how browsers send ``Origin``)."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


class WidgetTokens:
    """Public tokens for the widget: ``wt.<origin>.<expiry>.<signature>`` (HMAC-SHA256 with ``secret``)."""

    def __init__(self, secret: str) -> None:
        self.key = hashlib.sha256(("rag-widget\x00" + secret).encode()).digest()

    def _sign(self, body: str) -> str:
        return hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, origin: str, now: float | None = None) -> str:
        expiry = int((now or time.time()) + TOKEN_SECONDS)
        body = f"{base64.urlsafe_b64encode(origin.encode()).decode().rstrip('=')}.{expiry}"
        return f"{TOKEN_PREFIX}{body}.{self._sign(body)}"

    def valid(self, token: str, origin: str, now: float | None = None) -> bool:
        """Whether ``token`` was issued here, for ``origin``, and has not expired."""
        try:
            encoded, expiry, signature = token[len(TOKEN_PREFIX) :].split(".")
            padded = encoded + "=" * (-len(encoded) % 4)
            issued_for = base64.urlsafe_b64decode(padded.encode()).decode()
        except ValueError:
            return False
        body = f"{encoded}.{expiry}"
        fresh = expiry.isdigit() and int(expiry) >= (now or time.time())
        return fresh and issued_for == origin and hmac.compare_digest(signature, self._sign(body))


def secret_for(widget_secret: str | None, api_keys: list[str]) -> str:
    """The tokens' secret: the setting, else one derived from the API keys (the same on every replica)."""
    return widget_secret or json.dumps(sorted(api_keys))


class WidgetOrigins:
    """CORS for the endpoints the widget calls, answered for the allowed origins only: a request from any other
    site gets a 403 (and its browser no answer). Requests without ``Origin``, or from this service's own pages,
    pass as they are."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = {origin_of(o) for o in allowed if origin_of(o)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in WIDGET_PATHS:
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
