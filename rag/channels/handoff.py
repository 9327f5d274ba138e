"""Handoff to a human: when the service declines or is unsure, or when the user asks for a person, every channel
offers it; with ``RAG_HANDOFF_WEBHOOK`` set, the conversation's transcript — questions, answers, cited entries,
confidence, why — is posted as JSON to any ticketing tool's inbound webhook, so the ticket opens with its context.

The transcript is rebuilt from what the service recorded of each answer the client names (:func:`transcript`):
a client can add the user's contact details and message, never words put in the service's mouth."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field

from rag.egress import EgressPolicy
from rag.errors import RagError, UnknownAnswer
from rag.models import Reason, Text

log = logging.getLogger("rag.channels.handoff")


class Turn(BaseModel):
    """One question of the conversation and what was answered."""

    question: str = Field(max_length=4000)
    answer: str = Field("", max_length=20000)
    citations: list[dict[str, str | None]] = Field(default_factory=list, max_length=20)
    confidence: float | None = None
    declined: bool = False
    answer_id: str | None = Field(None, max_length=64)


class Transcript(BaseModel):
    """What a helpdesk receives: the conversation, why it is handed off, and how to reach the user."""

    reason: Reason
    turns: list[Turn] = Field(min_length=1, max_length=50)
    contact: str | None = Field(None, max_length=300, description="how the user wants to be reached, if they say")
    message: str | None = Field(None, max_length=4000, description="what the user adds for the agent")
    channel: str = Field("api", max_length=20)


class HandoffRequest(BaseModel):
    """The body of ``POST /handoff``: the conversation's answers (as the service gave them, by id), why, and what the
    user adds."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason
    answer_ids: list[Text] = Field(min_length=1, max_length=50, description="the answers of the conversation, in order")
    contact: Text | None = Field(None, max_length=300, description="how the user wants to be reached, if they say")
    message: Text | None = Field(None, max_length=4000, description="what the user adds for the agent")
    channel: Text = Field("api", max_length=20)


class Recorded(Protocol):
    """Where the service's answers are read back (the recorder, over the store)."""

    def recorded(self, answer_id: str) -> dict[str, Any] | None: ...


def transcript(request: HandoffRequest, recorded: Recorded, cite: Callable[[str], dict[str, str | None]]) -> Transcript:
    """The transcript of the answers named, as the service recorded them; :class:`UnknownAnswer` for one it never
    gave. ``cite``: an entry id → its question and link."""
    turns = []
    for answer_id in request.answer_ids:
        row = recorded.recorded(answer_id)
        if row is None:
            raise UnknownAnswer(answer_id)
        turns.append(
            Turn(
                question=row["query"],
                answer=row["answer"],
                citations=[cite(entry) for entry in row["cited"]][:20],
                confidence=row["confidence"],
                declined=row["outcome"] == "declined",
                answer_id=answer_id,
            )
        )
    fields = request.model_dump(include={"reason", "contact", "message", "channel"})
    return Transcript(turns=turns, **fields)


class HandoffUnavailable(RagError):
    """The helpdesk's webhook could not be reached."""

    code = "handoff_unavailable"
    status = 503
    public = True


class HandoffNotifier:
    """Posts transcripts to ``url`` within ``timeout`` seconds, tried ``retries`` more times on 5xx and lost
    connections."""

    def __init__(
        self, url: str, timeout: float = 5.0, retries: int = 2, faq_name: str = "", policy: EgressPolicy | None = None
    ) -> None:
        self.url, self.timeout, self.retries, self.faq_name = url, timeout, retries, faq_name
        self._client = (policy or EgressPolicy(trusted_urls=[url])).client(timeout=timeout)

    def send(self, transcript: Transcript) -> None:
        """Deliver the transcript, or raise :class:`HandoffUnavailable` (retryable) saying why."""
        body = {"faq": self.faq_name, "sent_at": time.time(), **transcript.model_dump()}
        deadline = time.monotonic() + self.timeout * (self.retries + 1)
        problem = "no answer"
        for attempt in range(self.retries + 1):
            try:
                response = self._client.post(self.url, json=body, timeout=max(0.1, deadline - time.monotonic()))
                if response.status_code < 400:
                    return
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            if attempt < self.retries and time.monotonic() < deadline:
                time.sleep(min(0.2 * 2**attempt, max(0.0, deadline - time.monotonic())))
        log.warning("the handoff webhook failed (%s)", problem)
        raise HandoffUnavailable(f"the helpdesk could not be reached ({problem}); try again, or use the support link")

    def close(self) -> None:
        self._client.close()
