"""Every HTTP error as JSON ``{"error": {"code", "message"}}`` with the right status; never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.errors import RagError
from rag.http.paths import app_path

log = logging.getLogger("rag.api")


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


_HTTP_CODES = {
    404: ("not_found", "no such route; see /docs for the API"),
    405: ("method_not_allowed", "this route does not accept that method; see /docs"),
}


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
    return f"{where}: {error.get('msg', 'invalid value')}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, default = _HTTP_CODES.get(exc.status_code, ("http_error", str(exc.detail)))
        message = exc.detail if isinstance(exc.detail, str) and exc.status_code not in _HTTP_CODES else default
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # every method of the path, whichever route declares it
            headers["Allow"] = ", ".join(_allowed(request))
        return error_response(exc.status_code, code, message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "malformed_json", "the request body is not valid JSON")
        if any(e.get("type") == "extra_forbidden" for e in errors):
            names = ", ".join(str(e["loc"][-1]) for e in errors if e.get("type") == "extra_forbidden")
            return error_response(422, "unknown_field", f"unknown field(s): {names}; see /docs for the accepted fields")
        if any(e.get("type") == "missing" for e in errors):
            return error_response(422, "missing_field", "; ".join(_describe(e) for e in errors))
        return error_response(422, "invalid_request", "; ".join(_describe(e) for e in errors[:5]))

    @app.exception_handler(RagError)
    async def _rag(request: Request, exc: RagError) -> JSONResponse:
        if exc.public:
            return error_response(exc.status, exc.code, str(exc), exc.headers)
        log.error("%s on %s %s: %s", exc.code, request.method, request.url.path, exc)
        return error_response(
            exc.status, exc.code, "the service cannot answer this now; the operator has the details in the logs"
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return unexpected(request)


def unexpected(request: Request) -> JSONResponse:
    """A fault nobody foresaw: logged with its traceback, answered with a JSON 500 that reveals nothing."""
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "something went wrong on our side; it has been logged")


def _allowed(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.path_regex.match(app_path(request.scope)):
            methods |= route.methods or set()
    return sorted(methods)


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413, whether or not they announce their length; paths under one of
    ``larger`` (a prefix → its limit) have their own (a curation import, a long chat)."""

    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app, self.default, self.larger = app, max_bytes, larger or {}

    def limit(self, path: str) -> int:
        return next((size for prefix, size in self.larger.items() if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit(app_path(scope))
        too_large = f"the request body is over {max_bytes} bytes"
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > max_bytes:  # bytes: ASCII digits only
                await error_response(413, "body_too_large", too_large)(scope, receive, send)
                return
        # Bodies here are small JSON documents: read the whole body (up to the limit) before the app runs,
        # then replay it, so an oversized chunked upload is refused before any parsing.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(bytes(body), message, receive), send)
                return
            body += message.get("body", b"")
            if len(body) > max_bytes:
                await error_response(413, "body_too_large", too_large)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), None, receive), send)


def _replay(body: bytes, pending: Message | None, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if pending is not None:
            return pending
        return await receive()

    return replay
