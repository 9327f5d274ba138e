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

from rag.config import DEFAULT_SOURCE, Settings
from rag.corpus.sources import load_corpus, read_jsonl
from rag.errors import ConfigError
from rag.evaluation.scoring import auroc
from rag.indexing.calibration import Calibration, fit
from rag.models import ANSWER_DEPTH, Question
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

Build = Callable[[Publisher], None]


Labelled = tuple[str, list[str]]  # the text, and the entries that answer it (none: out of scope)


@dataclass
class FaqSet:
    name: str
    corpus: list[Path]
    in_scope: list[Labelled] = field(default_factory=list)
    out_of_scope: list[Labelled] = field(default_factory=list)


def _queries(path: Path) -> list[Labelled]:
    return [
        (row["query"], [str(r) for r in row.get("relevant", [])])
        for _, row in read_jsonl(path)
        if isinstance(row, dict) and row.get("query")
    ]


def _titles(corpus: list[Path], count: int) -> list[Labelled]:
    questions = [(e.question, [e.id]) for e in load_corpus(corpus).entries if e.question]
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
) -> tuple[list[dict[str, float]], list[int], list[bool]]:
    """Signals, labels and scope of every calibration question against every set's index. The label is 1
    when an entry that answers the question is among the first :data:`ANSWER_DEPTH`; in scope means the FAQ
    has such an entry."""
    rows: list[dict[str, float]] = []
    labels: list[int] = []
    in_scope: list[bool] = []
    for faq in sets:
        publisher = Publisher(QueryService(settings.replace(sources=faq.corpus, index_dir=index_dir(faq.corpus))))
        build(publisher)
        service = publisher.query
        others = [(text, []) for other in sets if other is not faq for text, _ in other.in_scope]
        for text, relevant in faq.in_scope + faq.out_of_scope + others:
            result = service.diagnose(Question(query=text, k=ANSWER_DEPTH))
            ranking = [hit.id for hit in result.results]
            rows.append(result.signals)
            labels.append(int(bool(set(relevant) & set(ranking))))
            in_scope.append(bool(relevant))
    return rows, labels, in_scope


def calibrate(
    rows: list[dict[str, float]], labels: list[int], in_scope: list[bool], embedder: str, about: str
) -> tuple[Calibration, dict[str, Any]]:
    """Fit the confidence; report how well it separates the calibration questions it was fitted on."""
    calibration = fit(rows, labels, in_scope, embedder, about)
    probabilities = [calibration.probability(r) for r in rows]
    report = {
        "questions": len(rows),
        "answered_by_top_entries": sum(labels),
        "in_scope": sum(in_scope),
        "auroc": round(auroc(probabilities, labels), 4),
        "threshold": calibration.threshold,
        "coefficients": dict(zip(calibration.features, calibration.coef)),
        "variants": [
            {"without": [f for f in calibration.features if f not in v.features], "threshold": v.threshold}
            for v in calibration.variants
        ],
    }
    return calibration, report
