"""One way through for every channel: search → answer → handoff offer → record. The API, the page and the widget,
the OpenAI chat endpoint, MCP, Chatwoot and Matrix are adapters from their wire format to a
:class:`~rag.models.Question` and back; what is recorded, what is counted and how a failure ends a stream are
decided here, once."""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from rag.config import Settings
from rag.errors import ApiError
from rag.llm import Reset
from rag.models import Answer, Handoff, Question, SearchResult
from rag.query.service import QueryService

log = logging.getLogger("rag.channels")


class AnswerLog(Protocol):
    """Where answers are recorded (:class:`rag.store.recorder.Recorder`)."""

    def record_answer(self, answer_id: str, answer: Answer, channel: str = "api", question: bool = True) -> None: ...


class Meter(Protocol):
    """What is counted (:class:`rag.http.metrics.Metrics`)."""

    def searched(self, result: SearchResult, where: str) -> None: ...

    def answered(self, answer: Answer, channel: str, question: bool) -> None: ...


class Unmetered:
    def searched(self, result: SearchResult, where: str) -> None:
        pass

    def answered(self, answer: Answer, channel: str, question: bool) -> None:
        pass


@dataclass(frozen=True)
class Reply:
    """An answer as it was given: recorded under ``answer_id`` (votes and handoffs name it)."""

    answer: Answer
    answer_id: str
    took_ms: float


@dataclass(frozen=True)
class Failed:
    """A stream that could not be completed: it ends with this, never silently."""

    code: str = "internal_error"
    message: str = "the answer could not be completed; ask again"


def clean_query(query: str, max_chars: int) -> str:
    """The question as typed, stripped; an empty one, one too long or one with control characters is refused."""
    text = query.strip()
    if not text:
        raise ApiError(422, "empty_query", "the query is empty; write a question")
    if len(text) > max_chars:
        raise ApiError(422, "query_too_long", f"the query has {len(text)} characters; the maximum is {max_chars}")
    if any(unicodedata.category(c) in {"Cc", "Cs"} and c not in "\t\n\r" for c in text):
        raise ApiError(422, "control_characters", "the query contains control characters; send plain text")
    return text


class Responder:
    """Answers questions for every channel, and records and counts what it gave."""

    def __init__(self, query: QueryService, answers: AnswerLog, ids: IdIssuer, meter: Meter | None = None) -> None:
        self.query, self.answers, self.ids = query, answers, ids
        self.meter: Meter = meter or Unmetered()
        self.settings: Settings = query.settings

    def find(self, question: Question, where: str, base_url: str | None = None) -> SearchResult:
        """What a user is shown for ``question`` (:meth:`QueryService.search`), counted."""
        result = self.query.search(question, base_url)
        self.meter.searched(result, where)
        return result

    def shown(self, result: SearchResult, channel: str) -> str | None:
        """Record a search as a question of the log (the entries shown, no answer text); small talk is not one."""
        if result.smalltalk:
            return None
        return self._record(Answer.shown(result), result, channel)

    def respond(self, question: Question, channel: str, base_url: str | None = None) -> Reply:
        """Search, answer, offer a handoff where one is due, record: the whole way, for a channel that does not
        stream."""
        started = time.perf_counter()
        return self.reply(self.find(question, channel, base_url), channel, started)

    def reply(self, result: SearchResult, channel: str, started: float | None = None) -> Reply:
        """The answer for a result :meth:`find` gave, recorded."""
        started = time.perf_counter() if started is None else started
        answer = self.offer(self.query.answer(result), result)
        return Reply(answer, self._record(answer, result, channel), _since(started))

    def stream(self, result: SearchResult, channel: str, started: float) -> Iterator[str | Reset | Reply | Failed]:
        """Pieces of the answer as they are ready (a :class:`Reset` takes back those before it), then the
        :class:`Reply`; a failure midway ends the stream with :class:`Failed`."""
        try:
            for item in self.query.ask_stream(result):
                if isinstance(item, Answer):
                    answer = self.offer(item, result)
                    yield Reply(answer, self._record(answer, result, channel), _since(started))
                else:
                    yield item
        except Exception:  # the stream has started: it ends with a failure the channel shows, never silently
            log.exception("the answer stream failed")
            yield Failed()

    def offer(self, answer: Answer, result: SearchResult) -> Answer:
        """The answer with the handoff it offers: a declined question, or a request for a person."""
        if not (result.person or answer.abstained) or result.smalltalk:
            return answer
        support = self.settings.answer.support_url or None
        form = bool(self.settings.channels.handoff_webhook)
        reason = "asked" if result.person else "unsure" if answer.outcome == "suggested" else "declined"
        offer = Handoff(reason=reason, support_url=support, form=form)
        return answer.model_copy(update={"handoff": offer})

    def _record(self, answer: Answer, result: SearchResult, channel: str) -> str:
        """The one recording rule: every answer gets an id and is recorded (so a vote on it is kept); small talk
        without its text, as it is not a question."""
        answer_id = self.ids.issue()
        question = not result.smalltalk
        self.answers.record_answer(answer_id, answer, channel, question=question)
        self.meter.answered(answer, channel, question)
        return answer_id


class IdIssuer(Protocol):
    """Gives each answer its id (:class:`rag.store.answer_ids.AnswerIds`)."""

    def issue(self) -> str: ...


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
