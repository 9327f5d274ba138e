"""``POST /search`` and ``POST /ask`` (JSON, or Server-Sent Events)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from rag.http.deps import StateDep, base_url, guard, json_body
from rag.http.schemas import AskRequest, AskResponse, SearchRequest, SearchResponse
from rag.llm import Reset
from rag.models import SearchResult

log = logging.getLogger("rag.api")
router = APIRouter(tags=["answers"], dependencies=[Depends(guard), Depends(json_body)])


@router.post("/search", response_model=SearchResponse)
async def search(body: SearchRequest, request: Request, state: StateDep) -> SearchResponse:
    """The top FAQ entries for a question, or none (``abstained``) when nothing relevant is there."""
    started = time.perf_counter()
    question = body.question(state.clean_query(body.query))
    request.state.query = question.query
    result = await anyio.to_thread.run_sync(state.service.search, question, base_url(request))
    state.searched(result, "/search", request)
    state.log_search(result, "search")
    return SearchResponse(**result.model_dump(), took_ms=round((time.perf_counter() - started) * 1000, 2))


@router.post(
    "/ask",
    response_model=AskResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE when stream is true"}},
)
async def ask(body: AskRequest, request: Request, state: StateDep) -> Any:
    """A short answer with numbered citations. With ``stream``: Server-Sent Events ``passages``,
    ``delta`` (pieces of the answer), then ``done`` (the full answer, citations and the answer id).
    A ``reset`` event means the pieces so far are replaced by the ones that follow (LLM fallback)."""
    started = time.perf_counter()
    question = body.question(state.clean_query(body.query))
    request.state.query = question.query
    # retrieve before the response starts, so bad filters still get a proper error status
    result = await anyio.to_thread.run_sync(state.service.search, question, base_url(request))
    state.searched(result, "/ask", request)
    channel = channel_of(request)
    if not body.stream:
        answer = await anyio.to_thread.run_sync(state.service.answer, result)
        return state.finish(answer, started, channel, logged=not result.smalltalk)
    return EventSourceResponse(_events(state, result, started, channel), ping=15)


def channel_of(request: Request) -> str:
    """Where the question was asked, as the client says (the page and the widget say so); the API otherwise."""
    said = request.headers.get("x-rag-channel", "").strip().lower()
    return said if said in CHANNELS else "api"


CHANNELS = {"api", "page", "widget"}


def _events(state: StateDep, result: SearchResult, started: float, channel: str) -> Iterator[ServerSentEvent]:
    passages = {"passages": [p.model_dump() for p in result.results], "abstained": result.abstained}
    yield ServerSentEvent(json.dumps(passages, ensure_ascii=False), event="passages")
    try:
        for item in state.service.ask_stream(result):
            if isinstance(item, str):
                yield ServerSentEvent(json.dumps({"text": item}, ensure_ascii=False), event="delta")
            elif isinstance(item, Reset):
                yield ServerSentEvent(json.dumps({"reason": item.reason}), event="reset")
            else:
                done = state.finish(item, started, channel, logged=not result.smalltalk)
                yield ServerSentEvent(done.model_dump_json(exclude={"passages"}), event="done")
    except Exception:  # the response has started: the stream ends with an error event, never silently
        log.exception("the answer stream failed")
        error = {"code": "internal_error", "message": "the answer could not be completed; ask again"}
        yield ServerSentEvent(json.dumps({"error": error}), event="error")
