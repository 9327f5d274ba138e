"""Several FAQs behind one server: each collection is the whole app under ``/c/<name>`` (its own index, question
log, gaps, widget and MCP endpoint), the default one also at the root; the encoder is loaded once for all, and a
collection is loaded by its first request (:mod:`rag.http.pool`).

Keys scoped to some collections (``[[keys]]`` of the collections file) get 403 on the others, before the request
reaches them. ``POST /v1/chat/completions`` at the root goes to the collection named by ``model``, and
``GET /v1/models`` lists the collections; the MCP tools at the root (``/mcp/``) take a ``collection``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.channels.mcp import Collections as McpCollections
from rag.config import Settings
from rag.config.collections import Collections
from rag.http.pool import Lazy, Pool
from rag.http.security import bearer_token
from rag.query.service import QueryService

MAX_CHAT_BODY = 4_000_000


def collections_app(settings: Settings, collections: Collections, make_app, embedder: Any = None) -> Starlette:
    """The server of every collection; ``make_app(settings, query)`` makes one collection's app; ``embedder``:
    the encoder they share (default: the one the settings name, loaded once)."""
    shared = QueryService(collections.settings[collections.default], embedder)
    http = settings.http
    titles = {name: own.answer.faq_name for name, own in collections.settings.items()}

    def make(name: str, query: QueryService) -> FastAPI:
        app = make_app(collections.settings[name], query)
        if name == collections.default:  # the root's MCP tools and /ready speak for every collection
            app.state.assistants.collections = McpCollections(titles, responder_of, collections.allowed)
            app.state.pool = pool
        return app

    pool = Pool(collections.settings, make, shared, http.collections_memory, http.collection_load_wait)

    @asynccontextmanager
    async def responder_of(name: str) -> AsyncIterator[Any]:
        async with pool.using(name) as app:
            yield app.state.services.responder

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            async with pool.running():
                yield
        finally:
            await anyio.to_thread.run_sync(shared.close)

    routes = [Mount(f"/c/{name}", app=Lazy(pool, name)) for name in collections.settings]
    routes.append(Mount("/", app=Lazy(pool, collections.default)))
    server = Starlette(routes=routes, lifespan=lifespan)
    server.add_middleware(Routing, collections=collections, max_body=http.max_chat_body_bytes)
    server.state.pool = pool
    return server


class Routing:
    """Scoped keys checked against the collection a request goes to; the root chat endpoint sent to the collection
    its ``model`` names; the collections listed as the chat endpoint's models."""

    def __init__(self, app: ASGIApp, collections: Collections, max_body: int = MAX_CHAT_BODY) -> None:
        self.app, self.collections, self.max_body = app, collections, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/v1/models" and scope["method"] == "GET":
            await self._models(scope, receive, send)
            return
        if path == "/v1/chat/completions" and scope["method"] == "POST":
            body = await _body(receive, self.max_body)
            if body is None:
                message = f"the request body is over {self.max_body} bytes"
                await JSONResponse({"error": {"code": "body_too_large", "message": message}}, 413)(scope, receive, send)
                return
            model = _model(body)
            if model in self.collections.settings and model != self.collections.default:
                scope = {**scope, "path": f"/c/{model}{path}", "raw_path": f"/c/{model}{path}".encode()}
            receive = _replay(body, receive)
        name = self._target(scope["path"])
        allowed = self.collections.allowed(_token(scope))
        if allowed is not None and name not in allowed:
            message = f"this key may not use the collection {name!r}; it may use: {', '.join(allowed)}"
            refusal = JSONResponse({"error": {"code": "collection_forbidden", "message": message}}, status_code=403)
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _target(self, path: str) -> str:
        parts = path.split("/")
        if len(parts) > 2 and parts[1] == "c" and parts[2] in self.collections.settings:
            return parts[2]
        return self.collections.default

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        allowed = self.collections.allowed(_token(scope))
        names = [n for n in self.collections.settings if allowed is None or n in allowed]
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "faq-rag"} for n in names]
        await JSONResponse({"object": "list", "data": data})(scope, receive, send)


def _token(scope: Scope) -> str:
    return bearer_token(Request(scope)) or ""


def _model(body: bytes) -> str | None:
    try:
        found = json.loads(body)
    except ValueError:
        return None
    model = found.get("model") if isinstance(found, dict) else None
    return model if isinstance(model, str) else None


async def _body(receive: Receive, limit: int) -> bytes | None:
    """The request's body, read whole; None when it is over ``limit`` bytes."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks) if size <= limit else None


def _replay(body: bytes, original: Receive) -> Receive:
    """The body read already, then what the client does next (its disconnect, while a stream is sent)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await original()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
