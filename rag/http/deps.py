"""What routes share, given through FastAPI dependencies: the app's services (each a small part with one job,
made once when the app is made, started and stopped with its lifespan), access checks and request helpers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from rag.channels.chatwoot import ChatwootBot
from rag.channels.handoff import HandoffNotifier
from rag.channels.matrix import MatrixBot
from rag.channels.respond import Responder
from rag.channels.widget import WidgetTokens, secret_for
from rag.config import Settings
from rag.egress import EgressPolicy
from rag.errors import ApiError, StoreUnavailable
from rag.http.dependencies import Dependencies
from rag.http.metrics import Metrics
from rag.http.security import Access, LimitStore
from rag.publishing.gap_resolution import Curator
from rag.publishing.gaps import GapFinder
from rag.publishing.jobs import Reindexer, WebSync
from rag.publishing.publisher import Publisher
from rag.query.follower import IndexFollower
from rag.query.service import QueryService
from rag.store import Store, make_store
from rag.store.answer_ids import AnswerIds, shared_key
from rag.store.recorder import Recorder, make_recorder

log = logging.getLogger("rag.api")


@dataclass
class Services:
    """Everything one app instance holds; routes reach it through :data:`ServicesDep`."""

    settings: Settings
    query: QueryService
    publisher: Publisher
    store: Store
    recorder: Recorder
    ids: AnswerIds
    responder: Responder
    metrics: Metrics
    access: Access
    tokens: WidgetTokens
    dependencies: Dependencies
    follower: IndexFollower
    web_sync: WebSync
    reindexer: Reindexer
    curator: Curator
    handoffs: HandoffNotifier | None = None
    chatwoot: ChatwootBot | None = None
    matrix: MatrixBot | None = None
    load_error: str | None = field(default=None)

    @classmethod
    def make(cls, settings: Settings, query: QueryService | None = None) -> Services:
        """Every part, made (not started: :meth:`start`)."""
        query = query or QueryService(settings)
        http, channels = settings.http, settings.channels
        metrics = Metrics()
        store = make_store(settings)
        publisher = Publisher(query, store.curated.all)
        recorder = make_recorder(settings, store)
        if http.database_url and not http.secret_key:
            log.warning(
                "RAG_SECRET_KEY is not set: answer ids are signed with the key beside the index folder; replicas that "
                "do not share that folder must share one RAG_SECRET_KEY, or votes on each other's answers are refused"
            )
        ids = AnswerIds(shared_key(http.secret_key, settings.index.index_dir.parent))
        limits = LimitStore(http.redis_url or "memory://", fail_open=http.rate_limit_fail == "open")
        tokens = WidgetTokens(secret_for(channels.widget_secret, http.api_keys), channels.widget_token_seconds)
        admins = [http.admin_token or "", *http.admin_tokens]
        access = Access(
            http.api_keys, admins, http.rate_limit_per_minute, http.auth_failures_per_minute, limits, tokens
        )
        metrics.watch(recorder, limits)
        responder = Responder(query, recorder, ids, metrics)
        loaded = _loaded(query, metrics)
        finder = GapFinder(query.embedder, settings.gaps, settings.index.embed_batch_size)
        handoffs = (
            HandoffNotifier(
                channels.handoff_webhook,
                channels.handoff_timeout,
                faq_name=settings.answer.faq_name,
                policy=EgressPolicy.from_settings(settings),
            )
            if channels.handoff_webhook
            else None
        )
        return cls(
            settings=settings,
            query=query,
            publisher=publisher,
            store=store,
            recorder=recorder,
            ids=ids,
            responder=responder,
            metrics=metrics,
            access=access,
            tokens=tokens,
            dependencies=Dependencies(publisher, recorder, limits, metrics),
            follower=IndexFollower(query, http.index_poll_seconds, loaded),
            web_sync=WebSync(publisher, store.leases, loaded),
            reindexer=Reindexer(publisher, loaded),
            curator=Curator(publisher, store, finder, settings.golden_path),
            handoffs=handoffs,
            chatwoot=ChatwootBot.from_settings(settings, responder, store.leases, metrics.chatwoot),
            matrix=MatrixBot.from_settings(settings, responder, store.leases),
        )

    def start(self) -> None:
        """Open the store (it connects in the background) and start recording; then look at the dependencies."""
        try:
            self.store.open()
        except StoreUnavailable as exc:  # the recorder keeps what it cannot write and tries again
            log.warning("%s", exc)
        self.recorder.start()
        self.dependencies.tick()

    def load(self) -> None:
        """Load (or build) the index; a failure is reported by /ready. Then follow what is published."""
        try:
            if not self.query.ready:
                self.publisher.load_or_build()
            _loaded(self.query, self.metrics)()
        except Exception as exc:  # the top of the loading thread: whatever failed, /ready says it
            self.load_error = str(exc)
            log.error("the index could not be loaded: %s", exc)
        for job in (self.follower, self.dependencies, self.web_sync, self.matrix):
            if job is not None:
                job.start()

    def stop(self) -> None:
        for job in (self.follower, self.dependencies, self.web_sync, self.matrix):
            if job is not None:
                job.stop()
        self.recorder.close()
        self.store.close()
        if self.handoffs is not None:
            self.handoffs.close()
        if self.chatwoot is not None:
            self.chatwoot.close()
        self.query.close()


def _loaded(query: QueryService, metrics: Metrics):
    def loaded() -> None:
        index = query.index
        metrics.set_index(index.version, index.manifest.embedder, len(index.entries), index.vectors.ntotal)

    return loaded


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_query(services: ServicesDep) -> QueryService:
    return services.query


QueryDep = Annotated[QueryService, Depends(get_query)]


async def guard(request: Request, services: ServicesDep) -> None:
    """API key (when keys are set) and rate limit."""
    services.access.check(request)


async def json_body(request: Request) -> None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as JSON with 'Content-Type: application/json'")


def base_url(request: Request) -> str:
    """This service's address as the client reached it, for links to entries."""
    # under a mount (a collection's /c/<name>), the mount's path is part of this service's address
    return str(request.base_url).rstrip("/") + request.scope.get("root_path", "").rstrip("/")


def note(request: Request, query: str | None = None, **found: Any) -> None:
    """What the access log line of this request says besides its status (the question, when it may be logged)."""
    if query is not None:
        request.state.query = query
    for key, value in found.items():
        setattr(request.state, key, value)
