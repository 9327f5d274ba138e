"""``POST /search`` and ``POST /ask`` (JSON, or Server-Sent Events): the API's, the page's and the widget's."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from rag.channels.respond import Failed, Reply, Responder, clean_query
from rag.http.deps import ServicesDep, base_url, guard, json_body, note
from rag.http.schemas import AskRequest, AskResponse, SearchRequest, SearchResponse
from rag.llm import Reset
from rag.models import SearchResult

router = APIRouter(tags=["answers"], dependencies=[Depends(guard), Depends(json_body)])
CHANNELS = {"api", "page", "widget"}


@router.post("/search", response_model=SearchResponse)
async def search(body: SearchRequest, request: Request, services: ServicesDep) -> SearchResponse:
    """The top FAQ entries for a question, or none (``abstained``) when nothing relevant is there."""
    started = time.perf_counter()
    question = body.question(clean_query(body.query, services.settings.http.max_query_chars))
    note(request, question.query)
    responder = services.responder
    result = await anyio.to_thread.run_sync(responder.find, question, "/search", base_url(request))
    note(request, abstained=result.abstained)
    responder.shown(result, "search")
    return SearchResponse(**result.model_dump(), took_ms=round((time.perf_counter() - started) * 1000, 2))


@router.post(
    "/ask",
    response_model=AskResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE when stream is true"}},
)
async def ask(body: AskRequest, request: Request, services: ServicesDep) -> Any:
    """A short answer with numbered citations. With ``stream``: Server-Sent Events ``passages``,
    ``delta`` (pieces of the answer), then ``done`` (the full answer, citations and the answer id).
    A ``reset`` event means the pieces so far are replaced by the ones that follow (LLM fallback); an
    ``error`` event ends a stream that could not be completed."""
    started = time.perf_counter()
    question = body.question(clean_query(body.query, services.settings.http.max_query_chars))
    note(request, question.query)
    responder = services.responder
    # retrieve before the response starts, so bad filters still get a proper error status
    result = await anyio.to_thread.run_sync(responder.find, question, "/ask", base_url(request))
    note(request, abstained=result.abstained)
    channel = channel_of(request)
    if not body.stream:
        reply = await anyio.to_thread.run_sync(responder.reply, result, channel, started)
        return response(reply)
    return EventSourceResponse(_events(responder, result, started, channel), ping=15)


def response(reply: Reply) -> AskResponse:
    return AskResponse(**reply.answer.model_dump(), answer_id=reply.answer_id, took_ms=reply.took_ms)


def channel_of(request: Request) -> str:
    """Where the question was asked, as the client says (the page and the widget say so); the API otherwise."""
    said = request.headers.get("x-rag-channel", "").strip().lower()
    return said if said in CHANNELS else "api"


def _events(responder: Responder, result: SearchResult, started: float, channel: str) -> Iterator[ServerSentEvent]:
    passages = {"passages": [p.model_dump() for p in result.results], "abstained": result.abstained}
    yield ServerSentEvent(json.dumps(passages, ensure_ascii=False), event="passages")
    for item in responder.stream(result, channel, started):
        if isinstance(item, str):
            yield ServerSentEvent(json.dumps({"text": item}, ensure_ascii=False), event="delta")
        elif isinstance(item, Reset):
            yield ServerSentEvent(json.dumps({"reason": item.reason}), event="reset")
        elif isinstance(item, Failed):
            error = {"code": item.code, "message": item.message}
            yield ServerSentEvent(json.dumps({"error": error}), event="error")
        else:
            yield ServerSentEvent(response(item).model_dump_json(exclude={"passages"}), event="done")
