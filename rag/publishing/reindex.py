"""Rebuilds the index in a background thread; the service swaps it in when it is complete."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from rag.query.service import RagService

log = logging.getLogger("rag.api")


class Reindexer:
    def __init__(self, service: RagService, on_done: Callable[[], None]) -> None:
        self.service, self.on_done = service, on_done
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
            index = self.service.build()
            self.last.update(status="done", version=index.version, counts=index.manifest.counts.model_dump())
            self.on_done()
        except Exception as exc:  # the top of the rebuild thread: reported on GET /admin/reindex, the old index serves
            log.error("reindex failed: %s", exc)
            self.last.update(status="failed", error=str(exc))
        finally:
            self.last["finished_at"] = time.time()
            self.running = False

    def status(self) -> dict[str, Any]:
        return {"running": self.running, **self.last}
