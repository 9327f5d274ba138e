"""Erasure reaches every copy of users' words: a person's name asked in questions, voted on with a comment,
resolved by the team as phrasings of an entry (curated, in the golden file, built into an index version), and
waiting in the spool of a process that died and of one alive — after the erasure no file the service wrote holds
it, and the version in service was published again without it."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from rag.config import Settings
from rag.corpus.curated import CuratedItem
from rag.http import create_app
from rag.models import Answer
from rag.publishing.erasure import Eraser
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService
from rag.store import sqlite_store
from rag.store.answers import answer_row
from rag.store.spool import Spool

from .servers import wait_until

ADMIN = {"Authorization": "Bearer adm"}
NAME = "Desrosiers"
ASKED = [
    f"Mme {NAME} demande comment rembourser les frais de déplacement ?",
    f"Remboursement des frais de déplacement pour M. {NAME.upper()} ?",
]
OTHER = "Quels frais de déplacement sont remboursés ?"


def _files_holding(folder: Path, words: str) -> list[str]:
    needle = words.lower().encode()
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes().lower()
    )


def test_erasing_a_name_reaches_every_copy_and_republishes(tiny_settings: Settings, hash_embedder, tmp_path) -> None:
    settings = tiny_settings.replace(admin_token="adm")
    service = QueryService(settings, hash_embedder)
    Publisher(service).build()
    with TestClient(create_app(settings, service)) as client:
        for question in [*ASKED, OTHER]:
            answer = client.post("/ask", json={"query": question}).json()
            comment = f"je suis {NAME}" if question == OTHER else None
            client.post("/feedback", json={"answer_id": answer["answer_id"], "helpful": False, "comment": comment})
        report: dict = {}
        wait_until(lambda: report.update(client.get("/admin/gaps", headers=ADMIN).json()) or report["questions"] == 3)
        gap = next(g for g in report["gaps"] if any(NAME in q for q in g["questions"]))
        entry = client.get("/entries", headers={"Accept": "application/json"}).json()["entries"][0]["id"]
        done = client.post(
            f"/admin/gaps/{gap['id']}/resolve", json={"action": "alternate", "entry_id": entry}, headers=ADMIN
        )
        assert done.status_code == 200, done.text
        built_with_name = done.json()["version"]

    dead = Spool(settings.spool_path)  # a process that died during an outage: its file is left behind
    dead.append(
        {
            "kind": "answer",
            **answer_row(
                "a-dead", Answer(query=f"{NAME} encore ?", answer="…", abstained=True, citations=[], passages=[])
            ),
        }
    )
    dead._own.close()  # the process is gone, its lock with it
    alive = Spool(settings.spool_path)  # one still running: its file is locked for its life
    alive.append({"kind": "vote", "answer_id": "a-x", "helpful": False, "comment": f"rappelez {NAME}", "at": 1.0})
    alive.append({"kind": "vote", "answer_id": "a-y", "helpful": True, "comment": "merci", "at": 1.0})
    assert len(_files_holding(tmp_path, NAME)) >= 4  # the store, the golden file, the version, the spools

    store = sqlite_store(settings.feedback_path).open()
    erased = Eraser(settings, store, lambda: Publisher(QueryService(settings, hash_embedder), store.curated.all)).erase(
        containing=NAME.lower()
    )
    store.db.run("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()

    assert erased.answers == 2 and erased.comments == 1 and erased.spooled == 2 and erased.golden == 2
    assert erased.curated_questions == 2 and erased.curated_decisions == 0  # the decision keeps the other question
    assert erased.version not in (None, built_with_name) and built_with_name in erased.versions_removed
    assert _files_holding(tmp_path, NAME) == []
    kept = [json.loads(line) for p in settings.spool_path.glob("*.jsonl") for line in p.read_text().splitlines()]
    assert [r["comment"] for r in kept] == ["merci"]  # the live process's other record stays, in its file
    alive.append({"kind": "vote", "answer_id": "a-z", "helpful": True, "comment": None, "at": 2.0})
    assert sum(len(p.read_text().splitlines()) for p in settings.spool_path.glob("*.jsonl")) == 2
    left = sqlite_store(settings.feedback_path).open()
    assert [q for (q,) in left.db.run("SELECT query FROM answers")] == [OTHER]  # its vote stays, without the comment
    assert [item.questions for item in left.curated.all().items] == [[OTHER]]


def test_the_store_erases_words_in_any_case_on_both_databases(store) -> None:
    def answer(query: str) -> Answer:
        return Answer(query=query, answer="…", abstained=False, citations=[], passages=[])

    store.answers.insert(answer_row("a1", answer("La demande d'ÉLODIE Martin ?")))
    store.answers.insert(answer_row("a2", answer("Une autre question ?")))
    store.votes.add("a2", False, "signé élodie")
    item = CuratedItem(id="alt-1", kind="alternate", entry_id="e1", questions=["Élodie demande", "autre phrasé"])
    store.curated.add(item)
    assert store.answers.erase(containing="élodie") == ["a1"]
    assert store.votes.erase_comments("Élodie") == 1
    assert store.curated.erase("ELODIE") == (1, 0)  # with or without its accent
    assert store.curated.all().items[0].questions == ["autre phrasé"]
    assert store.db.run("SELECT id FROM answers") == [("a2",)]
    assert store.db.run("SELECT comment FROM feedback") == [(None,)]
