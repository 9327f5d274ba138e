"""The eval harness: run a queries file in process or against a running service, score it, write
BEIR/TREC run and qrels files, a JSON report and a Markdown table, and check a gate of thresholds."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from rag.corpus.sources import read_jsonl
from rag.errors import ConfigError, SourceError
from rag.evaluation import scoring
from rag.evaluation.outcomes import three_way
from rag.models import ANSWER_DEPTH, Question
from rag.query.service import QueryService

K_VALUES = (1, 3, 5, 10)
RISK_THRESHOLDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
TABLES = ("outcomes", "risk_coverage")  # report entries shown as tables, like the by_<tag> breakdowns
LOWER_IS_BETTER = ("aurc", "confidence_ece")


@dataclass
class EvalQuery:
    qid: str
    query: str
    relevant: list[str]
    answer: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)  # earlier questions of the conversation, oldest first

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
    degraded: str | None = None  # a stage done without (embeddings: BM25 ranked alone)
    outcome: str = ""  # answered, suggested or declined ("": as abstained says)

    def __post_init__(self) -> None:
        if not self.outcome:
            self.outcome = "declined" if self.abstained else "answered"


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
        history = row.get("history", [])
        if not isinstance(history, list) or not all(isinstance(h, str) for h in history):
            raise SourceError(path, "'history' must be a list of earlier questions", where=f"line {number}")
        tags = {k: str(v) for k, v in row.items() if k not in {"query", "relevant", "answer", "id", "history"}}
        qid = str(row.get("id", f"q{number}"))
        out.append(EvalQuery(qid, row["query"], [str(r) for r in relevant], row.get("answer"), tags, history))
    if not out:
        raise SourceError(path, "the queries file holds no query")
    return out


class Backend(Protocol):
    def run(self, query: str, k: int, history: list[str]) -> Outcome: ...


class InProcessBackend:
    def __init__(self, service: QueryService) -> None:
        self.service = service

    def run(self, query: str, k: int, history: list[str]) -> Outcome:
        started = time.perf_counter()
        question = Question(query=query, k=k, history=history)
        full = self.service.retrieve(question)
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
            degraded=full.degraded,
            outcome=answer.outcome,
        )


class HttpBackend:
    """Talks to a running service's ``POST /ask``, exactly as a client would."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def run(self, query: str, k: int, history: list[str]) -> Outcome:
        started = time.perf_counter()
        try:
            response = self.client.post("/ask", json={"query": query, "k": k, "history": history})
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
            degraded=body.get("degraded"),
            outcome=body.get("outcome", ""),
        )


def _ranking_metrics(pairs: Sequence[tuple[list[str], set[str]]]) -> dict[str, float]:
    n = max(len(pairs), 1)
    out = {f"recall@{k}": sum(scoring.recall_at(r, rel, k) for r, rel in pairs) / n for k in K_VALUES}
    out["mrr@10"] = sum(scoring.mrr_at(r, rel, 10) for r, rel in pairs) / n
    out["ndcg@10"] = sum(scoring.ndcg_at(r, rel, 10) for r, rel in pairs) / n
    return out


def score(queries: Sequence[EvalQuery], outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """All metrics of a run, as a flat dict (plus per-tag breakdowns and the risk–coverage table)."""
    pairs = list(zip(queries, outcomes))
    inside = [(q, o) for q, o in pairs if q.in_scope]
    outside = [(q, o) for q, o in pairs if not q.in_scope]
    report: dict[str, Any] = {"queries": len(queries), "in_scope": len(inside), "out_of_scope": len(outside)}
    # questions ranked without a failed stage: their metrics are not those of the full service
    report["degraded"] = sum(o.degraded is not None for o in outcomes)
    report.update(_ranking_metrics([(o.ranking, set(q.relevant)) for q, o in inside]))
    if inside and all(o.raw_ranking is not None for _, o in inside):
        raw = _ranking_metrics([(o.raw_ranking or [], set(q.relevant)) for q, o in inside])
        report.update({f"ranking_{k}": v for k, v in raw.items()})
    report["answered_rate"] = sum(not o.abstained for _, o in inside) / max(len(inside), 1)
    report.update(_abstention(pairs, outside))
    report.update(_answers(inside))
    latencies = [o.latency_ms for o in outcomes]
    report["latency_p50_ms"] = scoring.percentile(latencies, 50)
    report["latency_p95_ms"] = scoring.percentile(latencies, 95)
    report.update(_selective(pairs))
    report.update(three_way(pairs, [correct(q, o) for q, o in pairs]))
    report.update(_by_tag(inside))
    return _rounded(report)


def _abstention(pairs: list[tuple[EvalQuery, Outcome]], outside: list[tuple[EvalQuery, Outcome]]) -> dict[str, Any]:
    if not outside:
        return {}
    declined = [q for q, o in pairs if o.abstained]
    right = sum(not q.in_scope for q in declined)
    out: dict[str, Any] = {
        "abstention_recall": right / len(outside),
        "abstention_precision": right / len(declined) if declined else 1.0,
    }
    for scope in sorted({q.tags["scope"] for q, _ in outside if "scope" in q.tags}):
        members = [o for q, o in outside if q.tags.get("scope") == scope]
        out[f"abstention_recall_{scope}"] = sum(o.abstained for o in members) / len(members)
    return out


def _answers(inside: list[tuple[EvalQuery, Outcome]]) -> dict[str, float]:
    hits = cited = 0
    faithful = []
    for q, o in inside:
        if o.abstained:
            continue
        h, c = scoring.citation_precision(o.cited, set(q.relevant))
        hits, cited = hits + h, cited + c
        faithful.append(scoring.faithfulness(o.answer, o.passages))
    return {
        "citation_precision": hits / cited if cited else 0.0,
        "faithfulness": sum(faithful) / len(faithful) if faithful else 0.0,
    }


def correct(query: EvalQuery, outcome: Outcome) -> bool:
    """An answer is right when the FAQ answers the question and an entry that answers it is among the
    first :data:`ANSWER_DEPTH` retrieved (before the decision to decline)."""
    ranking = outcome.raw_ranking if outcome.raw_ranking is not None else outcome.ranking
    return bool(set(query.relevant) & set(ranking[:ANSWER_DEPTH]))


def _selective(pairs: list[tuple[EvalQuery, Outcome]]) -> dict[str, Any]:
    """Selective answering: AUROC of the confidence (in vs out of scope), its calibration error, and the
    risk–coverage table (accuracy of the answered questions when answering those above each threshold)."""
    if not pairs or any(o.confidence is None or o.raw_ranking is None for _, o in pairs):
        return {}
    confidences = [float(o.confidence or 0.0) for _, o in pairs]
    right = [correct(q, o) for q, o in pairs]
    out: dict[str, Any] = {
        "confidence_ece": scoring.expected_calibration_error(confidences, [int(r) for r in right]),
        "aurc": scoring.aurc(confidences, right),
    }
    if any(q.in_scope for q, _ in pairs) and any(not q.in_scope for q, _ in pairs):
        out["confidence_auroc"] = scoring.auroc(confidences, [int(q.in_scope) for q, _ in pairs])
    rows = {}
    for threshold in RISK_THRESHOLDS:
        answered = [r for c, r in zip(confidences, right) if c >= threshold]
        rows[f"{threshold:g}"] = {
            "coverage": len(answered) / len(pairs),
            "accuracy": sum(answered) / len(answered) if answered else 1.0,
        }
    out["risk_coverage"] = rows
    return out


def _by_tag(inside: list[tuple[EvalQuery, Outcome]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag in sorted({t for q, _ in inside for t in q.tags}):
        for value in sorted({q.tags[tag] for q, _ in inside if tag in q.tags}):
            members = [(q, o) for q, o in inside if q.tags.get(tag) == value]
            metrics = _ranking_metrics([(o.ranking, set(q.relevant)) for q, o in members])
            row = {"n": len(members), **{k: metrics[k] for k in ("recall@1", "recall@3", "mrr@10")}}
            if all(o.raw_ranking is not None for _, o in members):
                raw = _ranking_metrics([(o.raw_ranking or [], set(q.relevant)) for q, o in members])
                row["ranking_recall@3"] = raw["recall@3"]
            out.setdefault(f"by_{tag}", {})[value] = row
    return out


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
        outcomes.append(backend.run(q.query, k, q.history))
        if progress:
            progress(i, len(queries))
    return outcomes


MAIN_METRICS = (
    "recall@1",
    "recall@3",
    "recall@5",
    "recall@10",
    "mrr@10",
    "ndcg@10",
    "answered_rate",
    "answered_right",
    "answer_precision",
    "suggested_rate",
    "shown_rate",
    "declined_at_kept_90",
    "abstention_precision",
    "abstention_recall",
    "citation_precision",
    "faithfulness",
    "confidence_auroc",
    "confidence_ece",
    "aurc",
    "latency_p50_ms",
    "latency_p95_ms",
)


def markdown_table(report: dict[str, Any]) -> str:
    lines = ["| metric | value |", "| --- | --- |"]
    lines += [f"| {m} | {report[m]} |" for m in MAIN_METRICS if m in report]
    lines += [f"| {m} (before abstention) | {report[m]} |" for m in report if m.startswith("ranking_")]
    lines += [f"| {m} | {report[m]} |" for m in report if m.startswith("abstention_recall_")]
    lines.append(f"| queries (in scope / out of scope) | {report['in_scope']} / {report['out_of_scope']} |")
    if "holdout" in report:
        lines += ["", holdout_line(report)]
    for key, groups in report.items():
        if key in TABLES or key.startswith("by_"):
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


def holdout_line(report: dict[str, Any]) -> str:
    """What a ``--holdout`` run removed and asked, in a sentence."""
    h = report["holdout"]
    judged = sum(1 for a in report.get("held_out_answers", []) if a.get("judged") is not None)
    return (
        f"Held out: {h['entries_per_fold']} entries × {h['folds']} folds; {h['held_out_questions']} questions asked "
        f"about them, {h['answered_by_a_remaining_entry']} of which a person judged a remaining entry to answer; "
        f"{len(report.get('held_out_answers', []))} answered by the service ({judged} of those judged)."
    )


def check_gate(report: dict[str, Any], thresholds: dict[str, float]) -> list[str]:
    """Every metric below its minimum (latency: above its maximum), as readable lines."""
    failures = []
    for metric, bound in thresholds.items():
        if metric.startswith("_"):
            continue
        value = report.get(metric)
        if value is None:
            failures.append(f"{metric}: missing from the report")
        elif metric.startswith("latency") or metric in LOWER_IS_BETTER:
            if value > bound:
                failures.append(f"{metric}: {value} > {bound}")
        elif value < bound:
            failures.append(f"{metric}: {value} < {bound}")
    return failures
