"""An optional second opinion on the ranking: a cross-encoder reads the question with each of the best
passages and reorders them (``RAG_RERANKER=st:<model>``). Off by default: no multilingual cross-encoder
ships inside a registry package, so it is for users who can install a model."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from rag.embedders import load_offline
from rag.errors import ConfigError
from rag.query.retriever import Ranking


class Reranker(Protocol):
    def load(self) -> None: ...

    def scores(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """One relevance score per passage, higher is better."""


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` (a hub name in the local cache, or a local folder), on the CPU."""

    def __init__(self, spec: str) -> None:
        self.model_name = spec.removeprefix("st:").strip()
        if not self.model_name:
            raise ConfigError("RAG_RERANKER is empty after 'st:'; give a cross-encoder name or folder")
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        if self._model is None:
            from sentence_transformers import CrossEncoder

            self._model = load_offline(CrossEncoder, self.model_name, "reranker", "RAG_RERANKER")

    def scores(self, query: str, passages: Sequence[str]) -> np.ndarray:
        self.load()
        with self._lock:
            return np.asarray(self._model.predict([(query, p) for p in passages], show_progress_bar=False))


def make_reranker(spec: str) -> Reranker | None:
    return CrossEncoderReranker(spec) if spec.strip() else None


def rerank(ranking: Ranking, reranker: Reranker, depth: int) -> None:
    """Reorder the first ``depth`` entries of ``ranking`` by the reranker's scores, in place."""
    head = ranking.order[:depth]
    if len(head) < 2:
        return
    passages = [ranking.index.chunks[ranking.best_chunk(i)].embed_text for i in head]
    scores = reranker.scores(ranking.prepared.query, passages)
    order = np.argsort(-scores, kind="stable")
    ranking.order = [head[i] for i in order] + ranking.order[depth:]
    ranking.reranked = {head[i]: float(scores[i]) for i in range(len(head))}
