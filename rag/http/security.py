"""Who is asking: the client's address (forwarded headers only from trusted proxies), API keys and the
admin token (compared in constant time, failed attempts limited), and the per-client rate limit."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from rag.channels.widget import TOKEN_PATHS, TOKEN_PREFIX, WidgetTokens
from rag.errors import ApiError
from rag.http.errors import error_response
from rag.http.paths import app_path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
log = logging.getLogger("rag.api")


def networks(spec: list[str]) -> list[Network]:
    """``["127.0.0.1", "10.0.0.0/8"]`` as networks; ``"*"`` trusts every address."""
    if "*" in spec:
        return [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    return [ipaddress.ip_network(item, strict=False) for item in spec]


def _trusted(host: str | None, trusted: list[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return any(address in net for net in trusted)


class ForwardedHeaders:
    """Behind a reverse proxy: take the client's address, scheme and host from ``X-Forwarded-For``,
    ``-Proto`` and ``-Host``, but only when the connection comes from a trusted proxy
    (``RAG_FORWARDED_ALLOW_IPS``); from anyone else these headers are ignored."""

    def __init__(self, app: ASGIApp, trusted: list[Network]) -> None:
        self.app, self.trusted = app, trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in {"http", "websocket"} and self.trusted:
            client = scope.get("client")
            if client and _trusted(client[0], self.trusted):
                scope = dict(scope)
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
                # the nearest address that is not a trusted proxy is the client
                chain = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
                for host in reversed(chain):
                    if not _trusted(host, self.trusted):
                        scope["client"] = (host, 0)
                        break
                proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
                if proto in {"http", "https"}:
                    scope["scheme"] = proto
                host = headers.get("x-forwarded-host", "").split(",")[0].strip()
                if host:
                    scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"host"] + [
                        (b"host", host.encode("latin-1"))
                    ]
        await self.app(scope, receive, send)


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


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class LimitStore:
    """Where the rate limits count: in memory, or in Redis shared by replicas (``redis://…``).

    Redis away never takes the answers down: a failed call (each bounded by a quarter of a second) leaves Redis
    alone for ``rest`` seconds, during which the limits let requests through (``fail_open``, counted in
    ``unavailable``) or refuse them with a retryable 503; then it is tried again."""

    def __init__(self, uri: str = "memory://", fail_open: bool = True, rest: float = 5.0) -> None:
        self.shared = uri.startswith(("redis://", "rediss://", "redis+"))
        options = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25} if self.shared else {}
        self.storage = storage_from_string(uri, **options)
        self.fail_open, self.rest = fail_open, rest
        self._resting_until = 0.0
        self.unavailable = 0  # requests let through or refused while it was away
        self.last_error: str | None = None

    @property
    def state(self) -> str:
        """``off`` (in memory), ``ok``, or ``unavailable`` (left alone after a failure)."""
        if not self.shared:
            return "off"
        return "unavailable" if time.monotonic() < self._resting_until else "ok"

    def call(self, work: Callable[[], Any], instead: Any) -> Any:
        """``work()``; while the store is away, ``instead`` (failing open), or a 503 (failing closed)."""
        if time.monotonic() >= self._resting_until:
            try:
                result = work()
                self.last_error = None
                return result
            except Exception as exc:  # whatever the storage's client raises for a store away
                if self.last_error is None:
                    log.warning("the rate-limit store is unavailable (%s): limits %s", exc, self._mode)
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._resting_until = time.monotonic() + self.rest
        self.unavailable += 1
        if self.fail_open:
            return instead
        raise ApiError(
            503,
            "rate_limit_unavailable",
            "the rate-limit store is unavailable; retry later",
            {"Retry-After": str(math.ceil(self.rest))},
        )

    @property
    def _mode(self) -> str:
        return "let requests through until it answers" if self.fail_open else "refuse requests until it answers"

    def probe(self) -> str:
        """Ask the store whether it answers (for /ready), and say its state."""
        if self.shared and time.monotonic() >= self._resting_until:
            self.call(lambda: self.storage.check() or _raise("no answer"), True)
        return self.state


def _raise(message: str) -> None:
    raise ConnectionError(message)


class Limiter:
    """A moving one-minute window per name in a :class:`LimitStore`; 0 = no limit."""

    def __init__(self, per_minute: int, store: LimitStore, prefix: str = "rag") -> None:
        self.store = store
        self.item = RateLimitItemPerMinute(per_minute, namespace=prefix) if per_minute > 0 else None
        self.limiter = MovingWindowRateLimiter(store.storage) if self.item else None

    def hit(self, name: str) -> bool:
        """Count one event for ``name``; False when the window was already full."""
        if self.limiter is None:
            return True
        return self.store.call(lambda: self.limiter.hit(self.item, name), True)

    def full(self, name: str) -> bool:
        if self.limiter is None:
            return False
        return self.store.call(lambda: not self.limiter.test(self.item, name), False)

    def refusal(self, name: str, code: str, message: str) -> ApiError:
        reset = time.time() + 60
        if self.limiter is not None:
            reset = self.store.call(lambda: self.limiter.get_window_stats(self.item, name).reset_time, reset)
        retry = max(1, math.ceil(reset - time.time()))
        return ApiError(429, code, f"{message}; retry in {retry} s", {"Retry-After": str(retry)})


class Access:
    """API keys (when set), the admin token, the rate limit, and a limit on failed authentications."""

    def __init__(
        self,
        keys: list[str],
        admin_token: str | list[str] | None,
        per_minute: int,
        failures_per_minute: int,
        store: LimitStore,
        widget: WidgetTokens | None = None,
    ) -> None:
        """``widget``: the widget's public tokens, accepted in place of a key to ask, vote and hand off."""
        self.keys = [k for k in keys if k]
        given = admin_token if isinstance(admin_token, list) else [admin_token]
        self.admin_tokens = [t for t in given if t]
        self.widget = widget
        self.store = store
        self.requests = Limiter(per_minute, store, "rag-requests")
        self.failures = Limiter(failures_per_minute, store, "rag-auth-failures")

    def _refuse(self, request: Request, code: str, message: str) -> ApiError:
        self.failures.hit(client_address(request))
        return ApiError(401, code, message, {"WWW-Authenticate": "Bearer"})

    def _blocked(self, request: Request) -> None:
        """Once an address has failed too often, it is refused before its credentials are even compared."""
        address = client_address(request)
        if self.failures.full(address):
            raise self.failures.refusal(address, "too_many_failures", "too many failed authentications")

    def check(self, request: Request) -> None:
        """The API key (when keys are set), then the rate limit of the verified key or of the address."""
        identity = f"ip:{client_address(request)}"
        if self.keys:
            self._blocked(request)
            token = bearer_token(request)
            if token is None:
                raise self._refuse(request, "missing_api_key", "send your API key as 'Authorization: Bearer <key>'")
            if token.startswith(TOKEN_PREFIX):
                origin = request.headers.get("origin", "").lower()
                here = app_path(request.scope) in TOKEN_PATHS
                if self.widget is None or not here or not self.widget.valid(token, origin):
                    raise self._refuse(request, "invalid_widget_token", "this widget token is not valid here")
            elif not matches_any(token, self.keys):
                raise self._refuse(request, "invalid_api_key", "this API key is not valid")
            else:
                identity = "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]
        if not self.requests.hit(identity):
            raise self.requests.refusal(identity, "rate_limited", "too many requests")

    def check_public(self, request: Request) -> None:
        """The rate limit of the address, for the page's own forms (public, like the page)."""
        identity = f"ip:{client_address(request)}"
        if not self.requests.hit(identity):
            raise self.requests.refusal(identity, "rate_limited", "too many requests")

    def check_admin(self, request: Request) -> None:
        """Admin routes do not exist (404) unless an admin token is configured."""
        if not self.admin_tokens:
            raise ApiError(404, "not_found", "no such route; see /docs for the API")
        self._blocked(request)
        if not matches_any(bearer_token(request), self.admin_tokens):
            raise self._refuse(
                request, "invalid_admin_token", "send the admin token as 'Authorization: Bearer <token>'"
            )


class Guarded:
    """An ASGI app mounted beside the API (the MCP endpoint) behind the same keys and rate limits."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                self.access.check(Request(scope))
            except ApiError as exc:
                await error_response(exc.status, exc.code, str(exc), exc.headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)
