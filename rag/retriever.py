"""Hybrid retrieval: dense (FAISS) and French BM25 candidates, grouped by FAQ entry and fused
(linear fusion by default), with the signals the confidence is computed from."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import faiss
import numpy as np

from .analyzer import FrenchAnalyzer
from .config import RetrievalSettings
from .errors import EmbeddingsUnavailable, UnknownFilter
from .latents import Latents
from .models import Entry, Hit
from .store import FaqIndex

log = logging.getLogger("rag.retriever")
QueryEncoder = Callable[[str], np.ndarray]


class LatentSource(Protocol):
    """Where a question's latent terms come from (the query encoder)."""

    def latents(self, text: str) -> Future[Latents]: ...

    def spare(self) -> bool:
        """Whether they can be computed now beside the question's vector without delaying other work."""


@dataclass(frozen=True)
class Prepared:
    """A query as it is searched: the glossary applied once."""

    query: str
    dense: str  # the text the encoder encodes
    terms: list[str]  # the query's own content terms
    lexical_terms: list[str]  # the terms BM25 searches: the query's and its glossary expansions'


@dataclass
class Ranking:
    """Entries ranked for one query, with per-entry scores and the signals of the top entry."""

    order: list[int]
    fused: np.ndarray
    dense: np.ndarray
    dense_chunk: np.ndarray
    lexical: np.ndarray
    lexical_chunk: np.ndarray
    prepared: Prepared
    reranked: dict[int, float] = field(default_factory=dict)  # entry -> the reranker's score
    degraded: str | None = None  # "embeddings": the question's vector could not be had, BM25 ranked alone
    latents: Latents | None = None  # the question's latent terms, once settled (see HybridRetriever.settle)
    pending: Future[Latents] | None = None  # ... while they are being computed


def _matches(entry: Entry, filters: Mapping[str, Any]) -> bool:
    for name, wanted in filters.items():
        value = entry.source if name == "source" else entry.metadata.get(name)
        values = set(map(str, wanted if isinstance(wanted, list) else [wanted]))
        have = set(map(str, value)) if isinstance(value, list) else {str(value)}
        if not have & values:
            return False
    return True


class HybridRetriever:
    """Dense + BM25 over chunks, best chunk per entry, fused per entry."""

    def __init__(
        self,
        index: FaqIndex,
        encode: QueryEncoder | None,
        params: RetrievalSettings,
        latents: LatentSource | None = None,
    ) -> None:
        self.index = index
        self.encode = encode
        self.params = params
        self.latents = latents if index.latents is not None else None
        self._lock = threading.Lock()
        self._ranking = 0  # questions being ranked now
        self.analyzer = FrenchAnalyzer()

    def prepare(self, query: str) -> Prepared:
        expanded = self.index.glossary.expand(query) if self.params.expand_queries else query
        dense = expanded if self.params.expand_dense else query
        return Prepared(query, dense, self.analyzer(query), self.analyzer(expanded))

    def rank(self, prepared: Prepared, filters: Mapping[str, Any] | None = None) -> Ranking:
        """Every candidate entry, best first."""
        with self._lock:
            self._ranking += 1
            alone = self._ranking == 1
        try:
            return self._rank(prepared, filters, alone)
        finally:
            with self._lock:
                self._ranking -= 1

    def _rank(self, prepared: Prepared, filters: Mapping[str, Any] | None, alone: bool) -> Ranking:
        index, params = self.index, self.params
        allowed = self._allowed(filters)
        n_entries = len(index.entries)
        dense = np.full(n_entries, -np.inf, dtype=np.float32)
        dense_chunk = np.full(n_entries, -1, dtype=np.int64)
        lexical = np.zeros(n_entries, dtype=np.float32)
        lexical_chunk = np.full(n_entries, -1, dtype=np.int64)
        degraded = None
        # a question ranked alone, with a lane of the encoder to spare, has its latent terms computed beside its
        # vector in case the confidence needs them; under load they are computed only once it does (see settle)
        speculate = alone and self.latents is not None and params.fusion != "bm25" and self.latents.spare()
        pending = self.latents.latents(prepared.query) if speculate else None
        if params.fusion != "bm25" and self.encode is not None:
            try:
                self._dense(self.encode(prepared.dense), allowed, dense, dense_chunk)
            except EmbeddingsUnavailable as exc:
                log.warning("%s: ranking with BM25 alone", exc)
                degraded = "embeddings"
        if params.fusion != "dense":
            self._lexical(prepared.lexical_terms, allowed, lexical, lexical_chunk)
        fused = self._fuse(dense, lexical)
        if allowed is not None:
            fused[~allowed] = -np.inf
        order = [int(i) for i in np.argsort(-fused, kind="stable") if np.isfinite(fused[i])]
        if degraded is not None and pending is not None:
            pending.cancel()
            pending = None
        return Ranking(
            order, fused, dense, dense_chunk, lexical, lexical_chunk, prepared, degraded=degraded, pending=pending
        )

    def settle(self, ranking: Ranking, wanted: bool = True) -> None:
        """Get the question's latent terms (``wanted``: waiting for them, or asking for them now) or give them
        up. A failure leaves the confidence without them, never the question unanswered."""
        pending, ranking.pending = ranking.pending, None
        if not wanted:
            if pending is not None:
                pending.cancel()  # not started yet: never computed
            return
        if pending is None:
            if self.latents is None or ranking.degraded is not None or self.params.fusion == "bm25":
                return
            pending = self.latents.latents(ranking.prepared.query)
        try:
            ranking.latents = pending.result(timeout=60)
        except Exception as exc:
            log.warning("latent terms unavailable (%s): the confidence does without them", exc)

    def hits(self, ranking: Ranking, k: int) -> list[Hit]:
        return [self._hit(i, ranking) for i in ranking.order[:k]]

    def _allowed(self, filters: Mapping[str, Any] | None) -> np.ndarray | None:
        if not filters:
            return None
        unknown = set(filters) - self.index.metadata_fields
        if unknown:
            known = ", ".join(sorted(self.index.metadata_fields))
            raise UnknownFilter(f"unknown filter field(s): {', '.join(sorted(unknown))}; known fields: {known}")
        return np.array([_matches(e, filters) for e in self.index.entries], dtype=bool)

    def _dense(self, vector: np.ndarray, allowed: np.ndarray | None, best: np.ndarray, best_chunk: np.ndarray) -> None:
        index = self.index
        want = min(index.vectors.ntotal, max(self.params.candidates * 4, 64))
        search_params = None
        if allowed is not None:
            rows = np.nonzero(allowed[index.view_entry])[0].astype(np.int64)
            if rows.size == 0:
                return
            search_params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(rows))
            want = min(want, rows.size)
        scores, rows = index.vectors.search(vector.reshape(1, -1).astype(np.float32), want, params=search_params)
        for score, row in zip(scores[0], rows[0]):
            if row < 0:
                continue
            entry = index.view_entry[row]
            if score > best[entry]:
                best[entry] = score
                best_chunk[entry] = index.view_chunk[row]

    def _lexical(self, terms: list[str], allowed: np.ndarray | None, best: np.ndarray, best_chunk: np.ndarray) -> None:
        index = self.index
        if not terms:
            return
        want = min(len(index.chunks), max(self.params.candidates * 4, 64))
        mask = None if allowed is None else allowed[index.chunk_entry].astype(np.float32)
        docs, scores = index.bm25.retrieve([terms], k=want, show_progress=False, weight_mask=mask, n_threads=0)
        for row, score in zip(docs[0], scores[0]):
            if score <= 0:
                continue
            entry = index.chunk_entry[row]
            if score > best[entry]:
                best[entry] = score
                best_chunk[entry] = row

    def _fuse(self, dense: np.ndarray, lexical: np.ndarray) -> np.ndarray:
        p = self.params
        has_dense, has_lex = np.isfinite(dense), lexical > 0
        if p.fusion == "dense":
            return np.where(has_dense, dense, -np.inf)
        if p.fusion == "bm25":
            return np.where(has_lex, lexical, -np.inf)
        if p.fusion == "linear":
            d = np.where(has_dense, dense, 0.0)
            lo = d[has_dense].min() if has_dense.any() else 0.0
            hi = d.max() if has_dense.any() else 1.0
            d = np.where(has_dense, (d - lo) / max(hi - lo, 1e-6), 0.0)
            lex = lexical / max(lexical.max(), 1e-6)
            fused = (p.dense_weight * d + p.bm25_weight * lex) / max(p.dense_weight + p.bm25_weight, 1e-9)
            return np.where(has_dense | has_lex, fused, -np.inf)
        fused = np.zeros(len(dense), dtype=np.float64)
        for scores, present, weight in ((dense, has_dense, p.dense_weight), (lexical, has_lex, p.bm25_weight)):
            if weight == 0 or not present.any():
                continue
            ranked = np.argsort(-np.where(present, scores, -np.inf), kind="stable")[: int(present.sum())]
            fused[ranked] += weight / (p.rrf_k + 1 + np.arange(len(ranked)))
        fused /= max((p.dense_weight + p.bm25_weight) / (p.rrf_k + 1), 1e-12)  # 1.0 = ranked first by both
        return np.where(has_dense | has_lex, fused, -np.inf)

    def best_chunk(self, i: int, ranking: Ranking) -> int:
        return int(ranking.dense_chunk[i] if ranking.dense_chunk[i] >= 0 else ranking.lexical_chunk[i])

    def _hit(self, i: int, ranking: Ranking) -> Hit:
        entry = self.index.entries[i]
        dense, lexical = ranking.dense[i], ranking.lexical[i]
        return Hit(
            id=entry.id,
            question=entry.question,
            text=self.index.chunks[self.best_chunk(i, ranking)].text,
            score=round(float(ranking.fused[i]), 4),
            url=entry.url,
            metadata=entry.metadata,
            dense_score=round(float(dense), 4) if np.isfinite(dense) else None,
            bm25_score=round(float(lexical), 4) if lexical > 0 else None,
            rerank_score=round(ranking.reranked[i], 4) if i in ranking.reranked else None,
        )
