"""``/health``, ``/ready`` and ``/metrics``."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..deps import StateDep, guard

router = APIRouter(tags=["service"])


@router.get("/health", summary="The process is alive")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="The index is loaded (503 until it is)")
async def ready(state: StateDep) -> JSONResponse:
    service = state.service
    if not service.ready:
        status = "failed" if state.load_error else "loading"
        reason = state.load_error or "the index is loading"
        return JSONResponse({"status": status, "reason": reason}, status_code=503, headers={"Retry-After": "2"})
    index = service.index
    body = {
        "status": "ready",
        "index_version": index.version,
        "entries": len(index.entries),
        "embedder": index.manifest.embedder,
        "store": "degraded" if state.store_error else "ok",
        # an embeddings server that failed moments ago: questions are still answered, ranked by BM25 alone
        "embeddings": "degraded" if service.embedder.resting else "ok",
        "latent_terms": index.latents is not None,
        "worker": os.getpid(),
    }
    if state.store_error:
        body["store_error"] = state.store_error
    return JSONResponse(body)


@router.get(
    "/metrics",
    dependencies=[Depends(guard)],
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def prometheus(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
