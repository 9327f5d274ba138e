"""The hostile probe of the surfaces beyond the API: widget tokens, votes and handoffs on forged ids, Chatwoot's
webhook, the admin routes and the curation import, and the crawler's inputs (redirect chains, hostile
sitemaps, huge, binary or malformed pages, canonical tricks). Every case is a 4xx or a line of the sync report,
never a 5xx nor a traceback, and nothing is kept: no answer logged, no vote, no ticket, no message, no version.
The cases and their statuses are written to tests/artifacts/probe-surfaces.json."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rag.channels.chatwoot import signed
from rag.config import Settings
from rag.egress import host_port
from rag.http import create_app
from rag.publishing.publisher import Publisher
from rag.query.service import QueryService

from .chatwoot_standin import TOKEN, ChatwootStandIn, signed_delivery
from .conftest import ARTIFACTS
from .faq_site import FaqSite
from .servers import running, wait_until

pytestmark = pytest.mark.slow
SITE = "https://partenaire.example.fr"
FORGED_ID = f"{int(time.time() * 1000):013x}" + "0" * 27  # the current time, then anything
TOKENS = [
    "wt.",
    "wt.a",
    "wt.a.b.c.d",
    "wt." + "a" * 20_000,
    "wt.aHR0cHM6Ly9wYXJ0ZW5haXJlLmV4YW1wbGUuZnI.²³⁴.0123456789abcdef0123456789abcdef",
    "wt.aHR0cHM6Ly9wYXJ0ZW5haXJlLmV4YW1wbGUuZnI.9" * 3,
    "wt.aHR0cHM6Ly9wYXJ0ZW5haXJlLmV4YW1wbGUuZnI.99999999999.0123456789abcdef0123456789abcdef",
    "wt.%%%.1.x",
    "wt.aHR0cHM6Ly9wYXJ0ZW5haXJlLmV4YW1wbGUuZnI.99999999999.ééééééééééééééééééééééééééééééé",
]
HANDOFFS: list[Any] = [
    {"reason": "declined", "answer_ids": [FORGED_ID]},
    {"reason": "declined", "answer_ids": ["../../etc/passwd"]},
    {"reason": "declined", "answer_ids": ["١٢٣٤٥٦٧٨٩٠" * 4]},
    {"reason": "declined", "answer_ids": []},
    {"reason": "declined", "answer_ids": [FORGED_ID] * 51},
    {"reason": "declined", "answer_ids": [5]},
    {"reason": "declined", "answer_ids": [FORGED_ID], "turns": [{"question": "q", "answer": "invented"}]},
    {"reason": "bribe", "answer_ids": [FORGED_ID]},
    {"reason": "declined", "answer_ids": [FORGED_ID], "contact": "x" * 400},
    {"reason": "declined", "answer_ids": "all"},
    [],
    None,
]
VOTES: list[Any] = [
    {"answer_id": FORGED_ID, "helpful": True},
    {"answer_id": FORGED_ID.upper(), "helpful": False},
    {"answer_id": "²" * 40, "helpful": True},
    {"answer_id": FORGED_ID, "helpful": "maybe"},
    {"answer_id": FORGED_ID, "helpful": True, "comment": "x" * 100_000},
]
RESOLUTIONS: list[Any] = [
    {"action": "new_entry", "answer": "x" * 200_000},
    {"action": "new_entry", "answer": "ok", "url": "file:///etc/passwd"},
    {"action": "new_entry", "answer": "ok", "url": "https://" + "a" * 5000},
    {"action": "new_entry", "question": "q" * 5000, "answer": "ok"},
    {"action": "alternate", "entry_id": "../../etc"},
    {"action": None},
    {"action": "dismiss", "extra": {"$where": "1"}},
]
CURATIONS = [
    b"not json\n",
    b'{"kind": "new_entry"}\n',
    b'{"id": "x", "kind": "alternate", "questions": ["q"]}\n',
    b'{"id": "x", "kind": "teleport", "questions": ["q"]}\n',
    b'[{"id": "x"}]\n',
    b'{"id": "x", "kind": "out_of_scope", "questions": []}\n',
    b"\xff\xfe\x00\x00",
    b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"\n",
    b'{"id": "x", "kind": "new_entry", "entry": {"id": "e", "question": "q", "answer": ""}}\n',
    b"x" * 3_000_000,
]


class Desk:
    """The helpdesk's webhook: what it received."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> JSONResponse:
        self.received.append(await request.json())
        return JSONResponse({"ok": True}, status_code=201)


def _one_gap(client: httpx.Client) -> str:
    """A real gap (one question asked and voted unhelpful), so that resolutions reach the checks of their body."""
    keyed = {"Authorization": "Bearer key-1"}
    asked = client.post("/ask", json={"query": "Quels sont les horaires de la cantine ?"}, headers=keyed).json()
    client.post("/feedback", json={"answer_id": asked["answer_id"], "helpful": False}, headers=keyed)
    found: list[str] = []

    def listed() -> bool:
        found[:] = [g["id"] for g in client.get("/admin/gaps", headers={"Authorization": "Bearer adm"}).json()["gaps"]]
        return bool(found)

    wait_until(listed, timeout=30)
    return found[0]


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def _service_cases(client: httpx.Client, token: str, gap: str) -> dict[str, int]:
    cases: dict[str, int] = {}
    site = {"Origin": SITE}
    for n, bad in enumerate(TOKENS):
        header = ("Bearer " + bad).encode("utf-8")
        cases[f"widget token #{n}"] = client.post(
            "/ask", json={"query": "solde"}, headers={**site, "Authorization": header}
        ).status_code
    cases["widget token on /search"] = client.post(
        "/search", json={"query": "solde"}, headers={**site, "Authorization": f"Bearer {token}"}
    ).status_code
    cases["widget token from another site"] = client.post(
        "/ask", json={"query": "solde"}, headers={"Origin": "https://autre.example", "Authorization": f"Bearer {token}"}
    ).status_code
    keyed = {"Authorization": "Bearer key-1"}
    for n, body in enumerate(VOTES):
        cases[f"vote #{n}"] = client.post("/feedback", json=body, headers=keyed).status_code
    for n, body in enumerate(HANDOFFS):
        cases[f"handoff #{n}"] = client.post("/handoff", json=body, headers=keyed).status_code
    for n, value in enumerate(["Bearer", "Bearer wrong", "Bearer ädm", "Basic adm", "Bearer " + "a" * 10_000]):
        cases[f"admin token #{n}"] = client.get("/admin/gaps", headers={"Authorization": value.encode()}).status_code
    admin = {"Authorization": "Bearer adm"}
    for n, body in enumerate(RESOLUTIONS):
        resolve = f"/admin/gaps/{gap}/resolve"
        cases[f"resolution #{n}"] = client.post(resolve, json=body, headers=admin).status_code
    for n, body in enumerate(CURATIONS):
        headers = {**admin, "Content-Type": "application/x-ndjson"}
        cases[f"curation import #{n}"] = client.post("/admin/curation", content=body, headers=headers).status_code
    return cases


def _chatwoot_cases(client: httpx.Client, acknowledged: dict[str, Any], secret: str) -> dict[str, int]:
    cases: dict[str, int] = {}
    event = {"event": "message_created", "message_type": "incoming", "content": "solde", "conversation": {"id": 1}}
    body = json.dumps(event).encode()
    now = str(int(time.time()))
    unsigned: list[dict[str, Any]] = [
        {},
        {"X-Chatwoot-Signature": "sha256=" + "²" * 64, "X-Chatwoot-Timestamp": now},
        {"X-Chatwoot-Signature": signed(secret, "١٧٠٠٠٠٠٠٠٠", body), "X-Chatwoot-Timestamp": "١٧٠٠٠٠٠٠٠٠"},
        {"X-Chatwoot-Signature": signed(secret, "1000", body), "X-Chatwoot-Timestamp": "1000"},
        {"X-Chatwoot-Signature": signed("other", now, body), "X-Chatwoot-Timestamp": now},
        {"X-Chatwoot-Signature": "sha256=zz", "X-Chatwoot-Timestamp": now},
        {"X-Chatwoot-Signature": signed(secret, now, body), "X-Chatwoot-Timestamp": now + "0" * 400},
    ]
    for n, headers in enumerate(unsigned):
        encoded = {k: v.encode() for k, v in headers.items()}
        cases[f"chatwoot unsigned #{n}"] = client.post(
            "/integrations/chatwoot", content=body, headers={"Content-Type": "application/json", **encoded}
        ).status_code
    cases["chatwoot wrong url token"] = client.post("/integrations/chatwoot?token=nope", content=body).status_code
    malformed = [b"{", b"[]", b"null"]
    ignored = [b'{"event": 5}', b'{"event": "message_created", "id": []}', b'{"event": "conversation_created"}']
    for n, content in enumerate(malformed + ignored):
        delivery = signed_delivery({}, secret)
        timestamp = delivery["headers"]["X-Chatwoot-Timestamp"]
        headers = {**delivery["headers"], "X-Chatwoot-Signature": signed(secret, timestamp, content)}
        reply = client.post("/integrations/chatwoot", content=content, headers=headers)
        if content in ignored:  # signed by Chatwoot, nothing to answer: acknowledged (else it retries), left alone
            acknowledged[f"chatwoot signed, nothing to answer #{n}"] = (reply.status_code, reply.json())
        else:
            cases[f"chatwoot signed malformed #{n}"] = reply.status_code
    return cases


def test_no_hostile_request_to_the_new_surfaces_gets_a_5xx_or_keeps_anything(
    tmp_path: Path, tiny_settings: Settings, hash_embedder, caplog
) -> None:
    desk, chatwoot = Desk(), ChatwootStandIn()
    with running(desk.app, ready_path=None) as hook, running(chatwoot.app, ready_path=None) as chatwoot_url:
        settings = tiny_settings.replace(
            api_keys=["key-1"],
            admin_token="adm",
            widget_origins=[SITE],
            handoff_webhook=hook + "/hook",
            chatwoot_url=chatwoot_url,
            chatwoot_bot_token=TOKEN,
            chatwoot_webhook_secret=chatwoot.secret,
            rate_limit_per_minute=100_000,  # every case reaches the check it probes, not the rate limit
            auth_failures_per_minute=100_000,
        )
        service = QueryService(settings, hash_embedder)
        version = Publisher(service).build().version
        with (
            running(create_app(settings, service), ready_path="/ready") as base,
            httpx.Client(base_url=base, timeout=60) as client,
            caplog.at_level(logging.WARNING),
        ):
            token = client.get("/widget/config", headers={"Origin": SITE}).json()["token"]
            gap = _one_gap(client)
            kept = {table: _count(settings.feedback_path, table) for table in ("answers", "feedback", "curated")}
            acknowledged: dict[str, Any] = {}
            cases = {**_service_cases(client, token, gap), **_chatwoot_cases(client, acknowledged, chatwoot.secret)}
            ready = client.get("/ready").json()
            current = service.index.version
    _report("service", {**cases, **{case: status for case, (status, _) in acknowledged.items()}})
    assert {case: status for case, status in cases.items() if not 400 <= status < 500} == {}
    assert acknowledged and all(reply == (200, {"accepted": False}) for reply in acknowledged.values())
    assert desk.received == [] and chatwoot.calls == []
    assert {table: _count(settings.feedback_path, table) for table in kept} == kept and current == version
    assert not list(settings.spool_path.glob("*.jsonl")) or all(
        not p.read_text() for p in settings.spool_path.glob("*.jsonl")
    )
    assert ready["status"] == "ready", ready
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


class HostileSite(FaqSite):
    """The FAQ site with the inputs a crawler meets on a hostile or broken site."""

    @property
    def app(self) -> Starlette:
        app = super().app
        app.router.routes.insert(0, Route("/hostile/{name:path}", self.hostile))
        return app

    async def hostile(self, request: Request) -> Response:
        self._log(request)
        name = request.path_params["name"]
        xml, html = "application/xml", "text/html"
        if name.startswith("chain/"):
            step = int(name.split("/")[1])
            return Response(status_code=302, headers={"Location": f"/hostile/chain/{step + 1}"})
        bodies: dict[str, tuple[bytes, str]] = {
            "broken.xml": (b"<urlset><url><loc>", xml),
            "xxe.xml": (
                b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>&x;</loc></url></urlset>',
                xml,
            ),
            "laughs.xml": (
                b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
                + b"".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode() for i in range(9))
                + b']><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>&j;</loc></url></urlset>',
                xml,
            ),
            "self.xml": (
                b'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>'
                + f"{self.base}/hostile/self.xml".encode()
                + b"</loc></sitemap></sitemapindex>",
                xml,
            ),
            "binary.html": (b"\x00\x01\x02\xff" * 5000, "application/octet-stream"),
            "nul.html": (b"<details><summary>Nul\x00 ?</summary><p>\x00\x00</p></details>", "text/html"),
            "canon.html": (
                b'<html><head><link rel="canonical" href="javascript:alert(1)"><link rel="canonical" '
                b'href="//evil.example/x"></head><body><details id="c"><summary>Canon ?</summary><p>Oui.</p>'
                b"</details></body></html>",
                "text/html",
            ),
            "deep.html": (b"<div>" * 50_000 + b"<details><summary>Profond ?</summary><p>Oui.</p></details>", html),
        }
        body, kind = bodies.get(name, (b"", "text/html"))
        return Response(body, media_type=kind)


def test_hostile_faq_pages_are_each_a_line_of_the_report(tmp_path: Path, hash_embedder) -> None:
    site = HostileSite()
    names = ["chain/0", "broken.xml", "xxe.xml", "laughs.xml", "self.xml", "binary.html", "nul.html", "canon.html"]
    names.append("deep.html")
    with running(site.app, ready_path=None) as base:
        site.base = base
        sources = [f"{base}/hostile/{name}" for name in names] + [base + "/faq/dsfr.html"]
        settings = Settings(
            sources=sources,
            index_dir=tmp_path / "idx",
            feedback_db=tmp_path / "fb.sqlite3",
            egress_allow=[host_port(base)],
            web_max_bytes=2_000_000,
        )
        service = QueryService(settings, hash_embedder)
        done = Publisher(service).sync()
    problems = done.report.problems
    _report("crawler", {"sources": len(sources), "report": [p.replace(base, "") for p in problems]})
    texts = " ".join(f"{e.question} {e.answer}" for e in service.index.entries)
    assert "root:" not in texts and "aaaaaaaaaaaaaaaaaaaa" not in texts
    assert "Qui signe la vérification d'aptitude ?" in texts  # the good page is there all the same
    said = "\n".join(problems)
    for name in ("chain/0", "broken.xml", "xxe.xml", "laughs.xml", "binary.html"):
        assert f"/hostile/{name}" in said, (name, said)
    assert len(site.asked("/hostile/self.xml")) == 2  # a sitemap index naming itself: read once more, not followed
    assert max(int(p.split("/")[-1]) for p, _, _ in site.requests if p.startswith("/hostile/chain/")) <= 10
    canon = next(e for e in service.index.entries if e.question == "Canon ?")
    assert canon.url.startswith(base + "/hostile/canon.html")


def _report(part: str, cases: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "probe-surfaces.json"
    found = json.loads(path.read_text()) if path.exists() else {}
    if part == "service":
        cases = {"cases": len(cases), "statuses": dict(Counter(str(s) for s in cases.values())), "each": cases}
    found[part] = cases
    path.write_text(json.dumps(found, ensure_ascii=False, indent=1) + "\n")
