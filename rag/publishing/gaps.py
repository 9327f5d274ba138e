"""The gap report: the questions users asked that the FAQ did not answer well — declined, suggested (entries shown,
no answer asserted), answered with a low confidence, or voted not useful — grouped by meaning, each group a gap for
the team that owns the FAQ.

Questions are encoded with the service's own encoder and grouped by agglomerative clustering (scikit-learn,
complete linkage on the cosine distance): every two questions of a gap are closer than ``RAG_GAP_DISTANCE``,
by default 0.6 × the median distance between two questions of the FAQ itself — a scale read from the FAQ
and the encoder, so that it carries over to both. The report is deterministic for a given log: questions are
taken oldest first, and a gap's id is derived from its earliest question, so it stays the same while the gap
grows.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from rag.config import GapSettings
from rag.embedders import Embedder
from rag.indexing.faq_index import FaqIndex
from rag.models import Question

log = logging.getLogger("rag.publishing.gaps")
SCALE = 0.6  # the default distance: this share of the median distance between two of the FAQ's questions
SAMPLE = 400  # questions of the FAQ the median is read on
EXAMPLES = 100  # questions listed per gap, most central first
Rank = Callable[[Question], Any]  # a question -> its SearchResult (the service's retrieve)
Titles = Callable[[list[str]], "str | None"]  # a gap's questions -> a proposed title


class NearEntry(BaseModel):
    id: str
    question: str | None = None
    url: str | None = None
    similarity: float = Field(description="cosine similarity of the entry's question to the gap's questions")


class Gap(BaseModel):
    """Questions users asked about one thing the FAQ does not answer well."""

    id: str = Field(description="stable while the gap grows: derived from its earliest question")
    size: int = Field(description="how many questions it holds (how many times it was asked)")
    title: str | None = Field(None, description="a canonical question for a new entry, proposed by the LLM")
    question: str = Field(description="its most central question")
    questions: list[str] = Field(description="example questions, most central first")
    reasons: dict[str, int] = Field(
        description="how many questions were declined, suggested (entries shown, no answer), not_useful, low_confidence"
    )
    channels: dict[str, int] = Field(default_factory=dict)
    first_seen: str
    last_seen: str
    kind: Literal["missing_entry", "unrecognised_wording"] = Field(
        description="unrecognised_wording: an entry is as close as the questions are to each other (an alternate "
        "phrasing may do); missing_entry otherwise"
    )
    nearest_entries: list[NearEntry]
    answer_ids: list[str] = Field(default_factory=list, exclude=True)  # the logged questions it holds
    texts: list[str] = Field(default_factory=list, exclude=True)  # all of its questions, once each


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def gap_id(first_answer_id: str) -> str:
    return "g-" + hashlib.sha1(first_answer_id.encode()).hexdigest()[:10]


class GapFinder:
    """Groups the logged questions into gaps with ``embedder`` (its vectors kept for the next report)."""

    def __init__(self, embedder: Embedder, settings: GapSettings, batch: int = 32) -> None:
        self.embedder, self.settings, self.batch = embedder, settings, batch
        self._vectors: dict[str, np.ndarray] = {}
        self._scale: tuple[str, float] | None = None

    def encode(self, texts: list[str]) -> np.ndarray:
        """The questions' vectors, each text encoded once per process."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        for start in range(0, len(todo), self.batch):
            part = todo[start : start + self.batch]
            self._vectors.update(zip(part, self.embedder.encode_queries(part)))
        if len(self._vectors) > 4 * self.settings.max_questions:
            keep = set(texts)
            self._vectors = {t: v for t, v in self._vectors.items() if t in keep}
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts]).astype(np.float32)

    def distance(self, index: FaqIndex) -> float:
        """Within what cosine distance two questions ask the same thing: the setting, else read from the FAQ."""
        if self.settings.distance is not None:
            return self.settings.distance
        if self._scale is None or self._scale[0] != index.version:
            questions = sorted({e.question for e in index.entries if e.question})
            if len(questions) > SAMPLE:
                picked = np.random.default_rng(0).choice(len(questions), SAMPLE, replace=False)
                questions = [questions[i] for i in sorted(picked)]
            if len(questions) < 3:
                return 0.1
            vectors = self.encode(questions)
            pairs = np.triu_indices(len(questions), 1)
            self._scale = (index.version, SCALE * float(np.median(1.0 - (vectors @ vectors.T)[pairs])))
        return self._scale[1]

    def report(
        self, rows: list[dict[str, Any]], index: FaqIndex, rank: Rank, titles: Titles | None = None
    ) -> list[Gap]:
        """The gaps of the logged ``rows`` (:meth:`~rag.store.feedback.FeedbackStore.question_log`), those that
        affect the most users first. ``rank`` finds each gap's nearest entries; ``titles`` (the LLM's, when
        one is configured) proposes a title per gap."""
        rows = sorted(rows, key=lambda r: (r["at"], r["id"]))[-self.settings.max_questions :]
        if not rows:
            return []
        vectors = self.encode([r["query"] for r in rows])
        threshold = self.distance(index)
        if len(rows) == 1:
            labels = np.zeros(1, dtype=np.int64)
        else:
            from sklearn.cluster import AgglomerativeClustering  # imported when a report is made: it is slow to load

            clustering = AgglomerativeClustering(
                n_clusters=None, metric="cosine", linkage="complete", distance_threshold=threshold
            )
            labels = clustering.fit_predict(vectors)
        groups: dict[int, list[int]] = {}
        for row, label in enumerate(labels):
            groups.setdefault(int(label), []).append(row)
        gaps = [
            self._gap([rows[i] for i in members], vectors[members], index, rank, threshold)
            for members in groups.values()
        ]
        gaps.sort(key=lambda g: (g.size, g.last_seen, g.id), reverse=True)  # the most asked, then the latest
        if titles is not None:
            for gap in gaps:
                gap.title = titles(gap.questions)
        return gaps

    def _gap(
        self, rows: list[dict[str, Any]], vectors: np.ndarray, index: FaqIndex, rank: Rank, threshold: float
    ) -> Gap:
        centrality = (vectors @ vectors.T).mean(axis=1)
        order = np.argsort(-centrality, kind="stable")
        texts = list(dict.fromkeys(rows[i]["query"] for i in order))
        reasons = Counter(reason for r in rows for reason in r["reasons"])
        centre = vectors.mean(axis=0)
        centre /= max(float(np.linalg.norm(centre)), 1e-12)
        ranked = rank(Question(query=texts[0], k=3))
        near = []
        for hit in ranked.results[:3]:
            entry = index.entry(hit.id)
            asked = entry.question if entry is not None and entry.question else hit.text[:300]
            similarity = float(self.encode([asked])[0] @ centre)
            near.append(NearEntry(id=hit.id, question=hit.question, url=hit.url, similarity=round(similarity, 4)))
        close = any(1.0 - n.similarity <= threshold for n in near)
        return Gap(
            id=gap_id(rows[0]["id"]),
            size=len(rows),
            question=texts[0],
            questions=texts[:EXAMPLES],
            reasons={k: reasons[k] for k in ("declined", "suggested", "not_useful", "low_confidence") if reasons[k]},
            channels=dict(sorted(Counter(r["channel"] for r in rows).items())),
            first_seen=_iso(rows[0]["at"]),
            last_seen=_iso(rows[-1]["at"]),
            kind="unrecognised_wording" if close else "missing_entry",
            nearest_entries=near,
            answer_ids=[r["id"] for r in rows],
            texts=texts,
        )
