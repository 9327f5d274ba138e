"""The app factory: state, middleware, error handlers and one router per area."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from rag import __version__
from rag.config import Settings, load_settings
from rag.config.collections import Collections
from rag.http.collections import collections_app
from rag.http.deps import Services
from rag.http.errors import install_error_handlers
from rag.http.mcp import McpEndpoint
from rag.http.middleware import install_middleware
from rag.http.routes import admin, answers, channels, chat, docs, entries, feedback, health, integrations, web
from rag.http.schemas import ErrorResponse
from rag.http.security import Guarded
from rag.logs import configure as configure_logging
from rag.query.service import QueryService
from rag.web import STATIC_DIR

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 415, 422, 429, 503)
}


def create_app(settings: Settings | None = None, query: QueryService | None = None) -> FastAPI:
    """The FastAPI app. The index loads in the background after start-up; /ready says when. With
    ``RAG_COLLECTIONS``, the server of every collection (:mod:`rag.http.collections`)."""
    settings = settings or load_settings()
    collections = Collections.load(settings) if query is None else None
    if collections is not None:
        return collections_app(settings, collections, create_app)  # type: ignore[return-value]
    services = Services.make(settings, query)
    assistants = McpEndpoint(services.responder, settings.http.host)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(services.start)  # never waits for a database: it connects in the background
        task = asyncio.create_task(anyio.to_thread.run_sync(services.load))
        app.state.loading = task  # a collection's first request waits for it (rag.http.pool)
        async with assistants.running():
            yield
        task.cancel()
        await anyio.to_thread.run_sync(services.stop)

    app = FastAPI(
        title="FAQ cited answers",
        version=__version__,
        description="Ask questions in plain language (French or English) and get short answers with links "
        "to the FAQ entries they come from.",
        lifespan=lifespan,
        responses=ERRORS,
        docs_url=None,  # served by routes.docs, with local assets and the API keys
        redoc_url=None,
        openapi_url=None,
    )
    app.state.services = services
    app.state.assistants = assistants
    install_error_handlers(app)
    install_middleware(app, services)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount(docs.ASSETS_URL, StaticFiles(directory=docs.ASSETS), name="docs-static")
    app.mount("/mcp", Guarded(assistants, services.access), name="mcp")
    for module in (web, health, answers, chat, entries, feedback, channels, integrations, admin, docs):
        app.include_router(module.router)
    return app


def app_from_environment() -> FastAPI:
    """The app as each worker process makes it, from the environment (``rag serve --workers N``)."""
    settings = load_settings()
    configure_logging(settings)  # a worker starts with no logging set up: the same lines as `rag serve`
    return create_app(settings)
