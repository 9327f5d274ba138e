"""The query side of the embedder: every query vector (and, where the encoder has them, every question's
latent terms) goes through one LRU cache and one micro-batcher."""

from __future__ import annotations

from concurrent.futures import Future

import numpy as np

from rag.embedders import Embedder
from rag.embedders.latents import LatentEncoder, Latents
from rag.query.batching import MicroBatcher
from rag.query.cache import LRUCache


class QueryEncoder:
    """Encodes prepared query texts: cached, and batched with concurrent requests."""

    def __init__(self, embedder: Embedder, cache_size: int = 1024, max_batch: int = 32, wait_ms: float = 0.0) -> None:
        self.embedder = embedder
        self._vectors: LRUCache[np.ndarray] = LRUCache(cache_size)
        self._latents: LRUCache[Latents] = LRUCache(cache_size)
        lanes = embedder.lanes
        self._batcher = MicroBatcher(embedder.encode_queries, max_batch, wait_ms / 1000, lanes)
        self._latent_batcher: MicroBatcher[Latents] | None = None
        if isinstance(embedder, LatentEncoder):
            encode = embedder.encode_latents
            self._latent_batcher = MicroBatcher(lambda texts: encode(texts, True), max_batch, wait_ms / 1000, lanes)

    def __call__(self, text: str) -> np.ndarray:
        vector = self._vectors.get(text)
        if vector is None:
            vector = self._batcher(text)
            self._vectors.put(text, vector)
        return vector

    @property
    def has_latents(self) -> bool:
        return self._latent_batcher is not None

    def spare(self) -> bool:
        """Whether a question's latent terms can be computed beside its vector without delaying anything: a
        lane free for each of the two (otherwise they are computed only if needed, after the vector)."""
        latent = self._latent_batcher.load() if self._latent_batcher is not None else 0
        return self._batcher.load() + latent + 2 <= self._batcher.lanes

    def latent_terms(self, text: str) -> Future[Latents]:
        """The question's latent terms, queued now (the caller waits for them, or cancels, when it knows
        whether the confidence needs them)."""
        if self._latent_batcher is None:
            raise TypeError(f"{self.embedder.name} gives no latent terms")
        cached = self._latents.get(text)
        if cached is not None:
            done: Future[Latents] = Future()
            done.set_result(cached)
            return done
        future = self._latent_batcher.submit(text)

        def keep(done: Future[Latents]) -> None:
            if not done.cancelled() and done.exception() is None:
                self._latents.put(text, done.result())

        future.add_done_callback(keep)
        return future
