"""When PostgreSQL or Redis fails, the replicas keep answering: two replicas behind the documented nginx, real
PostgreSQL and Redis servers stopped under a bounded load of questions and votes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .faults import cluster, loaded, outage
from .servers import wait_until
from .services import postgres, redis

pytestmark = pytest.mark.slow
OUTAGE = 20.0


def _check_answers(load, down: tuple[float, float]) -> None:
    summary = load.summary()
    assert summary["asks"] >= 50 and summary["asks_2xx_share"] >= 0.99, summary
    assert load.answered_between(*down) >= 4, summary  # answers went on while the dependency was away


def test_postgresql_stopped_for_20_s(tmp_path: Path, segur_index: Path) -> None:
    with postgres() as db, redis() as cache, cluster(tmp_path, segur_index, db, cache) as made:
        with loaded(made.front) as load:
            down = outage(db.stop, db.start, OUTAGE, load)
        _check_answers(load, down)
        assert set(load.votes) == {200}, load.summary()  # votes during the outage are kept, not refused
        wait_until(made.settled, timeout=60)
        missing = load.missing(made.votes_in_db())
        assert not missing, f"{len(missing)} of {len(load.acknowledged)} votes: {list(missing.items())[:5]}"
        spooled = [httpx.get(f"{b}/metrics", timeout=5).text for b in made.bases]
        assert any("rag_store_spooled_total 0.0" not in text for text in spooled)  # the outage was felt
        assert made.errors() == []


def test_redis_stopped_for_20_s(tmp_path: Path, segur_index: Path) -> None:
    with postgres() as db, redis() as cache, cluster(tmp_path, segur_index, db, cache) as made:
        with loaded(made.front) as load:
            down = outage(cache.stop, cache.start, OUTAGE, load)
        _check_answers(load, down)
        assert set(load.votes) == {200}
        texts = [httpx.get(f"{b}/metrics", timeout=5).text for b in made.bases]
        assert any("rag_rate_limit_unavailable_total 0.0" not in t for t in texts)  # limits failed open
        wait_until(lambda: all(made.ready(b).get("dependencies", {}).get("redis") == "ok" for b in made.bases))
        assert made.errors() == []


def test_postgresql_down_at_start(tmp_path: Path, segur_index: Path) -> None:
    with postgres(started=False) as db, redis() as cache, cluster(tmp_path, segur_index, db, cache) as made:
        states = [made.ready(b) for b in made.bases]
        assert all(s["status"] == "degraded" and s["dependencies"]["store"] == "connecting" for s in states), states
        with loaded(made.front, clients=2) as load:
            wait_until(lambda: len(load.acknowledged) >= 10, timeout=60)  # answers served, votes kept
            db.start()
            wait_until(made.settled, timeout=90)
        wait_until(made.settled, timeout=30)  # a vote on an answer given by the other replica may wait a moment
        assert load.summary()["asks_2xx_share"] == 1.0 and set(load.votes) == {200}
        assert not load.missing(made.votes_in_db())
        for base in made.bases:  # exactly one pool per process, however long the database was away
            assert "rag_store_pools 1.0" in httpx.get(f"{base}/metrics", timeout=5).text
        assert made.errors() == []


def test_two_replicas_on_an_empty_database(tmp_path: Path, segur_index: Path) -> None:
    with postgres() as db, redis() as cache, cluster(tmp_path, segur_index, db, cache) as made:
        with loaded(made.front) as load:
            wait_until(lambda: len(load.acknowledged) >= 30, timeout=60)
        assert load.summary()["asks_2xx_share"] == 1.0 and set(load.votes) == {200}
        wait_until(made.settled, timeout=30)
        assert not load.missing(made.votes_in_db())
        assert made.errors() == []
