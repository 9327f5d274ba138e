"""Reliability under load, measured on real servers on 127.0.0.1:

1. 10,000 mixed requests at concurrency 32 while the index is rebuilt and swapped 30 times;
2. an LLM server that drips one byte every 2 s: how long /ask, its stream and the chat endpoint take
   to answer (with the extractive fallback), and /search latency while 60 such /ask are waiting.

    python -m bench.reliability [--quick]

Writes bench/reliability.json and bench/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

from bench.common import OUT, ROOT, free_port, machine, start, stop
from rag.evaluation.run import load_queries

QUESTIONS = [q.query for q in load_queries(ROOT / "eval" / "segur.jsonl")]
ADMIN = "bench-admin"


def serve(index_dir: Path, port: int, **env: str) -> tuple:
    base = {"RAG_INDEX_DIR": str(index_dir), "RAG_ADMIN_TOKEN": ADMIN, "RAG_FEEDBACK_DB": str(index_dir) + ".db"}
    return start(
        [str(ROOT / ".venv" / "bin" / "rag"), "serve", "--port", str(port)],
        {**base, **env, "RAG_PORT": str(port)},
        port,
    )


async def _request(client: httpx.AsyncClient, kind: str, question: str) -> int:
    if kind == "search":
        return (await client.post("/search", json={"query": question})).status_code
    if kind == "ask":
        return (await client.post("/ask", json={"query": question})).status_code
    if kind == "stream":
        async with client.stream("POST", "/ask", json={"query": question, "stream": True}) as response:
            body = b"".join([chunk async for chunk in response.aiter_bytes()])
            return response.status_code if b"event: done" in body else 599
    if kind == "chat":
        return (
            await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": question}]})
        ).status_code
    return (await client.get("/ready")).status_code


async def mixed_load(base: str, total: int, concurrency: int, reindexes: int) -> dict:
    kinds = ["search"] * 5 + ["ask"] * 2 + ["stream", "chat", "ready"]
    statuses: dict[int, int] = {}
    errors: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(total):
        queue.put_nowait(n)
    done_swaps: list[str] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            try:
                status = await _request(client, kinds[n % len(kinds)], random.choice(QUESTIONS))
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
                continue
            statuses[status] = statuses.get(status, 0) + 1

    async def reindexer(client: httpx.AsyncClient) -> None:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        while len(done_swaps) < reindexes and not queue.empty():
            if (await client.post("/admin/reindex", headers=headers)).status_code == 202:
                while (state := (await client.get("/admin/reindex", headers=headers)).json())["running"]:
                    await asyncio.sleep(0.05)
                done_swaps.append(state.get("status", "?"))
            await asyncio.sleep(0.2)

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        await asyncio.gather(reindexer(client), *(worker(client) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    failed = len(errors) + sum(n for status, n in statuses.items() if status >= 500)
    return {
        "requests": total,
        "concurrency": concurrency,
        "seconds": round(elapsed, 1),
        "requests_per_s": round(total / elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "transport_errors": len(errors),
        "failed": failed,
        "reindexes": len(done_swaps),
        "reindex_results": sorted(set(done_swaps)),
    }


def drip_server(port: int, pause: float) -> uvicorn.Server:
    """An OpenAI-compatible endpoint that sends one byte every ``pause`` seconds, for ever."""

    async def chat(_request) -> StreamingResponse:
        async def body():
            for _ in range(100_000):
                yield b" "
                await asyncio.sleep(pause)

        return StreamingResponse(body(), media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server


def _timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def dripping_llm(base: str, waiting: int) -> dict:
    question = "Comment déposer une demande de solde ?"
    out: dict = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        seconds, body = _timed(lambda: client.post("/ask", json={"query": question}).json())
        out["ask_json"] = {"seconds": round(seconds, 2), "fallback_reason": body.get("fallback_reason")}

        def stream() -> str:
            with client.stream("POST", "/ask", json={"query": question, "stream": True}) as response:
                return "".join(response.iter_text())

        seconds, text = _timed(stream)
        out["ask_stream"] = {"seconds": round(seconds, 2), "ended_with_done": "event: done" in text}
        chat = {"messages": [{"role": "user", "content": question}]}
        seconds, body = _timed(lambda: client.post("/v1/chat/completions", json=chat).json())
        out["chat"] = {"seconds": round(seconds, 2), "fallback_reason": body.get("fallback_reason")}
        out["search_quiet_ms"] = _search_p50(client, 30)  # the LLM's failures have put its verdicts to rest
        reasons: list[str] = []
        asks = [threading.Thread(target=_ask_once, args=(base, question, reasons)) for _ in range(waiting)]
        for thread in asks:
            thread.start()
        time.sleep(1.0)  # the asks are in: those beyond the LLM's pool have fallen back, the others wait
        out["search_during_ms"] = _search_p50(client, 30)
        out["asks_still_waiting_after_search"] = sum(thread.is_alive() for thread in asks)
        for thread in asks:
            thread.join()
    out["search_ratio"] = round(out["search_during_ms"] / out["search_quiet_ms"], 2)
    out["waiting_asks"] = waiting
    out["ask_outcomes"] = {reason: reasons.count(reason) for reason in sorted(set(reasons))}
    return out


def _ask_once(base: str, question: str, reasons: list[str]) -> None:
    with httpx.Client(base_url=base, timeout=60) as client:
        body = client.post("/ask", json={"query": f"{question} {random.random()}"}).json()
        reasons.append(str(body.get("fallback_reason")))


def _search_p50(client: httpx.Client, n: int) -> float:
    times = []
    for question in random.sample(QUESTIONS, n):
        seconds, _ = _timed(lambda q=question: client.post("/search", json={"query": q + " ?"}))
        times.append(seconds * 1000)
    return round(statistics.median(times), 2)


def markdown(r: dict) -> str:
    m, d, host = r["mixed_load"], r["dripping_llm"], r["machine"]
    return f"""# Reliability

Measured on {host["cpu"]} ({host["cores"]} cores), {host["date"]}, with `python -m bench.reliability`.

## Mixed load while the index is rebuilt

{m["requests"]} requests (search, ask, streamed ask, chat, ready) at concurrency {m["concurrency"]}, while
`POST /admin/reindex` rebuilt and swapped the index {m["reindexes"]} times ({", ".join(m["reindex_results"])}):
**{m["failed"]} failed** (5xx or transport errors), {m["requests_per_s"]} requests/s over {m["seconds"]} s.
Statuses: {m["statuses"]}.

## An LLM that drips one byte every 2 s (`RAG_LLM_TOTAL_TIMEOUT=6`)

| call | seconds | outcome |
| --- | --- | --- |
| `POST /ask` | {d["ask_json"]["seconds"]} | fallback: {d["ask_json"]["fallback_reason"]} |
| `POST /ask` streamed | {d["ask_stream"]["seconds"]} | ended with `done`: {d["ask_stream"]["ended_with_done"]} |
| `POST /v1/chat/completions` | {d["chat"]["seconds"]} | fallback: {d["chat"]["fallback_reason"]} |

Uncached `/search` p50: {d["search_quiet_ms"]} ms quiet, {d["search_during_ms"]} ms while {d["waiting_asks"]} concurrent
`/ask` are on that LLM: **{d["search_ratio"]}×** (their outcomes: {d["ask_outcomes"]}). LLM calls run on their own
pool of `RAG_LLM_CONCURRENCY` threads; beyond it an answer falls back at once (`busy`), so answers waiting
on the LLM never hold the threads searches need.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and reindexes")
    parser.add_argument("--only", choices=["load", "llm"], help="redo one part, keep the other's last results")
    args = parser.parse_args()
    previous = OUT / "reliability.json"
    results: dict = json.loads(previous.read_text()) if args.only and previous.exists() else {}
    results["machine"] = machine()
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "idx"
        port = free_port()
        proc, _ = serve(index_dir, port, RAG_CACHE_SIZE="0")
        try:
            total, reindexes = (1000, 5) if args.quick else (10_000, 30)
            if args.only != "llm":
                results["mixed_load"] = asyncio.run(mixed_load(f"http://127.0.0.1:{port}", total, 32, reindexes))
        finally:
            stop(proc)
        if args.only == "load":
            return _write(results)
        llm_port, port = free_port(), free_port()
        llm = drip_server(llm_port, 2.0)
        shutil.copytree(index_dir, Path(tmp) / "idx2", symlinks=True)
        env = {
            "RAG_LLM_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
            "RAG_LLM_TOTAL_TIMEOUT": "6",
            "RAG_CACHE_SIZE": "0",
        }
        proc, _ = serve(Path(tmp) / "idx2", port, **env)
        try:
            results["dripping_llm"] = dripping_llm(f"http://127.0.0.1:{port}", 60)
        finally:
            stop(proc)
            llm.should_exit = True
    _write(results)


def _write(results: dict) -> None:
    (OUT / "reliability.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (OUT / "RELIABILITY.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
