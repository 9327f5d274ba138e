"""Answers given and "was this answer useful?" feedback, kept in SQLite (WAL, synchronous writes).

Every write is committed before the caller is told it succeeded, so a killed process loses nothing
that was acknowledged.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import StoreUnavailable, UnknownAnswer
from .models import Answer

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    query TEXT NOT NULL,
    answer TEXT NOT NULL,
    abstained INTEGER NOT NULL,
    cited_ids TEXT NOT NULL,
    passages TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    answer_id TEXT PRIMARY KEY REFERENCES answers(id),
    helpful INTEGER NOT NULL,
    comment TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_time ON feedback(updated_at);
"""


@contextmanager
def _unavailable(path: Path) -> Iterator[None]:
    """A read-only folder, a full disk or a broken file: one :class:`StoreUnavailable` saying so."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise StoreUnavailable(f"the feedback store {path} cannot be written ({exc}); try again later") from None


class FeedbackStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def open(self) -> FeedbackStore:
        if self._db is None:
            with _unavailable(self.path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA foreign_keys=ON")
                db.executescript(SCHEMA)
                self._db = db
        return self

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        self.open()
        assert self._db is not None
        with self._lock, _unavailable(self.path):
            return self._db.execute(sql, args).fetchall()

    def record_answer(self, answer_id: str, answer: Answer) -> None:
        passages = [
            {"id": p.id, "score": p.score, "dense": p.dense_score, "bm25": p.bm25_score} for p in answer.passages
        ]
        self._run(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                answer_id,
                time.time(),
                answer.query,
                answer.answer,
                int(answer.abstained),
                json.dumps([c.id for c in answer.citations]),
                json.dumps(passages),
            ),
        )

    def add_feedback(self, answer_id: str, helpful: bool, comment: str | None) -> bool:
        """Store (or update) feedback; returns True when it replaced earlier feedback."""
        if not self._run("SELECT 1 FROM answers WHERE id = ?", (answer_id,)):
            raise UnknownAnswer(answer_id)
        now = time.time()
        existed = bool(self._run("SELECT 1 FROM feedback WHERE answer_id = ?", (answer_id,)))
        self._run(
            "INSERT INTO feedback VALUES (?, ?, ?, ?, ?) ON CONFLICT(answer_id) DO UPDATE SET "
            "helpful = excluded.helpful, comment = excluded.comment, updated_at = excluded.updated_at",
            (answer_id, int(helpful), comment, now, now),
        )
        return existed

    def feedback(self) -> list[dict[str, Any]]:
        rows = self._run(
            "SELECT f.answer_id, f.helpful, f.comment, f.updated_at, a.query, a.answer, a.abstained, a.cited_ids, "
            "a.passages FROM feedback f JOIN answers a ON a.id = f.answer_id ORDER BY f.updated_at"
        )
        keys = (
            "answer_id",
            "helpful",
            "comment",
            "updated_at",
            "query",
            "answer",
            "abstained",
            "cited_ids",
            "passages",
        )
        out = []
        for row in rows:
            item = dict(zip(keys, row))
            item["helpful"], item["abstained"] = bool(item["helpful"]), bool(item["abstained"])
            item["cited_ids"], item["passages"] = json.loads(item["cited_ids"]), json.loads(item["passages"])
            out.append(item)
        return out

    def export_queries(self) -> list[dict[str, Any]]:
        """Unhelpful and unanswered questions, in the eval queries format, for a person to label."""
        rows = self._run(
            "SELECT a.query, a.abstained, a.cited_ids, f.comment FROM answers a "
            "LEFT JOIN feedback f ON f.answer_id = a.id WHERE f.helpful = 0 OR a.abstained = 1 ORDER BY a.created_at"
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
        per_day = self._run(
            "SELECT date(updated_at, 'unixepoch') AS day, COUNT(*), SUM(helpful) FROM feedback "
            "GROUP BY day ORDER BY day"
        )
        entries: dict[str, list[int]] = {}
        for item in self.feedback():
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
            "answers": self._run("SELECT COUNT(*) FROM answers")[0][0],
            "ratings": self._run("SELECT COUNT(*) FROM feedback")[0][0],
        }
