"""The query side: what every channel asks of one FAQ. It reads index versions and never writes one (that is
:class:`rag.publishing.publisher.Publisher`'s job).

Construction is light; :meth:`QueryService.load` (or :meth:`install`, given a version the publisher built) does
the heavy work. A new version is swapped in as one reference assignment, so a request sees the old version or
the new one, never a mix. The HTTP API, the channels, the CLI, ``rag eval`` and the benchmarks all call
:meth:`retrieve`, :meth:`search` and :meth:`answer` with a :class:`~rag.models.Question`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from rag.answer.extractive import ExtractiveGenerator, person_answer, pieces, smalltalk_answer
from rag.config import Settings
from rag.corpus.web.pages import CheckedDates
from rag.embedders import Embedder, encoder_threads, make_embedder, model_of
from rag.errors import ApiError, EmbeddingsUnavailable, IndexNotReady
from rag.indexing.calibration import Calibration
from rag.indexing.faq_index import FaqIndex
from rag.language.smalltalk import asks_for_person, smalltalk
from rag.llm import LLMParts, Reset
from rag.models import Answer, Question, SearchResult
from rag.query.cache import LRUCache, cache_key, normalise_query
from rag.query.conversation import connected, elliptical, joined
from rag.query.decision import Decision
from rag.query.encoder import QueryEncoder
from rag.query.rerank import make_reranker
from rag.query.retriever import HybridRetriever, check_filters

log = logging.getLogger("rag.query.service")


@dataclass(frozen=True)
class Stages:
    """The stages serving one index version."""

    index: FaqIndex
    retriever: HybridRetriever
    decision: Decision
    extractive: ExtractiveGenerator
    llm: LLMParts | None


def listen_address(settings: Settings) -> str:
    """Where `rag serve` listens: the base of links given outside a request (CLI, MCP over stdio, Chatwoot)."""
    return f"http://{settings.http.host}:{settings.http.port}"


def fit_in_force(settings: Settings, index: FaqIndex | None) -> Calibration:
    """The confidence's fit: the file named by ``RAG_CALIBRATION``, else the one fitted on the index's FAQ
    (unless ``RAG_SELF_CALIBRATION=never``), else the shipped one."""
    setting = settings.retrieval.calibration
    fitted = index.calibration if index is not None and settings.index.self_calibration != "never" else None
    return fitted if setting is None and fitted is not None else Calibration.load(setting)


class QueryService:
    """Search and answer over the index version in service."""

    def __init__(
        self,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        llm: LLMParts | None = None,
        encoder: QueryEncoder | None = None,
    ) -> None:
        """``embedder`` and ``llm`` replace the ones the settings name (default: made when first needed); an
        ``encoder`` shared with other services (its cache and batches too) gives the embedder."""
        self.settings = settings or Settings()
        self._embedder = encoder.embedder if encoder is not None else embedder
        self._owns_embedder = self._embedder is None  # one given is closed by whoever made it
        self._encoder: QueryEncoder | None = encoder
        self._stages: Stages | None = None
        self._lock = threading.Lock()
        self._llm = llm
        self._llm_made = llm is not None
        self.reranker = make_reranker(self.settings.retrieval.reranker)
        self.results: LRUCache[SearchResult] = LRUCache(self.settings.retrieval.cache_size)
        self.checked = CheckedDates(self.settings.index.index_dir, self.settings.web.stale_after_days)

    @property
    def embedder(self) -> Embedder:
        with self._lock:
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
    def llm(self) -> LLMParts | None:
        """The LLM's stages, made once, when an LLM server is configured."""
        if not self._llm_made:
            self._llm = LLMParts.make(self.settings, ExtractiveGenerator(self.settings.answer))
            self._llm_made = True
        return self._llm

    @property
    def ready(self) -> bool:
        return self._stages is not None

    @property
    def stages(self) -> Stages:
        """The stages in service; :class:`IndexNotReady` until an index is loaded."""
        stages = self._stages
        if stages is None:
            raise IndexNotReady("the index is not loaded yet. Run `rag index` if it was never built.")
        return stages

    @property
    def index(self) -> FaqIndex:
        return self.stages.index

    def close(self) -> None:
        """Release the connections of the LLM client and of an embeddings server's client."""
        if self._llm is not None:
            self._llm.close()
        if self._embedder is not None and self._owns_embedder:
            self._embedder.close()

    def install(self, index: FaqIndex) -> None:
        """Serve ``index`` from now on (a version loaded from disk, or one the publisher just built)."""
        settings = self.settings
        retriever = HybridRetriever(index, self.encoder, settings.retrieval)
        llm = self.llm
        calibration = fit_in_force(settings, index)
        calibrated = not calibration.embedder or model_of(calibration.embedder) == model_of(self.embedder.name)
        if not calibrated:
            log.warning(
                "the confidence was calibrated for %s, not %s: questions are never declined; run `rag calibrate`",
                calibration.embedder,
                self.embedder.name,
            )
        has_latents = self.encoder.has_latents and index.latents is not None and retriever.encodes
        decision = Decision(
            calibration,
            min_confidence=settings.retrieval.min_confidence,
            suggest_confidence=settings.retrieval.suggest_confidence,
            calibrated=calibrated,
            language=settings.answer.language,
            latents=self.encoder if has_latents else None,
            judge=llm.judge if llm is not None else None,
            reranker=self.reranker,
            rerank_depth=settings.retrieval.rerank_depth,
            scope_temperature=settings.retrieval.out_of_scope_temperature,
        )
        self._stages = Stages(index, retriever, decision, ExtractiveGenerator(settings.answer), llm)
        self.results.clear()  # results of the previous index must not be served from the new one
        self.checked.forget()

    def load(self) -> FaqIndex:
        """Load the embedder and the published version; :class:`IndexNotReady` with advice if it cannot."""
        self.embedder.load()
        if self.reranker is not None:
            self.reranker.load()
        index = FaqIndex.load(self.settings.index.index_dir, self.embedder.name, self._dim())
        self.install(index)
        return index

    def _dim(self) -> int | None:
        """The embedder's vector size; None while an embeddings server cannot say (questions get BM25)."""
        try:
            return self.embedder.dim
        except EmbeddingsUnavailable as exc:
            log.warning("%s; serving with BM25 alone until it answers", exc)
            return None

    def _check(self, question: Question) -> Question:
        """The question with ``k`` filled in; a ``k`` out of range or a filter naming a field no entry has is
        refused, whatever the question."""
        retrieval = self.settings.retrieval
        k = retrieval.default_k if question.k is None else question.k
        if not 1 <= k <= retrieval.max_k:
            raise ApiError(422, "invalid_k", f"k must be between 1 and {retrieval.max_k}")
        check_filters(self.index, question.filters)
        return question if k == question.k else question.model_copy(update={"k": k})

    def retrieve(self, question: Question) -> SearchResult:
        """The ranking and the decision (``abstained``), the ranking kept even when declining. A question asked
        after others (``history``) is read with them when it leans on them (:meth:`_in_context`)."""
        alone = self._retrieve(question)
        return self._in_context(question, alone) if question.history else alone

    def _retrieve(self, question: Question) -> SearchResult:
        question = self._check(question)
        stages = self.stages
        key = cache_key(stages.index.version, normalise_query(question.query), question.k, question.filters)
        cached = self.results.get(key)
        if cached is not None:
            return cached.model_copy(update={"query": question.query})
        result = self._decide(stages, question)
        if not result.degraded:  # once the encoder is back, the question gets its full ranking
            self.results.put(key, result)
        return result

    def diagnose(self, question: Question) -> SearchResult:
        """The ranking and the confidence of any text, small talk included, with every signal the confidence
        can read (``signals``) and without the LLM's verdict, uncached: for fitting a calibration."""
        return self._rank_and_decide(self.stages, self._check(question), all_signals=True)

    def _decide(self, stages: Stages, question: Question) -> SearchResult:
        if asks_for_person(question.query):  # still searched: the FAQ may say how to reach its team
            return self._rank_and_decide(stages, question).model_copy(update={"person": True})
        if smalltalk(question.query):
            return SearchResult(query=question.query, abstained=True, results=[], confidence=0.0, smalltalk=True)
        return self._rank_and_decide(stages, question)

    def _rank_and_decide(self, stages: Stages, question: Question, all_signals: bool = False) -> SearchResult:
        rank = partial(stages.retriever.rank, filters=question.filters)
        prepared = stages.retriever.prepare(question.query)
        return stages.decision.decide(prepared, rank, question.k or self.settings.retrieval.default_k, all_signals)

    def _in_context(self, question: Question, alone: SearchResult) -> SearchResult:
        """An elliptical follow-up (``history``: the earlier user questions, oldest first) is also searched joined
        to the previous question (or, with an LLM, as the LLM rewrites it), and the reading the FAQ answers with
        more confidence is kept; ``resolved`` then says which question was answered."""
        previous = next((h for h in reversed(question.history) if h.strip()), None)
        if previous is None or not elliptical(question.query):
            return alone
        llm = self.stages.llm
        rewritten = llm.rewriter.rewrite(previous, question.query) if llm is not None else None
        reading = question.model_copy(update={"query": rewritten or joined(previous, question.query), "history": []})
        candidate = self._retrieve(reading)
        if candidate.confidence <= alone.confidence or not self._leans_on(question.query, candidate):
            return alone
        return candidate.model_copy(update={"query": question.query, "resolved": candidate.query})

    def _leans_on(self, text: str, reading: SearchResult) -> bool:
        """Whether a short message is a follow-up that the joined ``reading`` answers: it opens with a connector
        (« Et pour la radiologie ? »), or the entry found holds one of its own words (« Où voir le détail par
        couloir ? ») — otherwise it is a new question (« la recette de la tarte tatin ? »), read alone."""
        if connected(text) or not reading.results:
            return connected(text)
        terms = set(self.stages.retriever.prepare(text).terms)
        index = self.index
        rows = index.entry_chunks[index.by_id[reading.results[0].id]]
        found = frozenset().union(*(index.chunk_terms(int(row)) for row in rows))
        return not terms or bool(terms & found)

    def examples(self, count: int = 3) -> list[str]:
        """Example questions for the page: the setting, else the shortest of the FAQ's own questions."""
        if self.settings.answer.examples or not self.ready:
            return list(self.settings.answer.examples)
        return self.index.short_questions[:count]

    def entry_link(self, entry_id: str, own_url: str | None, base_url: str | None = None) -> str:
        """An entry's own URL, else its page in this service: under ``RAG_PUBLIC_URL``, else ``base_url``
        (the address the client used; :func:`listen_address` outside a request)."""
        base = self.settings.answer.public_url or base_url or ""
        return own_url or f"{base.rstrip('/')}/entries/{entry_id}"

    def link(self, result: SearchResult, base_url: str | None = None) -> SearchResult:
        """Every hit with its link (its own URL, else its page in this service) and, for the entries of web
        pages, the day their page was last checked and whether that is too long ago."""
        hits = []
        for hit in result.results:
            checked = self.checked.of(hit.id, hit.checked_on)
            update = {"url": self.entry_link(hit.id, hit.url, base_url), "checked_on": checked}
            hits.append(hit.model_copy(update=update | {"stale": self.checked.stale(checked)}))
        return result.model_copy(update={"results": hits})

    def search(self, question: Question, base_url: str | None = None) -> SearchResult:
        """What a user is shown: the top entries with links, or none when the service declines; a follow-up
        is read with the questions before it."""
        return self.link(self.retrieve(question).served(), base_url)

    def answer(self, result: SearchResult) -> Answer:
        """The cited answer for a (linked, served) search result: the LLM's when one is configured."""
        stages = self.stages
        if result.smalltalk:
            return smalltalk_answer(result, self.settings.answer)
        if result.person and result.abstained:
            return person_answer(result, self.settings.answer, bool(self.settings.channels.handoff_webhook))
        drafter = stages.llm.drafter if stages.llm is not None else stages.extractive
        return _in_context(drafter.answer(result), result)

    def ask(self, question: Question, base_url: str | None = None) -> Answer:
        return self.answer(self.search(question, base_url))

    def ask_stream(self, result: SearchResult) -> Iterator[str | Reset | Answer]:
        """Pieces of the answer text as they are ready, then the complete :class:`Answer`.
        A :class:`Reset` means: forget the pieces so far, a replacement follows."""
        llm = self.stages.llm
        if llm is not None and not (result.smalltalk or result.abstained):
            for item in llm.drafter.stream(result):
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
