"""Background work: a lease is a short claim renewed while its work runs, released when the work fails (another try
can take it at once) and kept for a while once it is done; jobs start and stop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rag.jobs import Job, Lease
from rag.store import sqlite_store

from .servers import wait_until


@pytest.fixture
def leases(tmp_path: Path):
    store = sqlite_store(tmp_path / "fb.sqlite3").open()
    yield store.leases
    store.close()


def test_a_lease_is_renewed_while_its_work_runs_longer_than_it(leases) -> None:
    """The work of another replica cannot start while this one's runs, however long it takes (a sync that takes
    longer than its period is not run twice at once)."""
    running, stop = threading.Event(), threading.Event()

    def work() -> str:
        running.set()
        stop.wait(10)
        return "done"

    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(Lease(leases, "sync", ttl=0.3).run(work)))
    thread.start()
    running.wait(5)
    deadline = time.monotonic() + 1.2  # four times the lease's life
    while time.monotonic() < deadline:
        assert not leases.claim("sync", "another-replica", 0.3)
        time.sleep(0.05)
    stop.set()
    thread.join(5)
    assert outcome == [(True, "done")]
    assert leases.claim("sync", "another-replica", 0.3)  # released once done (keep = 0)


def test_a_failed_work_releases_its_lease_at_once(leases) -> None:
    def broken() -> None:
        raise RuntimeError("the index is still loading")

    with pytest.raises(RuntimeError):
        Lease(leases, "chatwoot:d-1", ttl=60, keep=86_400).run(broken)
    taken, answered = Lease(leases, "chatwoot:d-1", ttl=60, keep=86_400).run(lambda: "answered")
    assert (taken, answered) == (True, "answered")  # the retry is answered, not refused for a day
    assert Lease(leases, "chatwoot:d-1", ttl=60, keep=86_400).run(lambda: "again") == (False, None)  # done: kept


def test_jobs_tick_until_stopped_and_never_start_after(leases) -> None:
    class Counting(Job):
        name = "counting"
        ticks = 0

        def tick(self) -> None:
            self.ticks += 1
            if self.ticks == 2:
                raise RuntimeError("a tick that fails")

    job = Counting(0.02)
    job.start()
    wait_until(lambda: job.ticks >= 4, timeout=5)  # a failing tick does not stop the job
    job.stop()
    seen = job.ticks
    job.start()  # a stopped job stays stopped
    time.sleep(0.1)
    assert job.ticks == seen and not job.running
