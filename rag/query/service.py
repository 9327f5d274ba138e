"""The one place that wires settings, embedder, index and stages, and the methods every interface calls.

Construction is light; :meth:`RagService.load` (or :meth:`build`) does the heavy work. A rebuilt index
is swapped in as one reference assignment, so a request sees the old index or the new one, never a mix.
The HTTP API, the CLI, MCP, ``rag eval`` and the benchmarks all call :meth:`retrieve`, :meth:`search`,
:meth:`ask` and :meth:`answer` with a :class:`~rag.models.Question`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from rag.channels.handoff import Handoff, asks_for_person
from rag.config import DEFAULT_SOURCE, Settings, is_url
from rag.corpus.curated import Curation
from rag.corpus.sources import content_id, load_corpus
from rag.corpus.web.pages import PageStore, stale
from rag.embedders import Embedder, encoder_threads, make_embedder, model_of
from rag.errors import ApiError, ConfigError, EmbeddingsUnavailable, IndexNotReady
from rag.indexing.build import Progress, build_index, build_options, source_records, stale_reason
from rag.indexing.calibration import Calibration
from rag.indexing.faq_index import FaqIndex
from rag.indexing.manifest import CalibrationRecord, stamp
from rag.indexing.versions import CURATION, check_target, manifest_sources, read_manifest, version_dir
from rag.language.glossary import Glossary
from rag.language.smalltalk import smalltalk
from rag.llm import LLMParts, Reset
from rag.models import Answer, Question, SearchResult
from rag.publishing.selfcalibration import REUSE_CHANGED, SelfCalibration, changed_share
from rag.query.cache import LRUCache, cache_key, normalise_query
from rag.query.conversation import connected, elliptical, joined
from rag.query.decision import Decision
from rag.query.encoder import QueryEncoder
from rag.query.extractive import ExtractiveGenerator, person_answer, pieces, smalltalk_answer
from rag.query.rerank import make_reranker
from rag.query.retriever import HybridRetriever, check_filters

log = logging.getLogger("rag.query.service")
NEVER = "RAG_SELF_CALIBRATION is never"
SHIPPED_FAQ = "the shipped FAQ keeps the fit made on its questions"


@dataclass(frozen=True)
class Stages:
    """The stages serving one index version."""

    index: FaqIndex
    retriever: HybridRetriever
    decision: Decision
    extractive: ExtractiveGenerator
    llm: LLMParts | None


@dataclasses.dataclass
class SyncResult:
    """What ``rag sync`` did: the pages' report, and the version published (when anything changed)."""

    report: Any
    version: str | None
    published: bool = False
    added: list[str] = dataclasses.field(default_factory=list)
    changed: list[str] = dataclasses.field(default_factory=list)
    removed: list[str] = dataclasses.field(default_factory=list)
    embedded: int = 0


class RagService:
    """Search and answer over the configured index."""

    def __init__(
        self, settings: Settings | None = None, embedder: Embedder | None = None, llm: LLMParts | None = None
    ) -> None:
        """``embedder`` and ``llm`` replace the ones the settings name (default: made when first needed)."""
        self.settings = settings or Settings()
        self._embedder = embedder
        self._encoder: QueryEncoder | None = None
        self._stages: Stages | None = None
        self._build_lock = threading.Lock()
        self._llm = llm
        self._llm_made = llm is not None
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

    @property
    def decision(self) -> Decision:
        return self.stages.decision

    def calibration_for(self, index: FaqIndex | None = None) -> Calibration:
        """The confidence's fit: the file named by ``RAG_CALIBRATION``, else the one fitted on the index's FAQ
        (unless ``RAG_SELF_CALIBRATION=never``), else the shipped one."""
        setting = self.settings.retrieval.calibration
        fitted = index.calibration if index is not None and self.settings.index.self_calibration != "never" else None
        return fitted if setting is None and fitted is not None else Calibration.load(setting)

    def _llm_parts(self) -> LLMParts | None:
        """The LLM's stages, made once, when an LLM server is configured."""
        if not self._llm_made:
            self._llm = LLMParts.make(self.settings, ExtractiveGenerator(self.settings.answer))
            self._llm_made = True
        return self._llm

    def close(self) -> None:
        """Release the connections of the LLM client and of an embeddings server's client."""
        if self._llm is not None:
            self._llm.close()
        if self._embedder is not None:
            self._embedder.close()

    def _install(self, index: FaqIndex) -> None:
        settings = self.settings
        retriever = HybridRetriever(index, self.encoder, settings.retrieval)
        llm = self._llm_parts()
        calibration = self.calibration_for(index)
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

    def load(self) -> FaqIndex:
        """Load the embedder and the saved index; raise :class:`IndexNotReady` with advice if it cannot."""
        self.embedder.load()
        if self.reranker is not None:
            self.reranker.load()
        index = FaqIndex.load(self.settings.index.index_dir, self.embedder.name, self._dim())
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
    def sources(self) -> list[Path | str]:
        """The FAQ files: the setting, else the ones the index was built from, else the shipped FAQ."""
        opts = self.settings.index
        return list(opts.sources or manifest_sources(opts.index_dir) or [DEFAULT_SOURCE])

    def _previous(self) -> FaqIndex | None:
        """The index in service or on disk, whose vectors a new build may reuse (None when built otherwise)."""
        previous = self._stages.index if self._stages is not None else None
        if previous is None:
            try:
                previous = FaqIndex.load(self.settings.index.index_dir, self.embedder.name, self.embedder.dim)
            except IndexNotReady:
                return None
        return previous if previous.manifest.options == build_options(self.settings.index) else None

    def build(
        self,
        progress: Progress | None = None,
        install: bool = True,
        calibrating: Progress | None = None,
        seed: FaqIndex | None = None,
        curation: Curation | None = None,
    ) -> FaqIndex:
        """Build the index from the sources, fit its confidence (:meth:`_calibrate`), save it as a new version,
        and (by default) swap it in. Vectors of passages whose text did not change are taken from the previous
        version, or from ``seed`` (an index of another folder, whose confidence fit is never reused).
        ``progress`` counts the passages embedded, ``calibrating`` the questions of the fit. ``curation``: the
        team's decisions to build in (default: those of the version in service)."""
        with self._build_lock:
            opts, sources = self.settings.index, self.sources
            check_target(opts.index_dir)  # before any work: a user's folder, or one that cannot be made, fails at once
            opts.index_dir.mkdir(parents=True, exist_ok=True)
            pages = PageStore.read(opts.index_dir)
            corpus = load_corpus(sources, pages)
            glossary = Glossary.for_sources(sources, opts.glossary)
            previous = seed if seed is not None and seed.manifest.options == build_options(opts) else self._previous()
            curation = self.curation if curation is None else curation
            records = source_records(sources, pages)
            index = build_index(corpus, self.embedder, opts, glossary, progress, previous, records, curation)
            own = previous if seed is None else None
            index.calibration, index.manifest.calibration = self._calibrate(index, own, sources, calibrating)
            index.save(opts.index_dir)
            if install:
                self._install(index)
            return index

    def fetch_pages(self, progress: Progress | None = None) -> Any:
        """Read the web sources into the page store beside the index (no index is built); the pages' report."""
        from rag.publishing.web_sync import Syncer

        web = [s for s in self.sources if is_url(s)]
        if not web:
            raise ConfigError("no web source to sync: RAG_SOURCES (or --source) names no https:// page or sitemap")
        return Syncer(self.settings.web, self.settings.index.index_dir).sync(web, progress)

    def source_report(self) -> list[Any]:
        """The sources' quality report (:func:`~rag.corpus.quality.check`) on the entries of the FAQ in service."""
        from rag.corpus.quality import check

        pages = PageStore.read(self.settings.index.index_dir)
        return check(self.index.entries, pages, self.settings.web.stale_after_days)

    def sync(self, progress: Progress | None = None, building: Progress | None = None) -> SyncResult:
        """Read the web sources again (:class:`~rag.publishing.web_sync.Syncer`) and, when what they give changed,
        publish a new version (only the changed passages embedded) and swap it in; what was added, changed and
        removed."""
        previous = self._stages.index if self._stages is not None else self._previous()
        before = {e.id: content_id(e.question, e.answer) for e in previous.entries} if previous else {}
        report = self.fetch_pages(progress)
        reason = self.needs_build()
        if reason is None:
            return SyncResult(report=report, version=previous.version if previous else None)
        index = self.build(progress=building)
        after = {e.id: content_id(e.question, e.answer) for e in index.entries}
        return SyncResult(
            report=report,
            version=index.version,
            published=True,
            added=sorted(set(after) - set(before)),
            removed=sorted(set(before) - set(after)),
            changed=sorted(i for i in set(after) & set(before) if after[i] != before[i]),
            embedded=index.manifest.counts.vectors - index.manifest.counts.reused,
        )

    @property
    def curation(self) -> Curation:
        """The team's decisions built into the version in service (or, before one is loaded, the published one)."""
        if self._stages is not None:
            return self._stages.index.curation
        path = version_dir(self.settings.index.index_dir) / CURATION
        try:
            return Curation.read(path) if path.exists() else Curation()
        except ConfigError as exc:
            log.warning("%s: building without the curated questions of the version in service", exc)
            return Curation()

    def _calibrate(
        self, index: FaqIndex, previous: FaqIndex | None, sources: list[Path | str], progress: Progress | None
    ) -> tuple[Calibration | None, CalibrationRecord]:
        """As ``RAG_SELF_CALIBRATION`` says: the confidence fitted on the FAQ, the previous version's fit while
        little of the FAQ changed, or none (the shipped fit), with how it was made."""
        unfitted = self._unfitted(sources)
        if unfitted:
            return None, CalibrationRecord(kind="shipped", reason=unfitted)
        if previous is not None and previous.calibration is not None and previous.manifest.calibration is not None:
            share = changed_share(previous, index)
            if share <= REUSE_CHANGED:
                reason = f"{share:.0%} of the entries changed: the fit of version {previous.version} still holds"
                update = {"kind": "reused", "reason": reason, "from_version": previous.version}
                return previous.calibration, previous.manifest.calibration.model_copy(update=update)
        return self.self_calibration().fit(index, progress)

    def _unfitted(self, sources: list[Path | str]) -> str | None:
        """Why the confidence is not to be fitted on these sources (None: it is)."""
        mode = self.settings.index.self_calibration
        if mode == "never":
            return NEVER
        if mode == "auto" and [s if is_url(s) else Path(s).resolve() for s in sources] == [DEFAULT_SOURCE.resolve()]:
            return SHIPPED_FAQ
        return None

    def self_calibration(self) -> SelfCalibration:
        """The fitting of the confidence on a FAQ, with this service's encoder, retrieval settings and prior fit."""
        settings, llm = self.settings, self._llm_parts()
        prior = Calibration.load(settings.retrieval.calibration)
        rewordings = llm.rewordings if llm is not None else None
        return SelfCalibration(self.embedder, settings.retrieval, prior, settings.index.calibration_entries, rewordings)

    def recalibrate(self, progress: Progress | None = None) -> FaqIndex:
        """Fit the confidence on the index in service again and publish it as a new version (``rag calibrate
        --auto``); the vectors are those of the version in service."""
        with self._build_lock:
            index = self.index
            calibration, record = self.self_calibration().fit(index, progress)
            version, created = stamp()
            manifest = index.manifest.model_copy(
                update={"version": version, "created_at": created, "calibration": record}
            )
            fitted = dataclasses.replace(index, manifest=manifest, calibration=calibration)
            fitted.save(self.settings.index.index_dir)
            self._install(fitted)
            return fitted

    def needs_build(self) -> str | None:
        """Why the saved index cannot serve the current settings and sources (None when it can)."""
        try:
            manifest = read_manifest(self.settings.index.index_dir)
        except IndexNotReady as exc:
            return str(exc)
        stale = stale_reason(manifest, self.settings.index, self.sources, self.embedder.name)
        record, unfitted = manifest.calibration, self._unfitted(self.sources)
        left = record is None or (record.kind == "shipped" and record.reason in (NEVER, SHIPPED_FAQ))
        if stale is None and left != bool(unfitted):
            return "the confidence is to be fitted on the FAQ otherwise (RAG_SELF_CALIBRATION)"
        return stale

    def load_or_build(self, progress: Progress | None = None) -> FaqIndex:
        """Load the saved index; build it first when there is none, when it no longer matches the settings,
        or when one of its files is damaged. Web sources never read yet are read first."""
        pages = PageStore.read(self.settings.index.index_dir)
        if any(is_url(s) and not pages.of_source(str(s)) for s in self.sources):
            report = self.fetch_pages()
            for problem in report.problems:
                log.warning("%s", problem)
        if self.needs_build():
            return self.build(progress=progress)
        try:
            return self.load()
        except IndexNotReady as exc:
            log.warning("%s Rebuilding it from %s.", exc, ", ".join(map(str, self.sources)))
            return self.build(progress=progress)

    def check(self, question: Question) -> Question:
        """The question with ``k`` filled in; a ``k`` out of range or a filter naming a field no entry has is
        refused, whatever the question."""
        retrieval = self.settings.retrieval
        k = retrieval.default_k if question.k is None else question.k
        if not 1 <= k <= retrieval.max_k:
            raise ApiError(422, "invalid_k", f"k must be between 1 and {retrieval.max_k}")
        check_filters(self.index, question.filters)
        return question if k == question.k else question.model_copy(update={"k": k})

    def retrieve(self, question: Question) -> SearchResult:
        """The ranking and the decision (``abstained``), the ranking kept even when declining."""
        question = self.check(question)
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
        return self._rank_and_decide(self.stages, self.check(question), all_signals=True)

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

    def in_context(self, question: Question) -> SearchResult:
        """Retrieve for a question asked after others (``history``: the earlier user questions, oldest first).

        An elliptical follow-up is also searched joined to the previous question (or, with an LLM, as the
        LLM rewrites it), and the reading the FAQ answers with more confidence is kept; ``resolved`` then
        says which question was answered."""
        alone = self.retrieve(question)
        previous = next((h for h in reversed(question.history) if h.strip()), None)
        if previous is None or not elliptical(question.query):
            return alone
        llm = self.stages.llm
        rewritten = llm.rewriter.rewrite(previous, question.query) if llm is not None else None
        reading = question.model_copy(update={"query": rewritten or joined(previous, question.query)})
        candidate = self.retrieve(reading)
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
        (the address the client used)."""
        base = self.settings.answer.public_url or base_url or ""
        return own_url or f"{base.rstrip('/')}/entries/{entry_id}"

    @property
    def address(self) -> str:
        """Where `rag serve` listens: the base of links given outside a request (CLI, MCP over stdio)."""
        return f"http://{self.settings.http.host}:{self.settings.http.port}"

    def link(self, result: SearchResult, base_url: str | None = None) -> SearchResult:
        """Give every hit without a URL of its own its page in this service."""
        after = self.settings.web.stale_after_days
        hits = [
            h.model_copy(
                update={
                    "url": self.entry_link(h.id, h.url, base_url),
                    "stale": stale(h.checked_on, after) if h.checked_on else None,
                }
            )
            for h in result.results
        ]
        return result.model_copy(update={"results": hits})

    def search(self, question: Question, base_url: str | None = None) -> SearchResult:
        """What a user is shown: the top entries with links, or none when the service declines; a follow-up
        is read with the questions before it."""
        result = self.in_context(question) if question.history else self.retrieve(question)
        return self.link(result.served(), base_url)

    def answer(self, result: SearchResult) -> Answer:
        """The cited answer for a (linked, served) search result: the LLM's when one is configured."""
        stages = self.stages
        if result.smalltalk:
            return smalltalk_answer(result, self.settings.answer)
        if result.person and result.abstained:
            answer = person_answer(result, self.settings.answer, bool(self.settings.channels.handoff_webhook))
            return self._offered(answer, result)
        drafter = stages.llm.drafter if stages.llm is not None else stages.extractive
        return self._offered(_in_context(drafter.answer(result), result), result)

    def _offered(self, answer: Answer, result: SearchResult) -> Answer:
        """The answer with the handoff it offers: a declined question, or a request for a person."""
        if not (result.person or answer.abstained) or result.smalltalk:
            return answer
        support = self.settings.answer.support_url or None
        form = bool(self.settings.channels.handoff_webhook)
        offer = Handoff(reason="asked" if result.person else "declined", support_url=support, form=form)
        return answer.model_copy(update={"handoff": offer})

    def ask(self, question: Question, base_url: str | None = None) -> Answer:
        return self.answer(self.search(question, base_url))

    def ask_stream(self, result: SearchResult) -> Iterator[str | Reset | Answer]:
        """Pieces of the answer text as they are ready, then the complete :class:`Answer`.
        A :class:`Reset` means: forget the pieces so far, a replacement follows."""
        llm = self.stages.llm
        if llm is not None and not (result.smalltalk or result.abstained):
            for item in llm.drafter.stream(result):
                yield self._offered(_in_context(item, result), result) if isinstance(item, Answer) else item
            return
        answer = self.answer(result)
        yield from pieces(answer.answer)
        yield answer


def _in_context(answer: Answer, result: SearchResult) -> Answer:
    """The answer says which question it answered when a follow-up was read with the one before, and
    whether the search was degraded."""
    update = {"resolved": result.resolved, "degraded": result.degraded}
    return answer.model_copy(update={k: v for k, v in update.items() if v})
