"""Collections loaded by their first request and unloaded, least recently used first, beyond the memory budget
(``RAG_COLLECTIONS_MEMORY``): never one serving a request, never the default one; an unloaded collection comes
back with its index, its question log and its answer ids."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rag.config import Settings
from rag.config.collections import Collections
from rag.errors import ApiError
from rag.http import create_app
from rag.http.collections import collections_app
from rag.http.pool import Pool
from rag.models import Answer, Citation
from rag.query.service import QueryService
from rag.store import sqlite_store
from rag.store.answers import answer_row

from .conftest import TINY_FAQ
from .servers import wait_until
from .test_collections import ACCESS, CNIL_FAQ, SOLDE, _jsonl, _ready

NAMES = ["segur", "cnil", "other"]


@pytest.fixture
def three(tmp_path: Path, tiny_settings: Settings) -> Settings:
    _jsonl(tmp_path / "segur.jsonl", TINY_FAQ)
    _jsonl(tmp_path / "cnil.jsonl", CNIL_FAQ)
    _jsonl(tmp_path / "other.jsonl", CNIL_FAQ[1:])
    tables = "".join(f'[collections.{n}]\ntitle = "FAQ {n}"\nsources = ["{n}.jsonl"]\n' for n in NAMES)
    (tmp_path / "collections.toml").write_text(tables, encoding="utf-8")
    # each takes a little over 1 MB (its app, and its small index twice): two fit in 2.5 MB, three do not
    return tiny_settings.replace(
        collections=tmp_path / "collections.toml", collections_memory=2.5, collection_load_wait=600
    )


def _loaded(client: TestClient) -> list[str]:
    return client.get("/ready").json()["collections"]["loaded"]


def test_a_collection_is_loaded_by_its_first_request_and_unloaded_beyond_the_budget(
    three: Settings, hash_embedder
) -> None:
    app = collections_app(three, Collections.load(three), create_app, hash_embedder)
    with TestClient(app) as client:
        state = _ready(client, "")["collections"]  # the default one loads as the server starts
        assert state["loaded"] == ["segur"] and state["unloaded"] == ["cnil", "other"]
        assert state["memory_budget_mb"] == 2.5 and 1 <= state["memory_mb"] < 1.2

        first = client.post("/c/cnil/ask", json={"query": ACCESS})  # waits for the index, no 503 to retry
        assert first.status_code == 200 and first.json()["citations"][0]["id"] == "acces"
        assert _loaded(client) == ["cnil", "segur"]
        version = client.get("/c/cnil/ready").json()["index_version"]

        assert client.post("/c/other/search", json={"query": ACCESS}).status_code == 200
        assert _loaded(client) == ["other", "segur"]  # cnil, used least recently, made room

        again = client.post("/c/cnil/ask", json={"query": ACCESS})
        assert again.status_code == 200 and _loaded(client) == ["cnil", "segur"]
        assert client.get("/c/cnil/ready").json()["index_version"] == version  # loaded, not rebuilt
        vote = {"answer_id": first.json()["answer_id"], "helpful": True}
        assert client.post("/c/cnil/feedback", json=vote).status_code == 200  # its answers outlive the unload
        assert client.post("/ask", json={"query": SOLDE}).json()["citations"][0]["id"] == "solde"
        metrics = client.get("/metrics").text
        assert "rag_collections_loaded 2\n" in metrics and "rag_collection_starts_total 4\n" in metrics
        assert "rag_collection_stops_total 2\n" in metrics


def test_what_an_unloaded_collection_keeps_is_still_erased_past_its_retention(three: Settings, hash_embedder) -> None:
    collections = Collections.load(three)
    store = sqlite_store(collections.settings["other"].feedback_path).open()
    cited = [Citation(n=1, id="plainte")]
    asked = Answer(query="une question", answer="a [1]", abstained=False, citations=cited, passages=[])
    store.answers.insert(answer_row("old", asked, at=time.time() - 91 * 86400))  # past the 90 days kept
    store.answers.insert(answer_row("recent", asked, at=time.time() - 86400))
    app = collections_app(three, collections, create_app, hash_embedder)
    with TestClient(app) as client:
        wait_until(lambda: "rag_collections_purged_total 1\n" in client.get("/metrics").text)
        assert store.db.run("SELECT id FROM answers") == [("recent",)]
        assert "other" not in _loaded(client)  # purged at rest, not loaded for it
    store.close()


class Fake:
    """Apps whose start and stop are recorded; ``broken`` ones cannot be made."""

    def __init__(self, broken: set[str] = frozenset()) -> None:
        self.events: list[str] = []
        self.broken = broken

    def __call__(self, name: str, query: QueryService) -> FastAPI:
        if name in self.broken:
            raise ValueError("no such folder")

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            self.events.append(f"start {name}")
            yield
            self.events.append(f"stop {name}")

        app = FastAPI(lifespan=lifespan)
        app.state.services = SimpleNamespace(query=query)
        return app


def _pool(tiny_settings: Settings, hash_embedder, make: Fake) -> Pool:
    settings = {n: tiny_settings.replace(faq_name=n) for n in ["a", "b", "c"]}
    return Pool(settings, make, QueryService(tiny_settings, hash_embedder), budget_mb=1, load_wait=1)


def test_a_collection_serving_a_request_is_never_unloaded(tiny_settings: Settings, hash_embedder) -> None:
    make = Fake()
    pool = _pool(tiny_settings, hash_embedder, make)

    async def scenario() -> None:
        async with pool.running():
            assert pool.state()["loaded"] == ["a"]
            async with pool.using("b"):
                async with pool.using("c"):  # over the budget, but b is busy and a is the default
                    assert pool.state()["loaded"] == ["a", "b", "c"]
                assert pool.state()["loaded"] == ["a", "b"]  # c, idle now, made room
            assert pool.state()["loaded"] == ["a"]
            async with pool.using("c"):  # back after its stop is over
                pass
        assert make.events[:4] == ["start a", "start b", "start c", "stop c"]
        assert make.events.count("start c") == 2 and make.events[-1].startswith("stop")

    anyio.run(scenario)


def test_a_collection_that_cannot_start_takes_no_other_with_it(tiny_settings: Settings, hash_embedder) -> None:
    pool = _pool(tiny_settings, hash_embedder, Fake(broken={"b"}))

    async def scenario() -> None:
        async with pool.running():
            with pytest.raises(ApiError) as refused:
                async with pool.using("b"):
                    pass
            assert refused.value.status == 503 and "could not start" in str(refused.value)
            async with pool.using("c"):
                assert pool.state()["loaded"] == ["a", "c"]

    anyio.run(scenario)


def test_a_request_to_a_collection_that_cannot_start_gets_a_json_503(tiny_settings: Settings, hash_embedder) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from rag.http.pool import Lazy

    pool = _pool(tiny_settings, hash_embedder, Fake(broken={"b"}))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with pool.running():
            yield

    app = Starlette(routes=[Mount(f"/c/{n}", app=Lazy(pool, n)) for n in "abc"], lifespan=lifespan)
    with TestClient(app) as client:
        refused = client.get("/c/b/anything")
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert refused.json()["error"]["code"] == "collection_unavailable"
        assert client.get("/c/c/anything").status_code == 404  # started: its own app answers
