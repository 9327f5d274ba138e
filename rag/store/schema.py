"""The store's tables, and the migrations that bring an older store forward (each recorded once done)."""

from __future__ import annotations

from typing import Any

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
    4: ["ALTER TABLE answers ADD COLUMN outcome TEXT"],  # answered, suggested or declined (NULL: before 4)
}
SCHEMA_VERSION = max(MIGRATIONS)


def upgrade(execute: Any, current: int, real: str) -> None:
    """Run the migrations after ``current`` (the tables' version), each recorded once done."""
    for version in sorted(v for v in MIGRATIONS if v > current):
        for statement in MIGRATIONS[version]:
            execute(statement.format(real=real))
        execute(f"INSERT INTO schema_version VALUES ({version})")
