"""Several FAQs in one server: resident memory, start-up, cold and warm ``/c/<name>/search`` latency for 1, 10 and
100 collections of the CNIL FAQ (523 entries; copies of one built index), without and within a memory budget,
and the time to publish one collection while the others are queried.

    python -m bench.collections [--counts 1 10 100]

The index is built once; each collection's folder gets a copy. Without a budget, then with ``--budget`` MB on the
largest count (every collection asked once: each question loads one and unloads another). Cold: the first
question a collection gets (its index loaded); warm: a later, different one. Writes bench/collections.json and
bench/COLLECTIONS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import CNIL, OUT, free_port, machine, start, stop, with_collections
from rag.config import Settings
from rag.evaluation.run import load_queries
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

QUESTIONS = [q.query for q in load_queries(CNIL.parent / "queries.jsonl")]
SAMPLE = 20  # collections asked, at most


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line.split()[1] for line in status if line.startswith("VmRSS"))) / 1024


def _deployment(folder: Path, base: Path, count: int) -> Path:
    tables = []
    for n in range(count):
        shutil.copytree(base, folder / "collections" / f"c{n}" / "built", symlinks=True)
        tables.append(f'[collections.c{n}]\ntitle = "CNIL {n}"\nsources = ["{CNIL}"]\n')
    path = folder / "collections.toml"
    path.write_text("\n".join(tables), encoding="utf-8")
    return path


def _ask(base: str, name: str, question: str) -> float:
    started = time.perf_counter()
    httpx.post(f"{base}/c/{name}/search", json={"query": question}, timeout=120).raise_for_status()
    return (time.perf_counter() - started) * 1000


def _publish(base: str, name: str, others: list[str]) -> dict:
    """Rebuild one collection (its sources unchanged: vectors reused) while another is asked questions."""
    before = httpx.get(f"{base}/c/{name}/ready").json()["index_version"]
    times: list[float] = []
    done = threading.Event()

    def asking() -> None:
        n = 0
        while not done.is_set():
            times.append(_ask(base, others[n % len(others)], QUESTIONS[n % len(QUESTIONS)]))
            n += 1

    asker = threading.Thread(target=asking)
    asker.start()
    started = time.perf_counter()
    httpx.post(f"{base}/c/{name}/admin/reindex", headers={"Authorization": "Bearer bench-admin"}, timeout=600)
    while httpx.get(f"{base}/c/{name}/ready").json()["index_version"] == before:
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    done.set()
    asker.join()
    return {"publish_s": round(seconds, 1), "others_p50_ms_meanwhile": round(statistics.median(times), 1)}


def measure(base_index: Path, count: int, budget_mb: float | None = None) -> dict:
    """One server of ``count`` collections: start-up, then a sample asked cold and warm (every one, under a
    budget), the resident memory, and the publication of one collection while the others are asked."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = _deployment(folder, base_index, count)
        port = free_port()
        env = {
            "RAG_COLLECTIONS": str(path),
            "RAG_INDEX_DIR": str(folder / "built"),
            "RAG_ADMIN_TOKEN": "bench-admin",
            "RAG_PORT": str(port),
            "RAG_COLLECTIONS_MEMORY": str(budget_mb if budget_mb is not None else 0),
        }
        proc, startup = start([str(Path(OUT.parent / ".venv/bin/rag")), "serve"], env, port)
        try:
            base = f"http://127.0.0.1:{port}"
            names = [f"c{n}" for n in range(count)]
            asked = names if budget_mb is not None else names[:: max(1, count // SAMPLE)][:SAMPLE]
            cold, peak = [], _rss_mb(proc.pid)
            for n, name in enumerate(asked):
                cold.append(_ask(base, name, QUESTIONS[n % 50]))
                peak = max(peak, _rss_mb(proc.pid))
            state = httpx.get(f"{base}/ready").json()["collections"]
            recent = asked[-min(SAMPLE, len(state["loaded"]) - 1 or 1) :]  # asked last: still loaded under a budget
            warm = [_ask(base, name, QUESTIONS[50 + n % 50]) for n, name in enumerate(recent)]
            rss = _rss_mb(proc.pid)
            published = _publish(base, names[0], names[1:] or names) if count > 1 else {}
            return {
                "collections": count,
                "budget_mb": budget_mb,
                "asked": len(asked),
                "loaded_at_end": len(state["loaded"]),
                "estimated_mb": state["memory_mb"],
                "startup_s": round(startup, 1),
                "rss_mb": round(rss),
                "peak_rss_mb": round(peak),
                "cold_p50_ms": round(statistics.median(cold), 1),
                "cold_p95_ms": round(_p95(cold), 1),
                "warm_p50_ms": round(statistics.median(warm), 1),
                **published,
            }
        finally:
            stop(proc)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def markdown(found: dict) -> str:
    rows = [
        "| collections | budget MB | asked | loaded at the end | estimate MB | resident MB (peak) | start (s) "
        "| cold p50 / p95 ms | warm p50 ms | publish one (s) | others' p50 ms meanwhile |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in found["runs"]:
        rows.append(
            f"| {r['collections']} | {r['budget_mb'] or 'none'} | {r['asked']} | {r['loaded_at_end']} "
            f"| {r['estimated_mb']} | {r['rss_mb']} ({r['peak_rss_mb']}) | {r['startup_s']} "
            f"| {r['cold_p50_ms']} / {r['cold_p95_ms']} | {r['warm_p50_ms']} | {r.get('publish_s', '')} "
            f"| {r.get('others_p50_ms_meanwhile', '')} |"
        )
    m = found["machine"]
    head = f"# Collections\n\nMeasured on {m['cpu']} ({m['cores']} cores, {m['memory_gb']} GB), {m['date']}.\n\n"
    note = (
        "\n\nEvery collection is a copy of the CNIL FAQ's index (523 entries). Only the default collection is "
        "loaded at start; the others by their first question. Without a budget, a sample of 20 is asked; under a "
        "budget, every collection is asked once, in turn (the worst case: each question loads its collection and "
        "unloads the least recently used). Start: until the server answers `/ready`; cold: a collection's first "
        "question (its index loaded); warm: a later, different one (under a budget, to the collections asked "
        "last, still loaded); estimate: what the loaded collections take by the server's reckoning (`/ready`), "
        "the encoder (about 170 MB) aside.\n"
    )
    return head + "\n".join(rows) + note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--budget", type=float, default=100.0, help="MB: the memory budget of the last run")
    parser.add_argument("--index", type=Path, help="the CNIL FAQ's index, built already (default: built now)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.index or Path(tmp) / "built"
        if args.index is None:
            Publisher(QueryService(Settings(sources=[CNIL], index_dir=base))).build()
        runs = [measure(base, count) for count in args.counts]
        runs.append(measure(base, max(args.counts), args.budget))
    found = {"machine": machine(), "runs": runs}
    (OUT / "collections.json").write_text(json.dumps(found, indent=1) + "\n")
    (OUT / "COLLECTIONS.md").write_text(markdown(found))
    results = OUT / "RESULTS.md"
    results.write_text(with_collections(results.read_text(encoding="utf-8")), encoding="utf-8")
    print(markdown(found))


if __name__ == "__main__":
    main()
