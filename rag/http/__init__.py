"""The HTTP layer: an app factory, routers per area, dependencies, middleware and error handlers."""

from rag.http.app import create_app

__all__ = ["create_app"]
