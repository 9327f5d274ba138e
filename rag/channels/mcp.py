"""The FAQ as a Model Context Protocol server, for AI assistants and agent frameworks: tools to search it,
read an entry and get a cited answer. Over stdio (``rag mcp``) or streamable HTTP (``/mcp`` in the API,
behind the same API keys)."""

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from rag.channels.respond import Reply, Responder
from rag.errors import RagError
from rag.models import Question, SearchResult
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


class Collections:
    """The collections an MCP server at the root of a deployment answers for (:mod:`rag.http.collections`):
    their titles by name, ``open(name)`` giving one's responder while it is used (the collection loaded)."""

    def __init__(
        self,
        titles: dict[str, str],
        open: Callable[[str], AbstractAsyncContextManager[Responder]],
        allowed: Callable[[str], tuple[str, ...] | None],
    ) -> None:
        self.titles, self.open, self.allowed = titles, open, allowed

    @asynccontextmanager
    async def responder(self, name: str, token: str) -> AsyncIterator[Responder]:
        if name not in self.titles:
            raise ToolError(f"no collection {name!r}; there are: {', '.join(self.titles)}")
        allowed = self.allowed(token)
        if allowed is not None and name not in allowed:
            raise ToolError(f"this key may not use the collection {name!r}; it may use: {', '.join(allowed)}")
        try:
            async with self.open(name) as responder:
                yield responder
        except RagError as exc:
            raise ToolError(str(exc)) from None


def _found(question: str, result: SearchResult) -> dict[str, Any]:
    hits = [_hit(h) for h in result.results]
    found = {"question": question, "outcome": result.outcome, "declined": result.abstained, "results": hits}
    return found | {"confidence": result.confidence, "degraded": result.degraded}


def _answered(reply: Reply) -> dict[str, Any]:
    answer = reply.answer
    return {
        "answer": answer.answer,
        "outcome": answer.outcome,
        "declined": answer.abstained,
        "confidence": answer.confidence,
        "resolved": answer.resolved,
        "degraded": answer.degraded,
        "note": answer.note,
        "citations": [c.model_dump() for c in answer.citations],
        "answer_id": reply.answer_id,
    }


def _with_collections(tool: Callable[..., Any], collections: Collections | None) -> Callable[..., Any]:
    """The tool with its ``collection`` argument described: the collections' names, or gone with a single FAQ."""
    hints = dict(tool.__annotations__)
    if collections is None:
        hints.pop("collection")
        params = [p for p in inspect.signature(tool).parameters.values() if p.name != "collection"]

        async def single(*args: Any, **kwargs: Any) -> Any:
            return await tool(*args, **kwargs)

        functools.update_wrapper(single, tool)
        single.__signature__ = inspect.signature(tool).replace(parameters=params)  # type: ignore[attr-defined]
        single.__annotations__ = hints
        return single
    names = tuple(collections.titles)
    tool.__annotations__ = {**hints, "collection": Literal[names] | None}  # type: ignore[valid-type]
    tool.__doc__ = f"{tool.__doc__} ``collection``: the FAQ to use, one of {', '.join(names)} (default: {names[0]})."
    return tool


def _bearer(ctx: Context | None) -> str:
    headers = (ctx.headers if ctx is not None else None) or {}
    scheme, _, token = str(headers.get("authorization", "")).partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def make_server(responder: Responder, collections: Collections | None = None) -> MCPServer:
    """An MCP server whose tools go through the responder (so each question joins the question log as on every
    channel). Links are absolute: under ``RAG_PUBLIC_URL``, else the address the service listens on. With
    ``collections`` (several FAQs in one deployment), each tool takes the ``collection`` to use."""
    service = responder.query
    base = listen_address(service.settings)  # RAG_PUBLIC_URL, when set, comes first (service.entry_link)
    faq = service.settings.answer.faq_name
    if collections is not None:
        faq = ", ".join(collections.titles.values())

    @asynccontextmanager
    async def chosen(collection: str | None, ctx: Context | None) -> AsyncIterator[Responder]:
        if collections is None or collection is None:
            yield responder
            return
        async with collections.responder(collection, _bearer(ctx)) as asked:
            yield asked

    server = MCPServer(
        name="faq-rag",
        instructions=f"Answers questions from the FAQ « {faq} » with links to its entries. Search it, read an "
        "entry, or ask for a short cited answer; when the FAQ does not cover a question, say so.",
    )

    async def call(fn, *args):
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except RagError as exc:
            raise ToolError(str(exc)) from None

    async def search_faq(
        question: str,
        k: int | None = None,
        filters: dict[str, str] | None = None,
        collection: str | None = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """The FAQ entries that answer a question (none when the FAQ does not cover it), with links and facets;
        ``k`` entries at most (default: the service's)."""
        async with chosen(collection, ctx) as asked:
            result = await call(asked.find, Question(query=question, k=k, filters=filters or {}), "mcp", base)
            await call(asked.shown, result, "mcp")
        return _found(question, result)

    async def read_entry(entry_id: str, collection: str | None = None, ctx: Context | None = None) -> dict[str, Any]:
        """One whole FAQ entry by its id (as found by search_faq)."""
        async with chosen(collection, ctx) as asked:
            service = asked.query
            entry = service.index.entry(entry_id)
        if entry is None:
            raise ToolError(f"no FAQ entry has the id '{entry_id}'")
        return {
            "id": entry.id,
            "question": entry.question,
            "answer": entry.answer,
            "url": service.entry_link(entry.id, entry.url, base),
            "metadata": entry.metadata,
        }

    async def ask_faq(
        question: str, history: list[str] | None = None, collection: str | None = None, ctx: Context | None = None
    ) -> dict[str, Any]:
        """A short answer from the FAQ with numbered citations [n] to the entries it comes from; earlier questions
        of the conversation (oldest first) help read a follow-up."""
        async with chosen(collection, ctx) as asked:
            reply = await call(asked.respond, Question(query=question, history=history or []), "mcp", base)
        return _answered(reply)

    for tool in (search_faq, read_entry, ask_faq):
        server.tool()(_with_collections(tool, collections))
    return server
