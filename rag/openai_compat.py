"""``POST /v1/chat/completions`` and ``GET /v1/models``: the cited answer in OpenAI's Chat Completions
shapes, so chat front ends and helpdesk bots (and the official ``openai`` client) work unchanged."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anyio
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from .generation import Reset
from .http_errors import ApiError
from .language import detect, message
from .models import Answer
from .service import RagService

MODEL_ID = "faq-rag"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


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
    model: str = MODEL_ID
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if part.get("type") == "text")
    return ""


def with_sources(answer: Answer) -> str:
    """The answer followed by the numbered list of its sources."""
    if not answer.citations:
        return answer.answer
    lines = [f"[{c.n}] {c.question + ' — ' if c.question else ''}{c.url}" for c in answer.citations]
    return f"{answer.answer}\n\n{message('sources', detect(answer.query))} :\n" + "\n".join(lines)


def chat_router(
    service: RagService,
    clean_query: Callable[[str], str],
    guard: Callable[..., Any],
    finish: Callable[[Answer], Any],
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["openai-compatible"], dependencies=[Depends(guard)])

    @router.get("/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "faq-rag"}]}

    @router.post("/chat/completions")
    async def chat(body: ChatRequest) -> Any:
        """Answers the last user message with the cited answer (sources listed after it and in
        ``citations``), streaming or not."""
        users = [m for m in body.messages if m.role == "user"]
        if not users:
            raise ApiError(422, "no_user_message", "the conversation has no user message to answer")
        query = clean_query(_text(users[-1].content))
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        result = await anyio.to_thread.run_sync(service.search, query, None, None)
        if not body.stream:
            answer = await anyio.to_thread.run_sync(service.answer, result)
            extra = await anyio.to_thread.run_sync(finish, answer)
            content = with_sources(answer)
            return {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": MODEL_ID,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "citations": [c.model_dump() for c in answer.citations],
                "abstained": answer.abstained,
                **extra,
            }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **more: Any) -> ServerSentEvent:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": MODEL_ID,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                **more,
            }
            return ServerSentEvent(json.dumps(payload, ensure_ascii=False))

        def stream() -> Iterator[ServerSentEvent]:
            yield chunk({"role": "assistant", "content": ""})
            final: Answer | None = None
            for item in service.ask_stream(result):
                if isinstance(item, str):
                    yield chunk({"content": item})
                elif isinstance(item, Reset):
                    # a chat client cannot take back text it has shown: the replacement follows a rule
                    yield chunk({"content": "\n\n---\n"})
                else:
                    final = item
            if final is None:
                return
            extra = finish(final)
            yield chunk({"content": with_sources(final)[len(final.answer) :]})
            yield chunk(
                {}, "stop", citations=[c.model_dump() for c in final.citations], abstained=final.abstained, **extra
            )
            yield ServerSentEvent("[DONE]")

        return EventSourceResponse(stream())

    return router
