"""The answer without an LLM: the most relevant sentences of the top entries, each cited."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

from rag.config import AnswerSettings
from rag.language.analyzer import FrenchAnalyzer
from rag.language.detect import detect, message, quoted_in
from rag.language.text import MARKER, URL, sentence_units
from rag.models import ANSWER_DEPTH, SUGGESTED, Answer, Citation, Hit, SearchResult


def pieces(text: str, words: int = 4) -> Iterator[str]:
    """Split a finished text into small pieces (a few words each, whitespace kept) for streaming."""
    tokens = re.findall(r"\S+\s*", text)
    for start in range(0, len(tokens), words):
        yield "".join(tokens[start : start + words])


def abstained_answer(result: SearchResult, settings: AnswerSettings) -> Answer:
    """No answer asserted: the nearest entries when the service suggests them, else a decline."""
    if result.outcome == "suggested" and result.results:
        return suggested_answer(result, settings)
    lang = detect(result.query, settings.language)
    text = message("abstain", lang, faq=settings.faq_name)
    if settings.support_url:
        text += " " + message("support", lang, url=settings.support_url)
    return Answer(
        query=result.query,
        answer=text,
        abstained=True,
        citations=[],
        passages=[],
        confidence=result.confidence,
    )


def suggested_answer(result: SearchResult, settings: AnswerSettings) -> Answer:
    """The FAQ may answer it, but not surely: no answer asserted, the nearest entries listed, each a citation."""
    lang = detect(result.query, settings.language)
    hits = result.results[:SUGGESTED]
    lines = [f"- [{n}] {hit.question or hit.text[:120]}" for n, hit in enumerate(hits, start=1)]
    text = "\n".join([message("suggest", lang), *lines])
    if settings.support_url:
        text += "\n" + message("support", lang, url=settings.support_url)
    return Answer(
        query=result.query,
        answer=text,
        abstained=True,
        outcome="suggested",
        citations=citations_for(text, hits),
        passages=hits,
        confidence=result.confidence,
    )


def person_answer(result: SearchResult, settings: AnswerSettings, form: bool) -> Answer:
    """The reply to a request for a person: where to reach one (the handoff itself goes with the answer)."""
    lang = detect(result.query, settings.language)
    text = message("person_form" if form else "person", lang)
    if settings.support_url:
        text += " " + message("support", lang, url=settings.support_url)
    return Answer(query=result.query, answer=text, abstained=True, citations=[], passages=[], confidence=0.0)


def smalltalk_answer(result: SearchResult, settings: AnswerSettings) -> Answer:
    """A polite reply to a greeting or thanks, saying what the FAQ covers."""
    lang = detect(result.query, settings.language)
    text = message("smalltalk", lang, faq=settings.faq_name)
    return Answer(query=result.query, answer=text, abstained=True, citations=[], passages=[], confidence=0.0)


def citations_for(text: str, passages: list[Hit]) -> list[Citation]:
    """The passages that ``text`` cites with ``[n]`` markers, in order of first mention."""
    seen: dict[int, Citation] = {}
    for match in MARKER.finditer(text):
        n = int(match.group(1))
        if 1 <= n <= len(passages) and n not in seen:
            hit = passages[n - 1]
            seen[n] = Citation(
                n=n,
                id=hit.id,
                url=hit.url,
                question=hit.question,
                metadata=hit.metadata,
                checked_on=hit.checked_on,
                stale=hit.stale,
            )
    return list(seen.values())


def _cite(sentence: str, number: int) -> str:
    """The sentence followed by its marker; a sentence that carries a list ends with a line break."""
    sentence = sentence.rstrip()
    return f"{sentence} [{number}]\n" if "\n" in sentence else f"{sentence} [{number}]"


EXPANSION_WEIGHT = 0.5


class ExtractiveGenerator:
    """Picks sentences by query-term overlap (with a lead-sentence prior) from the top entries."""

    max_entries = ANSWER_DEPTH
    close = 0.95  # other entries are quoted only when their score is this close to the best

    def __init__(self, settings: AnswerSettings) -> None:
        self.settings = settings
        self.max_sentences = settings.answer_sentences
        self.analyzer = FrenchAnalyzer()

    def _score(self, sentence: str, position: int, weights: dict[str, float]) -> float:
        words = self.analyzer(URL.sub(" ", sentence))
        if not words:
            return 0.0
        overlap = sum(weights.get(w, 0.0) for w in set(words))
        return overlap / math.sqrt(len(words)) + (0.35 if position == 0 else 0.0)

    def _scored(self, result: SearchResult) -> list[tuple[float, int, int, str]]:
        """(score, passage number, position, sentence) for the sentences of the top entries."""
        # the question's own words count fully, the glossary's expansions of them half
        own = set(result.own_terms or self.analyzer(result.query))
        weights = {t: 1.0 if t in own else EXPANSION_WEIGHT for t in set(result.terms) | own}
        scored = []
        top_score = result.results[0].score
        for number, hit in enumerate(result.results[: self.max_entries], start=1):
            if number > 1 and hit.score < self.close * top_score:
                break
            for position, sentence in enumerate(sentence_units(hit.text)):
                # the retriever's order counts
                scored.append((self._score(sentence, position, weights) / number, number, position, sentence))
        return scored

    def answer(self, result: SearchResult) -> Answer:
        if result.abstained or not result.results:
            return abstained_answer(result, self.settings)
        scored = self._scored(result)
        chosen = sorted((s for s in scored if s[1] == 1), reverse=True)[: min(2, self.max_sentences)]
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
            confidence=result.confidence,
            # quoted sentences stay in the FAQ's language: a reader who asked in another one is told so
            note=quoted_in(detect(result.query, self.settings.language), self.settings.language),
        )
