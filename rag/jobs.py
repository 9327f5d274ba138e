"""Background work: jobs that run on a thread of their own between :meth:`Job.start` and :meth:`Job.stop`, and
leases that keep a piece of work to one replica at a time (:class:`Lease`)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Protocol, TypeVar

log = logging.getLogger("rag.jobs")
T = TypeVar("T")
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # this process, as it holds leases


class Job:
    """Runs :meth:`tick` every ``interval`` seconds (0: never) until stopped; a tick that fails is logged and the
    next one runs as planned."""

    name = "job"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the job's thread (once; never after :meth:`stop`)."""
        with self._lock:
            if self.interval > 0 and self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception as exc:  # the top of the job's thread: the next tick may succeed
                log.error("%s failed: %s", self.name, exc)

    def tick(self) -> None:
        """One round of the work."""
        raise NotImplementedError


class LeaseStore(Protocol):
    """Where leases are kept (:class:`rag.store.leases.Leases`)."""

    def claim(self, name: str, holder: str, seconds: float) -> bool: ...

    def renew(self, name: str, holder: str, seconds: float) -> bool: ...

    def release(self, name: str, holder: str) -> None: ...

    def finish(self, name: str, holder: str, keep: float) -> None: ...


class Lease:
    """A short claim on ``name`` across replicas: taken for ``ttl`` seconds, renewed every third of it while the
    work runs, released when the work fails (another try may take it at once), and kept ``keep`` seconds once the
    work is done (so that it is not done again meanwhile; 0: released at once)."""

    def __init__(self, leases: LeaseStore, name: str, ttl: float = 30.0, keep: float = 0.0) -> None:
        self.leases, self.name, self.ttl, self.keep = leases, name, ttl, keep
        self.lost = False  # the lease ran out and another holder took it while the work went on

    def run(self, work: Callable[[], T]) -> tuple[bool, T | None]:
        """``(False, None)`` when another holder has it; otherwise ``(True, work())``. The store's errors (it may
        be away) reach the caller, who decides whether to do the work anyway."""
        if not self.leases.claim(self.name, HOLDER, self.ttl):
            return False, None
        done = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(done,), name=f"lease-{self.name}", daemon=True)
        renewer.start()
        try:
            result = work()
        except BaseException:
            done.set()
            renewer.join()
            self._quietly(lambda: self.leases.release(self.name, HOLDER))
            raise
        done.set()
        renewer.join()
        if self.keep > 0:
            self._quietly(lambda: self.leases.finish(self.name, HOLDER, self.keep))
        else:
            self._quietly(lambda: self.leases.release(self.name, HOLDER))
        return True, result

    def _renew(self, done: threading.Event) -> None:
        while not done.wait(self.ttl / 3):
            try:
                if not self.leases.renew(self.name, HOLDER, self.ttl):
                    self.lost = True
                    log.warning("the lease %s ran out while its work went on", self.name)
                    return
            except Exception as exc:  # the store away: the lease runs out on its own, the work goes on
                log.warning("the lease %s could not be renewed: %s", self.name, exc)

    def _quietly(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:  # the store away: the lease runs out on its own
            log.warning("the lease %s could not be updated: %s", self.name, exc)
