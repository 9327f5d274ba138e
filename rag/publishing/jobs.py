"""Publishing in the background: the web sources read again on a schedule (once per period across replicas), and
a rebuild asked for by an admin."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from rag.config import is_url
from rag.errors import ParentChanged, StoreUnavailable
from rag.jobs import Job, Lease, LeaseStore
from rag.publishing.publisher import Publisher

log = logging.getLogger("rag.publishing.jobs")
SYNC_LEASE = 60.0  # seconds a sync holds its lease between renewals' deadlines


class WebSync(Job):
    """Every ``RAG_SYNC_INTERVAL`` seconds, reads the web sources again and publishes what changed — done by one
    replica per period (a lease in the store, renewed while the sync runs, released if it fails, kept for the
    period once it succeeded); the others load the version it publishes."""

    name = "web-sync"

    def __init__(self, publisher: Publisher, leases: LeaseStore, loaded: Callable[[], None]) -> None:
        self.period = publisher.settings.web.sync_interval
        super().__init__(min(self.period / 4, 30.0) if self.period > 0 else 0)
        self.publisher, self.leases, self.loaded = publisher, leases, loaded
        self.last: dict[str, Any] | None = None  # when the web sources were last synced here, and what it found

    def tick(self) -> None:
        query = self.publisher.query
        if not query.ready or not any(is_url(s) for s in self.publisher.sources):
            return
        lease = Lease(self.leases, "sync", ttl=SYNC_LEASE, keep=self.period)
        try:
            taken, done = lease.run(self.publisher.sync)
        except StoreUnavailable as exc:
            log.warning("the web sources are not synced while the store is away (%s)", exc)
            return
        except ParentChanged as exc:  # another replica published meanwhile: its version is followed
            log.info("%s", exc)
            return
        except Exception as exc:  # the FAQ in service stays as it is; the lease was released for another try
            self.last = {"at": time.time(), "published": False, "problems": [str(exc)]}
            log.error("the web sources could not be synced: %s", exc)
            return
        if not taken or done is None:
            return
        self.loaded()
        self.last = {"at": time.time(), "published": done.published, "problems": done.report.problems}
        changes = f"{len(done.added)} added, {len(done.changed)} changed, {len(done.removed)} removed"
        log.info("synced %d pages: %s; version %s", done.report.pages, changes, done.version)


class Reindexer:
    """Rebuilds the index in a background thread; the version is served when it is complete."""

    def __init__(self, publisher: Publisher, loaded: Callable[[], None]) -> None:
        self.publisher, self.loaded = publisher, loaded
        self.running = False
        self.last: dict[str, Any] = {}
        self._lock = threading.Lock()

    def start(self) -> bool:
        with self._lock:
            if self.running:
                return False
            self.running = True
        self.last = {"started_at": time.time()}
        threading.Thread(target=self._run, name="reindex", daemon=True).start()
        return True

    def _run(self) -> None:
        try:
            index = self.publisher.build()
            self.last.update(status="done", version=index.version, counts=index.manifest.counts.model_dump())
            self.loaded()
        except Exception as exc:  # the top of the rebuild thread: reported on GET /admin/reindex, the old index serves
            log.error("reindex failed: %s", exc)
            self.last.update(status="failed", error=str(exc))
        finally:
            self.last["finished_at"] = time.time()
            self.running = False

    def status(self) -> dict[str, Any]:
        return {"running": self.running, **self.last}
