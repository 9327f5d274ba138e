"""Leases: short claims on a piece of work across replicas (a sync, a Chatwoot delivery). A lease is taken for a
few seconds, renewed while the work goes on, released when it fails (so that another try can take it at once)
and, when the work is done, kept as done for as long as the work must not be done again."""

from __future__ import annotations

import time

from rag.store.database import Database


class Leases:
    """The leases table: ``name`` held by ``holder`` until ``until`` (epoch seconds)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(self, name: str, holder: str, seconds: float) -> bool:
        """Take ``name`` for ``seconds`` if nobody holds it (or the last hold ran out): True for the one caller that
        took it."""
        now = time.time()
        until = now + seconds
        self.db.run(
            "INSERT INTO leases (name, holder, until) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "holder = excluded.holder, until = excluded.until WHERE leases.until < ?",
            (name, holder, until, now),
        )
        rows = self.db.run("SELECT holder, until FROM leases WHERE name = ?", (name,))
        return bool(rows) and rows[0][0] == holder and rows[0][1] == until

    def renew(self, name: str, holder: str, seconds: float) -> bool:
        """Extend a lease ``holder`` still holds; False when it ran out and another took it."""
        until = time.time() + seconds
        self.db.run("UPDATE leases SET until = ? WHERE name = ? AND holder = ?", (until, name, holder))
        rows = self.db.run("SELECT holder FROM leases WHERE name = ?", (name,))
        return bool(rows) and rows[0][0] == holder

    def release(self, name: str, holder: str) -> None:
        """Give a lease back (the work failed): anyone may take it at once."""
        self.db.run("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    def finish(self, name: str, holder: str, keep: float) -> None:
        """The work is done: the lease stays taken for ``keep`` seconds, so that nobody does it again meanwhile."""
        self.db.run("UPDATE leases SET until = ? WHERE name = ? AND holder = ?", (time.time() + keep, name, holder))

    def purge(self) -> None:
        """Forget the leases that ran out."""
        self.db.run("DELETE FROM leases WHERE until < ?", (time.time(),))
