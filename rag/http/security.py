"""API keys, the admin token, and the per-client rate limit."""

from __future__ import annotations

import hmac
import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import Request

from ..errors import ApiError


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def matches_any(token: str | None, secrets: list[str]) -> bool:
    """Compare against every secret in constant time, so timing reveals neither which nor how much matched."""
    given = (token or "").encode()
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(given, secret.encode())
    return found and token is not None


class ApiKeys:
    def __init__(self, keys: list[str]) -> None:
        self.keys = [k for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def check(self, request: Request) -> None:
        if not self.enabled:
            return
        token = bearer_token(request)
        if token is None:
            raise ApiError(
                401,
                "missing_api_key",
                "send your API key as 'Authorization: Bearer <key>'",
                {"WWW-Authenticate": "Bearer"},
            )
        if not matches_any(token, self.keys):
            raise ApiError(401, "invalid_api_key", "this API key is not valid", {"WWW-Authenticate": "Bearer"})


def check_admin(request: Request, admin_token: str | None) -> None:
    """Admin routes do not exist (404) unless an admin token is configured."""
    if not admin_token:
        raise ApiError(404, "not_found", "no such route; see /docs for the API")
    if not matches_any(bearer_token(request), [admin_token]):
        raise ApiError(
            401,
            "invalid_admin_token",
            "send the admin token as 'Authorization: Bearer <token>'",
            {"WWW-Authenticate": "Bearer"},
        )


class RateLimit:
    """A moving one-minute window per client (API key when there is one, else address)."""

    def __init__(self, per_minute: int) -> None:
        self.item = RateLimitItemPerMinute(per_minute) if per_minute > 0 else None
        self.limiter = MovingWindowRateLimiter(MemoryStorage()) if self.item else None

    def check(self, request: Request) -> None:
        if self.item is None or self.limiter is None:
            return
        client = bearer_token(request) or (request.client.host if request.client else "unknown")
        if not self.limiter.hit(self.item, client):
            reset = self.limiter.get_window_stats(self.item, client).reset_time
            retry = max(1, math.ceil(reset - time.time()))
            raise ApiError(429, "rate_limited", f"too many requests; retry in {retry} s", {"Retry-After": str(retry)})
