"""The widget's public tokens, when API keys are on: what it asks, votes and hands off with from other sites —
signed, bound to one allowed origin, valid for ``RAG_WIDGET_TOKEN_SECONDS`` (the widget renews it before it
expires, and once more on a 401), accepted on those endpoints only (the origins themselves
are checked by :class:`rag.http.cors.WidgetOrigins`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from urllib.parse import urlsplit

TOKEN_PATHS = frozenset({"/ask", "/feedback", "/handoff"})  # what a widget token may do: ask, vote, hand off
TOKEN_PREFIX = "wt."


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower case (how browsers send ``Origin``)."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


class WidgetTokens:
    """Public tokens for the widget: ``wt.<origin>.<expiry>.<signature>`` (HMAC-SHA256 with ``secret``)."""

    def __init__(self, secret: str, seconds: int) -> None:
        self.key = hashlib.sha256(("rag-widget\x00" + secret).encode()).digest()
        self.seconds = seconds

    def _sign(self, body: str) -> str:
        return hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, origin: str, now: float | None = None) -> str:
        expiry = int((now or time.time()) + self.seconds)
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
        fresh = expiry.isascii() and expiry.isdigit() and int(expiry) >= (now or time.time())
        expected = self._sign(body).encode("ascii")
        return fresh and issued_for == origin and hmac.compare_digest(signature.encode("utf-8", "replace"), expected)


def secret_for(widget_secret: str | None, api_keys: list[str]) -> str:
    """The tokens' secret: the setting, else one derived from the API keys (the same on every replica)."""
    return widget_secret or json.dumps(sorted(api_keys))
