"""Answers given and "was this answer useful?" feedback: in SQLite (WAL, synchronous writes) by default,
or in PostgreSQL shared by several replicas.

Every write is committed before the caller is told it succeeded, so a killed process loses nothing
that was acknowledged.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.corpus.curated import CuratedItem, Curation
from rag.errors import ConfigError, StoreUnavailable, UnknownAnswer
from rag.models import Answer
from rag.store.privacy import scrub

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY,
    created_at {real} NOT NULL,
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
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_time ON feedback(updated_at);
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY);
"""
# each later version: the statements that bring the tables of the one before to it
MIGRATIONS = {
    2: [
        "ALTER TABLE answers ADD COLUMN channel TEXT NOT NULL DEFAULT 'api'",
        "ALTER TABLE answers ADD COLUMN confidence {real}",
        "CREATE INDEX IF NOT EXISTS answers_time ON answers(created_at)",
        "CREATE TABLE IF NOT EXISTS curated (id TEXT PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL, "
        "created_at {real} NOT NULL)",
        "CREATE TABLE IF NOT EXISTS resolved (answer_id TEXT PRIMARY KEY, gap TEXT NOT NULL, action TEXT NOT NULL, "
        "at {real} NOT NULL)",
    ],
    3: ["CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until {real} NOT NULL)"],
}
SCHEMA_VERSION = max(MIGRATIONS)


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
        "cited": [c.id for c in answer.citations],
        "passages": [
            {"id": p.id, "score": p.score, "dense": p.dense_score, "bm25": p.bm25_score} for p in answer.passages
        ],
        "channel": channel,
        "confidence": answer.confidence,
    }


def upgrade(execute: Any, current: int, real: str) -> None:
    """Run the migrations after ``current`` (the tables' version), each recorded once done."""
    for version in sorted(v for v in MIGRATIONS if v > current):
        for statement in MIGRATIONS[version]:
            execute(statement.format(real=real))
        execute(f"INSERT INTO schema_version VALUES ({version})")


class FeedbackStore(ABC):
    """What every store does, in SQL both databases read; a subclass connects and runs the statements."""

    DAY = ""  # the SQL of the day (YYYY-MM-DD) of an epoch time in column {0}

    @abstractmethod
    def open(self, wait: float = 0.0) -> FeedbackStore:
        """Connect (``wait``: seconds to wait for a store that is being reached in the background)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``?`` placeholders) and return its rows."""

    def record_answer(self, answer_id: str, answer: Answer, at: float | None = None) -> None:
        self.insert_answer(answer_row(answer_id, answer, at))

    def insert_answer(self, row: dict[str, Any]) -> None:
        """Record an answer given (a row of :func:`answer_row`); recording it again changes nothing."""
        self._run(
            "INSERT INTO answers (id, created_at, query, answer, abstained, cited_ids, passages, channel, confidence) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
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
            ),
        )

    def add_feedback(self, answer_id: str, helpful: bool, comment: str | None, at: float | None = None) -> bool:
        """Store (or update) feedback given at ``at`` (now by default): the latest given wins, whatever the order
        it arrives in. Returns True when it replaced earlier feedback."""
        if not self._run("SELECT 1 FROM answers WHERE id = ?", (answer_id,)):
            raise UnknownAnswer(answer_id)
        at = time.time() if at is None else at
        existed = bool(self._run("SELECT 1 FROM feedback WHERE answer_id = ?", (answer_id,)))
        self._run(
            "INSERT INTO feedback VALUES (?, ?, ?, ?, ?) ON CONFLICT(answer_id) DO UPDATE SET "
            "helpful = excluded.helpful, comment = excluded.comment, updated_at = excluded.updated_at "
            "WHERE excluded.updated_at >= feedback.updated_at",
            (answer_id, int(helpful), comment, at, at),
        )
        return existed

    def lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take the lease ``name`` for ``seconds`` once the last one (anyone's) ran out: True for the one caller
        that took it, so that a piece of work is done once per period across replicas."""
        now = time.time()
        until = now + seconds
        self._run(
            "INSERT INTO leases (name, holder, until) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "holder = excluded.holder, until = excluded.until WHERE leases.until < ?",
            (name, holder, until, now),
        )
        rows = self._run("SELECT holder, until FROM leases WHERE name = ?", (name,))
        return bool(rows) and rows[0][0] == holder and rows[0][1] == until

    def purge(self, before: float) -> int:
        """Forget the answers given before ``before`` (epoch seconds) and the votes on them (and leases run out);
        how many answers."""
        self._run("DELETE FROM leases WHERE until < ?", (time.time(),))
        return self.erase(before=before)

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
        day = self.DAY.format("updated_at")
        per_day = self._run(f"SELECT {day} AS day, COUNT(*), SUM(helpful) FROM feedback GROUP BY day ORDER BY day")
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
            "gap_trend": self.gap_trend(),
        }

    def gap_trend(self, low_confidence: float = 0.6) -> list[dict[str, Any]]:
        """Per day: the questions logged, and those that could make a gap (declined, answered with a confidence
        below ``low_confidence``, voted not useful)."""
        day = self.DAY.format("a.created_at")
        rows = self._run(
            f"SELECT {day} AS day, COUNT(*), SUM(CASE WHEN a.abstained = 1 OR f.helpful = 0 OR a.confidence < ? "
            "THEN 1 ELSE 0 END) FROM answers a LEFT JOIN feedback f ON f.answer_id = a.id GROUP BY day ORDER BY day",
            (low_confidence,),
        )
        return [{"day": d, "questions": n, "gap_questions": int(g or 0)} for d, n, g in rows]

    def question_log(self, low_confidence: float) -> list[dict[str, Any]]:
        """The logged questions a gap may hold — declined, answered with a confidence below ``low_confidence``,
        or voted not useful — that no curation resolved yet, oldest first, with their text (kept ones only)."""
        rows = self._run(
            "SELECT a.id, a.created_at, a.query, a.abstained, a.confidence, a.cited_ids, a.passages, a.channel, "
            "f.helpful FROM answers a LEFT JOIN feedback f ON f.answer_id = a.id "
            "LEFT JOIN resolved r ON r.answer_id = a.id WHERE r.answer_id IS NULL AND a.query <> '' "
            "AND (a.abstained = 1 OR f.helpful = 0 OR a.confidence < ?) ORDER BY a.created_at, a.id",
            (low_confidence,),
        )
        out = []
        for answer_id, at, query, abstained, confidence, cited, passages, channel, helpful in rows:
            reasons = ["declined"] if abstained else []
            if helpful is not None and not helpful:
                reasons.append("not_useful")
            if not abstained and confidence is not None and confidence < low_confidence:
                reasons.append("low_confidence")
            shown = [p["id"] for p in json.loads(passages)]
            out.append(
                {
                    "id": answer_id,
                    "at": at,
                    "query": query,
                    "reasons": reasons,
                    "confidence": confidence,
                    "cited": json.loads(cited),
                    "shown": shown,
                    "channel": channel,
                }
            )
        return out

    def logged(self, answer_id: str) -> dict[str, Any] | None:
        """One logged question, as :meth:`question_log` gives them (None when it is not logged, or not kept)."""
        rows = self._run(
            "SELECT a.id, a.created_at, a.query, a.abstained, a.confidence, a.channel, f.helpful FROM answers a "
            "LEFT JOIN feedback f ON f.answer_id = a.id WHERE a.id = ? AND a.query <> ''",
            (answer_id,),
        )
        if not rows:
            return None
        answer_id, at, query, abstained, confidence, channel, helpful = rows[0]
        reasons = (["declined"] if abstained else []) + (["not_useful"] if helpful is not None and not helpful else [])
        return {
            "id": answer_id,
            "at": at,
            "query": query,
            "reasons": reasons,
            "confidence": confidence,
            "channel": channel,
        }

    def mark_resolved(self, answer_ids: list[str], gap: str, action: str, at: float | None = None) -> None:
        """The questions a curation covered: they leave the gap report."""
        at = time.time() if at is None else at
        for answer_id in answer_ids:
            self._run(
                "INSERT INTO resolved VALUES (?, ?, ?, ?) ON CONFLICT (answer_id) DO NOTHING",
                (answer_id, gap, action, at),
            )

    def add_curated(self, item: CuratedItem) -> bool:
        """Keep a curated item (a new entry, phrasings, questions out of scope); True when it was not there."""
        existed = bool(self._run("SELECT 1 FROM curated WHERE id = ?", (item.id,)))
        self._run(
            "INSERT INTO curated VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, "
            "payload = excluded.payload",
            (item.id, item.kind, item.model_dump_json(exclude_none=True), item.at),
        )
        return not existed

    def curation(self) -> Curation:
        """Every curated item, oldest first."""
        rows = self._run("SELECT payload FROM curated ORDER BY created_at, id")
        return Curation.of(CuratedItem.model_validate_json(payload) for (payload,) in rows)

    def erase(self, before: float | None = None, containing: str | None = None) -> int:
        """Erase logged questions (and the votes on them): all of them, those given before ``before``, or those
        whose question contains ``containing`` (any case); how many. Curated items are the team's and stay."""
        where, args = [], []
        if before is not None:
            where.append("created_at < ?")
            args.append(before)
        if containing:
            where.append("LOWER(query) LIKE ?")
            args.append("%" + containing.lower().replace("%", "").replace("_", "") + "%")
        chosen = "SELECT id FROM answers" + (" WHERE " + " AND ".join(where) if where else "")
        count = self._run(f"SELECT COUNT(*) FROM ({chosen}) AS chosen", tuple(args))[0][0]
        self._run(f"DELETE FROM resolved WHERE answer_id IN ({chosen})", tuple(args))
        self._run(f"DELETE FROM feedback WHERE answer_id IN ({chosen})", tuple(args))
        self._run(f"DELETE FROM answers WHERE id IN ({chosen})", tuple(args))
        return int(count)


@contextmanager
def _unavailable(where: object, errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """A read-only folder, a full disk, a database down: one :class:`StoreUnavailable` saying so."""
    try:
        yield
    except errors as exc:
        raise StoreUnavailable(f"the feedback store {where} cannot be written ({exc}); try again later") from None


class SqliteStore(FeedbackStore):
    """One SQLite file (WAL, synchronous writes): the embedded default, shared by the workers of one machine."""

    DAY = "date({0}, 'unixepoch')"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def open(self, wait: float = 0.0) -> SqliteStore:
        if self._db is None:
            with _unavailable(self.path, (sqlite3.Error, OSError)):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA foreign_keys=ON")
                db.executescript(SCHEMA.format(real="REAL"))
                db.execute("BEGIN IMMEDIATE")  # one process at a time brings the tables forward
                try:
                    current = db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 1
                    upgrade(db.execute, current, "REAL")
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
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
        with self._lock, _unavailable(self.path, (sqlite3.Error, OSError)):
            return self._db.execute(sql, args).fetchall()


class PostgresStore(FeedbackStore):
    """PostgreSQL through one connection pool per process (``RAG_DATABASE_URL``): one store for every replica.

    The pool connects in the background: the service starts and answers without the database, and a call
    waits for a connection at most ``timeout`` seconds. The tables are made (or brought forward) once they can
    be, under an advisory lock, so that replicas starting together on an empty database do not race."""

    DAY = "to_char(to_timestamp({0}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    LOCK = 7_210_463_118  # the advisory lock that serialises schema changes across replicas

    def __init__(self, url: str, max_connections: int = 8, timeout: float = 1.0) -> None:
        self.url, self.max_connections, self.timeout = url, max_connections, timeout
        self._pool: Any = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.pools_opened = 0
        self.last_error: str | None = None

    @property
    def _where(self) -> str:
        return re.sub(r"//[^@/]*@", "//", self.url)  # never the password

    @property
    def ready(self) -> bool:
        """The database was reached and its tables are there."""
        return self._ready.is_set()

    def open(self, wait: float = 0.0) -> PostgresStore:
        """Make the process's pool, once; it connects, and the tables are made, in the background (waited for
        ``wait`` seconds at most: the command line waits, the service does not)."""
        from psycopg_pool import ConnectionPool

        with self._lock:
            if self._pool is None:
                options = {"autocommit": True, "connect_timeout": 3, "options": "-c statement_timeout=5000"}
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.max_connections,
                    kwargs=options,
                    open=False,
                    name=f"rag-{os.getpid()}",
                    check=ConnectionPool.check_connection,
                )
                self._pool.open(wait=False)
                self.pools_opened += 1
                threading.Thread(target=self._prepare, name="store-schema", daemon=True).start()
        self._ready.wait(wait)
        return self

    def _prepare(self) -> None:
        """Make the tables once the database answers, retrying with a doubling wait."""
        import psycopg
        from psycopg_pool import PoolTimeout

        wait = 0.5
        while not self._stop.is_set():
            try:
                with self._pool.connection(timeout=5) as db, db.transaction():
                    db.execute("SELECT pg_advisory_xact_lock(%s)", (self.LOCK,))
                    db.execute(SCHEMA.format(real="DOUBLE PRECISION"))
                    current = db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 1
                    upgrade(db.execute, current, "DOUBLE PRECISION")
                self.last_error = None
                self._ready.set()
                return
            except (psycopg.Error, PoolTimeout, OSError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}".strip()
                self._stop.wait(wait)
                wait = min(wait * 2, 30.0)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
                self._ready.clear()

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg
        from psycopg_pool import PoolTimeout

        if self._pool is None:
            self.open()
        if not self._ready.is_set():
            detail = f" ({self.last_error})" if self.last_error else ""
            raise StoreUnavailable(f"the feedback store {self._where} is not reachable yet{detail}; try again later")
        with (
            _unavailable(self._where, (psycopg.Error, PoolTimeout, OSError)),
            self._pool.connection(timeout=self.timeout) as db,
        ):
            cursor = db.execute(sql.replace("?", "%s"), args)
            return cursor.fetchall() if cursor.description else []


def make_store(settings: Settings) -> FeedbackStore:
    """PostgreSQL when ``RAG_DATABASE_URL`` names one, else the SQLite file beside the index."""
    url = settings.http.database_url
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url, timeout=settings.http.store_timeout)
    if url:
        raise ConfigError("RAG_DATABASE_URL must be a postgresql:// URL (leave it empty for the SQLite file)")
    return SqliteStore(settings.feedback_path)
