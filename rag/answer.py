"""The answer without an LLM: the most relevant sentences of the top entries, each cited."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Protocol

from .analyzer import FrenchAnalyzer
from .chunking import split_sentences
from .language import detect, message
from .models import Answer, Citation, Hit, SearchResult

MARKER = re.compile(r"\[(\d{1,3})\]")
URL = re.compile(r"https?://\S+")
LIST_ITEM = re.compile(r"^\s*(?:[-•*]|\d+[.)])\s+")


def _units(text: str) -> list[str]:
    """Sentences of a passage; a sentence that ends with ':' keeps the list items after it."""
    units: list[str] = []
    for line in text.split("\n"):
        # a list item joins the sentence that introduced the list (ends with ':') or an earlier item
        if LIST_ITEM.match(line) and units and (units[-1].rstrip().endswith(":") or "\n" in units[-1]):
            units[-1] += "\n" + line.strip()
        else:
            units.extend(split_sentences(line))
    return units


class Generator(Protocol):
    """Turns retrieved passages into a cited answer."""

    def answer(self, result: SearchResult) -> Answer: ...


def pieces(text: str, words: int = 4) -> Iterator[str]:
    """Split a finished text into small pieces (a few words each, whitespace kept) for streaming."""
    tokens = re.findall(r"\S+\s*", text)
    for start in range(0, len(tokens), words):
        yield "".join(tokens[start : start + words])


def abstained_answer(result: SearchResult, lang: str | None = None) -> Answer:
    lang = lang or detect(result.query)
    return Answer(query=result.query, answer=message("abstain", lang), abstained=True, citations=[], passages=[])


def citations_for(text: str, passages: list[Hit]) -> list[Citation]:
    """The passages that ``text`` cites with ``[n]`` markers, in order of first mention."""
    seen: dict[int, Citation] = {}
    for match in MARKER.finditer(text):
        n = int(match.group(1))
        if 1 <= n <= len(passages) and n not in seen:
            hit = passages[n - 1]
            seen[n] = Citation(n=n, id=hit.id, url=hit.url, question=hit.question)
    return list(seen.values())


def _cite(sentence: str, number: int) -> str:
    """Put the marker before the final punctuation's list, or after the sentence."""
    sentence = sentence.rstrip()
    if "\n" in sentence:
        return f"{sentence} [{number}]\n"
    return f"{sentence} [{number}]"


class ExtractiveGenerator:
    """Picks sentences by query-term overlap (with a lead-sentence prior) from the top entries."""

    def __init__(self, max_sentences: int = 3, max_entries: int = 3, query_expander=None, close: float = 0.95) -> None:
        self.max_sentences = max_sentences
        self.max_entries = max_entries
        self.close = close  # other entries are quoted only when their score is this close to the best
        self.analyzer = FrenchAnalyzer()
        self.expand = query_expander or (lambda q: q)

    def _score(self, sentence: str, position: int, terms: set[str]) -> float:
        words = self.analyzer(URL.sub(" ", sentence))
        if not words:
            return 0.0
        overlap = len(terms & set(words))
        return overlap / math.sqrt(len(words)) + (0.35 if position == 0 else 0.0)

    def answer(self, result: SearchResult) -> Answer:
        if result.abstained or not result.results:
            return abstained_answer(result)
        terms = set(self.analyzer(self.expand(result.query)))
        scored: list[tuple[float, int, int, str]] = []  # score, passage number, position, sentence
        top_score = result.results[0].score
        for number, hit in enumerate(result.results[: self.max_entries], start=1):
            if number > 1 and hit.score < self.close * top_score:
                break
            sentences = _units(hit.text)
            for position, sentence in enumerate(sentences):
                rank_prior = 1.0 / number  # the retriever's order counts
                scored.append((self._score(sentence, position, terms) * rank_prior, number, position, sentence))
        top_entry = sorted((s for s in scored if s[1] == 1), reverse=True)
        chosen = top_entry[: min(2, self.max_sentences)]
        best = chosen[0][0] if chosen else 0.0
        others = sorted((s for s in scored if s[1] != 1 and s[0] >= 0.8 * best and s[0] > 0), reverse=True)
        chosen += others[: self.max_sentences - len(chosen)]
        chosen.sort(key=lambda s: (s[1], s[2]))
        text = " ".join(_cite(sentence, number) for _, number, _, sentence in chosen).strip()
        return Answer(
            query=result.query,
            answer=text,
            abstained=False,
            citations=citations_for(text, result.results),
            passages=result.results,
        )
