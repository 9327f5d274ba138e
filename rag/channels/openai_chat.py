"""The cited answer in OpenAI's Chat Completions shapes, so chat front ends and helpdesk bots (and the official
``openai`` client) work unchanged: the wire format to a :class:`~rag.models.Question` and back."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from rag.channels.respond import Failed, Reply
from rag.errors import ApiError
from rag.language.detect import detect, message
from rag.llm import Reset
from rag.models import Answer, Text

MODEL_ID = "faq-rag"
HISTORY = 6  # earlier user messages read from a conversation (a follow-up needs the last few, not all)


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
    model: Text | None = MODEL_ID
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = False
    n: StrictInt | None = Field(1, description="one answer per request: only 1 is accepted (null: 1)")

    def users(self) -> list[str]:
        """The user messages, oldest first: the last is the question, the few before it its history (the system
        message is the client's instructions, not a question)."""
        if self.n not in {1, None}:
            raise ApiError(422, "unsupported_n", "this endpoint gives one answer per request: send n = 1")
        users = [text_of(m.content) for m in self.messages if m.role == "user"][-(HISTORY + 1) :]
        if not users:
            raise ApiError(422, "no_user_message", "the conversation has no user message to answer")
        return users


def text_of(content: str | list[ContentPart] | None) -> str:
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


@dataclass
class Completion:
    """One completion's ids, and how its tokens are counted."""

    count: Callable[[str], int]
    request: ChatRequest
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def usage(self, completion: str) -> dict[str, int]:
        """Token counts of the conversation and of the reply, by the service's encoder tokenizer."""
        prompt = sum(self.count(text_of(m.content)) for m in self.request.messages)
        done = self.count(completion)
        return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}

    def extra(self, reply: Reply) -> dict[str, Any]:
        """The service's own fields beside OpenAI's: citations, confidence, the answer id and the handoff."""
        answer = reply.answer
        return {
            "citations": [c.model_dump() for c in answer.citations],
            "abstained": answer.abstained,
            "confidence": answer.confidence,
            "resolved": answer.resolved,
            "degraded": answer.degraded,
            "answer_id": reply.answer_id,
            "fallback": answer.fallback,
            "fallback_reason": answer.fallback_reason,
            "handoff": answer.handoff.model_dump() if answer.handoff else None,
        }

    def plain(self, text: str) -> dict[str, Any]:
        """A completion that is not an answer from the FAQ (a front end's title or tags)."""
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        head = {"id": self.id, "object": "chat.completion", "created": self.created, "model": MODEL_ID}
        return head | {"choices": [choice], "usage": self.usage(text)}

    def plain_chunks(self, text: str) -> Iterator[str]:
        yield self.chunk({"role": "assistant", "content": text})
        yield self.chunk({}, "stop")
        yield "[DONE]"

    def whole(self, reply: Reply) -> dict[str, Any]:
        """A non-streamed completion."""
        content = with_sources(reply.answer)
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        head = {"id": self.id, "object": "chat.completion", "created": self.created, "model": MODEL_ID}
        return head | {"choices": [choice], "usage": self.usage(content)} | self.extra(reply)

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **more: Any) -> str:
        payload = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            **more,
        }
        return json.dumps(payload, ensure_ascii=False)

    def chunks(self, items: Iterator[str | Reset | Reply | Failed]) -> Iterator[str]:
        """The streamed completion: the pieces, the sources, the final chunk and ``[DONE]``; a failure midway ends
        with an error object, as OpenAI's API sends one, and no ``[DONE]``."""
        yield self.chunk({"role": "assistant", "content": ""})
        for item in items:
            if isinstance(item, str):
                yield self.chunk({"content": item})
            elif isinstance(item, Reset):
                # a chat client cannot take back text it has shown: the replacement follows a rule
                yield self.chunk({"content": "\n\n---\n"})
            elif isinstance(item, Failed):
                yield json.dumps({"error": {"message": item.message, "type": "server_error", "code": item.code}})
                return
            else:
                final = item.answer
                yield self.chunk({"content": with_sources(final)[len(final.answer) :]})
                extra = self.extra(item)
                yield self.chunk({}, "stop", usage=self.usage(with_sources(final)), **extra)
        yield "[DONE]"
