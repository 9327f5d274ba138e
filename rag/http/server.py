"""Running the app with uvicorn: one process, or several workers, each on a socket of its own.

With one listening socket shared by the workers, whichever worker's event loop wakes first accepts a whole
burst of new connections (asyncio accepts until the backlog is empty): measured under a load test, all 32
kept-alive connections on one worker in six runs out of six, the other idle, half the throughput. Each
worker here binds the same address with ``SO_REUSEPORT``, and the kernel shares new connections out
between the workers' sockets by a hash of their addresses.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from rag.config import Settings, is_url
from rag.errors import ConfigError
from rag.http.app import create_app
from rag.query.service import QueryService

log = logging.getLogger("rag.serve")
APP = "rag.http.app:app_from_environment"
STOP_GRACE = 30.0  # seconds a worker has to finish its requests once asked to stop


def listening_socket(host: str, port: int, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT``. Made with its protocol, so that asyncio sets
    TCP_NODELAY on the connections it accepts (small replies would otherwise wait ~40 ms for delayed ACKs)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = found[0]
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
    if listen:
        sock.listen(2048)
    return sock


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    """One worker process: its own socket, its own app made from the environment."""
    sock = listening_socket(host, port)
    uvicorn.Server(uvicorn.Config(APP, factory=True, **options)).run(sockets=[sock])


class Workers:
    """``workers`` processes serving ``host:port``; one that dies is replaced, and all stop on SIGINT or
    SIGTERM. The parent holds the address bound (never listening, so it is given no connection) from start
    to end: another program cannot take the port while a worker is being replaced."""

    def __init__(self, workers: int, host: str, port: int, options: dict[str, Any]) -> None:
        self.count, self.host, self.port, self.options = workers, host, port, options
        self._context = multiprocessing.get_context("spawn")
        self._stop = threading.Event()
        self.processes: list[Any] = []

    def _start(self) -> Any:
        process = self._context.Process(target=_worker, args=(self.host, self.port, self.options), daemon=False)
        process.start()
        return process

    def run(self) -> int:
        reserved = listening_socket(self.host, self.port, listen=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stop.set())
        self.processes = [self._start() for _ in range(self.count)]
        log.info("serving on http://%s:%d with %d workers", self.host, self.port, self.count)
        code = 0
        try:
            while not self._stop.wait(0.5):
                code = self._replace_dead()
                if code:
                    break
        finally:
            self._stop_all()
            reserved.close()
        return code

    def _replace_dead(self) -> int:
        """Start a worker in place of each that died; a worker that could not start stops the whole service."""
        for slot, process in enumerate(self.processes):
            if process.is_alive():
                continue
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                log.error("a worker could not start (see above): stopping")
                return 1
            log.warning("worker %s ended (exit code %s): starting another", process.pid, process.exitcode)
            self.processes[slot] = self._start()
        return 0

    def _stop_all(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker finishes its requests, then stops
        for process in self.processes:
            process.join(STOP_GRACE)
            if process.is_alive():
                process.kill()
                process.join()


def serve(settings: Settings, service: QueryService | None, sources: list[Path | str]) -> None:
    """Serve the app (``service``: the FAQ's query side, loaded or not; None for several collections)."""
    http = settings.http
    # forwarded headers are read by the app, and only from RAG_FORWARDED_ALLOW_IPS
    options = {"log_config": None, "access_log": False, "proxy_headers": False}
    if http.workers == 1:
        uvicorn.run(create_app(settings, service), host=http.host, port=http.port, **options)
        return
    # each worker makes its own app from the environment: the command's options go there
    os.environ.update({"RAG_INDEX_DIR": str(settings.index.index_dir.resolve()), "RAG_WORKERS": str(http.workers)})
    if sources:
        os.environ["RAG_SOURCES"] = ",".join(p if is_url(p) else str(Path(p).resolve()) for p in sources)
    code = Workers(http.workers, http.host, http.port, options).run()
    if code:
        raise SystemExit(code)
