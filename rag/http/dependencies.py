"""The state of each dependency, for ``/ready`` and ``/metrics``: looked at on a schedule of its own (a network
call never sits on a request's path)."""

from __future__ import annotations

import time

from rag.config import is_url
from rag.corpus.web.pages import PageStore
from rag.errors import RagError
from rag.http.metrics import Metrics
from rag.http.security import LimitStore
from rag.jobs import Job
from rag.publishing.publisher import Publisher
from rag.store.recorder import Recorder

WEB_LOOK_EVERY = 5.0  # seconds between looks at the web sources' state on disk
LLM_LOOK_EVERY = 60.0  # seconds between looks at the LLM server's models


class Dependencies(Job):
    """Asks Redis whether it answers every ``interval`` seconds and publishes every state in /metrics."""

    name = "dependencies"

    def __init__(
        self, publisher: Publisher, recorder: Recorder, limits: LimitStore, metrics: Metrics, interval: float = 2.0
    ) -> None:
        super().__init__(interval)
        self.publisher, self.recorder, self.limits, self.metrics = publisher, recorder, limits, metrics
        self.redis = limits.state  # the last look at Redis
        self._web: str | None = None
        self._web_looked = -1e9
        self._llm_looked = -1e9

    def states(self) -> dict[str, str]:
        """Each dependency's state: the store's and the embeddings server's as they are now (nothing is asked),
        Redis's as last looked at (:meth:`tick`), the web sources' as the last sync left them."""
        store = self.recorder.state
        if store == "ok" and not self.recorder.store.ready:
            store = "connecting"
        embeddings = "degraded" if self.publisher.query.embedder.resting else "ok"
        states = {"store": store, "redis": self.redis, "embeddings": embeddings}
        llm = self.publisher.query.llm
        if llm is not None:  # drafted answers: the extractive ones while it is away
            states["llm"] = llm.client.model_state
        web = self.web_state()
        return states | {"web_sources": web} if web else states

    def web_state(self) -> str | None:
        """The FAQ's website as the last sync found it (None without web sources): ``ok``, or how many of its
        pages failed (their entries are still served). Looked at on disk at most every few seconds."""
        now = time.monotonic()
        if now - self._web_looked > WEB_LOOK_EVERY:
            self._web_looked = now
            self._web = self._look_at_web_sources()
        return self._web

    def _look_at_web_sources(self) -> str | None:
        if not any(is_url(s) for s in self.publisher.sources):
            return None
        try:
            pages = PageStore.read(self.publisher.settings.index.index_dir).pages.values()
        except RagError as exc:
            return str(exc)
        failing = sum(1 for page in pages if page.failed)
        return f"{failing} pages failing" if failing else "ok"

    def tick(self) -> dict[str, str]:
        """Ask Redis whether it answers (a quarter of a second at most), the LLM server which models it serves
        (every minute, two seconds at most), and publish every state in /metrics."""
        self.redis = self.limits.probe()
        llm = self.publisher.query.llm
        if llm is not None and time.monotonic() - self._llm_looked > LLM_LOOK_EVERY:
            self._llm_looked = time.monotonic()
            llm.client.look()
        states = self.states()
        self.metrics.set_dependencies(states)
        return states
