"""The query side of the embedder: every query vector goes through one LRU cache and one micro-batcher."""

from __future__ import annotations

import numpy as np

from .batching import MicroBatcher
from .cache import LRUCache
from .embedders import Embedder


class QueryEncoder:
    """Encodes prepared query texts: cached, and batched with concurrent requests."""

    def __init__(self, embedder: Embedder, cache_size: int = 1024, max_batch: int = 32, wait_ms: float = 0.0) -> None:
        self.embedder = embedder
        self._vectors: LRUCache[np.ndarray] = LRUCache(cache_size)
        lanes = getattr(embedder, "lanes", 1)  # calls that may run at once (see the Embedder protocol)
        self._batcher = MicroBatcher(embedder.encode_queries, max_batch, wait_ms / 1000, lanes)

    def __call__(self, text: str) -> np.ndarray:
        vector = self._vectors.get(text)
        if vector is None:
            vector = self._batcher(text)
            self._vectors.put(text, vector)
        return vector
