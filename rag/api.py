"""The HTTP API: search, ask (JSON or Server-Sent Events), entries, feedback, health, metrics, admin."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from . import __version__
from .config import Settings, load_settings
from .feedback import FeedbackStore, UnknownAnswer
from .generation import Reset
from .http_errors import ApiError, BodyLimitMiddleware, install_error_handlers
from .metrics import Metrics
from .models import Answer
from .openai_compat import chat_router
from .retriever import entry_url
from .schemas import (
    AskRequest,
    AskResponse,
    EntryResponse,
    ErrorResponse,
    FeedbackRequest,
    SearchRequest,
    SearchResponse,
)
from .security import ApiKeys, RateLimit, check_admin
from .service import RagService

log = logging.getLogger("rag.api")
access_log = logging.getLogger("rag.access")
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 415, 422, 429, 503)
}


def _clean_query(query: str, max_chars: int) -> str:
    text = query.strip()
    if not text:
        raise ApiError(422, "empty_query", "the query is empty; write a question")
    if len(text) > max_chars:
        raise ApiError(422, "query_too_long", f"the query has {len(text)} characters; the maximum is {max_chars}")
    if any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in text):
        raise ApiError(422, "control_characters", "the query contains control characters; send plain text")
    return text


class Reindexer:
    """Rebuilds the index in a background thread; the service swaps it in when it is complete."""

    def __init__(self, service: RagService, on_done: Any) -> None:
        self.service, self.on_done = service, on_done
        self.running = False
        self.last: dict[str, Any] = {}
        self._lock = threading.Lock()

    def start(self) -> bool:
        with self._lock:
            if self.running:
                return False
            self.running = True
        self.last = {"started_at": time.time()}
        threading.Thread(target=self._run, name="reindex", daemon=True).start()
        return True

    def _run(self) -> None:
        try:
            index = self.service.build()
            self.last.update(status="done", version=index.version, counts=index.manifest["counts"])
            self.on_done()
        except Exception as exc:  # reported on GET /admin/reindex; the old index keeps serving
            log.exception("reindex failed")
            self.last.update(status="failed", error=str(exc))
        finally:
            self.last["finished_at"] = time.time()
            self.running = False

    def status(self) -> dict[str, Any]:
        return {"running": self.running, **self.last}


def create_app(settings: Settings | None = None, service: RagService | None = None) -> FastAPI:
    """Build the FastAPI app. The index loads in the background after start-up; /ready says when."""
    settings = settings or load_settings()
    service = service or RagService(settings)
    metrics = Metrics()
    keys = ApiKeys(settings.api_keys)
    limiter = RateLimit(settings.rate_limit_per_minute)
    store = FeedbackStore(settings.feedback_path)
    load_state: dict[str, Any] = {"error": None}

    def index_loaded() -> None:
        index = service.index
        metrics.set_index(index.version, index.manifest["embedder"], len(index.entries), index.vectors.ntotal)

    reindexer = Reindexer(service, index_loaded)

    def load() -> None:
        try:
            if not service.ready:
                service.load_or_build()
            store.open()
            index_loaded()
        except Exception as exc:
            load_state["error"] = str(exc)
            log.error("the index could not be loaded: %s", exc)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(anyio.to_thread.run_sync(load))
        yield
        task.cancel()
        store.close()

    app = FastAPI(
        title="FAQ cited answers",
        version=__version__,
        description="Ask questions in plain language (French or English) and get short answers with links "
        "to the FAQ entries they come from.",
        lifespan=lifespan,
        responses=ERRORS,
    )
    app.state.service, app.state.metrics, app.state.settings, app.state.feedback = service, metrics, settings, store
    install_error_handlers(app)

    @app.middleware("http")
    async def access(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            elapsed = time.perf_counter() - started
            route = request.scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            metrics.requests.labels(endpoint, request.method, str(status)).inc()
            metrics.latency.labels(endpoint).observe(elapsed)
            record = {
                "method": request.method,
                "path": request.url.path,
                "status": status,
                "latency_ms": round(elapsed * 1000, 2),
                "abstained": getattr(request.state, "abstained", None),
            }
            if settings.log_questions and getattr(request.state, "query", None):
                record["query"] = request.state.query
            access_log.info(json.dumps(record, ensure_ascii=False))

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)

    async def guard(request: Request) -> None:
        keys.check(request)
        limiter.check(request)

    async def json_body(request: Request) -> None:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise ApiError(415, "unsupported_media_type", "send the body as JSON with 'Content-Type: application/json'")

    def check_k(k: int) -> int:
        if not 1 <= k <= settings.max_k:
            raise ApiError(422, "invalid_k", f"k must be between 1 and {settings.max_k}")
        return k

    from fastapi.staticfiles import StaticFiles

    from .web import STATIC_DIR, index_page

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(index_page())

    @app.get("/health", tags=["service"], summary="The process is alive")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["service"], summary="The index is loaded (503 until it is)")
    async def ready() -> JSONResponse:
        if not service.ready:
            reason = load_state["error"] or "the index is loading"
            return JSONResponse(
                {"status": "loading" if not load_state["error"] else "failed", "reason": reason},
                status_code=503,
                headers={"Retry-After": "2"},
            )
        index = service.index
        return JSONResponse(
            {
                "status": "ready",
                "index_version": index.version,
                "entries": len(index.entries),
                "embedder": index.manifest["embedder"],
            }
        )

    @app.get("/metrics", tags=["service"], dependencies=[Depends(guard)], summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post(
        "/search", response_model=SearchResponse, tags=["answers"], dependencies=[Depends(guard), Depends(json_body)]
    )
    async def search(body: SearchRequest, request: Request) -> SearchResponse:
        """The top FAQ entries for a question, or none (``abstained``) when nothing relevant is there."""
        started = time.perf_counter()
        query = _clean_query(body.query, settings.max_query_chars)
        request.state.query = query
        result = await anyio.to_thread.run_sync(service.search, query, check_k(body.k), body.filters)
        request.state.abstained = result.abstained
        if result.abstained:
            metrics.abstentions.labels("/search").inc()
        return SearchResponse(
            query=query,
            abstained=result.abstained,
            results=result.results,
            took_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    def _finish(answer: Answer, started: float) -> AskResponse:
        answer_id = uuid.uuid4().hex
        store.record_answer(answer_id, answer)
        if answer.abstained:
            metrics.abstentions.labels("/ask").inc()
        if answer.fallback:
            metrics.llm_fallbacks.labels(answer.fallback_reason or "unknown").inc()
        if answer.citations_removed:
            metrics.citations_removed.inc(answer.citations_removed)
        return AskResponse(
            **answer.model_dump(), answer_id=answer_id, took_ms=round((time.perf_counter() - started) * 1000, 2)
        )

    @app.post(
        "/ask",
        response_model=AskResponse,
        tags=["answers"],
        dependencies=[Depends(guard), Depends(json_body)],
        responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE when stream is true"}},
    )
    async def ask(body: AskRequest, request: Request) -> Any:
        """A short answer with numbered citations. With ``stream``: Server-Sent Events ``passages``,
        ``delta`` (pieces of the answer), then ``done`` (the full answer, citations and the answer id).
        A ``reset`` event means the pieces so far are replaced by the ones that follow (LLM fallback)."""
        started = time.perf_counter()
        query = _clean_query(body.query, settings.max_query_chars)
        request.state.query = query
        k = check_k(body.k)
        if not body.stream:
            answer = await anyio.to_thread.run_sync(service.ask, query, k, body.filters)
            request.state.abstained = answer.abstained
            return await anyio.to_thread.run_sync(_finish, answer, started)  # a synchronous SQLite write
        # retrieve before the response starts, so bad filters still get a proper error status
        result = await anyio.to_thread.run_sync(service.search, query, k, body.filters)
        request.state.abstained = result.abstained
        events = service.ask_stream(result)

        def stream() -> Iterator[ServerSentEvent]:
            yield ServerSentEvent(
                json.dumps(
                    {"passages": [p.model_dump() for p in result.results], "abstained": result.abstained},
                    ensure_ascii=False,
                ),
                event="passages",
            )
            for item in events:
                if isinstance(item, str):
                    yield ServerSentEvent(json.dumps({"text": item}, ensure_ascii=False), event="delta")
                elif isinstance(item, Reset):
                    yield ServerSentEvent(json.dumps({"reason": item.reason}), event="reset")
                else:
                    done = _finish(item, started)
                    yield ServerSentEvent(done.model_dump_json(exclude={"passages"}), event="done")

        return EventSourceResponse(stream(), ping=15)

    def _chat_finish(answer: Answer) -> dict[str, Any]:
        done = _finish(answer, time.perf_counter())
        return {"answer_id": done.answer_id, "fallback": done.fallback, "fallback_reason": done.fallback_reason}

    app.include_router(chat_router(service, lambda q: _clean_query(q, settings.max_query_chars), guard, _chat_finish))

    @app.get("/entries/{entry_id}", response_model=EntryResponse, tags=["entries"], dependencies=[Depends(guard)])
    async def entry(entry_id: str, request: Request) -> Any:
        """The whole FAQ entry: the source link of entries that have no URL of their own."""
        found = service.index.entry(entry_id)
        if found is None:
            raise ApiError(404, "unknown_entry", f"no FAQ entry has the id '{entry_id}'")
        body = EntryResponse(
            id=found.id,
            question=found.question,
            answer=found.answer,
            url=entry_url(found, settings.public_url),
            links=found.links,
            metadata=found.metadata,
            source=found.source,
        )
        if _wants_html(request):
            from .web import entry_page

            return HTMLResponse(entry_page(body))
        return body

    @app.post("/feedback", tags=["feedback"], dependencies=[Depends(guard), Depends(json_body)])
    async def feedback(body: FeedbackRequest) -> dict[str, Any]:
        """Record whether an answer was useful ("Cette réponse vous a-t-elle été utile ?")."""
        comment = body.comment.strip() if body.comment else None
        if comment and len(comment) > settings.max_comment_chars:
            raise ApiError(422, "comment_too_long", f"the comment is over {settings.max_comment_chars} characters")
        try:
            updated = await anyio.to_thread.run_sync(store.add_feedback, body.answer_id, body.helpful, comment)
        except UnknownAnswer:
            raise ApiError(404, "unknown_answer", f"no answer has the id '{body.answer_id}'") from None
        metrics.feedback.labels(str(body.helpful).lower()).inc()
        return {"answer_id": body.answer_id, "helpful": body.helpful, "updated": updated}

    @app.post("/admin/reindex", status_code=202, tags=["admin"])
    async def reindex(request: Request) -> dict[str, Any]:
        """Rebuild the index from the configured sources in the background, then swap it in."""
        check_admin(request, settings.admin_token)
        if not reindexer.start():
            raise ApiError(409, "reindex_running", "a rebuild is already running; see GET /admin/reindex")
        return {"status": "started"}

    @app.get("/admin/reindex", tags=["admin"])
    async def reindex_status(request: Request) -> dict[str, Any]:
        check_admin(request, settings.admin_token)
        return reindexer.status()

    @app.get("/admin/feedback", tags=["admin"])
    async def admin_feedback(request: Request) -> dict[str, Any]:
        """Feedback statistics and the questions to label, as ``rag feedback`` prints them."""
        check_admin(request, settings.admin_token)
        stats = await anyio.to_thread.run_sync(store.stats)
        return {"stats": stats, "to_label": await anyio.to_thread.run_sync(store.export_queries)}

    return app


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]
