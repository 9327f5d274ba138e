"""Running the app with uvicorn: one process, or several workers sharing one socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import uvicorn
from uvicorn.supervisors import Multiprocess

from ..config import Settings, is_url
from ..service import RagService
from .app import create_app


class SharedSocketConfig(uvicorn.Config):
    """The socket the workers share, made with its protocol: uvicorn makes it without, and then asyncio never
    sets TCP_NODELAY on the connections it accepts (small replies then wait about 40 ms for delayed ACKs)."""

    def bind_socket(self) -> socket.socket:
        bound = super().bind_socket()
        tcp = socket.socket(bound.family, bound.type, socket.IPPROTO_TCP, fileno=bound.detach())
        tcp.set_inheritable(True)
        return tcp


def serve(settings: Settings, service: RagService, sources: list[Path | str]) -> None:
    http = settings.http
    # forwarded headers are read by the app, and only from RAG_FORWARDED_ALLOW_IPS
    options = {"host": http.host, "port": http.port, "log_config": None, "access_log": False, "proxy_headers": False}
    if http.workers == 1:
        uvicorn.run(create_app(settings, service), **options)
        return
    # each worker makes its own app from the environment: the command's options go there
    os.environ.update({"RAG_INDEX_DIR": str(settings.index.index_dir.resolve()), "RAG_WORKERS": str(http.workers)})
    os.environ["RAG_SOURCES"] = ",".join(p if is_url(p) else str(Path(p).resolve()) for p in sources)
    config = SharedSocketConfig("rag.http.app:app_from_environment", factory=True, workers=http.workers, **options)
    Multiprocess(config, sockets=[config.bind_socket()]).run()
