"""The answers given: one row per question asked (its text with personal data removed, or none when questions
are not kept), what was shown or cited, the confidence and the channel; the question log the gap report reads."""

from __future__ import annotations

import json
import time
from typing import Any

from rag.models import Answer
from rag.store.database import Database
from rag.store.privacy import mentions, scrub


def answer_row(
    answer_id: str, answer: Answer, at: float | None = None, channel: str = "api", keep_text: bool = True
) -> dict[str, Any]:
    """What is recorded of an answer, as plain JSON (it may wait in the spool): its question and answer with
    personal data removed (:func:`~rag.store.privacy.scrub`), or without any text when questions are not kept."""
    return {
        "id": answer_id,
        "at": time.time() if at is None else at,
        "query": scrub(answer.query) if keep_text else "",
        "answer": scrub(answer.answer) if keep_text else "",
        "abstained": answer.abstained,
        "outcome": answer.outcome,
        "cited": [c.id for c in answer.citations],
        "passages": [
            {"id": p.id, "score": p.score, "dense": p.dense_score, "bm25": p.bm25_score} for p in answer.passages
        ],
        "channel": channel,
        "confidence": answer.confidence,
    }


def _reasons(abstained: Any, outcome: Any, helpful: Any, confidence: Any, low_confidence: float | None) -> list[str]:
    reasons = ["suggested" if outcome == "suggested" else "declined"] if abstained else []
    if helpful is not None and not helpful:
        reasons.append("not_useful")
    if low_confidence is not None and not abstained and confidence is not None and confidence < low_confidence:
        reasons.append("low_confidence")
    return reasons


class Answers:
    """The answers table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def insert(self, row: dict[str, Any]) -> None:
        """Record an answer given (a row of :func:`answer_row`); recording it again changes nothing."""
        self.db.run(
            "INSERT INTO answers (id, created_at, query, answer, abstained, cited_ids, passages, channel, confidence, "
            "outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (
                row["id"],
                row["at"],
                row["query"],
                row["answer"],
                int(row["abstained"]),
                json.dumps(row["cited"]),
                json.dumps(row["passages"]),
                row.get("channel", "api"),
                row.get("confidence"),
                row.get("outcome"),
            ),
        )

    def known(self, answer_id: str) -> bool:
        return bool(self.db.run("SELECT 1 FROM answers WHERE id = ?", (answer_id,)))

    def count(self) -> int:
        return int(self.db.run("SELECT COUNT(*) FROM answers")[0][0])

    def question_log(self, low_confidence: float) -> list[dict[str, Any]]:
        """The logged questions a gap may hold — declined, answered with a confidence below ``low_confidence``,
        or voted not useful — that no curation resolved yet, oldest first, with their text (kept ones only)."""
        rows = self.db.run(
            "SELECT a.id, a.created_at, a.query, a.abstained, a.outcome, a.confidence, a.cited_ids, a.passages, "
            "a.channel, f.helpful FROM answers a LEFT JOIN feedback f ON f.answer_id = a.id "
            "LEFT JOIN resolved r ON r.answer_id = a.id WHERE r.answer_id IS NULL AND a.query <> '' "
            "AND (a.abstained = 1 OR f.helpful = 0 OR a.confidence < ?) ORDER BY a.created_at, a.id",
            (low_confidence,),
        )
        return [
            {
                "id": answer_id,
                "at": at,
                "query": query,
                "reasons": _reasons(abstained, outcome, helpful, confidence, low_confidence),
                "confidence": confidence,
                "cited": json.loads(cited),
                "shown": [p["id"] for p in json.loads(passages)],
                "channel": channel,
            }
            for answer_id, at, query, abstained, outcome, confidence, cited, passages, channel, helpful in rows
        ]

    def logged(self, answer_id: str) -> dict[str, Any] | None:
        """One logged question, as :meth:`question_log` gives them (None when it is not logged, or not kept)."""
        rows = self.db.run(
            "SELECT a.id, a.created_at, a.query, a.abstained, a.outcome, a.confidence, a.channel, a.cited_ids, "
            "a.answer, f.helpful FROM answers a LEFT JOIN feedback f ON f.answer_id = a.id "
            "WHERE a.id = ? AND a.query <> ''",
            (answer_id,),
        )
        if not rows:
            return None
        answer_id, at, query, abstained, outcome, confidence, channel, cited, answer, helpful = rows[0]
        return {
            "id": answer_id,
            "at": at,
            "query": query,
            "reasons": _reasons(abstained, outcome, helpful, None, None),
            "confidence": confidence,
            "channel": channel,
            "cited": json.loads(cited),
            "answer": answer,
            "declined": bool(abstained),
            "outcome": outcome or ("declined" if abstained else "answered"),
        }

    def record(self, answer_id: str) -> dict[str, Any] | None:
        """One answer as recorded, with or without its text (None when the store does not hold it)."""
        rows = self.db.run(
            "SELECT query, answer, cited_ids, confidence, abstained, outcome, channel FROM answers WHERE id = ?",
            (answer_id,),
        )
        if not rows:
            return None
        query, answer, cited, confidence, abstained, outcome, channel = rows[0]
        outcome = outcome or ("declined" if abstained else "answered")
        return {
            "query": query,
            "answer": answer,
            "cited": json.loads(cited),
            "confidence": confidence,
            "outcome": outcome,
            "channel": channel,
        }

    def erase(self, before: float | None = None, containing: str | None = None) -> list[str]:
        """Erase logged questions (and the votes and resolutions of them): all of them, those given before
        ``before``, and/or those whose question mentions ``containing``; the ids erased."""
        where, args = ("WHERE created_at < ?", (before,)) if before is not None else ("", ())
        rows = self.db.run(f"SELECT id, query FROM answers {where}", args)
        ids = [i for i, query in rows if containing is None or mentions(query or "", containing)]
        for start in range(0, len(ids), 500):
            chunk = tuple(ids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            for table, key in (("resolved", "answer_id"), ("feedback", "answer_id"), ("answers", "id")):
                self.db.run(f"DELETE FROM {table} WHERE {key} IN ({marks})", chunk)
        return ids
