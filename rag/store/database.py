"""The database under the store: an embedded SQLite file (WAL, synchronous writes) by default, or PostgreSQL
shared by several replicas. Every write is committed before the caller is told it succeeded, so a killed
process loses nothing that was acknowledged."""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rag.errors import StoreUnavailable
from rag.store.schema import SCHEMA, upgrade

Rows = list[tuple[Any, ...]]


class Database(ABC):
    """Runs statements written with ``?`` placeholders, in SQL both databases read."""

    DAY = ""  # the SQL of the day (YYYY-MM-DD) of an epoch time in column {0}

    @abstractmethod
    def open(self, wait: float = 0.0) -> Database:
        """Connect (``wait``: seconds to wait for a database that is being reached in the background)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def run(self, sql: str, args: tuple[Any, ...] = ()) -> Rows:
        """Run one statement and return its rows; :class:`StoreUnavailable` when the database cannot."""

    @property
    def ready(self) -> bool:
        """The database was reached and its tables are there."""
        return True


@contextmanager
def unavailable(where: object, errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """A read-only folder, a full disk, a database down: one :class:`StoreUnavailable` saying so."""
    try:
        yield
    except errors as exc:
        raise StoreUnavailable(f"the feedback store {where} cannot be written ({exc}); try again later") from None


class SqliteDatabase(Database):
    """One SQLite file (WAL, synchronous writes): the embedded default, shared by the workers of one machine."""

    DAY = "date({0}, 'unixepoch')"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def open(self, wait: float = 0.0) -> SqliteDatabase:
        if self._db is None:
            with unavailable(self.path, (sqlite3.Error, OSError)):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA foreign_keys=ON")
                db.execute("PRAGMA secure_delete=ON")  # an erased question leaves no bytes behind in the file
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

    def run(self, sql: str, args: tuple[Any, ...] = ()) -> Rows:
        self.open()
        assert self._db is not None
        with self._lock, unavailable(self.path, (sqlite3.Error, OSError)):
            return self._db.execute(sql, args).fetchall()
