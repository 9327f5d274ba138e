"""« Cette réponse vous a-t-elle été utile ? »: one vote per answer (the latest given wins), its comment, and what
the team reads of them: the helpful rate per day, the least helpful entries, the questions to label."""

from __future__ import annotations

import json
import time
from typing import Any

from rag.errors import UnknownAnswer
from rag.store.database import Database
from rag.store.privacy import mentions


class Votes:
    """The feedback table, and the statistics read from it with the answers."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, answer_id: str, helpful: bool, comment: str | None, at: float | None = None) -> bool:
        """Store (or update) a vote given at ``at`` (now by default): the latest given wins, whatever the order
        it arrives in. True when it replaced an earlier one; :class:`UnknownAnswer` for an answer not recorded."""
        if not self.db.run("SELECT 1 FROM answers WHERE id = ?", (answer_id,)):
            raise UnknownAnswer(answer_id)
        at = time.time() if at is None else at
        existed = bool(self.db.run("SELECT 1 FROM feedback WHERE answer_id = ?", (answer_id,)))
        self.db.run(
            "INSERT INTO feedback VALUES (?, ?, ?, ?, ?) ON CONFLICT(answer_id) DO UPDATE SET "
            "helpful = excluded.helpful, comment = excluded.comment, updated_at = excluded.updated_at "
            "WHERE excluded.updated_at >= feedback.updated_at",
            (answer_id, int(helpful), comment, at, at),
        )
        return existed

    def erase_comments(self, containing: str) -> int:
        """Forget the comments that mention ``containing`` (the votes stay, without them); how many."""
        rows = self.db.run("SELECT answer_id, comment FROM feedback WHERE comment IS NOT NULL")
        named = [answer_id for answer_id, comment in rows if mentions(comment, containing)]
        for answer_id in named:
            self.db.run("UPDATE feedback SET comment = NULL WHERE answer_id = ?", (answer_id,))
        return len(named)

    def all(self) -> list[dict[str, Any]]:
        """Every vote with its answer, oldest first."""
        rows = self.db.run(
            "SELECT f.answer_id, f.helpful, f.comment, f.updated_at, a.query, a.answer, a.abstained, a.cited_ids, "
            "a.passages FROM feedback f JOIN answers a ON a.id = f.answer_id ORDER BY f.updated_at"
        )
        keys = ("answer_id", "helpful", "comment", "updated_at", "query", "answer", "abstained", "cited_ids")
        out = []
        for row in rows:
            item = dict(zip((*keys, "passages"), row))
            item["helpful"], item["abstained"] = bool(item["helpful"]), bool(item["abstained"])
            item["cited_ids"], item["passages"] = json.loads(item["cited_ids"]), json.loads(item["passages"])
            out.append(item)
        return out

    def to_label(self) -> list[dict[str, Any]]:
        """Unhelpful and unanswered questions, in the eval queries format, for a person to label."""
        rows = self.db.run(
            "SELECT a.query, a.abstained, a.cited_ids, f.comment FROM answers a "
            "LEFT JOIN feedback f ON f.answer_id = a.id WHERE (f.helpful = 0 OR a.abstained = 1) AND a.query <> '' "
            "ORDER BY a.created_at"
        )
        seen: set[str] = set()
        out = []
        for query, abstained, cited, comment in rows:
            if query in seen:
                continue
            seen.add(query)
            reason = "unanswered" if abstained else "unhelpful"
            item = {"query": query, "relevant": [], "reason": reason, "cited": json.loads(cited)}
            if comment:
                item["comment"] = comment
            out.append(item)
        return out

    def stats(self) -> dict[str, Any]:
        """The helpful rate per day, the least helpful entries, the counts and the gap trend."""
        day = self.db.DAY.format("updated_at")
        per_day = self.db.run(f"SELECT {day} AS day, COUNT(*), SUM(helpful) FROM feedback GROUP BY day ORDER BY day")
        entries: dict[str, list[int]] = {}
        for item in self.all():
            for entry_id in item["cited_ids"]:
                counts = entries.setdefault(entry_id, [0, 0])
                counts[0] += 1
                counts[1] += int(item["helpful"])
        least = sorted(
            ({"id": k, "ratings": n, "helpful_rate": round(h / n, 3)} for k, (n, h) in entries.items()),
            key=lambda r: (r["helpful_rate"], -r["ratings"]),
        )
        return {
            "per_day": [{"day": d, "ratings": n, "helpful_rate": round((h or 0) / n, 3)} for d, n, h in per_day],
            "least_helpful_entries": least[:10],
            "answers": self.db.run("SELECT COUNT(*) FROM answers")[0][0],
            "ratings": self.db.run("SELECT COUNT(*) FROM feedback")[0][0],
            "gap_trend": self.gap_trend(),
        }

    def gap_trend(self, low_confidence: float = 0.6) -> list[dict[str, Any]]:
        """Per day: the questions logged, and those that could make a gap (declined, answered with a confidence
        below ``low_confidence``, voted not useful)."""
        day = self.db.DAY.format("a.created_at")
        rows = self.db.run(
            f"SELECT {day} AS day, COUNT(*), SUM(CASE WHEN a.abstained = 1 OR f.helpful = 0 OR a.confidence < ? "
            "THEN 1 ELSE 0 END) FROM answers a LEFT JOIN feedback f ON f.answer_id = a.id GROUP BY day ORDER BY day",
            (low_confidence,),
        )
        return [{"day": d, "questions": n, "gap_questions": int(g or 0)} for d, n, g in rows]
