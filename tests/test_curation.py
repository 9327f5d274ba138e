"""The FAQ team's loop in process, with the tiny FAQ and the deterministic embedder: questions users asked that the
FAQ does not answer become gaps; resolving one republishes the FAQ without a restart, grows the golden eval file,
and is kept in the store; bad input to the admin endpoints is a 4xx JSON error that changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from rag.config import Settings
from rag.corpus.curated import CuratedItem, Curation, new_entry
from rag.evaluation.run import load_queries
from rag.http import create_app
from rag.models import Question
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

from .servers import wait_until

ADMIN = {"Authorization": "Bearer adm"}
JSON = {"Content-Type": "application/json"}
TRAVEL = [
    "Comment rembourser les frais de déplacement ?",
    "Remboursement des frais de déplacement : comment faire ?",
    "Quels frais de déplacement sont remboursés ?",
]
HOURS = ["Quels sont les horaires du support téléphonique ?", "Horaires du support téléphonique ?"]


@pytest.fixture
def admin_client(tiny_settings: Settings, hash_embedder) -> Iterator:
    """``admin_client(**settings)``: a TestClient (admin token ``adm``) and the service behind it."""

    @contextmanager
    def make(**changes: object) -> Iterator[tuple[TestClient, QueryService]]:
        settings = tiny_settings.replace(admin_token="adm", **changes)
        service = QueryService(settings, hash_embedder)
        Publisher(service).build()
        with TestClient(create_app(settings, service)) as client:
            yield client, service

    return make


def _ask_and_dislike(client: TestClient, questions: list[str]) -> None:
    for question in questions:
        answer = client.post("/ask", json={"query": question}).json()
        vote = client.post("/feedback", json={"answer_id": answer["answer_id"], "helpful": False})
        assert vote.status_code in (200, 201, 202)


def _gaps(client: TestClient, expected_questions: int) -> dict:
    report: dict = {}

    def logged() -> bool:
        report.update(client.get("/admin/gaps", headers=ADMIN).json())
        return report["questions"] == expected_questions

    wait_until(logged, timeout=30)
    return report


def test_gaps_group_by_meaning_and_resolving_one_republishes_the_faq(admin_client) -> None:
    with admin_client() as (client, service):
        _ask_and_dislike(client, TRAVEL + HOURS)
        report = _gaps(client, 5)
        assert report["count"] == 2
        travel, hours = report["gaps"]  # the most asked first
        assert sorted(travel["questions"]) == sorted(TRAVEL) and sorted(hours["questions"]) == sorted(HOURS)
        assert travel["size"] == 3 and travel["reasons"]["not_useful"] == 3
        assert travel["nearest_entries"] and travel["first_seen"] <= travel["last_seen"]
        assert _gaps(client, 5)["gaps"][0]["id"] == travel["id"]  # stable for a given log

        version = service.index.version
        answer = "Les frais de déplacement sont remboursés sur justificatifs par le service comptable."
        body = {
            "action": "new_entry",
            "question": "Comment se faire rembourser ses frais de déplacement ?",
            "answer": answer,
        }
        done = client.post(f"/admin/gaps/{travel['id']}/resolve", json=body, headers=ADMIN)
        assert done.status_code == 200, done.text
        resolved = done.json()
        assert resolved["version"] != version and service.index.version == resolved["version"]
        for question in TRAVEL:  # answered from the new entry, without a restart
            assert client.post("/search", json={"query": question}).json()["results"][0]["id"] == resolved["entry_id"]
        entry = client.get(f"/entries/{resolved['entry_id']}", headers={"Accept": "application/json"})
        assert entry.status_code == 200 and answer in entry.text

        remaining = _gaps(client, 2)
        assert [g["id"] for g in remaining["gaps"]] == [hours["id"]]
        golden = load_queries(service.settings.golden_path)
        assert sorted(q.query for q in golden) == sorted(TRAVEL)
        assert all(q.relevant == [resolved["entry_id"]] for q in golden)

        exported = client.get("/admin/curation", headers=ADMIN)
        assert exported.headers["content-type"].startswith("application/x-ndjson")
        items = [json.loads(line) for line in exported.text.splitlines()]
        assert [i["kind"] for i in items] == ["new_entry"] and sorted(items[0]["questions"]) == sorted(TRAVEL)


BAD_INPUT = [
    ("g-nothing", {"action": "dismiss"}, 404, "unknown_gap"),
    (None, {"action": "rewrite"}, 422, "invalid_request"),
    (None, {"action": "new_entry", "answer": "   "}, 422, "empty_answer"),
    (None, {"action": "new_entry", "answer": "ok", "url": "javascript:alert(1)"}, 422, "invalid_url"),
    (None, {"action": "alternate", "entry_id": "no-such-entry"}, 404, "unknown_entry"),
    (None, {"action": "alternate"}, 422, "missing_entry_id"),
    (None, {"action": "dismiss", "colour": "red"}, 422, "unknown_field"),
    (None, "not json", 400, "malformed_json"),
]


def test_bad_input_to_the_admin_endpoints_changes_nothing(admin_client) -> None:
    with admin_client() as (client, service):
        _ask_and_dislike(client, HOURS)
        before = _gaps(client, 2)
        version = service.index.version
        for gap, body, status, code in BAD_INPUT:
            target = gap or before["gaps"][0]["id"]
            sent = (
                {"json": body, "headers": ADMIN}
                if isinstance(body, dict)
                else {"content": body, "headers": ADMIN | JSON}
            )
            reply = client.post(f"/admin/gaps/{target}/resolve", **sent)
            assert (reply.status_code, reply.json()["error"]["code"]) == (status, code), body
            assert "Traceback" not in reply.text
            assert service.index.version == version
            assert client.get("/admin/gaps", headers=ADMIN).json()["gaps"] == before["gaps"]
            assert client.get("/admin/curation", headers=ADMIN).text == ""
            assert not service.settings.golden_path.exists()


def test_admin_routes_and_page_need_the_token(admin_client, tiny_settings: Settings, hash_embedder) -> None:
    with admin_client() as (client, _):
        assert client.get("/admin/gaps").status_code == 401
        assert client.get("/admin/gaps", headers={"Authorization": "Bearer wrong"}).status_code == 401
        page = client.get("/admin")
        assert page.status_code == 200 and "static/admin.js" in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        bad = client.post("/admin/curation", content=b'{"kind": "new_entry"}\n', headers=ADMIN)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_curation"
    service = QueryService(tiny_settings, hash_embedder)
    Publisher(service).build()
    with TestClient(create_app(tiny_settings, service)) as client:
        assert client.get("/admin").status_code == 404
        assert client.get("/admin/gaps").status_code == 404


def test_alternate_phrasings_are_searched_like_the_entrys_own_question(make_service) -> None:
    service = make_service()
    asked = "PSC carte vitale appli mobile identification"
    before = service.retrieve(Question(query=asked, k=3))
    item = CuratedItem(id="alt-1", kind="alternate", entry_id="psc", questions=[asked])
    Publisher(service, lambda: Curation.of([item])).build()
    after = service.retrieve(Question(query=asked, k=3))
    assert after.results[0].id == "psc"
    assert after.results[0].dense_score > (before.results[0].dense_score if before.results[0].id == "psc" else 0)
    assert service.index.entry("psc").alternates == [asked]


def test_out_of_scope_questions_lower_the_confidence_of_their_other_wordings(make_service) -> None:
    service = make_service()
    asked = "Comment paramétrer l'imprimante du secrétariat pour la messagerie ?"
    other_wording = "paramétrer imprimante secrétariat messagerie"
    unrelated_in_scope = "Comment se connecter avec Pro Santé Connect ?"
    before = {q: service.retrieve(Question(query=q)) for q in (other_wording, unrelated_in_scope)}
    item = CuratedItem(id="oos-1", kind="out_of_scope", questions=[asked])
    Publisher(service, lambda: Curation.of([item])).build()
    after = {q: service.retrieve(Question(query=q)) for q in (other_wording, unrelated_in_scope)}
    assert after[other_wording].confidence < 0.2 * before[other_wording].confidence
    assert after[other_wording].signals["scope"] < 0.2
    assert after[unrelated_in_scope].confidence == pytest.approx(before[unrelated_in_scope].confidence, abs=1e-6)


def test_curation_is_carried_into_later_builds_and_imported_elsewhere(make_service, tmp_path) -> None:
    service = make_service()
    entry = new_entry("Où trouver le guide d'installation ?", "Le guide est sur l'espace éditeur.")
    item = CuratedItem(id="new-1", kind="new_entry", entry=entry, questions=["guide ?"])
    Publisher(service, lambda: Curation.of([item])).build()
    rebuilt = Publisher(service).build()  # a plain rebuild keeps the decisions of the version in service
    assert rebuilt.entry(entry.id) is not None and rebuilt.manifest.curated["new_entry"] == 1
    exported = tmp_path / "curation.jsonl"
    exported.write_text(rebuilt.curation.to_jsonl(), encoding="utf-8")
    elsewhere = QueryService(service.settings.replace(index_dir=tmp_path / "other"), service.embedder)
    Publisher(elsewhere, lambda: Curation.read(exported)).build()
    assert elsewhere.index.entry(entry.id).source == "curated"
    assert elsewhere.index.manifest.corpus_checksum == rebuilt.manifest.corpus_checksum  # the sources' own
    assert Publisher(elsewhere).needs_build() is None


def test_a_version_built_from_an_older_parent_is_never_published(make_service) -> None:
    """Two replicas building at once: the one that publishes second finds its parent replaced, and publishes
    nothing (the last writer does not win with older sources)."""
    from rag.errors import ParentChanged
    from rag.indexing.versions import current_version

    service = make_service()
    first, second = Publisher(service), Publisher(QueryService(service.settings, service.embedder))
    published: list[str] = []

    def meanwhile(done: int, total: int) -> None:  # while the second builds, the first publishes
        if not published:
            published.append(first.build().version)

    with pytest.raises(ParentChanged, match="build again"):
        second.build(progress=meanwhile)
    assert current_version(service.settings.index.index_dir) == published[0]
    assert not second.query.ready  # nothing was swapped in either


def test_a_build_reads_the_teams_decisions_from_the_store(make_service) -> None:
    """A decision kept while a build failed is in the next build, whoever makes it (a reindex, a sync)."""
    service = make_service()
    entry = new_entry("Où trouver le guide d'installation ?", "Le guide est sur l'espace éditeur.")
    kept = Curation.of([CuratedItem(id="new-1", kind="new_entry", entry=entry, questions=["guide ?"])])
    assert service.index.entry(entry.id) is None  # the version in service does not have it
    rebuilt = Publisher(service, lambda: kept).build()
    assert rebuilt.entry(entry.id) is not None


def test_a_resolution_that_failed_to_publish_can_be_resolved_again(admin_client, monkeypatch) -> None:
    with admin_client() as (client, service):
        _ask_and_dislike(client, TRAVEL)
        gap = _gaps(client, 3)["gaps"][0]
        body = {"action": "new_entry", "answer": "Les frais de déplacement sont remboursés sur justificatifs."}
        publisher = client.app.state.services.publisher
        real = publisher.build

        def broken(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(publisher, "build", broken)
        failed = client.post(f"/admin/gaps/{gap['id']}/resolve", json=body, headers=ADMIN)
        assert failed.status_code >= 500
        assert _gaps(client, 3)["gaps"][0]["id"] == gap["id"]  # still in the report
        monkeypatch.setattr(publisher, "build", real)
        done = client.post(f"/admin/gaps/{gap['id']}/resolve", json=body, headers=ADMIN)
        assert done.status_code == 200, done.text
        golden = [json.loads(line) for line in service.settings.golden_path.read_text().splitlines()]
        assert sorted(r["query"] for r in golden) == sorted(TRAVEL)  # each once


def test_a_gap_named_by_any_of_its_questions_is_resolved(admin_client) -> None:
    """Gaps re-form as questions come in; the id a team member saw still names the gap holding its question."""
    from rag.publishing.gaps import gap_id

    with admin_client() as (client, _):
        _ask_and_dislike(client, TRAVEL)
        curator = client.app.state.services.curator
        (gap,) = curator.gaps()
        former = gap_id(gap.answer_ids[-1])  # as if the gap had once been named after its latest question
        assert former != gap.id
        done = client.post(f"/admin/gaps/{former}/resolve", json={"action": "dismiss"}, headers=ADMIN)
        assert done.status_code == 200 and done.json()["gap"] == gap.id


def test_a_curation_export_over_64_kb_is_imported_over_http(admin_client) -> None:
    items = [
        CuratedItem(id=f"oos-{n}", kind="out_of_scope", questions=[f"Question hors sujet numéro {n} " + "x" * 200])
        for n in range(400)
    ]
    text = Curation.of(items).to_jsonl()
    assert len(text.encode()) > 64_000
    with admin_client() as (client, _):
        headers = {**ADMIN, "Content-Type": "application/x-ndjson"}
        done = client.post("/admin/curation", content=text.encode(), headers=headers)
        assert done.status_code == 200, done.text
        assert done.json()["imported"] == 400
