"""``rag calibrate``: fit the confidence on calibration questions described by a plan file.

A plan lists FAQ sets. For each set, the FAQ's own questions (a sample of its entry titles) and the
given rewordings are in scope; the given out-of-scope files, and every other set's questions, are not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..confidence import Calibration, fit
from ..config import DEFAULT_SOURCE, Settings
from ..errors import ConfigError
from ..service import RagService
from ..sources import load_corpus, read_jsonl

Build = Callable[[RagService], None]


@dataclass
class FaqSet:
    name: str
    corpus: list[Path]
    in_scope: list[str] = field(default_factory=list)
    out_of_scope: list[str] = field(default_factory=list)


def _queries(path: Path) -> list[str]:
    return [row["query"] for _, row in read_jsonl(path) if isinstance(row, dict) and row.get("query")]


def _titles(corpus: list[Path], count: int) -> list[str]:
    questions = [e.question for e in load_corpus(corpus).entries if e.question]
    step = max(1, len(questions) // max(count, 1))
    return questions[::step][:count]


def read_plan(path: Path) -> list[FaqSet]:
    """The sets of a plan file; paths are relative to it, ``"default"`` is the shipped FAQ."""
    path = Path(path)
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
        sets = []
        for item in plan["sets"]:
            corpus = [DEFAULT_SOURCE if c == "default" else (path.parent / c).resolve() for c in item["corpus"]]
            faq = FaqSet(item["name"], corpus, _titles(corpus, int(item.get("titles", 0))))
            faq.in_scope += [q for f in item.get("in_scope", []) for q in _queries(path.parent / f)]
            faq.out_of_scope += [q for f in item.get("out_of_scope", []) for q in _queries(path.parent / f)]
            sets.append(faq)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"calibration plan {path} is invalid ({exc}); see eval/calibration/plan.json") from None
    return sets


def collect(
    sets: list[FaqSet], settings: Settings, index_dir: Callable[[list[Path]], Path], build: Build
) -> tuple[list[dict[str, float]], list[int], list[str]]:
    """Signals and labels (1 = in scope) of every calibration question against every set's index."""
    rows: list[dict[str, float]] = []
    labels: list[int] = []
    groups: list[str] = []
    for faq in sets:
        service = RagService(settings.replace(sources=faq.corpus, index_dir=index_dir(faq.corpus)))
        build(service)
        others = [q for other in sets if other is not faq for q in other.in_scope]
        for label, questions in ((1, faq.in_scope), (0, faq.out_of_scope + others)):
            for question in questions:
                rows.append(service.signals(question))
                labels.append(label)
                groups.append(faq.name)
    return rows, labels, groups


def calibrate(
    rows: list[dict[str, float]], labels: list[int], embedder: str, about: str
) -> tuple[Calibration, dict[str, Any]]:
    calibration = fit(rows, labels, embedder, about)
    probabilities = [calibration.probability(r) for r in rows]
    from .scoring import auroc

    report = {
        "questions": len(rows),
        "in_scope": sum(labels),
        "out_of_scope": len(labels) - sum(labels),
        "auroc": round(auroc(probabilities, labels), 4),
        "coefficients": dict(zip(calibration.features, calibration.coef)),
    }
    return calibration, report
