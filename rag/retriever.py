"""Hybrid retrieval: dense (FAISS) and French BM25 candidates, fused, grouped by FAQ entry,
with abstention when the evidence is weak."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import faiss
import numpy as np

from .analyzer import FrenchAnalyzer
from .embedders import Embedder
from .models import Entry, Hit, SearchResult
from .store import FaqIndex


class Retriever(Protocol):
    def search(self, query: str, k: int = 5, filters: Mapping[str, Any] | None = None) -> SearchResult: ...


@dataclass
class RetrievalParams:
    fusion: str = "linear"  # "linear" | "rrf" | "dense" | "bm25"
    rrf_k: int = 60
    dense_weight: float = 1.0
    bm25_weight: float = 0.5
    candidates: int = 50
    min_score: float = 2.0
    expand_queries: bool = True
    expand_dense: bool = True
    public_url: str = ""


class UnknownFilter(ValueError):
    """A filter names a field no entry has."""


def entry_url(entry: Entry, public_url: str = "") -> str:
    """The entry's own URL, or its page in this service."""
    return entry.url or f"{public_url.rstrip('/')}/entries/{entry.id}"


def _matches(entry: Entry, filters: Mapping[str, Any]) -> bool:
    for field, wanted in filters.items():
        value = entry.source if field == "source" else entry.metadata.get(field)
        values = wanted if isinstance(wanted, list) else [wanted]
        if isinstance(value, list):
            if not set(map(str, value)) & set(map(str, values)):
                return False
        elif str(value) not in set(map(str, values)):
            return False
    return True


class HybridRetriever:
    """Dense + BM25 over chunks, fused per entry (reciprocal rank fusion by default)."""

    def __init__(self, index: FaqIndex, embedder: Embedder, params: RetrievalParams | None = None) -> None:
        self.index = index
        self.embedder = embedder
        self.params = params or RetrievalParams()
        self.analyzer = FrenchAnalyzer()

    def dense_text(self, query: str) -> str:
        """The text given to the query encoder."""
        return self.prepare(query) if self.params.expand_dense else query

    def prepare(self, query: str) -> str:
        """The text actually searched: the query with glossary expansions."""
        return self.index.glossary.expand(query) if self.params.expand_queries else query

    def search(
        self,
        query: str,
        k: int = 5,
        filters: Mapping[str, Any] | None = None,
        query_vector: np.ndarray | None = None,
        keep_abstained: bool = False,
    ) -> SearchResult:
        """The top ``k`` entries. When the evidence is below ``min_score`` the result is marked
        abstained and carries no hits (unless ``keep_abstained``, for evaluation)."""
        index, params = self.index, self.params
        text = self.prepare(query)
        allowed = self._allowed(filters)
        n_entries = len(index.entries)
        dense = np.full(n_entries, -np.inf, dtype=np.float32)
        dense_chunk = np.full(n_entries, -1, dtype=np.int64)
        lexical = np.zeros(n_entries, dtype=np.float32)
        lexical_chunk = np.full(n_entries, -1, dtype=np.int64)

        if params.fusion != "bm25":
            if query_vector is None:
                query_vector = self.embedder.encode_queries([text if params.expand_dense else query])[0]
            self._dense(query_vector, allowed, dense, dense_chunk)
        if params.fusion != "dense":
            self._lexical(text, allowed, lexical, lexical_chunk)

        fused = self._fuse(dense, lexical)
        if allowed is not None:
            fused[~allowed] = -np.inf
        order = [int(i) for i in np.argsort(-fused, kind="stable") if np.isfinite(fused[i])]
        confidence = 0.0
        if order and params.fusion == "bm25":
            confidence = float(lexical[order[0]])
        elif order:
            confidence = self._standout(dense)
        abstained = not order or confidence < params.min_score
        keep = order[:k] if (keep_abstained or not abstained) else []
        hits = [self._hit(i, fused, dense, dense_chunk, lexical, lexical_chunk) for i in keep]
        return SearchResult(query=query, abstained=abstained, results=hits, confidence=round(confidence, 4))

    @staticmethod
    def _standout(dense: np.ndarray) -> float:
        """How many standard deviations the best entry's dense score stands above the other candidates'.

        Raw cosine similarities of one model crowd into a narrow band whatever the question; how much
        the best entry stands out from the rest tells a question the FAQ answers from one it does not.
        """
        scores = dense[np.isfinite(dense)]
        if scores.size < 3:
            return float("inf") if scores.size else 0.0
        ordered = np.sort(scores)[::-1]
        rest = ordered[1:]
        return float((ordered[0] - rest.mean()) / max(float(rest.std()), 1e-6))

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
        n = index.vectors.ntotal
        want = min(n, max(self.params.candidates * 4, 64))
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

    def _lexical(self, text: str, allowed: np.ndarray | None, best: np.ndarray, best_chunk: np.ndarray) -> None:
        index = self.index
        terms = self.analyzer(text)
        if not terms:
            return
        n = len(index.chunks)
        want = min(n, max(self.params.candidates * 4, 64))
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
        if p.fusion == "dense":
            return np.where(np.isfinite(dense), dense, -np.inf)
        if p.fusion == "bm25":
            return np.where(lexical > 0, lexical, -np.inf)
        has_dense = np.isfinite(dense)
        has_lex = lexical > 0
        if p.fusion == "linear":
            d = np.where(has_dense, dense, 0.0)
            lo = d[has_dense].min() if has_dense.any() else 0.0
            hi = d.max() if has_dense.any() else 1.0
            d = np.where(has_dense, (d - lo) / max(hi - lo, 1e-6), 0.0)
            lex = lexical / max(lexical.max(), 1e-6)
            fused = (p.dense_weight * d + p.bm25_weight * lex) / max(p.dense_weight + p.bm25_weight, 1e-9)
            return np.where(has_dense | has_lex, fused, -np.inf)
        fused = np.zeros(len(dense), dtype=np.float64)
        for scores, present, weight in (
            (dense, has_dense, p.dense_weight),
            (lexical, has_lex, p.bm25_weight),
        ):
            if weight == 0 or not present.any():
                continue
            ranked = np.argsort(-np.where(present, scores, -np.inf), kind="stable")[: int(present.sum())]
            fused[ranked] += weight / (p.rrf_k + 1 + np.arange(len(ranked)))
        top = (p.dense_weight + p.bm25_weight) / (p.rrf_k + 1)
        fused /= max(top, 1e-12)  # 1.0 = ranked first by both
        return np.where(has_dense | has_lex, fused, -np.inf)

    def _hit(self, i: int, fused, dense, dense_chunk, lexical, lexical_chunk) -> Hit:
        entry = self.index.entries[i]
        chunk_row = dense_chunk[i] if dense_chunk[i] >= 0 else lexical_chunk[i]
        return Hit(
            id=entry.id,
            question=entry.question,
            text=self.index.chunks[chunk_row].text,
            score=round(float(fused[i]), 4),
            url=entry_url(entry, self.params.public_url),
            dense_score=round(float(dense[i]), 4) if np.isfinite(dense[i]) else None,
            bm25_score=round(float(lexical[i]), 4) if lexical[i] > 0 else None,
        )
