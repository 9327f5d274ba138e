"""The eval harness: run a queries file in process or against a running service, score it, write
BEIR/TREC run and qrels files, a JSON report and a Markdown table, and check a gate of thresholds."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from ..errors import ConfigError, SourceError
from ..service import RagService
from ..sources import read_jsonl
from . import scoring

K_VALUES = (1, 3, 5, 10)


@dataclass
class EvalQuery:
    qid: str
    query: str
    relevant: list[str]
    answer: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def in_scope(self) -> bool:
        return bool(self.relevant)


@dataclass
class Outcome:
    """What the system did for one query."""

    ranking: list[str]  # served ranking (empty when it abstained)
    scores: list[float]
    abstained: bool
    answer: str
    cited: list[str]
    passages: list[str]
    latency_ms: float
    raw_ranking: list[str] | None = None  # before abstention, when known (in process)
    confidence: float | None = None


def load_queries(path: Path) -> list[EvalQuery]:
    """JSONL ``{"query", "relevant": [ids]}``; an empty list marks an out-of-scope question."""
    path = Path(path)
    out = []
    for number, row in read_jsonl(path):
        if not isinstance(row, dict) or not isinstance(row.get("query"), str) or not row["query"].strip():
            raise SourceError(path, "each line needs a non-empty 'query'", where=f"line {number}")
        relevant = row.get("relevant", [])
        if not isinstance(relevant, list) or not all(isinstance(r, (str, int)) for r in relevant):
            raise SourceError(path, "'relevant' must be a list of entry ids", where=f"line {number}")
        tags = {k: str(v) for k, v in row.items() if k not in {"query", "relevant", "answer", "id"}}
        out.append(
            EvalQuery(
                str(row.get("id", f"q{number}")), row["query"], [str(r) for r in relevant], row.get("answer"), tags
            )
        )
    if not out:
        raise SourceError(path, "the queries file holds no query")
    return out


class Backend(Protocol):
    def run(self, query: str, k: int) -> Outcome: ...


class InProcessBackend:
    def __init__(self, service: RagService) -> None:
        self.service = service

    def run(self, query: str, k: int) -> Outcome:
        started = time.perf_counter()
        full = self.service.retrieve(query, k)
        served = self.service.link(full.served())
        answer = self.service.answer(served)
        latency = (time.perf_counter() - started) * 1000
        return Outcome(
            ranking=[h.id for h in served.results],
            scores=[h.score for h in served.results],
            abstained=answer.abstained,
            answer=answer.answer,
            cited=[c.id for c in answer.citations],
            passages=[p.text for p in answer.passages],
            latency_ms=latency,
            raw_ranking=[h.id for h in full.results],
            confidence=full.confidence,
        )


class HttpBackend:
    """Talks to a running service's ``POST /ask``, exactly as a client would."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def run(self, query: str, k: int) -> Outcome:
        started = time.perf_counter()
        try:
            response = self.client.post("/ask", json={"query": query, "k": k})
        except httpx.HTTPError as exc:
            raise ConfigError(f"cannot reach the service at {self.client.base_url}: {exc}") from None
        latency = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise ConfigError(f"the service answered {response.status_code}: {response.text[:300]}")
        body = response.json()
        passages = body["passages"]
        return Outcome(
            ranking=[p["id"] for p in passages],
            scores=[p["score"] for p in passages],
            abstained=body["abstained"],
            answer=body["answer"],
            cited=[c["id"] for c in body["citations"]],
            passages=[p["text"] for p in passages],
            latency_ms=latency,
            confidence=body.get("confidence"),
        )


def _ranking_metrics(pairs: Sequence[tuple[list[str], set[str]]]) -> dict[str, float]:
    n = max(len(pairs), 1)
    out = {f"recall@{k}": sum(scoring.recall_at(r, rel, k) for r, rel in pairs) / n for k in K_VALUES}
    out["mrr@10"] = sum(scoring.mrr_at(r, rel, 10) for r, rel in pairs) / n
    out["ndcg@10"] = sum(scoring.ndcg_at(r, rel, 10) for r, rel in pairs) / n
    return out


def score(queries: Sequence[EvalQuery], outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """All metrics of a run, as a flat dict (plus per-tag breakdowns of the ranking metrics)."""
    inside = [(q, o) for q, o in zip(queries, outcomes) if q.in_scope]
    outside = [(q, o) for q, o in zip(queries, outcomes) if not q.in_scope]
    report: dict[str, Any] = {"queries": len(queries), "in_scope": len(inside), "out_of_scope": len(outside)}
    report.update(_ranking_metrics([(o.ranking, set(q.relevant)) for q, o in inside]))
    if inside and all(o.raw_ranking is not None for _, o in inside):
        raw = _ranking_metrics([(o.raw_ranking or [], set(q.relevant)) for q, o in inside])
        report.update({f"ranking_{k}": v for k, v in raw.items()})
    report["answered_rate"] = sum(not o.abstained for _, o in inside) / max(len(inside), 1)
    abstained = [q for q, o in zip(queries, outcomes) if o.abstained]
    true_abstain = sum(not q.in_scope for q in abstained)
    if outside:
        report["abstention_recall"] = true_abstain / len(outside)
        report["abstention_precision"] = true_abstain / len(abstained) if abstained else 1.0
    hits = cited = 0
    faithful = []
    for q, o in inside:
        if o.abstained:
            continue
        h, c = scoring.citation_precision(o.cited, set(q.relevant))
        hits, cited = hits + h, cited + c
        faithful.append(scoring.faithfulness(o.answer, o.passages))
    report["citation_precision"] = hits / cited if cited else 0.0
    report["faithfulness"] = sum(faithful) / len(faithful) if faithful else 0.0
    latencies = [o.latency_ms for o in outcomes]
    report["latency_p50_ms"] = scoring.percentile(latencies, 50)
    report["latency_p95_ms"] = scoring.percentile(latencies, 95)
    for tag in sorted({t for q, _ in inside for t in q.tags}):
        for value in sorted({q.tags[tag] for q, _ in inside if tag in q.tags}):
            members = [(q, o) for q, o in inside if q.tags.get(tag) == value]
            metrics = _ranking_metrics([(o.ranking, set(q.relevant)) for q, o in members])
            row = {"n": len(members), **{k: metrics[k] for k in ("recall@1", "recall@3", "mrr@10")}}
            if all(o.raw_ranking is not None for _, o in members):
                raw = _ranking_metrics([(o.raw_ranking or [], set(q.relevant)) for q, o in members])
                row["ranking_recall@3"] = raw["recall@3"]
            report.setdefault(f"by_{tag}", {})[value] = row
    return _rounded(report)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def run_eval(
    queries: Sequence[EvalQuery], backend: Backend, k: int = 10, progress: Callable[[int, int], None] | None = None
) -> list[Outcome]:
    outcomes = []
    for i, q in enumerate(queries, start=1):
        outcomes.append(backend.run(q.query, k))
        if progress:
            progress(i, len(queries))
    return outcomes


def write_outputs(
    out: Path, queries: Sequence[EvalQuery], outcomes: Sequence[Outcome], report: dict[str, Any], name: str = "rag"
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "run.trec").open("w", encoding="utf-8") as fh:
        for q, o in zip(queries, outcomes):
            for rank, (doc, s) in enumerate(zip(o.ranking, o.scores), start=1):
                fh.write(f"{q.qid} Q0 {doc} {rank} {s:.6f} {name}\n")
    with (out / "qrels.trec").open("w", encoding="utf-8") as fh:
        for q in queries:
            for doc in q.relevant:
                fh.write(f"{q.qid} 0 {doc} 1\n")
    with (out / "results.jsonl").open("w", encoding="utf-8") as fh:
        for q, o in zip(queries, outcomes):
            fh.write(
                json.dumps(
                    {
                        "id": q.qid,
                        "query": q.query,
                        "relevant": q.relevant,
                        "ranking": o.ranking,
                        "abstained": o.abstained,
                        "answer": o.answer,
                        "cited": o.cited,
                        "latency_ms": round(o.latency_ms, 2),
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown_table(report) + "\n", encoding="utf-8")


MAIN_METRICS = (
    "recall@1",
    "recall@3",
    "recall@5",
    "recall@10",
    "mrr@10",
    "ndcg@10",
    "answered_rate",
    "abstention_precision",
    "abstention_recall",
    "citation_precision",
    "faithfulness",
    "latency_p50_ms",
    "latency_p95_ms",
)


def markdown_table(report: dict[str, Any]) -> str:
    lines = ["| metric | value |", "| --- | --- |"]
    lines += [f"| {m} | {report[m]} |" for m in MAIN_METRICS if m in report]
    lines += [f"| {m} (before abstention) | {report[m]} |" for m in report if m.startswith("ranking_")]
    lines.append(f"| queries (in scope / out of scope) | {report['in_scope']} / {report['out_of_scope']} |")
    for key, groups in report.items():
        if key.startswith("by_"):
            columns = list(next(iter(groups.values())))
            lines += [
                "",
                f"**{key.replace('_', ' ')}**",
                "",
                "| group | " + " | ".join(columns) + " |",
                "| --- |" + " --- |" * len(columns),
            ]
            lines += [f"| {name} | " + " | ".join(str(v) for v in row.values()) + " |" for name, row in groups.items()]
    return "\n".join(lines)


def check_gate(report: dict[str, Any], thresholds: dict[str, float]) -> list[str]:
    """Every metric below its minimum (latency: above its maximum), as readable lines."""
    failures = []
    for metric, bound in thresholds.items():
        if metric.startswith("_"):
            continue
        value = report.get(metric)
        if value is None:
            failures.append(f"{metric}: missing from the report")
        elif metric.startswith("latency"):
            if value > bound:
                failures.append(f"{metric}: {value} > {bound}")
        elif value < bound:
            failures.append(f"{metric}: {value} < {bound}")
    return failures
