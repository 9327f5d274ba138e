"""PostgreSQL under the store (``RAG_DATABASE_URL``): one database for every replica."""

from __future__ import annotations

import os
import re
import threading
from typing import Any

from rag.errors import StoreUnavailable
from rag.store.database import Database, Rows, unavailable
from rag.store.schema import SCHEMA, upgrade


class PostgresDatabase(Database):
    """PostgreSQL through one connection pool per process (``RAG_DATABASE_URL``): one store for every replica.

    The pool connects in the background: the service starts and answers without the database, and a call
    waits for a connection at most ``timeout`` seconds. The tables are made (or brought forward) once they can
    be, under an advisory lock, so that replicas starting together on an empty database do not race; in ``schema``
    (made when missing) when one is named, so that several FAQs can share one database."""

    DAY = "to_char(to_timestamp({0}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    LOCK = 7_210_463_118  # the advisory lock that serialises schema changes across replicas

    def __init__(self, url: str, max_connections: int = 8, timeout: float = 1.0, schema: str = "") -> None:
        self.url, self.max_connections, self.timeout, self.schema = url, max_connections, timeout, schema
        self._pool: Any = None
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.pools_opened = 0
        self.last_error: str | None = None

    @property
    def _where(self) -> str:
        where = re.sub(r"//[^@/]*@", "//", self.url)  # never the password
        return f"{where} (schema {self.schema})" if self.schema else where

    @property
    def ready(self) -> bool:
        """The database was reached and its tables are there."""
        return self._ready.is_set()

    def open(self, wait: float = 0.0) -> PostgresDatabase:
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
                    configure=self._configure if self.schema else None,
                )
                self._pool.open(wait=False)
                self.pools_opened += 1
                threading.Thread(target=self._prepare, name="store-schema", daemon=True).start()
        self._ready.wait(wait)
        return self

    def _configure(self, db: Any) -> None:
        """Each new connection looks for the tables in the store's schema first."""
        from psycopg import sql

        db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))

    def _prepare(self) -> None:
        """Make the tables once the database answers, retrying with a doubling wait."""
        import psycopg
        from psycopg import sql
        from psycopg_pool import PoolTimeout

        wait = 0.5
        while not self._stop.is_set():
            try:
                with self._pool.connection(timeout=5) as db, db.transaction():
                    db.execute("SELECT pg_advisory_xact_lock(%s)", (self.LOCK,))
                    # made only when missing: a schema an administrator made needs no right to create one
                    if (
                        self.schema
                        and not db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)).fetchone()
                    ):
                        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
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

    def run(self, sql: str, args: tuple[Any, ...] = ()) -> Rows:
        import psycopg
        from psycopg_pool import PoolTimeout

        if self._pool is None:
            self.open()
        if not self._ready.is_set():
            detail = f" ({self.last_error})" if self.last_error else ""
            raise StoreUnavailable(f"the feedback store {self._where} is not reachable yet{detail}; try again later")
        with (
            unavailable(self._where, (psycopg.Error, PoolTimeout, OSError)),
            self._pool.connection(timeout=self.timeout) as db,
        ):
            cursor = db.execute(sql.replace("?", "%s"), args)
            return cursor.fetchall() if cursor.description else []


def holds_answers(url: str, schema: str = "", timeout: float = 3.0) -> bool:
    """Whether the database (in ``schema``, else where the connection looks first) holds the answers table: a
    store there kept something. :class:`StoreUnavailable` when it cannot be reached."""
    import psycopg

    where = re.sub(r"//[^@/]*@", "//", url)
    with (
        unavailable(where, (psycopg.Error, OSError)),
        psycopg.connect(url, connect_timeout=max(int(timeout), 1), autocommit=True) as db,
    ):
        if schema:
            query = "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'answers'"
            return db.execute(query, (schema,)).fetchone() is not None
        return db.execute("SELECT to_regclass('answers')").fetchone()[0] is not None
