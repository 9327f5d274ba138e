"""Middleware: the JSON access log with per-endpoint metrics, CORS, and the body size limit."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware

from rag.http.cors import WidgetOrigins
from rag.http.deps import Services
from rag.http.errors import BodyLimitMiddleware, unexpected
from rag.http.security import ForwardedHeaders, networks
from rag.store.privacy import scrub

access_log = logging.getLogger("rag.access")


def install_middleware(app: FastAPI, services: Services) -> None:
    settings = services.settings.http

    @app.middleware("http")
    async def access(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
        except Exception:  # answered here, so that the server keeps the client's connection open
            response = unexpected(request)
        try:
            status = response.status_code
            return response
        finally:
            elapsed = time.perf_counter() - started
            endpoint = getattr(request.scope.get("route"), "path", "unmatched")
            services.metrics.requests.labels(endpoint, request.method, str(status)).inc()
            services.metrics.latency.labels(endpoint).observe(elapsed)
            record = {
                "method": request.method,
                "path": request.url.path,
                "status": status,
                "latency_ms": round(elapsed * 1000, 2),
                "abstained": getattr(request.state, "abstained", None),
            }
            if settings.log_questions and getattr(request.state, "query", None):
                record["query"] = scrub(request.state.query)  # the access log never holds what the store would not
            access_log.info(json.dumps(record, ensure_ascii=False))

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Rag-Channel"],
        )
    # after (outside) CORS: the widget's endpoints answer the widget's sites themselves
    app.add_middleware(WidgetOrigins, allowed=[*services.settings.channels.widget_origins, *settings.cors_origins])
    larger = {"/admin/": settings.max_admin_body_bytes, "/v1/chat/completions": settings.max_chat_body_bytes}
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, larger=larger)
    app.add_middleware(ForwardedHeaders, trusted=networks(settings.forwarded_allow_ips))
