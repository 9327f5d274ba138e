"""The MCP server through the SDK's own client, over stdio (``rag mcp``) and over HTTP (``/mcp/``)."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from rag.config import Settings
from rag.http import create_app

from .servers import running, wait_until

pytestmark = pytest.mark.slow
SOLDE = "Comment déposer une demande de solde ?"


def _data(result) -> dict:
    if getattr(result, "structuredContent", None):
        return result.structured_content
    return json.loads(result.content[0].text)


async def _exercise(read, write) -> dict:
    async with ClientSession(read, write) as session:
        await session.initialize()
        listed = (await session.list_tools()).tools
        tools = {tool.name for tool in listed}
        assert not any({"collection", "ctx"} & set(t.input_schema.get("properties", {})) for t in listed)
        found = _data(await session.call_tool("search_faq", {"question": SOLDE, "k": 3}))
        entry = _data(await session.call_tool("read_entry", {"entry_id": found["results"][0]["id"]}))
        answer = _data(await session.call_tool("ask_faq", {"question": SOLDE}))
        declined = _data(
            await session.call_tool("search_faq", {"question": "Quelle est la recette de la tarte tatin ?"})
        )
        return {"tools": tools, "found": found, "entry": entry, "answer": answer, "declined": declined}


def _check(out: dict) -> None:
    assert out["tools"] == {"search_faq", "read_entry", "ask_faq"}
    top = out["found"]["results"][0]
    assert not out["found"]["declined"] and "solde" in top["text"] and top["url"].startswith("http")
    assert out["entry"]["id"] == top["id"] and out["entry"]["answer"]
    assert out["answer"]["citations"] and "[1]" in out["answer"]["answer"]
    assert out["declined"]["declined"] and out["declined"]["results"] == []
    assert out["declined"]["outcome"] == "declined" and out["found"]["outcome"] in {"answered", "suggested"}


def _logged(db: Path) -> list[tuple[str, int]]:
    """The questions the question log holds: (channel, declined)."""
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute("SELECT channel, abstained FROM answers").fetchall())


# the two searches and the question asked by _exercise, the tarte tatin declined
MCP_LOG = [("mcp", 0), ("mcp", 0), ("mcp", 1)]


def test_mcp_over_stdio(segur_index: Path, tmp_path: Path) -> None:
    env = {**os.environ, "RAG_FEEDBACK_DB": str(tmp_path / "fb.sqlite3")}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "rag.cli", "mcp", "--index-dir", str(segur_index)], env=env
    )

    async def main() -> dict:
        async with stdio_client(params) as (read, write):
            return await _exercise(read, write)

    _check(anyio.run(main))
    wait_until(lambda: (tmp_path / "fb.sqlite3").exists() and _logged(tmp_path / "fb.sqlite3") == MCP_LOG)


def test_mcp_over_http_with_the_api_keys(segur_index: Path, tmp_path: Path) -> None:
    settings = Settings(index_dir=segur_index, feedback_db=tmp_path / "fb.sqlite3", api_keys=["k-mcp"])
    with running(create_app(settings), ready_path="/ready") as base:
        refused = httpx2.post(f"{base}/mcp/", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert refused.status_code == 401

        async def main() -> dict:
            headers = {"Authorization": "Bearer k-mcp"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=60) as client,
                streamable_http_client(f"{base}/mcp/", http_client=client) as streams,
            ):
                return await _exercise(streams[0], streams[1])

        _check(anyio.run(main))
        wait_until(lambda: _logged(settings.feedback_path) == MCP_LOG)
