"""What the service keeps about questions, one module per concern over one database (:mod:`.database`: SQLite by
default, PostgreSQL shared by replicas): the answers given (:mod:`.answers`), the votes (:mod:`.votes`), leases
(:mod:`.leases`), the team's curated items and resolutions (:mod:`.curation`); answers and votes are written by
the recorder (:mod:`.recorder`), through a local spool (:mod:`.spool`) while the database is away, personal data
removed first (:mod:`.privacy`)."""

from __future__ import annotations

import time
from pathlib import Path

from rag.config import Settings
from rag.errors import ConfigError
from rag.store.answers import Answers
from rag.store.curation import CuratedItems, Resolutions
from rag.store.database import Database, SqliteDatabase
from rag.store.leases import Leases
from rag.store.votes import Votes


class Store:
    """The store's parts over one database (each reached as an attribute: ``store.votes.add(…)``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.answers = Answers(db)
        self.votes = Votes(db)
        self.leases = Leases(db)
        self.curated = CuratedItems(db)
        self.resolutions = Resolutions(db)

    def open(self, wait: float = 0.0) -> Store:
        self.db.open(wait)
        return self

    def close(self) -> None:
        self.db.close()

    @property
    def ready(self) -> bool:
        return self.db.ready

    def purge(self, before: float) -> int:
        """Forget the answers given before ``before`` (epoch seconds), the votes on them, and leases run out; how
        many answers."""
        self.leases.purge()
        return len(self.answers.erase(before=before))


def make_store(settings: Settings) -> Store:
    """PostgreSQL when ``RAG_DATABASE_URL`` names one, else the SQLite file beside the index."""
    url = settings.http.database_url
    if url.startswith(("postgresql://", "postgres://")):
        from rag.store.postgres import PostgresDatabase

        return Store(PostgresDatabase(url, timeout=settings.http.store_timeout, schema=settings.http.database_schema))
    if url:
        raise ConfigError("RAG_DATABASE_URL must be a postgresql:// URL (leave it empty for the SQLite file)")
    return Store(SqliteDatabase(settings.feedback_path))


def existing_store(settings: Settings, wait: float = 10.0) -> Store | None:
    """The configured store, opened, when it has kept something; None when nothing was ever kept there (no SQLite
    file, no answers table in PostgreSQL): nothing is made. :class:`StoreUnavailable` when it cannot be reached."""
    http = settings.http
    if http.database_url:
        from rag.store.postgres import holds_answers

        if not holds_answers(http.database_url, http.database_schema):
            return None
    elif not Path(settings.feedback_path).exists():
        return None
    return make_store(settings).open(wait=wait)


def purge_at_rest(settings: Settings, wait: float = 5.0) -> int:
    """Forget what is older than the retention in the store of a FAQ no process of this server is serving (its
    recorder, which does it hourly, is not running); how many answers."""
    store = existing_store(settings, wait)
    if store is None:
        return 0
    try:
        return store.purge(time.time() - settings.http.retention_days * 86400)
    finally:
        store.close()


def sqlite_store(path) -> Store:
    """The store in one SQLite file."""
    return Store(SqliteDatabase(path))
