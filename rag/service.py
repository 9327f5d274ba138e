"""The one place that wires settings, embedder, index, retriever and answer generator together.

Construction is light; :meth:`RagService.load` (or :meth:`build`) does the heavy work. A rebuilt
index is swapped in as one reference assignment, so a request sees the old index or the new one,
never a mix.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .answer import ExtractiveGenerator, pieces
from .batching import MicroBatcher
from .cache import LRUCache, cache_key, normalise_query
from .config import Settings
from .embedders import Embedder, make_embedder
from .errors import IndexNotReady
from .generation import LLMGenerator, Reset
from .glossary import Glossary
from .llm import ChatClient, LLMConfig
from .models import Answer, SearchResult
from .prompts import PromptSet
from .retriever import HybridRetriever, RetrievalParams
from .sources import load_corpus
from .store import BuildOptions, FaqIndex, Progress, build_index, load_index, read_manifest, save_index


@dataclass(frozen=True)
class _Loaded:
    index: FaqIndex
    retriever: HybridRetriever
    extractive: ExtractiveGenerator
    llm: LLMGenerator | None


def retrieval_params(settings: Settings) -> RetrievalParams:
    return RetrievalParams(
        fusion=settings.fusion,
        rrf_k=settings.rrf_k,
        dense_weight=settings.dense_weight,
        bm25_weight=settings.bm25_weight,
        candidates=settings.candidates,
        min_score=settings.min_score,
        expand_queries=settings.expand_queries,
        expand_dense=settings.expand_dense,
        public_url=settings.public_url,
    )


def build_options(settings: Settings) -> BuildOptions:
    return BuildOptions(
        max_tokens=settings.chunk_max_tokens,
        overlap=settings.chunk_overlap_sentences,
        question_vectors=settings.question_vectors,
        sentence_vectors=settings.sentence_vectors,
        ann_threshold=settings.ann_threshold,
        hnsw_m=settings.hnsw_m,
        hnsw_ef_search=settings.hnsw_ef_search,
        batch_size=settings.embed_batch_size,
    )


class RagService:
    """Search and answer over the configured index."""

    def __init__(self, settings: Settings | None = None, embedder: Embedder | None = None) -> None:
        self.settings = settings or Settings()
        self._embedder = embedder
        self._loaded: _Loaded | None = None
        self._build_lock = threading.Lock()
        self._llm_parts: tuple[ChatClient, PromptSet] | None = None
        self.results: LRUCache[SearchResult] = LRUCache(self.settings.cache_size)
        self.vectors: LRUCache[np.ndarray] = LRUCache(self.settings.cache_size)
        self._batcher: MicroBatcher | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            s = self.settings
            self._embedder = make_embedder(
                s.embedder,
                query_prefix=s.query_prefix,
                passage_prefix=s.passage_prefix,
                batch_size=s.embed_batch_size,
                threads=s.threads,
            )
        return self._embedder

    @property
    def ready(self) -> bool:
        return self._loaded is not None

    @property
    def index(self) -> FaqIndex:
        return self._state().index

    @property
    def retriever(self) -> HybridRetriever:
        return self._state().retriever

    def _state(self) -> _Loaded:
        loaded = self._loaded
        if loaded is None:
            raise IndexNotReady("the index is not loaded yet. Run `rag index` if it was never built.")
        return loaded

    def _llm(self) -> tuple[ChatClient, PromptSet] | None:
        """The LLM client and prompts, made once, when an LLM server is configured."""
        s = self.settings
        if not s.llm_base_url:
            return None
        if self._llm_parts is None:
            # every LLMConfig field has its RAG_LLM_<FIELD> setting
            config = LLMConfig(
                **{f.name: getattr(s, f"llm_{f.name}") for f in fields(LLMConfig) if hasattr(s, f"llm_{f.name}")}
            )
            self._llm_parts = (ChatClient(config), PromptSet.load(s.prompts_dir))
        return self._llm_parts

    def _install(self, index: FaqIndex) -> None:
        retriever = HybridRetriever(index, self.embedder, retrieval_params(self.settings))
        extractive = ExtractiveGenerator(self.settings.answer_sentences, query_expander=retriever.prepare)
        parts = self._llm()
        llm = None
        if parts is not None:
            llm = LLMGenerator(parts[0], parts[1], extractive, self.settings.faq_name, self.settings.language)
        self._loaded = _Loaded(index, retriever, extractive, llm)
        self.results.clear()  # results of the previous index must not be served from the new one

    def load(self) -> FaqIndex:
        """Load the embedder and the saved index; raise :class:`IndexNotReady` with advice if it cannot."""
        self.embedder.load()
        index = load_index(self.settings.index_dir, self.embedder.name, self.embedder.dim)
        self._install(index)
        return index

    def build(
        self, sources: list[Path] | None = None, progress: Progress | None = None, install: bool = True
    ) -> FaqIndex:
        """Build the index from the sources, save it atomically, and (by default) swap it in."""
        with self._build_lock:
            corpus = load_corpus(sources or self.settings.sources)
            glossary = Glossary.for_sources(sources or self.settings.sources, self.settings.glossary)
            index = build_index(corpus, self.embedder, build_options(self.settings), glossary, progress)
            save_index(index, self.settings.index_dir)
            if install:
                self._install(index)
            return index

    def needs_build(self) -> bool:
        """True when there is no saved index, or it was built by another format, embedder, sources or glossary."""
        if not (Path(self.settings.index_dir) / "manifest.json").exists():
            return True
        try:
            manifest = read_manifest(self.settings.index_dir)
        except IndexNotReady:
            return True
        if manifest.get("embedder") != self.embedder.name:
            return True
        opts = build_options(self.settings)
        if (
            manifest.get("question_vectors") != opts.question_vectors
            or manifest.get("chunking", {}).get("overlap") != opts.overlap
        ):
            return True
        corpus = load_corpus(self.settings.sources)
        glossary = Glossary.for_sources(self.settings.sources, self.settings.glossary)
        return (manifest.get("corpus_checksum"), manifest.get("glossary_checksum")) != (
            corpus.checksum(),
            glossary.checksum(),
        )

    def load_or_build(self, progress: Progress | None = None) -> FaqIndex:
        """Load the saved index; build it first when there is none or when the sources changed since."""
        if self.needs_build():
            return self.build(progress=progress)
        return self.load()

    def query_vector(self, text: str) -> np.ndarray:
        """The encoder's vector for a (prepared) query: cached, and batched with concurrent requests."""
        vector = self.vectors.get(text)
        if vector is None:
            if self._batcher is None:
                self._batcher = MicroBatcher(
                    self.embedder.encode_queries, self.settings.embed_batch_size, self.settings.batch_wait_ms / 1000
                )
            vector = self._batcher(text)
            self.vectors.put(text, vector)
        return vector

    def search(self, query: str, k: int | None = None, filters: Mapping[str, Any] | None = None) -> SearchResult:
        state = self._state()
        k = k or self.settings.default_k
        key = cache_key(state.index.version, normalise_query(query), k, dict(filters or {}))
        cached = self.results.get(key)
        if cached is not None:
            return cached.model_copy(update={"query": query})
        retriever = state.retriever
        vector = None if retriever.params.fusion == "bm25" else self.query_vector(retriever.dense_text(query))
        result = retriever.search(query, k, filters, query_vector=vector)
        self.results.put(key, result)
        return result

    def answer(self, result: SearchResult) -> Answer:
        """The cited answer for a retrieval result (the LLM's when one is configured)."""
        state = self._state()
        return (state.llm or state.extractive).answer(result)

    def ask(self, query: str, k: int | None = None, filters: Mapping[str, Any] | None = None) -> Answer:
        return self.answer(self.search(query, k, filters))

    def ask_stream(self, result: SearchResult) -> Iterator[str | Reset | Answer]:
        """Pieces of the answer text as they are ready, then the complete :class:`Answer`.
        A :class:`Reset` means: forget the pieces so far, a replacement follows."""
        state = self._state()
        if state.llm is not None:
            yield from state.llm.stream(result)
            return
        answer = state.extractive.answer(result)
        yield from pieces(answer.answer)
        yield answer
