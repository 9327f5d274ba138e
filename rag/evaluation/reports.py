"""What an eval run leaves in its ``--out`` folder: a TREC run and qrels, every question with all it takes to score
it again (``results.jsonl``, read back by ``rag eval compare``), the report as JSON, Markdown and a self-contained
HTML page, and the risk–coverage plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag.corpus.sources import read_jsonl
from rag.errors import SourceError
from rag.evaluation import scoring
from rag.evaluation.html import run_page
from rag.evaluation.run import EvalQuery, Outcome, correct, markdown_table


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
        fh.writelines(json.dumps(result_row(q, o), ensure_ascii=False) + "\n" for q, o in zip(queries, outcomes))
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown_table(report) + "\n", encoding="utf-8")
    plot = None
    if "aurc" in report:
        plot_risk_coverage(out / "risk_coverage.png", queries, outcomes)
        plot = (out / "risk_coverage.png").read_bytes()
    page = run_page(f"Eval report — {out.name}", report, queries, outcomes, plot)
    (out / "report.html").write_text(page, encoding="utf-8")


def result_row(q: EvalQuery, o: Outcome) -> dict[str, Any]:
    """One question of a run, with all it takes to score it again (``rag eval compare``)."""
    return {
        "id": q.qid,
        "query": q.query,
        "relevant": q.relevant,
        "tags": q.tags,
        "history": q.history,
        "ranking": o.ranking,
        "scores": o.scores,
        "raw_ranking": o.raw_ranking,
        "abstained": o.abstained,
        "outcome": o.outcome,
        "confidence": o.confidence,
        "answer": o.answer,
        "cited": o.cited,
        "passages": o.passages,
        "degraded": o.degraded,
        "latency_ms": round(o.latency_ms, 2),
    }


def read_results(folder: Path) -> tuple[list[EvalQuery], list[Outcome]]:
    """The questions and outcomes of a run written by ``rag eval --out``."""
    path = Path(folder) / "results.jsonl"
    queries, outcomes = [], []
    for number, row in read_jsonl(path):
        if not isinstance(row, dict) or "passages" not in row:
            raise SourceError(
                path, "written by an earlier version: run the eval again with --out", where=f"line {number}"
            )
        queries.append(EvalQuery(row["id"], row["query"], row["relevant"], None, row["tags"], row["history"]))
        outcomes.append(
            Outcome(
                row["ranking"],
                row["scores"],
                row["abstained"],
                row["answer"],
                row["cited"],
                row["passages"],
                row["latency_ms"],
                row["raw_ranking"],
                row["confidence"],
                row["degraded"],
                row.get("outcome", ""),
            )
        )
    if not queries:
        raise SourceError(path, "holds no question")
    return queries, outcomes


def plot_risk_coverage(path: Path, queries: Sequence[EvalQuery], outcomes: Sequence[Outcome]) -> None:
    """Accuracy of the answered questions against the share answered, as the threshold goes down."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    right = [correct(q, o) for q, o in zip(queries, outcomes)]
    curve = scoring.risk_coverage([float(o.confidence or 0.0) for o in outcomes], right)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot([c for _, c, _ in curve], [1 - r for _, _, r in curve], color="#000091")
    answered = [r for r, o in zip(right, outcomes) if not o.abstained]
    if answered:
        point = (len(answered) / len(outcomes), sum(answered) / len(answered))
        ax.scatter(*point, color="#b00020", zorder=3, label="what the service answers")
        ax.legend(loc="lower left")
    ax.set(xlabel="share of questions answered (coverage)", ylabel="accuracy of the answered questions", ylim=(0, 1.02))
    ax.set_title("Selective answering: risk–coverage")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
