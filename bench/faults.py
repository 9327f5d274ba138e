"""Faults of the shared services, with the real servers: two replicas behind the documented nginx (docs/nginx.conf),
sharing PostgreSQL and Redis, under a bounded load of questions and votes (the scenarios of
tests/test_dependency_faults.py, with their numbers):

1. PostgreSQL stopped for 20 s;
2. Redis stopped for 20 s;
3. PostgreSQL down when the replicas start, started 10 s into the load;
4. two replicas starting together on an empty database.

    python -m bench.faults

Writes bench/faults.json and the "Faults of the shared services" section of bench/RELIABILITY.md.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import OUT, machine
from rag.config import Settings
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService
from tests.faults import cluster, loaded, outage
from tests.servers import wait_until
from tests.services import postgres, redis

HEADING = "## Faults of the shared services"


def _counter(texts: list[str], name: str) -> float:
    return sum(float(m.group(1)) for t in texts for m in re.finditer(rf"^{name} ([0-9.e+]+)$", t, re.M))


def _finish(made, load, started: float) -> dict:
    wait_until(made.settled, timeout=120)
    stored = made.votes_in_db()
    metrics = [httpx.get(f"{base}/metrics", timeout=5).text for base in made.bases]
    return {
        **load.summary(),
        "acknowledged_votes_in_postgresql": sum(stored.get(k) == v for k, v in load.acknowledged.items()),
        "spooled": _counter(metrics, "rag_store_spooled_total"),
        "replayed": _counter(metrics, "rag_store_replayed_total"),
        "dropped": _counter(metrics, "rag_store_dropped_total"),
        "rate_limit_unavailable": _counter(metrics, "rag_rate_limit_unavailable_total"),
        "pools_per_process": [_counter([m], "rag_store_pools") for m in metrics],
        "errors_logged": len(made.errors()),
        "seconds": round(time.monotonic() - started, 1),
    }


def scenario(name: str, folder: Path, index: Path) -> dict:
    started = time.monotonic()
    with (
        postgres(started=name != "postgresql down at start") as db,
        redis() as cache,
        cluster(folder, index, db, cache) as made,
        loaded(made.front) as load,
    ):
        if name == "postgresql stopped 20 s":
            outage(db.stop, db.start, 20, load)
        elif name == "redis stopped 20 s":
            outage(cache.stop, cache.start, 20, load)
        elif name == "postgresql down at start":
            load.stop.wait(10)
            db.start()
            load.stop.wait(10)
        else:
            load.stop.wait(20)
        load.stop.set()
        return _finish(made, load, started)


def main() -> None:
    results = {"machine": machine(), "scenarios": {}}
    with tempfile.TemporaryDirectory(prefix="rag-bench-faults-") as tmp:
        index = Path(tmp) / "index"
        Publisher(QueryService(Settings(index_dir=index))).build()
        for name in ("postgresql stopped 20 s", "redis stopped 20 s", "postgresql down at start", "empty database"):
            print(f"{name} …", flush=True)
            folder = Path(tmp) / name.replace(" ", "-")
            folder.mkdir()
            results["scenarios"][name] = scenario(name, folder, index)
    (OUT / "faults.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    lines = [
        HEADING,
        "",
        f"Measured on {results['machine']['cpu']} ({results['machine']['cores']} cores), {results['machine']['date']}, "
        "with `python -m bench.faults`: two replicas behind the nginx of `docs/nginx.conf`, sharing PostgreSQL and "
        "Redis (Debian's servers), four clients each asking a question then voting on the answer, a few times a "
        "second.",
        "",
        "| scenario | /ask | 2xx | /ask p50 / max (ms) | votes acknowledged | of them in PostgreSQL after | spooled / "
        "replayed / dropped | rate limits let through | pools per process | errors logged |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results["scenarios"].items():
        lines.append(
            f"| {name} | {r['asks']} | {r['asks_2xx_share']:.2%} | {r['ask_p50_ms']} / {r['ask_max_ms']} | "
            f"{r['votes_acknowledged']} | {r['acknowledged_votes_in_postgresql']} | "
            f"{r['spooled']:.0f} / {r['replayed']:.0f} / {r['dropped']:.0f} | {r['rate_limit_unavailable']:.0f} | "
            f"{', '.join(f'{p:.0f}' for p in r['pools_per_process'])} | {r['errors_logged']} |"
        )
    page = OUT / "RELIABILITY.md"
    text = page.read_text(encoding="utf-8")
    text = text[: text.index(HEADING)].rstrip() + "\n\n" if HEADING in text else text.rstrip() + "\n\n"
    page.write_text(text + "\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
