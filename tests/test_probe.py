"""About two hundred hostile or malformed requests against a real server: never a 5xx, never a traceback."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import httpx
import pytest

from rag.config import Settings
from rag.http import create_app
from rag.query.service import QueryService

from .servers import running

pytestmark = pytest.mark.slow
POSTS = ["/search", "/ask", "/feedback", "/v1/chat/completions", "/admin/reindex"]
BODIES = [
    b"",
    b"null",
    b"[]",
    b"42",
    b'"text"',
    b"{",
    b"{}",
    b'{"query": null}',
    b'{"query": 1e999}',
    b'{"query": NaN}',
    b'{"query": "\\ud800"}',
    b'{"query": "a\\u0000b"}',
    b'{"query": "solde", "query": 5}',
    b"\xff\xfe{}",
    b'\xef\xbb\xbf{"query": "solde"}',
    b'{"query": "\xc3\x28"}',
    b"[" * 20000 + b"]" * 20000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    json.dumps({"query": "solde", "k": 10**30}).encode(),
    json.dumps({"query": "solde", "k": -1}).encode(),
    json.dumps({"query": "solde", "k": 2.5}).encode(),
    json.dumps({"query": "solde", "filters": {"theme": {"$ne": 1}}}).encode(),
    json.dumps({"query": "solde", "filters": [1]}).encode(),
    json.dumps({"query": "solde", "stream": "true"}).encode(),
    json.dumps({"query": ["solde"]}).encode(),
    json.dumps({"query": {"text": "solde"}}).encode(),
    json.dumps({"answer_id": 5, "helpful": "yes"}).encode(),
    json.dumps({"answer_id": "x" * 10000, "helpful": True}).encode(),
    json.dumps({"messages": []}).encode(),
    json.dumps({"messages": [{"role": "user"}]}).encode(),
    json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}).encode(),
    json.dumps({"messages": [{"content": "solde"}]}).encode(),
    json.dumps({"messages": "solde"}).encode(),
    json.dumps({"query": "x" * 60000}).encode(),
]
PATHS = [
    "/entries/../../etc/passwd",
    "/entries/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/entries/%00",
    "/entries/" + "a" * 5000,
    "/static/../rag/config.py",
    "/static/%2e%2e/%2e%2e/pyproject.toml",
    "/static/..%2f..%2fpyproject.toml",
    "/docs-static/../../etc/passwd",
    "//search",
    "/search/",
    "/%ff",
    "/entries/%ff%fe",
    "/v1/../admin/feedback",
    "/admin/feedback?x=" + "y" * 3000,
]
RAW = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /\r\n\r\n",
    b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS hello on the plain port
    b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, segur_index: Path) -> str:
    folder = tmp_path_factory.mktemp("probe")
    settings = Settings(index_dir=segur_index, feedback_db=folder / "fb.sqlite3", admin_token="adm")
    service = QueryService(settings)
    with running(create_app(settings, service), ready_path="/ready") as base:
        yield base


def _raw(base: str, data: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        try:
            return sock.recv(200)
        except (TimeoutError, ConnectionResetError):
            return b""


def test_no_request_gets_a_5xx_or_a_traceback(server: str, caplog) -> None:
    statuses: dict[str, int] = {}
    with caplog.at_level(logging.WARNING), httpx.Client(base_url=server, timeout=30) as client:
        for path in POSTS:
            for n, body in enumerate(BODIES):
                headers = {"content-type": "application/json", "Authorization": "Bearer adm"}
                statuses[f"POST {path} #{n}"] = client.post(path, content=body, headers=headers).status_code
            for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""):
                statuses[f"POST {path} {kind!r}"] = client.post(
                    path, content=b"q=1", headers={"content-type": kind}
                ).status_code
            for method in ("PUT", "DELETE", "PATCH", "TRACE"):
                statuses[f"{method} {path}"] = client.request(method, path).status_code
        for path in PATHS:
            statuses[f"GET {path}"] = client.get(path).status_code
        for n, data in enumerate(RAW):
            reply = _raw(server, data)
            statuses[f"raw #{n}"] = int(reply.split()[1]) if reply.startswith(b"HTTP/1.1 ") else 400
        statuses["still alive"] = client.get("/health").status_code
    assert len(statuses) >= 170
    failed = {case: status for case, status in statuses.items() if status >= 500}
    assert failed == {}
    assert statuses["still alive"] == 200
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
