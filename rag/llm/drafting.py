"""Answers drafted by an LLM from the retrieved passages only, with every citation checked.

Whatever the LLM writes, the user only sees citation markers that point at retrieved passages; an
answer with no valid citation is not shown. Any fault (server down, timeout, HTTP error, malformed,
empty or cut output) falls back to the extractive answer, flagged with the reason.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from rag.answer.extractive import ExtractiveGenerator, abstained_answer, citations_for, pieces
from rag.config import AnswerSettings
from rag.errors import LLMError
from rag.language.detect import detect
from rag.language.text import MARKER_GROUP, is_dont_know
from rag.llm.client import ChatClient
from rag.llm.prompts import PromptSet
from rag.models import Answer, SearchResult


class Reset:
    """Streaming signal: discard the pieces sent so far; a replacement answer follows."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass
class Verified:
    text: str
    removed: int


def _numbers(group: str) -> list[int]:
    out: list[int] = []
    for part in re.split(r"\s*(?:[,;]|et|and)\s*", group):
        if re.fullmatch(r"[0-9]+\s*[–-]\s*[0-9]+", part):
            lo, hi = (int(x) for x in re.split(r"\s*[–-]\s*", part))
            out.extend(range(lo, min(hi, lo + 20) + 1))
        elif re.fullmatch(r"\s*[0-9]+\s*", part):  # ASCII digits: « ² » is a digit to str.isdigit, not to int
            out.append(int(part))
    return out


def _keep_valid(text: str, count: int) -> tuple[str, int]:
    """Rewrite every marker group as ``[n]`` markers for 1..count; return the text and how many were dropped."""
    removed = 0

    def fix(match: re.Match[str]) -> str:
        nonlocal removed
        numbers = _numbers(match.group(1))
        valid = [n for n in numbers if 1 <= n <= count]
        removed += len(numbers) - len(valid)
        return "".join(f"[{n}]" for n in dict.fromkeys(valid))

    return MARKER_GROUP.sub(fix, text), removed


def verify_markers(text: str, count: int) -> Verified:
    """Keep markers 1..count (normalised to ``[n]``), drop the others and count them."""
    cleaned, removed = _keep_valid(text, count)
    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned)
    return Verified(re.sub(r"[ \t]{2,}", " ", cleaned).strip(), removed)


class MarkerFilter:
    """Applies the marker check to a stream: text is released as soon as no marker can be open."""

    def __init__(self, count: int) -> None:
        self.count, self.buffer, self.removed = count, "", 0

    def feed(self, piece: str) -> str:
        self.buffer += piece
        cut = self.buffer.rfind("[")
        if cut == -1 or "]" in self.buffer[cut:] or len(self.buffer) - cut > 24:
            cut = len(self.buffer)
        ready, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return self._clean(ready)

    def flush(self) -> str:
        ready, self.buffer = self.buffer, ""
        return self._clean(ready)

    def _clean(self, text: str) -> str:
        cleaned, removed = _keep_valid(text, self.count)
        self.removed += removed
        return cleaned


class LLMGenerator:
    """Drafts a cited answer with an LLM; falls back to the extractive answer on any fault."""

    def __init__(
        self, client: ChatClient, prompts: PromptSet, fallback: ExtractiveGenerator, settings: AnswerSettings
    ) -> None:
        self.client, self.prompts, self.fallback, self.settings = client, prompts, fallback, settings
        self.deadline_seconds = client.config.total_timeout

    def _messages(self, result: SearchResult) -> tuple[list[dict], int]:
        """The prompt, with as many of the passages as the model's context holds (the best first), and how many."""
        lang = detect(result.query, self.settings.language)
        passages = [(hit.question or "", hit.text) for hit in result.results]
        while True:
            messages = self.prompts.messages(result.resolved or result.query, passages, lang, self.settings.faq_name)
            if len(passages) <= 1 or self.client.fits(messages):
                return messages, len(passages)
            passages = passages[:-1]

    def _fallback(self, result: SearchResult, reason: str) -> Answer:
        answer = self.fallback.answer(result)
        return answer.model_copy(update={"fallback": True, "fallback_reason": reason})

    def _finish(self, result: SearchResult, text: str, removed: int, count: int) -> Answer:
        text = text.strip()
        if not text:
            return self._fallback(result, "empty")
        if is_dont_know(text):
            said = abstained_answer(result, self.settings)
            return said.model_copy(update={"passages": result.results, "citations_removed": removed})
        citations = citations_for(text, result.results[:count])
        if not citations:
            return self._fallback(result, "uncited")
        return Answer(
            query=result.query,
            answer=text,
            abstained=False,
            citations=citations,
            passages=result.results,
            confidence=result.confidence,
            citations_removed=removed,
        )

    def answer(self, result: SearchResult) -> Answer:
        if result.abstained or not result.results:
            return abstained_answer(result, self.settings)
        deadline = time.monotonic() + self.deadline_seconds
        messages, count = self._messages(result)
        try:
            raw = self.client.complete(messages, deadline)
        except LLMError as exc:
            return self._fallback(result, exc.reason)
        verified = verify_markers(raw, count)
        return self._finish(result, verified.text, verified.removed, count)

    def stream(self, result: SearchResult) -> Iterator[str | Reset | Answer]:
        """Pieces as the LLM writes them (markers checked on the fly), then the final :class:`Answer`.
        When the draft fails or is not usable, a :class:`Reset` and the replacement answer follow."""
        if result.abstained or not result.results:
            answer = abstained_answer(result, self.settings)
            yield from pieces(answer.answer)
            yield answer
            return
        deadline = time.monotonic() + self.deadline_seconds
        messages, count = self._messages(result)
        marker_filter = MarkerFilter(count)
        sent: list[str] = []
        try:
            for piece in self.client.stream(messages, deadline):
                clean = marker_filter.feed(piece)
                if clean:
                    sent.append(clean)
                    yield clean
            tail = marker_filter.flush()
            if tail:
                sent.append(tail)
                yield tail
            text = verify_markers("".join(sent), count).text
            final = self._finish(result, text, marker_filter.removed, count)
        except LLMError as exc:
            final = self._fallback(result, exc.reason)
        if final.fallback or final.abstained:
            if sent:
                yield Reset(final.fallback_reason or "replaced")
            yield from pieces(final.answer)
        yield final
