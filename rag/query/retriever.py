"""Hybrid retrieval: dense (FAISS) and French BM25 candidates, the best chunk of each FAQ entry, fused per
entry (linear fusion by default). The ranking it returns is plain data that later stages read alone."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from rag.config import RetrievalSettings
from rag.embedders.latents import Latents
from rag.errors import EmbeddingsUnavailable, UnknownFilter
from rag.indexing.faq_index import FaqIndex
from rag.language.analyzer import FrenchAnalyzer
from rag.models import Entry, Hit

log = logging.getLogger("rag.query.retriever")
EncodeQuery = Callable[[str], np.ndarray]  # a query text -> its vector


@dataclass(frozen=True)
class Prepared:
    """A query as it is searched: the glossary applied once."""

    query: str
    dense: str  # the text the encoder encodes
    terms: list[str]  # the query's own content terms
    lexical_terms: list[str]  # the terms BM25 searches: the query's and its glossary expansions'


@dataclass
class Ranking:
    """Every candidate entry of one query, best first, with each entry's scores and best chunk, and the index
    they come from: what the signals of the confidence and a reranker read."""

    index: FaqIndex
    prepared: Prepared
    order: list[int]
    fused: np.ndarray
    dense: np.ndarray
    dense_chunk: np.ndarray
    lexical: np.ndarray
    lexical_chunk: np.ndarray
    reranked: dict[int, float] = field(default_factory=dict)  # entry -> the reranker's score
    degraded: str | None = None  # "embeddings": the question's vector could not be had, BM25 ranked alone
    latents: Latents | None = None  # the question's latent terms, when the confidence waited for them
    excluded: frozenset[int] = frozenset()  # entries ranked as if the FAQ did not hold them (self-calibration)
    vector: np.ndarray | None = None  # the question's vector, when it was encoded

    def best_chunk(self, entry: int) -> int:
        """The chunk of ``entry`` that matched best (densely, else lexically)."""
        return int(self.dense_chunk[entry] if self.dense_chunk[entry] >= 0 else self.lexical_chunk[entry])

    def hits(self, k: int) -> list[Hit]:
        return [self._hit(i) for i in self.order[:k]]

    def _hit(self, i: int) -> Hit:
        entry = self.index.entries[i]
        dense, lexical = self.dense[i], self.lexical[i]
        return Hit(
            id=entry.id,
            question=entry.question,
            text=self.index.chunks[self.best_chunk(i)].text,
            score=round(float(self.fused[i]), 4),
            url=entry.url,
            metadata=entry.metadata,
            dense_score=round(float(dense), 4) if np.isfinite(dense) else None,
            bm25_score=round(float(lexical), 4) if lexical > 0 else None,
            rerank_score=round(self.reranked[i], 4) if i in self.reranked else None,
            checked_on=entry.checked_on,
        )


def _matches(entry: Entry, filters: Mapping[str, Any]) -> bool:
    for name, wanted in filters.items():
        value = entry.source if name == "source" else entry.metadata.get(name)
        values = set(map(str, wanted if isinstance(wanted, list) else [wanted]))
        have = set(map(str, value)) if isinstance(value, list) else {str(value)}
        if not have & values:
            return False
    return True


def check_filters(index: FaqIndex, filters: Mapping[str, Any] | None) -> None:
    """A filter naming a field no entry has is an :class:`UnknownFilter`, whatever the question."""
    unknown = set(filters or {}) - index.metadata_fields
    if unknown:
        known = ", ".join(sorted(index.metadata_fields))
        raise UnknownFilter(f"unknown filter field(s): {', '.join(sorted(unknown))}; known fields: {known}")


class HybridRetriever:
    """Dense + BM25 over chunks, best chunk per entry, fused per entry."""

    def __init__(self, index: FaqIndex, encode: EncodeQuery | None, params: RetrievalSettings) -> None:
        self.index = index
        self.encode = encode
        self.params = params
        self.analyzer = FrenchAnalyzer()

    def prepare(self, query: str) -> Prepared:
        expanded = self.index.glossary.expand(query) if self.params.expand_queries else query
        dense = expanded if self.params.expand_dense else query
        return Prepared(query, dense, self.analyzer(query), self.analyzer(expanded))

    @property
    def encodes(self) -> bool:
        """Whether questions are encoded (not with BM25 alone)."""
        return self.params.fusion != "bm25" and self.encode is not None

    def rank(
        self, prepared: Prepared, filters: Mapping[str, Any] | None = None, exclude: Collection[int] = ()
    ) -> Ranking:
        """Every candidate entry, best first; without the question's vector (an embeddings server that
        failed), BM25's alone, marked ``degraded``. ``exclude``: entries ranked as if absent."""
        index, params = self.index, self.params
        allowed = self._allowed(filters)
        if exclude:
            allowed = np.ones(len(index.entries), dtype=bool) if allowed is None else allowed
            allowed[list(exclude)] = False
        n_entries = len(index.entries)
        dense = np.full(n_entries, -np.inf, dtype=np.float32)
        dense_chunk = np.full(n_entries, -1, dtype=np.int64)
        lexical = np.zeros(n_entries, dtype=np.float32)
        lexical_chunk = np.full(n_entries, -1, dtype=np.int64)
        degraded, vector = None, None
        if self.encodes:
            try:
                vector = self.encode(prepared.dense)
                self._dense(vector, allowed, dense, dense_chunk)
            except EmbeddingsUnavailable as exc:
                log.warning("%s: ranking with BM25 alone", exc)
                degraded = "embeddings"
        if params.fusion != "dense":
            self._lexical(prepared.lexical_terms, allowed, lexical, lexical_chunk)
        fused = self._fuse(dense, lexical)
        if allowed is not None:
            fused[~allowed] = -np.inf
        order = [int(i) for i in np.argsort(-fused, kind="stable") if np.isfinite(fused[i])]
        scores = (fused, dense, dense_chunk, lexical, lexical_chunk)
        excluded = frozenset(exclude)
        return Ranking(index, prepared, order, *scores, degraded=degraded, excluded=excluded, vector=vector)

    def _allowed(self, filters: Mapping[str, Any] | None) -> np.ndarray | None:
        if not filters:
            return None
        check_filters(self.index, filters)
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
        ids = index.bm25.get_tokens_ids(terms)
        if not ids:
            return
        # the scores of every chunk and their top rows, without bm25s's retrieve (a progress bar, and a
        # process-wide lock, per call)
        scores = index.bm25.get_scores_from_ids(ids, weight_mask=mask)
        top = np.argpartition(-scores, want - 1)[:want] if want < len(scores) else np.arange(len(scores))
        for row in top[np.argsort(-scores[top], kind="stable")]:
            score = float(scores[row])
            if score <= 0:
                break
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
