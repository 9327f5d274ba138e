"""The only writer of index versions: builds from the sources (only changed passages embedded), fits the
confidence on the FAQ, reads the web sources again, and publishes — each version built from a parent, and
published only if the parent is still the one in service (compare-and-swap), so that two replicas building at
once never publish one over the other from older sources. The team's curated decisions are read from the store
when one is given, so a decision kept while a build failed is in every later version."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.config import DEFAULT_SOURCE, is_url
from rag.corpus.curated import Curation
from rag.corpus.entries import Corpus, content_id
from rag.corpus.sources import load_corpus
from rag.corpus.web.pages import PageStore
from rag.egress import EgressPolicy
from rag.errors import ConfigError, IndexNotReady, StoreUnavailable
from rag.indexing.build import Progress, build_index, build_options, source_records, stale_reason
from rag.indexing.calibration import Calibration
from rag.indexing.faq_index import FaqIndex
from rag.indexing.manifest import CalibrationRecord, stamp
from rag.indexing.versions import CURATION, check_target, current_version, manifest_sources, read_manifest, version_dir
from rag.language.glossary import Glossary
from rag.models import Entry
from rag.publishing.rewordings import Rewordings
from rag.publishing.selfcalibration import REUSE_CHANGED, SelfCalibration, changed_share
from rag.query.service import QueryService

log = logging.getLogger("rag.publishing")
NEVER = "RAG_SELF_CALIBRATION is never"
SHIPPED_FAQ = "the shipped FAQ keeps the fit made on its questions"
CurationSource = Callable[[], "Curation | None"]  # the team's decisions as the store holds them (None: no store)


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


class Publisher:
    """Builds and publishes the versions ``query`` serves (each swapped in once published)."""

    def __init__(self, query: QueryService, curation: CurationSource | None = None) -> None:
        """``curation``: the team's decisions from the store (default: those of the version in service)."""
        self.query, self.settings, self.curation_source = query, query.settings, curation
        self._lock = threading.Lock()  # one build at a time in this process; across processes, the parent's check

    @property
    def sources(self) -> list[Path | str]:
        """The FAQ files: the setting, else the ones the index was built from, else the shipped FAQ."""
        opts = self.settings.index
        return list(opts.sources or manifest_sources(opts.index_dir) or [DEFAULT_SOURCE])

    def curation(self) -> Curation:
        """The team's decisions to build in: the store's; the store away, those of the version in service."""
        if self.curation_source is not None:
            try:
                found = self.curation_source()
                if found is not None:
                    return found
            except StoreUnavailable as exc:
                log.warning("%s: building with the curated questions of the version in service", exc)
        if self.query.ready:
            return self.query.index.curation
        path = version_dir(self.settings.index.index_dir) / CURATION
        try:
            return Curation.read(path) if path.exists() else Curation()
        except ConfigError as exc:
            log.warning("%s: building without the curated questions of the version in service", exc)
            return Curation()

    def _previous(self) -> FaqIndex | None:
        """The version in service or on disk, whose vectors a new build may reuse (None when built otherwise)."""
        previous = self.query.index if self.query.ready else None
        if previous is None:
            embedder = self.query.embedder
            try:
                previous = FaqIndex.load(self.settings.index.index_dir, embedder.name, embedder.dim)
            except IndexNotReady:
                return None
        return previous if previous.manifest.options == build_options(self.settings.index) else None

    def build(
        self,
        progress: Progress | None = None,
        install: bool = True,
        calibrating: Progress | None = None,
        seed: FaqIndex | None = None,
    ) -> FaqIndex:
        """Build a version from the sources, fit its confidence, publish it if the version in service is still the
        one it was built from (:class:`~rag.errors.ParentChanged` otherwise), and (by default) serve it. Vectors
        of passages whose text did not change are taken from the previous version, or from ``seed`` (an index
        of another folder, whose fit is never reused). ``progress`` counts the passages embedded,
        ``calibrating`` the questions of the fit."""
        with self._lock:
            return self._build(progress, install, calibrating, seed)

    def _build(
        self, progress: Progress | None, install: bool, calibrating: Progress | None, seed: FaqIndex | None
    ) -> FaqIndex:
        opts, sources = self.settings.index, self.sources
        check_target(opts.index_dir)  # before any work: a user's folder, or one that cannot be made, fails at once
        opts.index_dir.mkdir(parents=True, exist_ok=True)
        parent = current_version(opts.index_dir)
        pages = PageStore.read(opts.index_dir)
        corpus = load_corpus(sources, pages)
        glossary = Glossary.for_sources(sources, opts.glossary)
        previous = seed if seed is not None and seed.manifest.options == build_options(opts) else self._previous()
        records = source_records(sources, pages)
        embedder = self.query.embedder
        index = build_index(corpus, embedder, opts, glossary, progress, previous, records, self.curation())
        own = previous if seed is None else None
        index.calibration, index.manifest.calibration = self._calibrate(index, own, sources, calibrating)
        index.save(opts.index_dir, parent=parent)
        if install:
            self.query.install(index)
        return index

    def fetch_pages(self, progress: Progress | None = None) -> Any:
        """Read the web sources into the page store beside the index (no index is built); the pages' report."""
        from rag.corpus.web.sync import Syncer

        web = [s for s in self.sources if is_url(s)]
        if not web:
            raise ConfigError("no web source to sync: RAG_SOURCES (or --source) names no https:// page or sitemap")
        policy = EgressPolicy.from_settings(self.settings)
        return Syncer(self.settings.web, self.settings.index.index_dir, policy=policy).sync(web, progress)

    def source_report(self) -> list[Any]:
        """The sources' quality report (:func:`~rag.corpus.quality.check`) on the entries in service."""
        from rag.corpus.quality import check

        pages = PageStore.read(self.settings.index.index_dir)
        return check(self.query.index.entries, pages, self.settings.web.stale_after_days)

    def sync(self, progress: Progress | None = None, building: Progress | None = None) -> SyncResult:
        """Read the web sources again and, when what they give changed, publish a new version (only the changed
        passages embedded) and serve it; what was added, changed and removed."""
        previous = self.query.index if self.query.ready else self._previous()
        before = {e.id: content_id(e.question, e.answer) for e in previous.entries} if previous else {}
        report = self.fetch_pages(progress)
        if self.needs_build() is None:
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
        settings, llm = self.settings, self.query.llm
        prior = Calibration.load(settings.retrieval.calibration)
        faq = settings.answer.faq_name
        written = Rewordings(llm.client, llm.prompts.rewordings, settings.llm, faq) if llm is not None else None
        entries = settings.index.calibration_entries
        return SelfCalibration(self.query.embedder, settings.retrieval, prior, entries, written, self._rebuild)

    def _rebuild(self, index: FaqIndex, entries: list[Entry]) -> FaqIndex:
        """An index of ``entries`` (``index``'s, some edited), in memory, its unchanged passages' vectors reused."""
        return build_index(Corpus(entries), self.query.embedder, self.settings.index, index.glossary, None, index)

    def recalibrate(self, progress: Progress | None = None) -> FaqIndex:
        """Fit the confidence on the version in service again and publish it as a new version (``rag calibrate
        --auto``); the vectors are those of the version in service."""
        with self._lock:
            return self._recalibrate(progress)

    def _recalibrate(self, progress: Progress | None) -> FaqIndex:
        index = self.query.index
        calibration, record = self.self_calibration().fit(index, progress)
        version, created = stamp()
        manifest = index.manifest.model_copy(update={"version": version, "created_at": created, "calibration": record})
        fitted = dataclasses.replace(index, manifest=manifest, calibration=calibration)
        fitted.save(self.settings.index.index_dir, parent=index.version)
        self.query.install(fitted)
        return fitted

    def needs_build(self) -> str | None:
        """Why the saved index cannot serve the current settings and sources (None when it can)."""
        try:
            manifest = read_manifest(self.settings.index.index_dir)
        except IndexNotReady as exc:
            return str(exc)
        stale = stale_reason(manifest, self.settings.index, self.sources, self.query.embedder.name)
        record, unfitted = manifest.calibration, self._unfitted(self.sources)
        left = record is None or (record.kind == "shipped" and record.reason in (NEVER, SHIPPED_FAQ))
        if stale is None and left != bool(unfitted):
            return "the confidence is to be fitted on the FAQ otherwise (RAG_SELF_CALIBRATION)"
        return stale

    def load_or_build(self, progress: Progress | None = None) -> FaqIndex:
        """Serve the saved index; build it first when there is none, when it no longer matches the settings,
        or when one of its files is damaged. Web sources never read yet are read first."""
        pages = PageStore.read(self.settings.index.index_dir)
        if any(is_url(s) and not pages.of_source(str(s)) for s in self.sources):
            report = self.fetch_pages()
            for problem in report.problems:
                log.warning("%s", problem)
        if self.needs_build():
            return self.build(progress=progress)
        try:
            return self.query.load()
        except IndexNotReady as exc:
            log.warning("%s Rebuilding it from %s.", exc, ", ".join(map(str, self.sources)))
            return self.build(progress=progress)
