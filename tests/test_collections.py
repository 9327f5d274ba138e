"""Several FAQs in one deployment (``RAG_COLLECTIONS``): each collection answers from its own entries, under
``/c/<name>`` and (the default one) at the root; keys scoped to a collection get 403 on the others; publishing one
collection leaves the other's version as it was."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rag.config import DEFAULT_SOURCE, Settings
from rag.config.collections import Collections
from rag.errors import ConfigError
from rag.http import create_app
from rag.http.collections import collections_app

from .conftest import ROOT, TINY_FAQ
from .servers import wait_until

SOLDE = "Comment demander le paiement du solde ?"
ACCESS = "Comment exercer son droit d'accès à ses données ?"
GLOBAL, SCOPED, ADMIN = "global-key-0123456789", "scoped-key-segur-0123456789", "admin-of-cnil-0123456789"
CNIL_FAQ = [
    {"id": "acces", "question": ACCESS, "answer": "Adressez votre demande d'accès au responsable du traitement."},
    {"id": "plainte", "question": "Comment porter plainte auprès de la CNIL ?", "answer": "Par le site de la CNIL."},
]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def deployment(tmp_path: Path, tiny_settings: Settings) -> Settings:
    _jsonl(tmp_path / "segur.jsonl", TINY_FAQ)
    (tmp_path / "cnil").mkdir()
    _jsonl(tmp_path / "cnil" / "faq.jsonl", CNIL_FAQ)
    (tmp_path / "collections.toml").write_text(
        f"""
[collections.segur]
title = "FAQ Ségur"
sources = ["segur.jsonl"]

[collections.cnil]
title = "FAQ de la CNIL"
sources = ["cnil/faq.jsonl"]

[[keys]]
key = "{SCOPED}"
collections = ["segur"]

[[keys]]
key = "{ADMIN}"
collections = ["cnil"]
admin = true
""",
        encoding="utf-8",
    )
    return tiny_settings.replace(collections=tmp_path / "collections.toml", api_keys=[GLOBAL], admin_token="adm")


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _ready(client: TestClient, prefix: str) -> dict:
    wait_until(lambda: client.get(f"{prefix}/ready").status_code == 200)
    return client.get(f"{prefix}/ready").json()


def test_each_collection_answers_from_its_own_entries_and_keys_are_scoped(deployment: Settings, hash_embedder) -> None:
    collections = Collections.load(deployment)
    assert collections is not None and list(collections.settings) == ["segur", "cnil"]
    app = collections_app(deployment, collections, create_app, hash_embedder)
    with TestClient(app) as client:
        _ready(client, "/c/segur"), _ready(client, "/c/cnil")
        segur = client.post("/c/segur/ask", json={"query": SOLDE}, headers=_auth(GLOBAL)).json()
        assert [c["id"] for c in segur["citations"]][:1] == ["solde"]
        assert segur["citations"][0]["url"].endswith("/c/segur/entries/solde")
        cnil = client.post("/c/cnil/search", json={"query": ACCESS}, headers=_auth(GLOBAL)).json()
        assert {r["id"] for r in cnil["results"]} <= {"acces", "plainte"} and cnil["results"][0]["id"] == "acces"
        root = client.post("/ask", json={"query": SOLDE}, headers=_auth(GLOBAL)).json()
        assert root["citations"][0]["id"] == "solde"  # the root serves the default collection

        assert client.post("/c/segur/ask", json={"query": SOLDE}, headers=_auth(SCOPED)).status_code == 200
        refused = client.post("/c/cnil/ask", json={"query": ACCESS}, headers=_auth(SCOPED))
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "collection_forbidden"
        chat = {"model": "cnil", "messages": [{"role": "user", "content": ACCESS}]}
        assert client.post("/v1/chat/completions", json=chat, headers=_auth(SCOPED)).status_code == 403
        answered = client.post("/v1/chat/completions", json=chat, headers=_auth(GLOBAL)).json()
        assert answered["citations"][0]["id"] == "acces"  # the model names the collection
        assert [m["id"] for m in client.get("/v1/models", headers=_auth(SCOPED)).json()["data"]] == ["segur"]
        huge = {"model": "cnil", "messages": [{"role": "user", "content": "x" * 5_000_000}]}
        too_large = client.post("/v1/chat/completions", json=huge, headers=_auth(GLOBAL))
        assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "body_too_large"
        assert client.get("/c/cnil/mcp/", headers=_auth(SCOPED)).status_code == 403
        assert client.post("/c/cnil/admin/reindex", headers=_auth(SCOPED)).status_code == 403
        assert client.get("/c/cnil/admin/gaps", headers=_auth(ADMIN)).status_code == 200  # its collection's admin
        assert client.get("/c/segur/admin/gaps", headers=_auth(ADMIN)).status_code == 403
        assert client.get("/c/cnil/admin/gaps", headers=_auth("adm")).status_code == 200  # the deployment's
        assert client.post("/c/cnil/ask", json={"query": ACCESS}, headers=_auth(ADMIN)).status_code == 401


def test_publishing_one_collection_leaves_the_others_version(deployment: Settings, hash_embedder) -> None:
    collections = Collections.load(deployment)
    app = collections_app(deployment, collections, create_app, hash_embedder)
    with TestClient(app) as client:
        segur, cnil = _ready(client, "/c/segur")["index_version"], _ready(client, "/c/cnil")["index_version"]
        rebuilt = client.post("/c/cnil/admin/reindex", headers=_auth("adm"))
        assert rebuilt.status_code in {200, 202}, rebuilt.text
        wait_until(lambda: client.get("/c/cnil/ready").json()["index_version"] != cnil)
        assert client.get("/c/segur/ready").json()["index_version"] == segur


def test_a_collections_file_that_cannot_be_used_says_what_to_fix(tmp_path: Path, tiny_settings: Settings) -> None:
    cases = {
        "[collections.a]\ntitle = 'A'\n": "has no sources",
        "title = 'x'\n": "no [collections.<name>] table",
        "[collections.A]\nsources = ['x']\n": "a name of lower-case letters",
        "[collections.a]\nsources = ['x']\nnot_a_setting = 1\n": "unknown setting",
        "[collections.a]\nsources = ['x']\n[[keys]]\nkey = 'short'\ncollections = ['a']\n": "16 characters",
        "[collections.a]\nsources = ['x']\n[[keys]]\nkey = '0123456789abcdefg'\ncollections = ['b']\n": "collections",
        "[collections.a\n": "cannot read",
    }
    for text, said in cases.items():
        path = tmp_path / "c.toml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=re.escape(said)):
            Collections.load(tiny_settings.replace(collections=path))


def test_the_command_line_works_on_one_collection_or_says_why_not(deployment: Settings, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    def rag(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environment = {**os.environ, "RAG_INDEX_DIR": str(tmp_path / "built"), **env}
        return subprocess.run([sys.executable, "-m", "rag.cli", *args], env=environment, capture_output=True, text=True)

    alone = rag("--collection", "cnil", "sources", "check")
    assert alone.returncode == 1 and "--collection needs RAG_COLLECTIONS" in alone.stderr
    assert "Traceback" not in alone.stderr
    unknown = rag("--collection", "nope", "sources", "check", RAG_COLLECTIONS=str(deployment.http.collections))
    assert unknown.returncode == 1 and "no collection 'nope'" in unknown.stderr and "segur, cnil" in unknown.stderr
    chosen = rag("--collection", "cnil", "sources", "check", RAG_COLLECTIONS=str(deployment.http.collections))
    assert "collections/cnil/built" in chosen.stderr.replace("\n", "")  # the collection's own index is read


def test_a_widget_token_is_valid_on_its_own_collection_only(deployment: Settings, hash_embedder) -> None:
    site = "https://www.partenaire.example"
    settings = deployment.replace(widget_origins=[site])
    app = collections_app(settings, Collections.load(settings), create_app, hash_embedder)
    with TestClient(app) as client:
        _ready(client, "/c/segur"), _ready(client, "/c/cnil")
        token = client.get("/c/segur/widget/config", headers={"Origin": site}).json()["token"]
        headers = {"Origin": site, **_auth(token)}
        assert client.post("/c/segur/ask", json={"query": SOLDE}, headers=headers).status_code == 200
        refused = client.post("/c/cnil/ask", json={"query": ACCESS}, headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_widget_token"


def test_two_replicas_follow_every_collections_version(deployment: Settings, hash_embedder) -> None:
    """Two servers over the same folders: a collection rebuilt through one is served by the other too, and the
    other collection keeps its version on both."""
    settings = deployment.replace(index_poll_seconds=0.2)
    one = collections_app(settings, Collections.load(settings), create_app, hash_embedder)
    two = collections_app(settings, Collections.load(settings), create_app, hash_embedder)
    with TestClient(one) as first:
        segur, cnil = _ready(first, "/c/segur")["index_version"], _ready(first, "/c/cnil")["index_version"]
        with TestClient(two) as second:
            assert _ready(second, "/c/cnil")["index_version"] == cnil
            assert first.post("/c/cnil/admin/reindex", headers=_auth("adm")).status_code in {200, 202}
            wait_until(lambda: first.get("/c/cnil/ready").json()["index_version"] != cnil)
            rebuilt = first.get("/c/cnil/ready").json()["index_version"]
            wait_until(lambda: second.get("/c/cnil/ready").json()["index_version"] == rebuilt)
            assert {c.get("/c/segur/ready").json()["index_version"] for c in (first, second)} == {segur}


@pytest.mark.slow
def test_the_segur_faq_and_the_cnil_benchmark_as_two_collections(
    segur_index: Path, cnil_faq: Path, tmp_path: Path
) -> None:
    """The real encoder, loaded once: each collection answers its own questions with its own links; a question asked
    of one never cites the other's entries. (The CNIL collection: its first 80 entries, to build quickly.)"""
    rows = [json.loads(line) for line in cnil_faq.read_text(encoding="utf-8").splitlines()][:80]
    cnil_ids = {r["id"] for r in rows}
    _jsonl(tmp_path / "cnil.jsonl", rows)
    queries = [json.loads(line) for line in (cnil_faq.parent / "queries.jsonl").read_text().splitlines()]
    cnil_questions = [q["query"] for q in queries if set(q["relevant"]) <= cnil_ids][:8]
    segur_questions = [q["query"] for q in map(json.loads, (ROOT / "eval" / "segur.jsonl").read_text().splitlines())
                       if q["relevant"]][:8]  # fmt: skip
    (tmp_path / "collections.toml").write_text(
        f'[collections.segur]\ntitle = "FAQ Ségur"\nsources = ["{DEFAULT_SOURCE}"]\nindex_dir = "{segur_index}"\n'
        f'feedback_db = "{tmp_path / "segur.sqlite3"}"\n'
        '[collections.cnil]\ntitle = "FAQ de la CNIL"\nsources = ["cnil.jsonl"]\n',
        encoding="utf-8",
    )
    settings = Settings(index_dir=tmp_path / "built", collections=tmp_path / "collections.toml")
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/c/cnil/ready").status_code == 200, timeout=600)
        wait_until(lambda: client.get("/c/segur/ready").status_code == 200, timeout=600)
        for name, asked, own in (("cnil", cnil_questions, cnil_ids), ("segur", segur_questions, None)):
            for other, question in ((n, q) for n in ("cnil", "segur") for q in asked):
                found = client.post(f"/c/{other}/search", json={"query": question, "k": 3}).json()
                ids = {r["id"] for r in found["results"]}
                urls = {r["url"] for r in found["results"] if r["url"] and "/entries/" in r["url"]}
                assert all(f"/c/{other}/entries/" in u for u in urls)
                if other == "cnil":
                    assert ids <= cnil_ids, (name, question)
                else:
                    assert not ids & cnil_ids, (name, question)
            answered = [client.post(f"/c/{name}/ask", json={"query": q}).json() for q in asked]
            assert sum(a["outcome"] == "answered" for a in answered) >= len(asked) // 2, name
            if own is not None:
                assert all({c["id"] for c in a["citations"]} <= own for a in answered)


def test_the_mcp_tools_at_the_root_take_the_collection(deployment: Settings, hash_embedder) -> None:
    import anyio
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    from .servers import running

    app = collections_app(deployment, Collections.load(deployment), create_app, hash_embedder)

    async def exercise(base: str, key: str) -> tuple[dict, object, object]:
        async with (
            httpx2.AsyncClient(headers=_auth(key), timeout=60) as client,
            streamable_http_client(f"{base}/mcp/", http_client=client) as streams,
            ClientSession(streams[0], streams[1]) as session,
        ):
            await session.initialize()
            tools = {t.name: t.input_schema for t in (await session.list_tools()).tools}
            cnil = await session.call_tool("search_faq", {"question": ACCESS, "collection": "cnil"})
            segur = await session.call_tool("ask_faq", {"question": SOLDE})
            return tools, cnil, segur

    with running(app, ready_path="/c/cnil/ready") as base:
        wait_until(lambda: __import__("httpx").get(f"{base}/c/segur/ready").status_code == 200)
        tools, cnil, segur = anyio.run(exercise, base, GLOBAL)
        schema = tools["search_faq"]["properties"]
        assert "ctx" not in schema and set(json.dumps(schema["collection"]).split('"')) >= {"segur", "cnil"}
        assert not cnil.is_error and cnil.structured_content["results"][0]["id"] == "acces"
        assert segur.structured_content["citations"][0]["id"] == "solde"  # the default collection
        _, refused, _ = anyio.run(exercise, base, SCOPED)
        assert refused.is_error and "may not use the collection 'cnil'" in refused.content[0].text


def test_a_collections_page_and_widget_talk_to_that_collection(deployment: Settings, hash_embedder) -> None:
    settings = deployment.replace(api_keys=[])  # the page as the public sees it
    app = collections_app(settings, Collections.load(settings), create_app, hash_embedder)
    with TestClient(app) as client:
        _ready(client, "/c/cnil")
        page = client.get("/c/cnil/")
        assert page.status_code == 200 and 'src="widget.js"' in page.text and "FAQ de la CNIL" in page.text
        assert client.get("/c/cnil/widget.js").status_code == 200
        assert client.get("/c/cnil/static/style.css").status_code == 200
        answered = client.post("/c/cnil/", data={"q": ACCESS})
        assert "/c/cnil/entries/acces" in answered.text
        answer_id = re.search(r'name="answer_id" value="([^"]+)"', answered.text).group(1)
        vote = {"answer_id": answer_id, "helpful": "oui"}
        voted = client.post("/c/cnil/page/vote", data=vote, follow_redirects=False)
        assert voted.status_code == 303 and voted.headers["location"] == "/c/cnil/?avis=merci"
        listed = client.get("/c/cnil/entries", headers={"Accept": "text/html"})
        assert 'href="entries/acces"' in listed.text


@pytest.mark.slow
def test_rag_serve_serves_every_collection(deployment: Settings, tmp_path: Path) -> None:
    """`rag serve` with RAG_COLLECTIONS: each collection built at start with the real encoder, then answered."""
    import os
    import subprocess
    import sys

    import httpx

    from .servers import free_port

    port = free_port()
    env = {
        **os.environ,
        "RAG_COLLECTIONS": str(deployment.http.collections),
        "RAG_INDEX_DIR": str(tmp_path / "built"),
        "RAG_PORT": str(port),
        "RAG_API_KEYS": GLOBAL,
    }
    server = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve"], env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def ready(name: str) -> bool:
        try:
            return httpx.get(f"{base}/c/{name}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(lambda: ready("segur") and ready("cnil"), timeout=600)
        found = httpx.post(f"{base}/c/cnil/search", json={"query": ACCESS}, headers=_auth(GLOBAL), timeout=60).json()
        assert found["results"][0]["id"] == "acces"
        assert (tmp_path / "collections" / "cnil" / "built").is_dir() and not (tmp_path / "built").exists()
    finally:
        server.terminate()
        server.wait(30)
