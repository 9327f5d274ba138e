"""The question log keeps no personal data: each kind users paste is scrubbed before anything is written (the
store, the spool, votes' comments), in SQLite and PostgreSQL; rows older than the retention are erased;
RAG_STORE_QUESTIONS=false keeps counts only; `rag log erase` erases on request."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rag.cli import app as cli
from rag.config import Settings
from rag.errors import StoreUnavailable
from rag.http import create_app
from rag.models import Answer
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService
from rag.store import Store
from rag.store import sqlite_store as SqliteStore
from rag.store.answer_ids import AnswerIds
from rag.store.answers import answer_row
from rag.store.database import Database
from rag.store.privacy import scrub
from rag.store.recorder import Recorder
from rag.store.schema import SCHEMA, SCHEMA_VERSION
from rag.store.spool import Spool

from .servers import wait_until

# what users paste, each with the placeholder it must become
PERSONAL = [
    ("jean.dupont+faq@hopital-nord.fr", "[EMAIL]"),
    ("06 12 34 56 78", "[TÉLÉPHONE]"),
    ("+33 6 12 34 56 78", "[TÉLÉPHONE]"),
    ("01.45.67.89.10", "[TÉLÉPHONE]"),
    ("1 84 12 76 451 089 46", "[NIR]"),
    ("FR76 3000 6000 0112 3456 7890 189", "[IBAN]"),
    ("4111 1111 1111 1111", "[CARTE]"),
    ("192.168.12.40", "[IP]"),
    ("mot de passe : Hx7!kQ2p", "[SECRET]"),
    ("sk_live_51HqLyjWDarjtT1zdp7dcXbMq", "[SECRET]"),
    ("RPPS 10101234567", "[NUMÉRO]"),
]


@pytest.mark.parametrize(("text", "placeholder"), PERSONAL)
def test_each_kind_of_personal_data_becomes_its_placeholder(text: str, placeholder: str) -> None:
    scrubbed = scrub(f"Bonjour, {text}, comment déposer le solde ?")
    secret = text.split(":")[-1].strip()
    assert placeholder in scrubbed and secret not in scrubbed
    assert scrubbed.endswith("comment déposer le solde ?")


def test_ordinary_questions_are_left_as_they_are() -> None:
    for question in (
        "Quand le solde de la vague 2 est-il versé ?",
        "Le décret 2021-1234 s'applique-t-il aux 3 couloirs ?",
        "Version 1.2.3 du DMP, article L1111-8",
        "Combien coûte la MSSanté en 2024 pour 150 postes ?",
        "Comment réinitialiser mon mot de passe perdu ?",
        "Mon compte est bloqué après trois erreurs de mot de passe",
    ):
        assert scrub(question) == question


def _leaks(rows: list[tuple]) -> list[str]:
    text = " ".join(str(value) for row in rows for value in row)
    return [raw for raw, _ in PERSONAL if raw.split(":")[-1].strip() in text]


def _answer(query: str) -> Answer:
    return Answer(query=query, answer=f"Vous avez écrit : {query}", abstained=False, citations=[], passages=[])


def test_nothing_personal_reaches_the_store_or_the_spool(store, tmp_path: Path) -> None:
    recorder = Recorder(store, Spool(tmp_path / "spool"), wait=2)
    recorder.start()
    try:
        for n, (raw, _) in enumerate(PERSONAL):
            recorder.record_answer(f"{n:032x}", _answer(f"Mon cas : {raw}. Que faire ?"), "page")
        wait_until(lambda: store.db.run("SELECT COUNT(*) FROM answers")[0][0] == len(PERSONAL), timeout=30)
        recorder.add_feedback(f"{0:032x}", False, f"rappelez-moi : {PERSONAL[1][0]} ou {PERSONAL[0][0]}")
    finally:
        recorder.close()
    rows = store.db.run("SELECT query, answer FROM answers") + store.db.run("SELECT comment FROM feedback")
    assert _leaks(rows) == []
    assert any("[EMAIL]" in str(r) for r in rows) and any("[NIR]" in str(r) for r in rows)


class _Away(Database):
    """A database that never answers: everything goes to the spool."""

    def open(self, wait: float = 0.0) -> _Away:
        return self

    def close(self) -> None:
        pass

    def run(self, sql: str, args: tuple = ()) -> list:
        raise StoreUnavailable("the database is away")


def test_nothing_personal_reaches_the_spool_while_the_store_is_away(tmp_path: Path) -> None:
    recorder = Recorder(Store(_Away()), Spool(tmp_path / "spool"), wait=0.1)
    recorder.start()
    issued = AnswerIds(b"k").issue()
    try:
        recorder.record_answer(issued, _answer(f"Mon cas : {PERSONAL[0][0]}. Que faire ?"), "page")
        assert recorder.add_feedback(issued, False, f"rappelez-moi : {PERSONAL[1][0]}") is None  # spooled
        wait_until(lambda: recorder.pending == 2, timeout=30)
    finally:
        recorder.close()
    spooled = "".join(p.read_text() for p in (tmp_path / "spool").glob("*.jsonl"))
    assert all(raw not in spooled for raw, _ in PERSONAL)
    assert spooled.count('"kind": "answer"') == 1 and spooled.count('"kind": "vote"') == 1
    assert "[EMAIL]" in spooled and "[TÉLÉPHONE]" in spooled


def test_the_http_api_logs_questions_without_personal_data(tiny_settings: Settings, hash_embedder) -> None:
    settings = tiny_settings.replace(admin_token="adm")
    service = QueryService(settings, hash_embedder)
    Publisher(service).build()
    with TestClient(create_app(settings, service)) as client:
        ids = []
        for raw, _ in PERSONAL:
            body = client.post("/ask", json={"query": f"solde {raw}"}, headers={"X-Rag-Channel": "page"}).json()
            ids.append(body["answer_id"])
            client.post("/search", json={"query": f"messagerie {raw}"})
        client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": PERSONAL[0][0]}]})
        reply = client.post("/feedback", json={"answer_id": ids[0], "helpful": False, "comment": PERSONAL[4][0]})
        assert reply.status_code in (200, 201)
        db = sqlite3.connect(settings.feedback_path)
        wait_until(lambda: db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 2 * len(PERSONAL) + 1)
    rows = db.execute("SELECT query, answer, channel FROM answers").fetchall()
    rows += db.execute("SELECT comment FROM feedback").fetchall()
    assert _leaks(rows) == []
    channels = {row[2] for row in rows if len(row) == 3}
    assert channels == {"page", "search", "chat"}


def test_a_greeting_can_be_voted_on_and_stays_out_of_the_question_log(tiny_settings: Settings, hash_embedder) -> None:
    service = QueryService(tiny_settings, hash_embedder)
    Publisher(service).build()
    with TestClient(create_app(tiny_settings, service)) as client:
        greeting = client.post("/ask", json={"query": "Bonjour"}).json()
        question = client.post("/ask", json={"query": "Quelle est la recette de la tarte tatin ?"}).json()
        assert greeting["abstained"]
        for body in (greeting, question):  # both votes reach the store, none waits for an answer never recorded
            assert client.post("/feedback", json={"answer_id": body["answer_id"], "helpful": False}).status_code == 200
        state = client.app.state.services
        wait_until(lambda: state.recorder.pending == 0 and len(state.store.votes.all()) == 2)
        logged = [row["query"] for row in state.store.answers.question_log(low_confidence=2.0)]
    assert logged == [question["query"]]


def test_rows_older_than_the_retention_are_erased(store, tmp_path: Path) -> None:
    now = time.time()
    for answer_id, days in (("old", 40), ("older", 400), ("recent", 2)):
        store.answers.insert(answer_row(answer_id, _answer("q"), at=now - days * 86400))
    store.votes.add("old", False, "non", at=now - 39 * 86400)
    recorder = Recorder(store, Spool(tmp_path / "spool"), retention_days=30)
    recorder.start()
    try:
        wait_until(lambda: store.db.run("SELECT COUNT(*) FROM answers")[0][0] == 1, timeout=30)
    finally:
        recorder.close()
    assert store.db.run("SELECT id FROM answers") == [("recent",)]
    assert store.db.run("SELECT COUNT(*) FROM feedback") == [(0,)]


def test_store_questions_false_keeps_counts_and_no_text(store, tmp_path: Path) -> None:
    recorder = Recorder(store, Spool(tmp_path / "spool"), keep_text=False)
    recorder.start()
    try:
        recorder.record_answer("a" * 32, _answer("Comment déposer le solde de Mme Durand ?"))
        wait_until(lambda: store.db.run("SELECT COUNT(*) FROM answers")[0][0] == 1, timeout=30)
        recorder.add_feedback("a" * 32, False, "Mme Durand n'est pas contente")
    finally:
        recorder.close()
    assert store.db.run("SELECT query, answer FROM answers") == [("", "")]
    assert store.db.run("SELECT helpful, comment FROM feedback") == [(0, None)]
    assert store.votes.stats()["answers"] == 1 and store.votes.stats()["ratings"] == 1


def test_an_old_database_is_brought_forward_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA.format(real="REAL"))
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.execute("INSERT INTO answers VALUES ('a1', 1.0, 'q', 'a', 0, '[]', '[]')")
    db.commit()
    db.close()
    store = SqliteStore(path).open()
    assert store.db.run("SELECT id, channel, confidence FROM answers") == [("a1", "api", None)]
    assert store.db.run("SELECT MAX(version) FROM schema_version") == [(SCHEMA_VERSION,)]
    store.close()
    assert SqliteStore(path).open().db.run("SELECT COUNT(*) FROM schema_version") == [(SCHEMA_VERSION,)]  # each once


def test_rag_log_erase_forgets_on_request(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "fb.sqlite3"
    store = SqliteStore(path).open()
    now = time.time()
    store.answers.insert(answer_row("a1", _answer("question de Mme Durand sur le solde"), at=now))
    store.answers.insert(answer_row("a2", _answer("autre question"), at=now - 10 * 86400))
    store.answers.insert(answer_row("a3", _answer("dernière question"), at=now))
    runner = CliRunner()
    erased = runner.invoke(cli, ["log", "erase", "--containing", "durand", "--db", str(path)])
    assert erased.exit_code == 0 and "erased 1" in erased.output
    day = time.strftime("%Y-%m-%d", time.gmtime(now - 86400))
    assert runner.invoke(cli, ["log", "erase", "--before", day, "--db", str(path)]).exit_code == 0
    assert store.db.run("SELECT id FROM answers") == [("a3",)]
    refused = runner.invoke(cli, ["log", "erase", "--db", str(path)])
    assert refused.exit_code == 1 and "--all" in refused.output and "Traceback" not in refused.output
