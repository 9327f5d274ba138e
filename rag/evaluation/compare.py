"""``rag eval compare BASE NEW``: did a change make things better or worse, on which questions, and is the
difference more than noise?

Both runs are paired question by question. For every metric, the difference NEW − BASE comes with a 95 %
interval from a paired bootstrap: the questions are drawn with replacement (a fixed seed, so the same runs
give the same interval), both runs are scored on the same draw, and the 2.5th and 97.5th percentiles of the
differences bound it. A metric regressed when its whole interval lies on the wrong side of zero by more than
the tolerance. The questions that flipped are listed: newly right or wrong, newly declined or answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.evaluation import scoring
from rag.evaluation.run import LOWER_IS_BETTER, EvalQuery, Outcome, correct
from rag.models import ANSWER_DEPTH


@dataclass
class Columns:
    """Each question's part in every compared metric, computed once, so that a resampling costs array sums."""

    ids: list[str]
    queries: list[str]
    inside: np.ndarray  # in scope
    scope: np.ndarray  # the scope tag of out-of-scope questions ("" otherwise)
    r1: np.ndarray
    r3: np.ndarray
    mrr: np.ndarray
    answered: np.ndarray
    hits: np.ndarray  # cited entries that are relevant
    cited: np.ndarray
    faithful: np.ndarray  # nan where not answered
    confidence: np.ndarray  # nan where unknown
    selective: np.ndarray  # right for the risk–coverage view (an entry that answers among the first retrieved)
    right: np.ndarray  # what a user got was right: a served answer from a relevant entry, or a decline out of scope


def columns(queries: Sequence[EvalQuery], outcomes: Sequence[Outcome]) -> Columns:
    rows = list(zip(queries, outcomes))

    def each(fn: Any, dtype: Any = np.float64) -> np.ndarray:
        return np.array([fn(q, o) for q, o in rows], dtype=dtype)

    def cite(q: EvalQuery, o: Outcome) -> tuple[int, int]:
        return scoring.citation_precision(o.cited, set(q.relevant)) if q.in_scope and not o.abstained else (0, 0)

    pairs = [cite(q, o) for q, o in rows]
    return Columns(
        ids=[q.qid for q in queries],
        queries=[q.query for q in queries],
        inside=each(lambda q, o: q.in_scope, bool),
        scope=each(lambda q, o: "" if q.in_scope else q.tags.get("scope", ""), object),
        r1=each(lambda q, o: scoring.recall_at(o.ranking, set(q.relevant), 1)),
        r3=each(lambda q, o: scoring.recall_at(o.ranking, set(q.relevant), 3)),
        mrr=each(lambda q, o: scoring.mrr_at(o.ranking, set(q.relevant), 10)),
        answered=each(lambda q, o: not o.abstained, bool),
        hits=np.array([h for h, _ in pairs], dtype=np.float64),
        cited=np.array([c for _, c in pairs], dtype=np.float64),
        faithful=each(
            lambda q, o: scoring.faithfulness(o.answer, o.passages) if q.in_scope and not o.abstained else np.nan
        ),
        confidence=each(lambda q, o: np.nan if o.confidence is None else o.confidence),
        selective=each(lambda q, o: correct(q, o) if o.raw_ranking is not None else False, bool),
        right=each(
            lambda q, o: (
                (not o.abstained and bool(set(q.relevant) & set(o.ranking[:ANSWER_DEPTH])))
                if q.in_scope
                else o.abstained
            ),
            bool,
        ),
    )


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def metrics(c: Columns, take: np.ndarray | None = None) -> dict[str, float]:
    """The compared metrics of the questions ``take`` (indices, repeats allowed; all by default), as
    :func:`~rag.evaluation.run.score` computes them."""
    take = np.arange(len(c.ids)) if take is None else take
    inside, answered = c.inside[take], c.answered[take]
    out = {
        "recall@1": _mean(c.r1[take][inside]),
        "recall@3": _mean(c.r3[take][inside]),
        "mrr@10": _mean(c.mrr[take][inside]),
        "answered_rate": _mean(answered[inside].astype(float)),
        "abstention_recall": _mean((~answered[~inside]).astype(float)),
    }
    for scope in sorted({s for s in c.scope if s}):
        members = c.scope[take] == scope
        out[f"abstention_recall_{scope}"] = _mean((~answered[members]).astype(float))
    cited = c.cited[take].sum()
    out["citation_precision"] = float(c.hits[take].sum() / cited) if cited else 0.0
    faithful = c.faithful[take]
    out["faithfulness"] = _mean(faithful[~np.isnan(faithful)])
    confidence = c.confidence[take]
    if not np.isnan(confidence).any():
        out["confidence_ece"] = scoring.expected_calibration_error(confidence, c.selective[take])
        out["aurc"] = scoring.aurc(confidence, c.selective[take])
        if inside.any() and (~inside).any():
            out["confidence_auroc"] = scoring.auroc(confidence, inside)
    return out


def _paired(base: tuple[list[EvalQuery], list[Outcome]], new: tuple[list[EvalQuery], list[Outcome]]) -> list[int]:
    """The positions in NEW of BASE's questions (matched by id and text); both runs must ask the same ones."""
    where = {(q.qid, q.query): i for i, q in enumerate(new[0])}
    order = [where.get((q.qid, q.query)) for q in base[0]]
    if None in order or len(order) != len(new[0]):
        raise ConfigError("the two runs did not ask the same questions: compare runs of the same queries file")
    return order  # type: ignore[return-value]


def compare(
    base: tuple[list[EvalQuery], list[Outcome]],
    new: tuple[list[EvalQuery], list[Outcome]],
    resamples: int = 2000,
    seed: int = 0,
    tolerance: float = 0.0,
) -> dict[str, Any]:
    """Every metric's difference with its paired bootstrap interval, whether it regressed or improved, and the
    questions that flipped."""
    order = _paired(base, new)
    a = columns(*base)
    b = columns([new[0][i] for i in order], [new[1][i] for i in order])
    draws = np.random.default_rng(seed).integers(0, len(a.ids), size=(resamples, len(a.ids)))
    full_a, full_b = metrics(a), metrics(b)
    names = [m for m in full_a if m in full_b and not (np.isnan(full_a[m]) or np.isnan(full_b[m]))]
    samples: dict[str, list[float]] = {m: [] for m in names}
    alone: dict[str, list[float]] = {m: [] for m in names}  # the base run's own value, for its interval
    for take in draws:
        ma, mb = metrics(a, take), metrics(b, take)
        for m in names:
            samples[m].append(mb[m] - ma[m])
            alone[m].append(ma[m])
    differences = {}
    for m in names:
        low, high = np.nanpercentile(samples[m], [2.5, 97.5])
        base_low, base_high = np.nanpercentile(alone[m], [2.5, 97.5])
        higher = m not in LOWER_IS_BETTER
        worse = high < -tolerance if higher else low > tolerance
        better = low > tolerance if higher else high < -tolerance
        differences[m] = {
            "base": round(full_a[m], 4),
            "base_interval": [round(float(base_low), 4), round(float(base_high), 4)],
            "new": round(full_b[m], 4),
            "difference": round(full_b[m] - full_a[m], 4),
            "interval": [round(float(low), 4), round(float(high), 4)],
            "verdict": "regressed" if worse else "improved" if better else "no significant change",
        }
    return {
        "questions": len(a.ids),
        "resamples": resamples,
        "seed": seed,
        "tolerance": tolerance,
        "metrics": differences,
        "regressed": sorted(m for m, d in differences.items() if d["verdict"] == "regressed"),
        "flips": flips(a, b),
    }


def flips(a: Columns, b: Columns) -> dict[str, list[dict[str, str]]]:
    """The questions whose outcome changed, by kind of change."""
    kinds = {
        "newly_wrong": a.right & ~b.right,
        "newly_right": ~a.right & b.right,
        "newly_declined": a.answered & ~b.answered,
        "newly_answered": ~a.answered & b.answered,
    }
    return {
        kind: [{"id": a.ids[i], "query": a.queries[i]} for i in np.nonzero(mask)[0]] for kind, mask in kinds.items()
    }


def markdown(comparison: dict[str, Any], base: str, new: str) -> str:
    lines = [
        f"# {new} against {base}",
        "",
        f"{comparison['questions']} questions; 95 % intervals from a paired bootstrap of {comparison['resamples']} "
        f"draws (seed {comparison['seed']}); tolerance {comparison['tolerance']}.",
        "",
        "| metric | base | new | difference | 95 % interval | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, d in comparison["metrics"].items():
        low, high = d["interval"]
        lines.append(
            f"| {name} | {d['base']} | {d['new']} | {d['difference']:+} | [{low:+}, {high:+}] | {d['verdict']} |"
        )
    for kind, rows in comparison["flips"].items():
        lines += ["", f"**{kind.replace('_', ' ')}** ({len(rows)})", ""]
        lines += [f"- `{r['id']}` {r['query']}" for r in rows]
    return "\n".join(lines)
