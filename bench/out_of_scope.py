"""Questions marked out of scope decline other wordings of their topics, and nothing the FAQ answers.

On the shipped Ségur FAQ: eval/curation/out-of-scope.jsonl holds questions about neighbouring topics (printers,
teleconsultation prices, data breaches…), written for this measure and not taken from the eval sets; per topic,
those with ``"mark": true`` are resolved as ``out_of_scope``, the others are other wordings never marked. The
Ségur eval's in-scope questions (eval/segur.jsonl) are asked before and after.

    python -m bench.out_of_scope

Writes bench/out_of_scope.json and prints a table. :func:`measure` is also run by the slow tests.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.corpus.curated import CuratedItem, Curation, item_id
from rag.evaluation.run import load_queries
from rag.models import Question
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

ROOT = Path(__file__).resolve().parent.parent
TOPICS = ROOT / "eval" / "curation" / "out-of-scope.jsonl"
SEGUR = ROOT / "eval" / "segur.jsonl"


def _rate(service: QueryService, questions: list[str], outcome: str) -> float:
    """The share of the questions whose outcome is the given one (answered, suggested or declined)."""
    return round(sum(service.retrieve(Question(query=q)).outcome == outcome for q in questions) / len(questions), 3)


def _declined(service: QueryService, questions: list[str]) -> float:
    return _rate(service, questions, "declined")


def measure(folder: Path, topics: Path = TOPICS, eval_queries: Path = SEGUR) -> dict[str, Any]:
    rows = [json.loads(line) for line in topics.read_text(encoding="utf-8").splitlines() if line.strip()]
    marked = [r for r in rows if r["mark"]]
    others = [r["query"] for r in rows if not r["mark"]]
    in_scope = [q.query for q in load_queries(eval_queries) if q.relevant]
    service = QueryService(Settings(index_dir=folder / "index"))
    Publisher(service).build()
    before = {
        "other_wordings_declined": _declined(service, others),
        "other_wordings_answered": _rate(service, others, "answered"),
        "in_scope_answered": _rate(service, in_scope, "answered"),
    }
    by_topic: dict[str, list[str]] = {}
    for row in marked:
        by_topic.setdefault(row["topic"], []).append(row["query"])
    items = [CuratedItem(id=item_id("out_of_scope", t), kind="out_of_scope", questions=q) for t, q in by_topic.items()]
    Publisher(service, lambda: Curation.of(items)).build()
    after = {
        "other_wordings_declined": _declined(service, others),
        "other_wordings_answered": _rate(service, others, "answered"),
        "in_scope_answered": _rate(service, in_scope, "answered"),
        "marked_declined": _declined(service, [r["query"] for r in marked]),
    }
    service.close()
    return {
        "topics": len(by_topic),
        "marked": len(marked),
        "other_wordings": len(others),
        "in_scope_questions": len(in_scope),
        "before": before,
        "after": after,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        measures = measure(Path(folder))
    (ROOT / "bench" / "out_of_scope.json").write_text(json.dumps(measures, indent=1) + "\n")
    print(f"{'':28} {'before':>8} {'after':>8}")
    for key in ("other_wordings_declined", "other_wordings_answered", "in_scope_answered"):
        print(f"{key:28} {measures['before'][key]:>8} {measures['after'][key]:>8}")
    print(f"{'marked_declined':28} {'':>8} {measures['after']['marked_declined']:>8}")


if __name__ == "__main__":
    main()
