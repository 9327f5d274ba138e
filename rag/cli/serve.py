"""``rag serve`` and ``rag mcp``: the service over HTTP, and the FAQ for AI assistants over stdio."""

from __future__ import annotations

from typing import Annotated

import typer

from rag.cli.common import IndexDir, app, build_with_progress, friendly, make_settings, publisher_for
from rag.config import Settings
from rag.config.collections import Collections
from rag.publishing.publisher import Publisher


@app.command()
@friendly
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    index_dir: IndexDir = None,
    workers: Annotated[int | None, typer.Option(help="server processes sharing the index (RAG_WORKERS)")] = None,
    build: Annotated[bool, typer.Option("--build/--no-build", help="build the index first if it is missing")] = True,
) -> None:
    """Run the HTTP API and web page."""
    from rag.http.server import serve as run_server
    from rag.logs import configure as configure_logging

    settings = make_settings(index_dir, host=host, port=port, workers=workers)
    configure_logging(settings)  # one JSON line per request on stderr (rag.access), and the service's own messages
    collections = Collections.load(settings)
    if collections is not None:  # several FAQs: each built here if missing, loaded by its first request
        for own in collections.settings.values():
            _built(own, build)
        run_server(settings, None, [])
        return
    publisher = _built(settings, build)
    run_server(settings, publisher.query, publisher.sources)


def _built(settings: Settings, build: bool) -> Publisher:
    """The publisher of the index to serve, built first when it is missing (once, here: the workers then load it
    read-only)."""
    publisher = publisher_for(settings)
    if build and publisher.needs_build():
        build_with_progress(publisher)
    return publisher


@app.command()
@friendly
def mcp(index_dir: IndexDir = None) -> None:
    """Serve the FAQ to AI assistants over the Model Context Protocol, on stdin/stdout."""
    from rag.channels.mcp import make_server
    from rag.channels.respond import Responder
    from rag.logs import configure as configure_logging
    from rag.store import make_store
    from rag.store.answer_ids import AnswerIds, shared_key
    from rag.store.recorder import make_recorder

    settings = make_settings(index_dir)
    configure_logging(settings)  # stderr: stdout is the protocol
    publisher = publisher_for(settings)
    publisher.load_or_build()
    recorder = make_recorder(settings, make_store(settings))
    recorder.start()
    ids = AnswerIds(shared_key(settings.http.secret_key, settings.index.index_dir.parent))
    try:
        make_server(Responder(publisher.query, recorder, ids)).run("stdio")
    finally:
        recorder.close()
