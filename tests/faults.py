"""Two `rag serve` replicas behind the documented nginx, sharing PostgreSQL, Redis and one index, under a bounded
load of questions and votes, while a dependency fails: what the fault tests and `bench/faults.py` run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from .servers import free_port, wait_until
from .services import Postgres, Redis, nginx

SOLDE = "Comment déposer une demande de solde ?"
QUESTIONS = [SOLDE, "Qui signe la VA ?", "Peut-on déposer plusieurs preuves dans un seul fichier ?", "Bonjour"]


@dataclass
class Cluster:
    front: str
    bases: list[str]
    replicas: list[subprocess.Popen]
    logs: list[Path]
    db: Postgres
    redis: Redis

    def ready(self, base: str) -> dict:
        try:
            return httpx.get(f"{base}/ready", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return {}

    def errors(self) -> list[str]:
        """Lines the replicas logged at the ERROR level or with a traceback."""
        return [
            line
            for log in self.logs
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
            if line.startswith(("ERROR", "CRITICAL", "Traceback"))
        ]

    def votes_in_db(self) -> dict[str, bool]:
        with psycopg.connect(self.db.url) as db:
            return {row[0]: bool(row[1]) for row in db.execute("SELECT answer_id, helpful FROM feedback")}

    def settled(self) -> bool:
        """Every replica's spool written to the store."""
        states = [self.ready(base) for base in self.bases]
        return all(s.get("spooled") == 0 and s.get("store") == "ok" for s in states)


@contextmanager
def cluster(tmp_path: Path, index: Path, db: Postgres, redis: Redis, wait_ready: bool = True) -> Iterator[Cluster]:
    """Two replicas (each with its own spool and log) and nginx in front of them."""
    shared = tmp_path / "shared-index"
    if not shared.exists():
        shutil.copytree(index, shared, symlinks=True)
    env = {
        **os.environ,
        "RAG_INDEX_DIR": str(shared),
        "RAG_DATABASE_URL": db.url,
        "RAG_REDIS_URL": redis.url,
        "RAG_RATE_LIMIT_PER_MINUTE": "100000",  # counted in Redis on every request, never reached
        "RAG_INDEX_POLL_SECONDS": "0.5",
        "RAG_FORWARDED_ALLOW_IPS": "127.0.0.1",
    }
    ports = [free_port(), free_port()]
    replicas, logs = [], []
    with ExitStack() as stack:
        for port in ports:
            log = tmp_path / f"replica-{port}.log"
            handle = stack.enter_context(open(log, "w", encoding="utf-8"))
            own = {**env, "RAG_SPOOL_DIR": str(tmp_path / f"spool-{port}"), "RAG_FEEDBACK_DB": str(tmp_path / "x")}
            command = [sys.executable, "-m", "rag.cli", "serve", "--port", str(port), "--no-build"]
            replicas.append(subprocess.Popen(command, env=own, stdout=handle, stderr=subprocess.STDOUT))
            logs.append(log)
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        made = Cluster("", bases, replicas, logs, db, redis)
        try:
            if wait_ready:
                wait_until(lambda: all(made.ready(b).get("entries") for b in bases), timeout=120)
            with nginx([f"127.0.0.1:{port}" for port in ports]) as front:
                made.front = front
                yield made
        finally:
            for replica in replicas:
                replica.terminate()
            for replica in replicas:
                try:
                    replica.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    replica.kill()


@dataclass
class Load:
    """What the clients sent and got: each /ask's status and time, and every vote acknowledged."""

    asks: list[tuple[int, float]] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)  # when each 2xx answer arrived (monotonic clock)
    votes: list[int] = field(default_factory=list)
    acknowledged: dict[str, bool] = field(default_factory=dict)  # answer id -> the vote acknowledged last
    stop: threading.Event = field(default_factory=threading.Event)

    def answered_between(self, start: float, end: float) -> int:
        """How many answers arrived while a dependency was down."""
        return sum(1 for at in self.answered_at if start <= at <= end)

    def missing(self, stored: dict[str, bool]) -> dict[str, tuple[bool, bool | None]]:
        """Votes acknowledged that the store does not hold as acknowledged: answer id -> (sent, stored)."""
        return {k: (v, stored.get(k)) for k, v in self.acknowledged.items() if stored.get(k) != v}

    def summary(self) -> dict:
        times = sorted(t for _, t in self.asks)
        ok = sum(1 for s, _ in self.asks if 200 <= s < 300)
        return {
            "asks": len(self.asks),
            "asks_2xx_share": round(ok / max(len(self.asks), 1), 4),
            "ask_p50_ms": round(1000 * times[len(times) // 2], 1) if times else None,
            "ask_max_ms": round(1000 * times[-1], 1) if times else None,
            "votes": len(self.votes),
            "votes_acknowledged": len(self.acknowledged),
            "vote_statuses": {str(s): self.votes.count(s) for s in sorted(set(self.votes))},
        }


def _client(front: str, load: Load, number: int) -> None:
    with httpx.Client(base_url=front, timeout=30) as client:
        turn = number
        while not load.stop.is_set():
            turn += 1
            started = time.perf_counter()
            try:
                answer = client.post("/ask", json={"query": QUESTIONS[turn % len(QUESTIONS)]})
            except httpx.HTTPError:
                load.asks.append((-1, time.perf_counter() - started))
                continue
            load.asks.append((answer.status_code, time.perf_counter() - started))
            if answer.status_code != 200:
                continue
            load.answered_at.append(time.monotonic())
            helpful = turn % 3 != 0
            try:
                voted = client.post("/feedback", json={"answer_id": answer.json()["answer_id"], "helpful": helpful})
            except httpx.HTTPError:
                load.votes.append(-1)
                continue
            load.votes.append(voted.status_code)
            if voted.status_code == 200:
                load.acknowledged[answer.json()["answer_id"]] = helpful
            load.stop.wait(0.05)  # a bounded load: a few questions a second per client


@contextmanager
def loaded(front: str, clients: int = 4) -> Iterator[Load]:
    load = Load()
    threads = [threading.Thread(target=_client, args=(front, load, n), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    try:
        yield load
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(60)


def outage(
    stop: Callable[[], None],
    start: Callable[[], None],
    seconds: float,
    load: Load,
    before: float = 5.0,
    after: float = 5.0,
) -> tuple[float, float]:
    """Let the load run, stop a dependency for ``seconds``, start it again, let the load run on; returns when it
    was down (monotonic clock)."""
    wait_until(lambda: len(load.acknowledged) >= 5, timeout=60)
    load.stop.wait(before)
    stop()
    down = time.monotonic()
    load.stop.wait(seconds)
    up = time.monotonic()
    start()
    load.stop.wait(after)
    return down, up
