"""Each collection's store: several FAQs sharing one PostgreSQL database keep their question logs apart (a schema
each, made when missing, unless a collection's table names a database or a schema of its own), and an erasure
reaches every collection's."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from rag.cli import app as cli
from rag.config import Settings
from rag.config.collections import Collections
from rag.errors import StoreUnavailable
from rag.models import Answer, Citation, Hit
from rag.store import existing_store, make_store, purge_at_rest, sqlite_store
from rag.store.answers import answer_row

from .servers import free_port

URL = "postgresql://faq@db.internal/faq"


def _collections(tmp_path: Path, settings: Settings, extra: str = "") -> Collections:
    for name in ("segur", "my-faq"):
        (tmp_path / f"{name}.jsonl").write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    tables = '[collections.segur]\nsources = ["segur.jsonl"]\n[collections.my-faq]\nsources = ["my-faq.jsonl"]\n'
    (tmp_path / "collections.toml").write_text(tables + extra, encoding="utf-8")
    loaded = Collections.load(settings.replace(collections=tmp_path / "collections.toml"))
    assert loaded is not None
    return loaded


def test_collections_sharing_the_database_get_a_schema_each(tmp_path: Path, tiny_settings: Settings) -> None:
    shared = _collections(tmp_path, tiny_settings.replace(database_url=URL))
    assert {n: s.http.database_schema for n, s in shared.settings.items()} == {
        "segur": "rag_segur",
        "my-faq": "rag_my-faq",
    }
    named = _collections(tmp_path, tiny_settings.replace(database_url=URL, database_schema="faq"))
    assert named.settings["segur"].http.database_schema == "faq_segur"
    own = _collections(tmp_path, tiny_settings.replace(database_url=URL), 'database_url = "postgresql://other/db"\n')
    assert own.settings["my-faq"].http.database_schema == ""  # its own database: its tables where they always were
    alone = _collections(tmp_path, tiny_settings)
    assert {s.http.database_schema for s in alone.settings.values()} == {""}  # SQLite: a file each already


def _answer() -> Answer:
    hit = Hit(id="solde", text="t", score=1.0, url="/entries/solde")
    return Answer(
        query="Comment déposer une demande de solde ?",
        answer="a [1]",
        abstained=False,
        citations=[Citation(n=1, id="solde")],
        passages=[hit],
    )


@pytest.mark.slow
def test_two_schemas_of_one_database_hold_their_own_answers(postgres_url: str, tiny_settings: Settings) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as db:
        for schema in ("rag_segur", "rag_my-faq"):
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    stores = [
        make_store(tiny_settings.replace(database_url=postgres_url, database_schema=s)).open(wait=30)
        for s in ("rag_segur", "rag_my-faq")
    ]
    try:
        stores[0].answers.insert(answer_row("a1", _answer()))
        assert stores[0].answers.known("a1") and not stores[1].answers.known("a1")
        with psycopg.connect(postgres_url) as db:
            found = db.execute(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 'answers' ORDER BY 1"
            ).fetchall()
            assert {"rag_segur", "rag_my-faq"} <= {row[0] for row in found}
            assert db.execute('SELECT id FROM "rag_segur".answers').fetchall() == [("a1",)]
    finally:
        for store in stores:
            store.close()


def test_an_erasure_reaches_every_collection_s_log(tmp_path: Path, tiny_settings: Settings, monkeypatch) -> None:
    collections = _collections(tmp_path, tiny_settings)
    for name, own in collections.settings.items():
        store = sqlite_store(own.feedback_path).open()
        store.answers.insert(answer_row(f"{name}-1", _answer().model_copy(update={"query": "question de Mme Durand"})))
        store.answers.insert(answer_row(f"{name}-2", _answer()))
        store.close()
    monkeypatch.setenv("RAG_COLLECTIONS", str(tmp_path / "collections.toml"))
    monkeypatch.setenv("RAG_INDEX_DIR", str(tiny_settings.index.index_dir))
    erased = CliRunner().invoke(cli, ["log", "erase", "--containing", "durand", "--json"])
    assert erased.exit_code == 0, erased.output
    found = json.loads(erased.stdout)["collections"]
    assert {name: done["answers"] for name, done in found.items()} == {"segur": 1, "my-faq": 1}
    for name, own in collections.settings.items():
        store = sqlite_store(own.feedback_path).open()
        assert store.db.run("SELECT id FROM answers") == [(f"{name}-2",)]
        store.close()


@pytest.mark.slow
def test_a_schema_made_beforehand_needs_no_right_to_create_one(postgres_url: str, tiny_settings: Settings) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("DROP SCHEMA IF EXISTS faq_given CASCADE")
        db.execute("DROP ROLE IF EXISTS faq_app")
        db.execute("CREATE ROLE faq_app LOGIN")
        db.execute("REVOKE CREATE ON DATABASE postgres FROM PUBLIC")
        db.execute("CREATE SCHEMA faq_given AUTHORIZATION faq_app")
    url = postgres_url.replace("postgres@", "faq_app@", 1)
    store = make_store(tiny_settings.replace(database_url=url, database_schema="faq_given")).open(wait=30)
    try:
        assert store.ready, store.db.last_error
        store.answers.insert(answer_row("a1", _answer()))
        assert store.answers.known("a1")
    finally:
        store.close()


@pytest.mark.slow
def test_an_unloaded_collection_s_schema_is_purged_and_none_is_made(postgres_url: str, tiny_settings: Settings) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as db:
        for schema in ("rag_kept", "rag_never"):
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    kept, never = (
        tiny_settings.replace(database_url=postgres_url, database_schema=s) for s in ("rag_kept", "rag_never")
    )
    store = make_store(kept).open(wait=30)
    store.answers.insert(answer_row("old", _answer(), at=time.time() - 91 * 86400))
    store.answers.insert(answer_row("recent", _answer()))
    store.close()
    assert purge_at_rest(kept) == 1 and purge_at_rest(never) == 0
    with psycopg.connect(postgres_url) as db:
        assert db.execute('SELECT id FROM "rag_kept".answers').fetchall() == [("recent",)]
        assert db.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'rag_never'").fetchone() is None


def test_a_store_that_cannot_be_reached_is_said_not_taken_for_an_empty_one(tiny_settings: Settings) -> None:
    away = tiny_settings.replace(database_url=f"postgresql://faq@127.0.0.1:{free_port()}/faq")  # nothing listens
    with pytest.raises(StoreUnavailable):
        existing_store(away)  # an erasure must not skip it as if nothing had been kept
