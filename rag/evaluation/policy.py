"""How ``rag eval`` runs: the index of an eval corpus (cached beside the default index), the held-out folds and
what their report says, the LLM's grading, and the gate."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.errors import ConfigError
from rag.evaluation.holdout import Judgements, choose_folds, held_out_answers, run_holdout
from rag.evaluation.run import check_gate
from rag.llm import ChatClient, PromptSet
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

Build = Callable[[Publisher, Any], None]  # build (when needed, from a seed index) and load


def eval_index_dir(settings: Settings, corpus: list[Path]) -> Path:
    """A cached index per eval corpus and embedder, beside the default index."""
    key = hashlib.sha1(json.dumps(sorted(str(p.resolve()) for p in corpus)).encode()).hexdigest()[:12]
    return Path(settings.index.index_dir).parent / "eval-cache" / key


def eval_publisher(settings: Settings, corpus: list[Path] | None) -> Publisher:
    """The publisher of the FAQ to evaluate: the configured one, or the eval corpus in its cached folder."""
    if corpus:
        settings = settings.replace(sources=corpus, index_dir=eval_index_dir(settings, corpus))
    return Publisher(QueryService(settings))


def holdout(
    full: Publisher, items: list, size: int, count: int, judgements: Path | None, k: int, build: Build
) -> tuple[list, list, dict[str, Any]]:
    """Every fold's questions and outcomes, one after the other (ids prefixed by the fold), and what to report."""
    judged = Judgements.load(judgements)
    chosen = choose_folds(items, {e.id for e in full.query.index.entries}, size, count)
    index_dir = full.settings.index.index_dir
    cache = index_dir.parent / f"{index_dir.name}-holdout"
    done = run_holdout(full, items, chosen, judged, cache, k, build)
    asked = [dataclasses.replace(q, qid=f"f{n}-{q.qid}") for n, fold in enumerate(done, 1) for q in fold.queries]
    outcomes = [o for fold in done for o in fold.outcomes]
    held = [q for q in asked if q.tags.get("scope", "").startswith("held_out")]
    extra = {
        "holdout": {
            "entries_per_fold": size,
            "folds": count,
            "held_out_questions": len(held),
            "answered_by_a_remaining_entry": sum(1 for q in held if q.relevant),
            "calibration": [fold.calibration for fold in done],
        },
        "held_out_answers": held_out_answers(done, judged),
    }
    return asked, outcomes, extra


def llm_client(settings: Settings) -> tuple[ChatClient, PromptSet]:
    """The configured LLM's client and prompts; a clear line when there is none."""
    if not settings.llm.base_url:
        raise ConfigError("this needs an LLM: set RAG_LLM_BASE_URL (and RAG_LLM_MODEL) to an OpenAI-compatible server")
    return ChatClient(settings.llm), PromptSet.load(settings.answer.prompts_dir)


def judge(
    settings: Settings, items: list, outcomes: list, votes: int, progress: Callable[[int, int], None]
) -> dict[str, Any]:
    """The LLM's grades of every answer (every reply cached beside the index)."""
    from rag.evaluation.grading import Cache, Grader, grade_run

    client, prompts = llm_client(settings)
    cache = Cache(settings.index.index_dir.parent / "eval-cache" / "judge.jsonl")
    grader = Grader(client, prompts.grade, settings.answer.faq_name, cache, votes, timeout=settings.llm.total_timeout)
    try:
        found, _ = grade_run(grader, items, outcomes, progress)
    finally:
        client.close()
    return found


def gate_failures(report: dict[str, Any], gate: Path) -> list[str]:
    """What the report misses of the gate's minimums (empty: it passes)."""
    return check_gate(report, json.loads(Path(gate).read_text(encoding="utf-8")))
