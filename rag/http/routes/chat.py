"""``POST /v1/chat/completions`` and ``GET /v1/models``: the cited answer in OpenAI's Chat Completions
shapes, so chat front ends and helpdesk bots (and the official ``openai`` client) work unchanged."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from sse_starlette import EventSourceResponse, ServerSentEvent

from rag.errors import ApiError
from rag.http.deps import AppState, StateDep, base_url, guard
from rag.http.schemas import Text
from rag.language.detect import detect, message
from rag.llm import Reset
from rag.models import Answer, Question, SearchResult

MODEL_ID = "faq-rag"


class ContentPart(BaseModel):
    """One part of a message's content; only text parts are read."""

    model_config = ConfigDict(extra="allow")
    type: Text
    text: Text | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Text
    content: Text | list[ContentPart] | None = None


class ChatRequest(BaseModel):
    """A standard chat request; unknown OpenAI parameters are accepted and ignored."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {"model": MODEL_ID, "messages": [{"role": "user", "content": "Comment déposer une demande de solde ?"}]}
            ]
        },
    )
    model: Text = MODEL_ID
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    n: StrictInt = Field(1, description="one answer per request: only 1 is accepted")


def _text(content: str | list[ContentPart] | None) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.text or "" for part in content if part.type == "text")
    return ""


def with_sources(answer: Answer) -> str:
    """The answer followed by the numbered list of its sources."""
    text = f"{answer.answer}\n\n{answer.note}" if answer.note else answer.answer
    if not answer.citations:
        return text
    lines = [f"[{c.n}] {c.question + ' — ' if c.question else ''}{c.url}" for c in answer.citations]
    return f"{text}\n\n{message('sources', detect(answer.query))} :\n" + "\n".join(lines)


router = APIRouter(prefix="/v1", tags=["openai-compatible"], dependencies=[Depends(guard)])


@router.get("/models")
async def models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "faq-rag"}]}


@router.post(
    "/chat/completions",
    responses={200: {"content": {"application/json": {}, "text/event-stream": {}}, "description": "JSON, or SSE"}},
)
async def chat(body: ChatRequest, request: Request, state: StateDep) -> Any:
    """Answers the last user message with the cited answer (sources listed after it and in
    ``citations``), streaming or not."""
    if body.n != 1:
        raise ApiError(422, "unsupported_n", "this endpoint gives one answer per request: send n = 1")
    # the system message is the client's instructions, not a question: only user messages are searched
    users = [_text(m.content) for m in body.messages if m.role == "user"]
    if not users:
        raise ApiError(422, "no_user_message", "the conversation has no user message to answer")
    query = request.state.query = state.clean_query(users[-1])
    history = [u for u in users[:-1] if u.strip()]
    ids = (f"chatcmpl-{uuid.uuid4().hex}", int(time.time()))
    result = await anyio.to_thread.run_sync(
        state.service.search, Question(query=query, history=history), base_url(request)
    )
    state.searched(result, "/v1/chat/completions", request)
    if body.stream:
        return EventSourceResponse(_stream(state, result, ids, body))
    answer = await anyio.to_thread.run_sync(state.service.answer, result)
    extra = _finish(state, answer, not result.smalltalk)
    return {
        "id": ids[0],
        "object": "chat.completion",
        "created": ids[1],
        "model": MODEL_ID,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": with_sources(answer)}, "finish_reason": "stop"}
        ],
        "usage": _usage(state, body, with_sources(answer)),
        "resolved": answer.resolved,
        "citations": [c.model_dump() for c in answer.citations],
        "abstained": answer.abstained,
        "confidence": answer.confidence,
        "degraded": answer.degraded,
        **extra,
    }


def _usage(state: AppState, body: ChatRequest, completion: str) -> dict[str, int]:
    """Token counts of the conversation and of the reply, by the service's encoder tokenizer."""
    count = state.service.embedder.count_tokens
    prompt = sum(count(_text(m.content)) for m in body.messages)
    done = count(completion)
    return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}


def _finish(state: AppState, answer: Answer, logged: bool = True) -> dict[str, Any]:
    done = state.finish(answer, time.perf_counter(), "chat", logged)
    extra = {"answer_id": done.answer_id, "fallback": done.fallback, "fallback_reason": done.fallback_reason}
    return extra | {"handoff": done.handoff.model_dump() if done.handoff else None}


def _chunk(
    ids: tuple[str, int], delta: dict[str, Any], finish_reason: str | None = None, **more: Any
) -> ServerSentEvent:
    payload = {
        "id": ids[0],
        "object": "chat.completion.chunk",
        "created": ids[1],
        "model": MODEL_ID,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        **more,
    }
    return ServerSentEvent(json.dumps(payload, ensure_ascii=False))


def _stream(
    state: AppState, result: SearchResult, ids: tuple[str, int], body: ChatRequest
) -> Iterator[ServerSentEvent]:
    yield _chunk(ids, {"role": "assistant", "content": ""})
    final: Answer | None = None
    for item in state.service.ask_stream(result):
        if isinstance(item, str):
            yield _chunk(ids, {"content": item})
        elif isinstance(item, Reset):
            # a chat client cannot take back text it has shown: the replacement follows a rule
            yield _chunk(ids, {"content": "\n\n---\n"})
        else:
            final = item
    if final is None:
        return
    extra = _finish(state, final, not result.smalltalk)
    yield _chunk(ids, {"content": with_sources(final)[len(final.answer) :]})
    citations = [c.model_dump() for c in final.citations]
    usage = _usage(state, body, with_sources(final))
    more = {"abstained": final.abstained, "confidence": final.confidence, "resolved": final.resolved}
    more |= {"degraded": final.degraded, **extra}
    yield _chunk(ids, {}, "stop", citations=citations, usage=usage, **more)
    yield ServerSentEvent("[DONE]")
