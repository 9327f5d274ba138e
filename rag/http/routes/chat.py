"""``POST /v1/chat/completions`` and ``GET /v1/models``: the OpenAI Chat Completions adapter
(:mod:`rag.channels.openai_chat`) over HTTP."""

from __future__ import annotations

import time
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from rag.channels.housekeeping import housekeeping
from rag.channels.openai_chat import MODEL_ID, ChatRequest, Completion
from rag.channels.respond import clean_query
from rag.http.deps import ServicesDep, base_url, guard, note
from rag.models import Question

router = APIRouter(prefix="/v1", tags=["openai-compatible"], dependencies=[Depends(guard)])


@router.get("/models")
async def models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "faq-rag"}]}


@router.post(
    "/chat/completions",
    responses={200: {"content": {"application/json": {}, "text/event-stream": {}}, "description": "JSON, or SSE"}},
)
async def chat(body: ChatRequest, request: Request, services: ServicesDep) -> Any:
    """Answers the last user message with the cited answer (sources listed after it and in
    ``citations``), streaming or not."""
    started = time.perf_counter()
    users = body.users()
    completion = Completion(services.query.embedder.count_tokens, body)
    chore = housekeeping(users[-1])
    if chore is not None:  # a front end's own title or tags: answered, never searched nor recorded
        if body.stream:
            return EventSourceResponse(ServerSentEvent(chunk) for chunk in completion.plain_chunks(chore))
        return completion.plain(chore)
    query = clean_query(users[-1], services.settings.http.max_query_chars)
    note(request, query)
    question = Question(query=query, history=[u for u in users[:-1] if u.strip()])
    responder = services.responder
    result = await anyio.to_thread.run_sync(responder.find, question, "/v1/chat/completions", base_url(request))
    note(request, abstained=result.abstained)
    if body.stream:
        chunks = completion.chunks(responder.stream(result, "chat", started))
        return EventSourceResponse(ServerSentEvent(chunk) for chunk in chunks)
    reply = await anyio.to_thread.run_sync(responder.reply, result, "chat", started)
    return completion.whole(reply)
