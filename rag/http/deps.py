"""What routes share, given through FastAPI dependencies: the app's state, the service, access checks."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any

from fastapi import Depends, Request

from rag.channels.chatwoot import ChatwootBot
from rag.channels.handoff import HandoffNotifier, Transcript
from rag.channels.widget import WidgetTokens, secret_for
from rag.config import Settings, is_url
from rag.corpus.web.pages import PageStore
from rag.errors import ApiError, RagError, StoreUnavailable
from rag.http.metrics import Metrics
from rag.http.schemas import AskResponse
from rag.http.security import Access, LimitStore
from rag.indexing.versions import version_dir
from rag.models import Answer, SearchResult
from rag.publishing.gap_resolution import Curator
from rag.publishing.gaps import GapFinder
from rag.publishing.reindex import Reindexer
from rag.query.service import RagService
from rag.store.feedback import FeedbackStore, make_store
from rag.store.recorder import make_recorder, new_answer_id

log = logging.getLogger("rag.api")


@dataclass
class AppState:
    """Everything one app instance holds; routes reach it through :data:`StateDep`."""

    settings: Settings
    service: RagService
    metrics: Metrics = field(default_factory=Metrics)
    store: FeedbackStore | None = None
    reindexer: Reindexer | None = None
    load_error: str | None = None
    last_sync: dict[str, Any] | None = None  # when the web sources were last synced here, and what it found
    _web_state: str | None = None
    _web_checked: float = -1e9

    def __post_init__(self) -> None:
        http = self.settings.http
        limits = LimitStore(http.redis_url or "memory://", fail_open=http.rate_limit_fail == "open")
        channels = self.settings.channels
        self.tokens = WidgetTokens(secret_for(channels.widget_secret, http.api_keys))
        self.access = Access(
            http.api_keys,
            http.admin_token,
            http.rate_limit_per_minute,
            http.auth_failures_per_minute,
            limits,
            self.tokens,
        )
        hook = channels.handoff_webhook
        self.handoffs = (
            HandoffNotifier(hook, channels.handoff_timeout, faq_name=self.settings.answer.faq_name) if hook else None
        )
        self.store = self.store or make_store(self.settings)
        self.recorder = make_recorder(self.settings, self.store)
        self.reindexer = self.reindexer or Reindexer(self.service, self.index_loaded)
        self.metrics.watch(self.recorder, limits)
        self.redis = limits.state  # the last look at Redis (it is a network call: on a schedule of its own)

    @cached_property
    def holder(self) -> str:
        """This process, as it takes leases in the store."""
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    @cached_property
    def chatwoot(self) -> ChatwootBot | None:
        """The Chatwoot agent bot, when Chatwoot is configured."""
        return ChatwootBot.from_settings(
            self.settings, self.service, self._log_chatwoot, self._count_chatwoot, first=self._first_delivery
        )

    def _first_delivery(self, key: str) -> bool:
        """Whether no replica took this Chatwoot delivery yet (a lease of a day in the store); the store away,
        this process's memory alone decides."""
        try:
            return self.store.lease(f"chatwoot:{key}", self.holder, 86400)
        except StoreUnavailable:
            return True

    def _log_chatwoot(self, answer: Answer, channel: str) -> None:
        self.log(new_answer_id(), answer, channel)
        if answer.handoff is not None:
            self.metrics.handoffs.labels(answer.handoff.reason, "offered").inc()

    def _count_chatwoot(self, outcome: str) -> None:
        self.metrics.chatwoot.labels(outcome).inc()

    @cached_property
    def curator(self) -> Curator:
        """The gap report and curation, on this app's store and service."""
        finder = GapFinder(self.service.embedder, self.settings.gaps, self.settings.index.embed_batch_size)
        return Curator(self.service, self.store, finder, self.settings.golden_path)

    def start(self) -> None:
        """Open the store (it connects in the background) and start recording; then look at the dependencies."""
        try:
            self.store.open()
        except StoreUnavailable as exc:  # the recorder keeps what it cannot write and tries again
            log.warning("%s", exc)
        self.recorder.start()
        self.check_dependencies()

    def stop(self) -> None:
        self.recorder.close()
        self.store.close()
        if self.handoffs is not None:
            self.handoffs.close()
        if "chatwoot" in self.__dict__ and self.chatwoot is not None:  # made only when it was used
            self.chatwoot.close()

    @property
    def dependencies(self) -> dict[str, str]:
        """Each dependency's state: the store's and the embeddings server's as they are now (nothing is asked),
        Redis's as last looked at (:meth:`check_dependencies`)."""
        store = self.recorder.state
        if store == "ok" and not getattr(self.store, "ready", True):
            store = "connecting"
        embeddings = "degraded" if self.service.embedder.resting else "ok"
        states = {"store": store, "redis": self.redis, "embeddings": embeddings}
        web = self.web_state()
        return states | {"web_sources": web} if web else states

    def web_state(self) -> str | None:
        """The FAQ's website as the last sync found it (None without web sources): ``ok``, or how many of its
        pages failed (their entries are still served). Looked at on disk at most every few seconds."""
        now = time.monotonic()
        if now - self._web_checked > 5.0:
            self._web_checked = now
            self._web_state = self._look_at_web_sources()
        return self._web_state

    def _look_at_web_sources(self) -> str | None:
        if not any(is_url(s) for s in self.service.sources):
            return None
        try:
            pages = PageStore.read(self.settings.index.index_dir).pages.values()
        except RagError as exc:
            return str(exc)
        failing = sum(1 for page in pages if page.failed)
        return f"{failing} pages failing" if failing else "ok"

    def check_dependencies(self) -> dict[str, str]:
        """Ask Redis whether it answers (a quarter of a second at most) and publish every state in /metrics."""
        self.redis = self.access.store.probe()
        states = self.dependencies
        self.metrics.set_dependencies(states)
        return states

    def watch(self, stop: threading.Event, every: float = 2.0) -> None:
        """Look at the dependencies every ``every`` seconds until ``stop``."""
        while not stop.wait(every):
            try:
                self.check_dependencies()
            except Exception as exc:  # the top of the watching thread: the next look may succeed
                log.warning("could not look at the dependencies: %s", exc)

    def index_loaded(self) -> None:
        index = self.service.index
        self.metrics.set_index(index.version, index.manifest.embedder, len(index.entries), index.vectors.ntotal)

    def load(self) -> None:
        """Load (or build) the index and open the feedback store; a failure is reported by /ready."""
        try:
            if not self.service.ready:
                self.service.load_or_build()
            self.index_loaded()
        except Exception as exc:  # the top of the loading thread: whatever failed, /ready says it
            self.load_error = str(exc)
            log.error("the index could not be loaded: %s", exc)

    def follow(self, stop: threading.Event) -> None:
        """Serve the version the index folder points at: another process (``rag index``, another worker or
        replica) may publish a new one at any time; it is loaded and swapped in without a failed request."""
        interval = self.settings.http.index_poll_seconds
        while interval > 0 and not stop.wait(interval):
            if not self.service.ready:
                continue
            published = version_dir(self.settings.index.index_dir)
            if published.name == self.service.index.version or not (published / "manifest.json").exists():
                continue
            try:
                self.service.load()
                self.index_loaded()
                log.info("now serving index version %s", self.service.index.version)
            except Exception as exc:  # the top of the watching thread: keep serving the version in hand
                log.error("the published index %s could not be loaded: %s", published.name, exc)

    def keep_synced(self, stop: threading.Event) -> None:
        """Every ``RAG_SYNC_INTERVAL`` seconds, read the web sources again and publish what changed — done by
        one replica per period (a lease in the store); the others load the version it publishes."""
        interval = self.settings.web.sync_interval
        if interval <= 0:
            return
        holder = self.holder
        while not stop.wait(min(interval / 4, 30.0)):
            if not self.service.ready or not any(is_url(s) for s in self.service.sources):
                continue
            try:
                if not self.store.lease("sync", holder, interval):
                    continue
                done = self.service.sync()
                self.index_loaded()
                self.last_sync = {"at": time.time(), "published": done.published, "problems": done.report.problems}
                changes = f"{len(done.added)} added, {len(done.changed)} changed, {len(done.removed)} removed"
                log.info("synced %d pages: %s; version %s", done.report.pages, changes, done.version)
            except StoreUnavailable as exc:
                log.warning("the web sources are not synced while the store is away (%s)", exc)
            except Exception as exc:  # the top of the sync thread: the FAQ in service stays as it is
                self.last_sync = {"at": time.time(), "published": False, "problems": [str(exc)]}
                log.error("the web sources could not be synced: %s", exc)

    def clean_query(self, query: str) -> str:
        text = query.strip()
        max_chars = self.settings.http.max_query_chars
        if not text:
            raise ApiError(422, "empty_query", "the query is empty; write a question")
        if len(text) > max_chars:
            raise ApiError(422, "query_too_long", f"the query has {len(text)} characters; the maximum is {max_chars}")
        if any(unicodedata.category(c) in {"Cc", "Cs"} and c not in "\t\n\r" for c in text):
            raise ApiError(422, "control_characters", "the query contains control characters; send plain text")
        return text

    def log(self, answer_id: str, answer: Answer, channel: str) -> None:
        """Put a question and what was given for it into the question log."""
        self.recorder.record_answer(answer_id, answer, channel)
        self.metrics.questions.labels(channel).inc()

    def log_handoff(self, transcript: Transcript) -> None:
        """A conversation handed to the helpdesk: said in the log (the questions are in the question log)."""
        log.info("handed a conversation of %d questions to the helpdesk (%s)", len(transcript.turns), transcript.reason)

    def log_mcp(self, answer: Answer) -> None:
        self.log(new_answer_id(), answer, "mcp")

    def log_search(self, result: SearchResult, channel: str) -> None:
        """A search is a question too: logged with the entries shown and no answer text."""
        if result.smalltalk:
            return
        self.log(new_answer_id(), Answer.shown(result), channel)

    def searched(self, result: SearchResult, endpoint: str, request: Request) -> None:
        """Count a retrieval (declined, the LLM's verdict, a stage done without) and note it for the access log."""
        request.state.abstained = result.abstained
        if result.abstained:
            self.metrics.abstentions.labels(endpoint).inc()
        if result.judge:
            self.metrics.llm_judge.labels(result.judge).inc()
        if result.degraded:
            self.metrics.degraded.labels(result.degraded).inc()

    def finish(self, answer: Answer, started: float, channel: str = "api", logged: bool = True) -> AskResponse:
        """Record the answer (for feedback and the question log; off the request's path) and count it; the
        response body of /ask. Small talk is recorded without its text (it may be voted on) and is not a question."""
        answer_id = new_answer_id()
        if logged:
            self.log(answer_id, answer, channel)
        else:
            self.recorder.record_answer(answer_id, answer, channel, question=False)
        if answer.handoff is not None:
            self.metrics.handoffs.labels(answer.handoff.reason, "offered").inc()
        if answer.fallback:
            self.metrics.llm_fallbacks.labels(answer.fallback_reason or "unknown").inc()
        if answer.citations_removed:
            self.metrics.citations_removed.inc(answer.citations_removed)
        took = round((time.perf_counter() - started) * 1000, 2)
        return AskResponse(**answer.model_dump(), answer_id=answer_id, took_ms=took)


def get_state(request: Request) -> AppState:
    return request.app.state.rag


StateDep = Annotated[AppState, Depends(get_state)]


def get_service(state: StateDep) -> RagService:
    return state.service


ServiceDep = Annotated[RagService, Depends(get_service)]


async def guard(request: Request, state: StateDep) -> None:
    """API key (when keys are set) and rate limit."""
    state.access.check(request)


async def json_body(request: Request) -> None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as JSON with 'Content-Type: application/json'")


def base_url(request: Request) -> str:
    """This service's address as the client reached it, for links to entries."""
    return str(request.base_url).rstrip("/")
