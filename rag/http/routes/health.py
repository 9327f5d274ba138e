"""``/health``, ``/ready`` and ``/metrics``."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from rag.http.deps import ServicesDep, guard

router = APIRouter(tags=["service"])


@router.get("/health", summary="The process is alive")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Whether this process can serve (503 until the index is loaded) and the state of each dependency",
)
async def ready(request: Request, services: ServicesDep) -> JSONResponse:
    """``ready`` or ``degraded`` (200: answers are served; a dependency away takes one feature, said in
    ``dependencies``), or ``loading`` / ``failed`` (503: no index, nothing can be answered)."""
    query, dependencies = services.query, services.dependencies.states()
    if not query.ready:
        status = "failed" if services.load_error else "loading"
        reason = services.load_error or "the index is loading"
        body = {"status": status, "reason": reason, "dependencies": {"index": status, **dependencies}}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "2"})
    index = query.index
    degraded = sorted(name for name, value in dependencies.items() if value not in {"ok", "off"})
    body = {
        "status": "degraded" if degraded else "ready",
        "index_version": index.version,
        "entries": len(index.entries),
        "embedder": index.manifest.embedder,
        "dependencies": {"index": "ok", **dependencies},
        # the states one by one, as before: store (answers and votes; spooled while away), embeddings (an
        # embeddings server that failed moments ago: questions ranked by BM25 alone)
        "store": dependencies.get("store", "ok"),
        "embeddings": dependencies.get("embeddings", "ok"),
        "latent_terms": index.latents is not None,
        "spooled": services.recorder.pending,
        "worker": os.getpid(),
    }
    if query.llm is not None:  # the model the answers are drafted by, as the server was last asked
        body["llm_model"] = query.llm.client.model
    if services.recorder.last_error:
        body["store_error"] = services.recorder.last_error
    pool = getattr(request.app.state, "pool", None)
    if pool is not None:  # the root of several collections: which are loaded, and the memory they take
        body["collections"] = pool.state()
    return JSONResponse(body)


@router.get(
    "/metrics",
    dependencies=[Depends(guard)],
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def prometheus(request: Request, services: ServicesDep) -> Response:
    body = services.metrics.render()
    pool = getattr(request.app.state, "pool", None)
    if pool is not None:  # the root of several collections: how many are loaded, and what they take
        body += pool.metrics().encode()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
