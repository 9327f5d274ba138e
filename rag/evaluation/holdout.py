"""``rag eval --holdout N``: how often the service declines what its FAQ does not say, on a team's own FAQ and
questions.

N entries that the queries file asks about are removed from the FAQ; the index of the rest is built (its
vectors taken from the full FAQ's index, its confidence fitted on it as on any FAQ) and every question is
asked: those whose entries were removed are questions the FAQ no longer answers (scope ``held_out``),
unless a person has judged that a remaining entry answers them (a judgement file; they are then in scope
with that entry as the answer, scope ``held_out_sibling``). With ``--folds F``, F disjoint sets of N
entries are removed in turn and the outcomes of every fold are scored together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rag.corpus.sources import load_corpus, read_jsonl
from rag.errors import ConfigError, SourceError
from rag.evaluation.run import EvalQuery, InProcessBackend, Outcome, run_eval
from rag.indexing.faq_index import FaqIndex
from rag.publishing.publisher import Publisher
from rag.query.cache import normalise_query
from rag.query.service import QueryService


@dataclass
class Judgements:
    """A person's word on whether an entry answers a question: ``{"query", "entry", "answers": bool}`` lines."""

    answers: dict[tuple[str, str], bool] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> Judgements:
        if path is None:
            return cls()
        found = {}
        for number, row in read_jsonl(Path(path)):
            if not (
                isinstance(row, dict) and isinstance(row.get("query"), str) and isinstance(row.get("answers"), bool)
            ):
                wanted = 'each line needs "query", "entry" and "answers" (true or false)'
                raise SourceError(path, wanted, where=f"line {number}")
            found[(normalise_query(row["query"]), str(row.get("entry")))] = row["answers"]
        return cls(found)

    def answering(self, query: str, entries: set[str]) -> list[str]:
        """The ``entries`` judged to answer ``query``."""
        key = normalise_query(query)
        return sorted(e for e in entries if self.answers.get((key, e)))

    def known(self, query: str, entry: str) -> bool | None:
        return self.answers.get((normalise_query(query), entry))


@dataclass
class Fold:
    """One run: the entries removed, the questions as asked of the rest, and what the service did."""

    held: list[str]
    queries: list[EvalQuery]
    outcomes: list[Outcome]
    calibration: dict[str, Any]


def choose_folds(queries: Sequence[EvalQuery], ids: set[str], size: int, count: int) -> list[list[str]]:
    """``count`` disjoint sets of ``size`` entries the queries ask about, drawn in a fixed order."""
    asked = sorted(
        {r for q in queries for r in q.relevant if r in ids}, key=lambda i: hashlib.sha256(i.encode()).digest()
    )
    if size < 1 or count < 1 or size * count > len(asked):
        raise ConfigError(
            f"--holdout {size} with --folds {count} needs {size * count} entries that the questions ask about; "
            f"there are {len(asked)}"
        )
    return [asked[i * size : (i + 1) * size] for i in range(count)]


def as_asked(queries: Sequence[EvalQuery], held: set[str], remaining: set[str], judged: Judgements) -> list[EvalQuery]:
    """The questions as the reduced FAQ meets them (see the module's text)."""
    out = []
    for q in queries:
        if not q.relevant or not set(q.relevant) <= held:
            out.append(replace(q, relevant=[r for r in q.relevant if r not in held]) if q.relevant else q)
            continue
        siblings = judged.answering(q.query, remaining)
        tags = {**q.tags, "scope": "held_out_sibling" if siblings else "held_out"}
        out.append(replace(q, relevant=siblings, tags=tags))
    return out


Build = Callable[[Publisher, FaqIndex], None]  # build (when needed) and load a fold's index, from a seed index


def build_fold(publisher: Publisher, seed: FaqIndex) -> None:
    if publisher.needs_build():
        publisher.build(seed=seed)
    publisher.query.load()


def run_holdout(
    full: Publisher,
    queries: Sequence[EvalQuery],
    folds: list[list[str]],
    judged: Judgements,
    cache: Path,
    k: int = 10,
    build: Build = build_fold,
) -> list[Fold]:
    """For each fold, build the index of the FAQ served by ``full`` (loaded) without the fold's entries, in a
    folder of ``cache`` named after them, and ask every question of it."""
    settings, corpus = full.settings, full.sources
    entries = load_corpus(corpus).entries
    glossary = settings.index.glossary or next(
        (p.parent / "glossary.json" for p in corpus if (p.parent / "glossary.json").exists()), None
    )
    done = []
    for held in folds:
        folder = cache / ("holdout-" + hashlib.sha256("\n".join(sorted(held)).encode()).hexdigest()[:12])
        source = _write_without(entries, set(held), folder / "faq.jsonl")
        fold_settings = settings.replace(sources=[source], index_dir=folder / "index", glossary=glossary)
        publisher = Publisher(QueryService(fold_settings, full.query.embedder))
        build(publisher, full.query.index)
        service = publisher.query
        remaining = {e.id for e in service.index.entries}
        asked = as_asked(queries, set(held), remaining, judged)
        record = service.index.manifest.calibration
        outcomes = run_eval(asked, InProcessBackend(service), k)
        done.append(Fold(held, asked, outcomes, record.model_dump() if record else {}))
    return done


def _write_without(entries: list, held: set[str], path: Path) -> Path:
    """The FAQ without the ``held`` entries, as JSONL (ids, links and facets kept); rewritten only when it changes."""
    rows = [
        json.dumps(
            {"id": e.id, "question": e.question, "answer": e.answer, "url": e.url, **e.metadata}, ensure_ascii=False
        )
        for e in entries
        if e.id not in held
    ]
    text = "\n".join(rows) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def held_out_answers(folds: list[Fold], judged: Judgements) -> list[dict[str, Any]]:
    """Every held-out question the service answered, with the entry it was answered from and a person's word on
    it when there is one (``judged``: true, false or null)."""
    rows = []
    for fold in folds:
        for q, o in zip(fold.queries, fold.outcomes):
            if q.tags.get("scope", "").startswith("held_out") and not o.abstained and o.ranking:
                rows.append({"query": q.query, "entry": o.ranking[0], "judged": judged.known(q.query, o.ranking[0])})
    return rows
