"""The one place that wires settings, embedder, index, retriever, confidence and answer generators.

Construction is light; :meth:`RagService.load` (or :meth:`build`) does the heavy work. A rebuilt index
is swapped in as one reference assignment, so a request sees the old index or the new one, never a mix.
The HTTP API, the CLI, ``rag eval`` and the benchmarks all call the methods below.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .answer import ExtractiveGenerator, pieces, smalltalk_answer
from .cache import LRUCache, cache_key, normalise_query
from .confidence import Calibration, latent_signals, signals
from .config import DEFAULT_SOURCE, Settings
from .conversation import Rewriter, elliptical, joined
from .embedders import Embedder, encoder_threads, make_embedder, model_of
from .encoder import QueryEncoder
from .errors import EmbeddingsUnavailable, IndexNotReady
from .generation import LLMGenerator, Reset
from .glossary import Glossary
from .indexing import Progress, build_index, source_records
from .judge import Judge
from .llm import ChatClient
from .models import Answer, SearchResult
from .prompts import PromptSet
from .rerank import make_reranker, rerank
from .retriever import HybridRetriever
from .smalltalk import smalltalk
from .sources import load_corpus
from .store import (
    FaqIndex,
    build_options,
    check_target,
    load_index,
    manifest_sources,
    read_manifest,
    save_index,
    stale_reason,
)

log = logging.getLogger("rag.service")


@dataclass(frozen=True)
class _Loaded:
    index: FaqIndex
    retriever: HybridRetriever
    extractive: ExtractiveGenerator
    llm: LLMGenerator | None
    judge: Judge | None
    rewriter: Rewriter | None


class RagService:
    """Search and answer over the configured index."""

    def __init__(self, settings: Settings | None = None, embedder: Embedder | None = None) -> None:
        self.settings = settings or Settings()
        self._embedder = embedder
        self._encoder: QueryEncoder | None = None
        self._loaded: _Loaded | None = None
        self._calibration: Calibration | None = None
        self._build_lock = threading.Lock()
        self._llm_parts: tuple[ChatClient, PromptSet] | None = None
        self.reranker = make_reranker(self.settings.retrieval.reranker)
        self.results: LRUCache[SearchResult] = LRUCache(self.settings.retrieval.cache_size)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            settings = self.settings
            threads = encoder_threads(settings.index, settings.http.workers)
            self._embedder = make_embedder(settings.index, threads, settings.embeddings)
        return self._embedder

    @property
    def encoder(self) -> QueryEncoder:
        if self._encoder is None:
            r = self.settings.retrieval
            self._encoder = QueryEncoder(
                self.embedder, r.cache_size, self.settings.index.embed_batch_size, r.batch_wait_ms
            )
        return self._encoder

    @property
    def ready(self) -> bool:
        return self._loaded is not None

    @property
    def index(self) -> FaqIndex:
        return self._state().index

    @property
    def calibration(self) -> Calibration:
        if self._calibration is None:
            self._calibration = Calibration.load(self.settings.retrieval.calibration)
        return self._calibration

    @property
    def min_confidence(self) -> float:
        """Below it the service declines a question that has every signal: the setting, else the
        calibration's own threshold."""
        return self.threshold(self.calibration)

    def threshold(self, model: Calibration) -> float:
        """The threshold for a question judged by ``model`` (the calibration or one of its variants)."""
        setting = self.settings.retrieval.min_confidence
        if setting is not None:
            return setting
        # a calibration made for another encoder says nothing here: answer, never decline
        return model.threshold if self.calibrated else 0.0

    @property
    def calibrated(self) -> bool:
        """The confidence was fitted for this encoder's model (or the file does not say for which)."""
        fitted = self.calibration.embedder
        return not fitted or model_of(fitted) == model_of(self.embedder.name)

    def _state(self) -> _Loaded:
        loaded = self._loaded
        if loaded is None:
            raise IndexNotReady("the index is not loaded yet. Run `rag index` if it was never built.")
        return loaded

    def _llm(self) -> tuple[ChatClient, PromptSet] | None:
        """The LLM client and prompts, made once, when an LLM server is configured."""
        if not self.settings.llm.base_url:
            return None
        if self._llm_parts is None:
            self._llm_parts = (ChatClient(self.settings.llm), PromptSet.load(self.settings.answer.prompts_dir))
        return self._llm_parts

    def close(self) -> None:
        """Release the connections of the LLM client and of an embeddings server's client."""
        if self._llm_parts is not None:
            self._llm_parts[0].close()
        close_embedder = getattr(self._embedder, "close", None)  # only embedders with connections have one
        if close_embedder is not None:
            close_embedder()

    def _install(self, index: FaqIndex) -> None:
        latents = self.encoder if self.encoder.has_latents else None
        retriever = HybridRetriever(index, self.encoder, self.settings.retrieval, latents)
        extractive = ExtractiveGenerator(self.settings.answer)
        parts = self._llm()
        llm = judge = rewriter = None
        if parts is not None:
            client, prompts, faq = parts[0], parts[1], self.settings.answer.faq_name
            llm = LLMGenerator(client, prompts, extractive, self.settings.answer)
            rewriter = Rewriter(client, prompts.rewrite, self.settings.llm, faq)
            if self.settings.llm.judge:
                judge = Judge(client, prompts.judge, self.settings.llm, faq)
        if not self.calibrated:
            log.warning(
                "the confidence was calibrated for %s, not %s: questions are never declined; run `rag calibrate`",
                self.calibration.embedder,
                self.embedder.name,
            )
        self._loaded = _Loaded(index, retriever, extractive, llm, judge, rewriter)
        self.results.clear()  # results of the previous index must not be served from the new one

    def load(self) -> FaqIndex:
        """Load the embedder and the saved index; raise :class:`IndexNotReady` with advice if it cannot."""
        self.embedder.load()
        if self.reranker is not None:
            self.reranker.load()
        index = load_index(self.settings.index.index_dir, self.embedder.name, self._dim())
        self._install(index)
        return index

    def _dim(self) -> int | None:
        """The embedder's vector size; None while an embeddings server cannot say (questions get BM25)."""
        try:
            return self.embedder.dim
        except EmbeddingsUnavailable as exc:
            log.warning("%s; serving with BM25 alone until it answers", exc)
            return None

    @property
    def sources(self) -> list[Path]:
        """The FAQ files: the setting, else the ones the index was built from, else the shipped FAQ."""
        opts = self.settings.index
        return list(opts.sources or manifest_sources(opts.index_dir) or [DEFAULT_SOURCE])

    def _previous(self) -> FaqIndex | None:
        """The index in service or on disk, whose vectors a new build may reuse."""
        if self._loaded is not None:
            return self._loaded.index
        try:
            return load_index(self.settings.index.index_dir, self.embedder.name, self.embedder.dim)
        except IndexNotReady:
            return None

    def build(self, progress: Progress | None = None, install: bool = True) -> FaqIndex:
        """Build the index from the sources, save it as a new version, and (by default) swap it in.
        Vectors of passages whose text did not change are taken from the previous version."""
        with self._build_lock:
            opts, sources = self.settings.index, self.sources
            check_target(opts.index_dir)  # before any work: a user's folder, or one that cannot be made, fails at once
            opts.index_dir.mkdir(parents=True, exist_ok=True)
            corpus = load_corpus(sources)
            glossary = Glossary.for_sources(sources, opts.glossary)
            previous = self._previous()
            if previous is not None and previous.manifest["options"] != build_options(opts):
                previous = None  # another chunking or embedder: nothing can be reused
            index = build_index(corpus, self.embedder, opts, glossary, progress, previous, source_records(sources))
            save_index(index, opts.index_dir)
            if install:
                self._install(index)
            return index

    def needs_build(self) -> str | None:
        """Why the saved index cannot serve the current settings and sources (None when it can)."""
        try:
            manifest = read_manifest(self.settings.index.index_dir)
        except IndexNotReady as exc:
            return str(exc)
        return stale_reason(manifest, self.settings.index, self.sources, self.embedder.name)

    def load_or_build(self, progress: Progress | None = None) -> FaqIndex:
        """Load the saved index; build it first when there is none, when it no longer matches the settings,
        or when one of its files is damaged."""
        if self.needs_build():
            return self.build(progress=progress)
        try:
            return self.load()
        except IndexNotReady as exc:
            log.warning("%s Rebuilding it from %s.", exc, ", ".join(map(str, self.sources)))
            return self.build(progress=progress)

    def retrieve(self, query: str, k: int | None = None, filters: Mapping[str, Any] | None = None) -> SearchResult:
        """The ranking and the decision (``abstained``), the ranking kept even when declining."""
        state = self._state()
        k = k or self.settings.retrieval.default_k
        key = cache_key(state.index.version, normalise_query(query), k, dict(filters or {}))
        cached = self.results.get(key)
        if cached is not None:
            return cached.model_copy(update={"query": query})
        result = self._decide(state, query, k, filters)
        if not result.degraded:  # once the encoder is back, the question gets its full ranking
            self.results.put(key, result)
        return result

    def _decide(self, state: _Loaded, query: str, k: int, filters: Mapping[str, Any] | None) -> SearchResult:
        """Rank, compute the confidence (with the LLM's verdict when it can change the decision), rerank."""
        if smalltalk(query):
            return SearchResult(query=query, abstained=True, results=[], confidence=0.0, smalltalk=True)
        retriever = state.retriever
        ranking = retriever.rank(retriever.prepare(query), filters)
        if not ranking.order:
            retriever.settle(ranking, wanted=False)
            return SearchResult(query=query, abstained=True, results=[], confidence=0.0)
        values = signals(retriever, ranking, self.settings.answer.language)
        model = self.calibration.model(values)  # fitted on the signals this question has
        if retriever.latents is not None and ranking.degraded is None:
            # the question's latent terms are waited for only where they can change the decision
            low, high = self.calibration.latent_band
            retriever.settle(ranking, low <= model.probability(values) <= high)
            values.update(latent_signals(retriever.index, ranking))
            model = self.calibration.model(values)
        confidence, threshold = model.probability(values), self.threshold(model)
        verdict = None
        if state.judge is not None and state.judge.useful(confidence, threshold):
            verdict = state.judge.verdict(query, retriever.hits(ranking, 1)[0])
            confidence = state.judge.adjust(confidence, verdict)
        if self.reranker is not None:
            rerank(retriever, ranking, self.reranker, self.settings.retrieval.rerank_depth)
        return SearchResult(
            query=query,
            abstained=confidence < threshold,
            results=retriever.hits(ranking, k),
            confidence=round(confidence, 4),
            terms=ranking.prepared.lexical_terms,
            own_terms=ranking.prepared.terms,
            judge=verdict,
            degraded=ranking.degraded,
            latent=ranking.latents is not None,
        )

    def in_context(
        self, query: str, history: list[str], k: int | None = None, filters: Mapping[str, Any] | None = None
    ) -> SearchResult:
        """Retrieve for a question asked after others (``history``: the earlier user questions, oldest first).

        An elliptical follow-up is also searched joined to the previous question (or, with an LLM, as the
        LLM rewrites it), and the reading the FAQ answers with more confidence is kept; ``resolved`` then
        says which question was answered."""
        alone = self.retrieve(query, k, filters)
        previous = next((h for h in reversed(history) if h.strip()), None)
        if previous is None or not elliptical(query):
            return alone
        state = self._state()
        rewritten = state.rewriter.rewrite(previous, query) if state.rewriter is not None else None
        candidate = self.retrieve(rewritten or joined(previous, query), k, filters)
        if candidate.confidence <= alone.confidence:
            return alone
        return candidate.model_copy(update={"query": query, "resolved": candidate.query})

    def examples(self, count: int = 3) -> list[str]:
        """Example questions for the page: the setting, else the shortest of the FAQ's own questions."""
        if self.settings.answer.examples or not self.ready:
            return list(self.settings.answer.examples)
        return self.index.short_questions[:count]

    def signals(self, query: str) -> dict[str, float]:
        """The retrieval signals the confidence is computed from (for calibration and diagnosis)."""
        retriever = self._state().retriever
        ranking = retriever.rank(retriever.prepare(query))
        retriever.settle(ranking)
        return signals(retriever, ranking, self.settings.answer.language)

    def entry_link(self, entry_id: str, own_url: str | None, base_url: str | None = None) -> str:
        """An entry's own URL, else its page in this service: under ``RAG_PUBLIC_URL``, else ``base_url``
        (the address the client used)."""
        base = self.settings.answer.public_url or base_url or ""
        return own_url or f"{base.rstrip('/')}/entries/{entry_id}"

    @property
    def address(self) -> str:
        """Where `rag serve` listens: the base of links given outside a request (CLI, MCP over stdio)."""
        return f"http://{self.settings.http.host}:{self.settings.http.port}"

    def link(self, result: SearchResult, base_url: str | None = None) -> SearchResult:
        """Give every hit without a URL of its own its page in this service."""
        hits = [h.model_copy(update={"url": self.entry_link(h.id, h.url, base_url)}) for h in result.results]
        return result.model_copy(update={"results": hits})

    def search(
        self,
        query: str,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        base_url: str | None = None,
        history: list[str] | None = None,
    ) -> SearchResult:
        """What a user is shown: the top entries with links, or none when the service declines."""
        result = self.in_context(query, history, k, filters) if history else self.retrieve(query, k, filters)
        return self.link(result.served(), base_url)

    def answer(self, result: SearchResult) -> Answer:
        """The cited answer for a (linked, served) search result: the LLM's when one is configured."""
        state = self._state()
        if result.smalltalk:
            return smalltalk_answer(result, self.settings.answer)
        return _in_context((state.llm or state.extractive).answer(result), result)

    def ask(
        self,
        query: str,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        base_url: str | None = None,
        history: list[str] | None = None,
    ) -> Answer:
        return self.answer(self.search(query, k, filters, base_url, history))

    def ask_stream(self, result: SearchResult) -> Iterator[str | Reset | Answer]:
        """Pieces of the answer text as they are ready, then the complete :class:`Answer`.
        A :class:`Reset` means: forget the pieces so far, a replacement follows."""
        state = self._state()
        if state.llm is not None and not result.smalltalk:
            for item in state.llm.stream(result):
                yield _in_context(item, result) if isinstance(item, Answer) else item
            return
        answer = self.answer(result)
        yield from pieces(answer.answer)
        yield answer


def _in_context(answer: Answer, result: SearchResult) -> Answer:
    """The answer says which question it answered when a follow-up was read with the one before, and
    whether the search was degraded."""
    update = {"resolved": result.resolved, "degraded": result.degraded}
    return answer.model_copy(update={k: v for k, v in update.items() if v})
