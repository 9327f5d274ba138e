"""The decision to answer or decline, with one owner: it reorders the ranking when a reranker is set, computes
the calibrated confidence of the entry then first (waiting for the question's latent terms only where they
can change the decision), asks the LLM's verdict where that can change it too, and compares the confidence
with its threshold."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rag.embedders.latents import Latents
from rag.indexing.calibration import Calibration
from rag.llm.judge import Judge
from rag.models import Outcome, SearchResult
from rag.query.rerank import Reranker, rerank
from rag.query.retriever import Prepared, Ranking
from rag.query.signals import latent_signals, signals

log = logging.getLogger("rag.query.decision")
LEXICAL_WEIGHT = 0.1  # a share of the question's terms weighs as this much cosine similarity (scope_weight)
LATENT_WAIT = 60.0  # seconds; the latent pass is queued behind at most a batch of other questions


class LatentSource(Protocol):
    """Where a question's latent terms come from (the query encoder)."""

    def latent_terms(self, text: str) -> Future[Latents]: ...

    def spare(self) -> bool:
        """Whether they can be computed now beside the question's vector without delaying other work."""


@dataclass(frozen=True)
class Assessment:
    """The confidence of a ranking's first entry, the signals it was computed from and the threshold that
    applies (that of the model fitted on the signals the question has)."""

    values: dict[str, float]
    model: Calibration
    confidence: float
    threshold: float  # answered at or above
    suggest: float  # suggested at or above (declined below)


class Decision:
    """Turns a question's ranking into a decided :class:`SearchResult` (see :meth:`decide`)."""

    def __init__(
        self,
        calibration: Calibration,
        *,
        min_confidence: float | None = None,
        suggest_confidence: float | None = None,
        calibrated: bool = True,
        language: str = "fr",
        latents: LatentSource | None = None,
        judge: Judge | None = None,
        reranker: Reranker | None = None,
        rerank_depth: int = 20,
        scope_temperature: float = 0.01,
    ) -> None:
        """``scope_temperature``: how sharply the confidence falls as a question comes closer to the questions
        marked out of scope than to the FAQ (:func:`scope_weight`)."""
        self.calibration, self.min_confidence, self.calibrated = calibration, min_confidence, calibrated
        self.suggest_confidence = suggest_confidence
        self.scope_temperature = scope_temperature
        self.language, self.latents, self.judge = language, latents, judge
        self.reranker, self.rerank_depth = reranker, rerank_depth
        self._lock = threading.Lock()
        self._deciding = 0  # questions being decided now

    @property
    def default_threshold(self) -> float:
        """The threshold for a question that has every signal."""
        return self.threshold(self.calibration)

    def threshold(self, model: Calibration) -> float:
        """At or above it a question judged by ``model`` (the calibration or one of its variants) is answered: the
        setting, else the model's own; a calibration made for another encoder says nothing: always answer."""
        if self.min_confidence is not None:
            return self.min_confidence
        return model.threshold if self.calibrated else 0.0

    def suggest_threshold(self, model: Calibration) -> float:
        """At or above it (and below :meth:`threshold`) the nearest entries are suggested; below it, declined."""
        answer = self.threshold(model)
        if self.suggest_confidence is not None:
            return min(self.suggest_confidence, answer)
        if self.min_confidence is not None or not self.calibrated:
            return answer  # a threshold set by hand, or none: two outcomes, as set
        return model.suggest_threshold

    def decide(
        self, prepared: Prepared, rank: Callable[[Prepared], Ranking], k: int, all_signals: bool = False
    ) -> SearchResult:
        """Rank the question with ``rank``, rerank, compute the confidence of the entry ranked first and decide.
        ``all_signals``: always wait for the latent terms, not only where they count, and ask no verdict (to fit
        a calibration)."""
        with self._lock:
            self._deciding += 1
            alone = self._deciding == 1
        try:
            # a question decided alone, with a lane of the encoder to spare, has its latent terms computed beside
            # its vector in case the confidence needs them; otherwise they are computed only once it does
            pending = self.latents.latent_terms(prepared.query) if alone and self._spare() else None
            ranking = rank(prepared)
            if not ranking.order or ranking.degraded:
                _cancel(pending)
                pending = None
            if not ranking.order:
                return SearchResult(query=prepared.query, abstained=True, results=[], confidence=0.0)
            if self.reranker is not None:
                rerank(ranking, self.reranker, self.rerank_depth)
            return self._decided(ranking, self.assess(ranking, pending, all_signals), k, judge=not all_signals)
        finally:
            with self._lock:
                self._deciding -= 1

    def _spare(self) -> bool:
        return self.latents is not None and self.latents.spare()

    def assess(self, ranking: Ranking, pending: Future[Latents] | None = None, all_signals: bool = False) -> Assessment:
        """The confidence of the entry ranked first. The question's latent terms (``pending``, when already
        asked for) are waited for only when the fit without them falls in the calibration's latent band."""
        values = signals(ranking, self.language)
        model = self.calibration.model(values)  # fitted on the signals this question has
        if self.latents is not None and ranking.degraded is None:
            low, high = self.calibration.latent_band
            wanted = all_signals or low <= model.probability(values) <= high
            ranking.latents = self._latent_terms(ranking.prepared, pending, wanted)
            values.update(latent_signals(ranking))
            model = self.calibration.model(values)
        else:
            _cancel(pending)
        return Assessment(
            values, model, model.probability(values), self.threshold(model), self.suggest_threshold(model)
        )

    def _latent_terms(self, prepared: Prepared, pending: Future[Latents] | None, wanted: bool) -> Latents | None:
        """The question's latent terms when ``wanted`` (a pass not yet started is dropped otherwise). A failure
        leaves the confidence without them, never the question unanswered."""
        if not wanted:
            _cancel(pending)  # not started yet: never computed
            return None
        assert self.latents is not None
        try:
            return (pending or self.latents.latent_terms(prepared.query)).result(timeout=LATENT_WAIT)
        except Exception as exc:
            log.warning("latent terms unavailable (%s): the confidence does without them", exc)
            return None

    def _decided(self, ranking: Ranking, assessment: Assessment, k: int, judge: bool = True) -> SearchResult:
        confidence, verdict = assessment.confidence, None
        useful = self.judge is not None and any(
            self.judge.useful(confidence, t) for t in {assessment.threshold, assessment.suggest}
        )
        if judge and useful:
            verdict = self.judge.verdict(ranking.prepared.query, ranking.hits(1)[0])
            confidence = self.judge.adjust(confidence, verdict)
        weight = scope_weight(ranking, self.scope_temperature)
        values = assessment.values
        if weight is not None:
            confidence *= weight
            values = {**values, "scope": weight}
        outcome = outcome_of(confidence, assessment.threshold, assessment.suggest)
        return SearchResult(
            query=ranking.prepared.query,
            abstained=outcome != "answered",
            outcome=outcome,
            results=ranking.hits(k),
            confidence=round(confidence, 4),
            terms=ranking.prepared.lexical_terms,
            own_terms=ranking.prepared.terms,
            judge=verdict,
            degraded=ranking.degraded,
            latent=ranking.latents is not None,
            signals=values,
        )


def outcome_of(confidence: float, answer: float, suggest: float) -> Outcome:
    """Answered at or above ``answer``; suggested at or above ``suggest``; declined below."""
    if confidence >= answer:
        return "answered"
    return "suggested" if confidence >= suggest else "declined"


def scope_weight(ranking: Ranking, temperature: float) -> float | None:
    """What the confidence is multiplied by for a question near those the team marked out of scope:
    ``min(1, 2·σ(−d / temperature))``, where ``d`` says how much closer the question is to the nearest question
    marked out of scope than to the FAQ — the difference of their cosine similarities to the question, plus
    :data:`LEXICAL_WEIGHT` × the difference of the share of the question's terms (IDF-weighted) each holds.
    1 while the FAQ is at least as close; towards 0 as the marked question comes closer. None when nothing is
    marked or the question has no vector."""
    index = ranking.index
    marked = index.out_of_scope
    if marked is None or not len(marked) or ranking.vector is None or not ranking.order:
        return None
    ours = ranking.dense[np.isfinite(ranking.dense)]
    faq = float(ours.max()) if ours.size else -1.0
    similarities = marked @ np.asarray(ranking.vector, dtype=np.float32).reshape(-1)
    nearest = int(np.argmax(similarities))
    terms = set(ranking.prepared.terms)
    weights = {t: index.idf.get(t, index.unknown_idf) for t in terms}
    total = sum(weights.values()) or 1.0
    in_faq = sum(w for t, w in weights.items() if t in index.chunk_terms(ranking.best_chunk(ranking.order[0])))
    in_marked = sum(w for t, w in weights.items() if t in index.out_of_scope_terms[nearest])
    closer = float(similarities[nearest]) - faq + LEXICAL_WEIGHT * (in_marked - in_faq) / total
    return min(1.0, 2.0 / (1.0 + math.exp(min(closer / temperature, 700.0))))


def _cancel(pending: Future[Latents] | None) -> None:
    if pending is not None:
        pending.cancel()
