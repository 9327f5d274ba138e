"""The FAQ as a Model Context Protocol server, for AI assistants and agent frameworks: tools to search it,
read an entry and get a cited answer. Over stdio (``rag mcp``) or streamable HTTP (``/mcp`` in the API,
behind the same API keys)."""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer

from rag.channels.respond import Responder
from rag.errors import RagError
from rag.models import Question
from rag.query.service import listen_address


def _hit(hit: Any) -> dict[str, Any]:
    return {
        "id": hit.id,
        "question": hit.question,
        "text": hit.text,
        "url": hit.url,
        "score": hit.score,
        "metadata": hit.metadata,
    }


def make_server(responder: Responder) -> MCPServer:
    """An MCP server whose tools go through the responder (so each question joins the question log as on every
    channel). Links are absolute: under ``RAG_PUBLIC_URL``, else the address the service listens on."""
    service = responder.query
    base = listen_address(service.settings)  # RAG_PUBLIC_URL, when set, comes first (service.entry_link)
    faq = service.settings.answer.faq_name
    server = MCPServer(
        name="faq-rag",
        instructions=f"Answers questions from the FAQ « {faq} » with links to its entries. Search it, read an "
        "entry, or ask for a short cited answer; when the FAQ does not cover a question, say so.",
    )

    async def call(fn, *args):
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except RagError as exc:
            raise ValueError(str(exc)) from None

    @server.tool()
    async def search_faq(question: str, k: int | None = None, filters: dict[str, str] | None = None) -> dict[str, Any]:
        """The FAQ entries that answer a question (none when the FAQ does not cover it), with links and facets;
        ``k`` entries at most (default: the service's)."""
        result = await call(responder.find, Question(query=question, k=k, filters=filters or {}), "mcp", base)
        await call(responder.shown, result, "mcp")
        hits = [_hit(h) for h in result.results]
        found = {"question": question, "declined": result.abstained, "confidence": result.confidence, "results": hits}
        return found | {"degraded": result.degraded}

    @server.tool()
    async def read_entry(entry_id: str) -> dict[str, Any]:
        """One whole FAQ entry by its id (as found by search_faq)."""
        entry = service.index.entry(entry_id)
        if entry is None:
            raise ValueError(f"no FAQ entry has the id '{entry_id}'")
        return {
            "id": entry.id,
            "question": entry.question,
            "answer": entry.answer,
            "url": service.entry_link(entry.id, entry.url, base),
            "metadata": entry.metadata,
        }

    @server.tool()
    async def ask_faq(question: str, history: list[str] | None = None) -> dict[str, Any]:
        """A short answer from the FAQ with numbered citations [n] to the entries it comes from; earlier questions
        of the conversation (oldest first) help read a follow-up."""
        reply = await call(responder.respond, Question(query=question, history=history or []), "mcp", base)
        answer = reply.answer
        return {
            "answer": answer.answer,
            "declined": answer.abstained,
            "confidence": answer.confidence,
            "resolved": answer.resolved,
            "degraded": answer.degraded,
            "note": answer.note,
            "citations": [c.model_dump() for c in answer.citations],
            "answer_id": reply.answer_id,
        }

    return server
