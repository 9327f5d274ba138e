"""The collections' apps, each started by its first request and stopped, least recently used first, when the
loaded ones take more than the memory budget (``RAG_COLLECTIONS_MEMORY``).

A collection is kept loaded while it serves a request, while its index loads, and always when something must run
without a request: the default collection, one with a Matrix bot or with a web sync interval. A collection is
stopped as a whole (its jobs, its recorder's spool written, its store closed) and started again on its next
request, from the version published last. What an unloaded collection keeps is still erased once past its
retention: its store is purged as the server starts and every hour after.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup, TaskStatus
from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from rag.config import Settings
from rag.errors import ApiError
from rag.indexing.versions import version_dir
from rag.query.service import QueryService
from rag.store import purge_at_rest

log = logging.getLogger("rag.collections")
MB = 1024 * 1024
RESIDENT_PER_STORED = 2  # a loaded index takes about twice its folder's size (measured: 7–9 MB for 4.2 MB)
APP_BYTES = MB  # an app's own objects, besides its index
PURGE_EVERY = 3600.0  # seconds between purges of the unloaded collections' stores (as a recorder purges its own)


@dataclass
class Slot:
    """One collection's app while it is started."""

    app: FastAPI | None = None
    started: anyio.Event = field(default_factory=anyio.Event)
    stop: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    busy: int = 0
    used: int = 0
    error: str | None = None
    sized: tuple[str, int] = ("", 0)  # (index version, bytes) last estimated


class Pool:
    """Starts, serves and stops the collections' apps; ``make(name, query)`` makes one (light: nothing loaded)."""

    def __init__(
        self,
        settings: dict[str, Settings],
        make: Callable[[str, QueryService], FastAPI],
        shared: QueryService,
        budget_mb: float,
        load_wait: float,
    ) -> None:
        self.settings, self.make, self.shared = settings, make, shared
        self.budget = int(budget_mb * MB)
        self.load_wait = load_wait
        self.default = next(iter(settings))
        self._slots: dict[str, Slot] = {}
        self._clock = 0
        self._group: TaskGroup | None = None
        self._quit = anyio.Event()
        self.starts = self.stops = 0
        self.purged = 0  # answers past their retention erased from unloaded collections

    def pinned(self, name: str) -> bool:
        """Whether a collection stays loaded: the default one, and one with work to do without requests."""
        own = self.settings[name]
        return name == self.default or own.web.sync_interval > 0 or bool(own.channels.matrix_homeserver)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The server's lifespan: the pinned collections started now, every collection stopped at the end."""
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                for name in filter(self.pinned, self.settings):
                    (await self._acquire(name, wait=False)).busy -= 1  # its index loads while the server starts
                group.start_soon(self._housekeeping)
                yield
            finally:
                self._quit.set()
                for slot in self._slots.values():
                    slot.stop.set()
        self._group = None

    @asynccontextmanager
    async def using(self, name: str) -> AsyncIterator[FastAPI]:
        """The collection's app, started if it is not, and kept while the caller uses it."""
        slot = await self._acquire(name)
        try:
            yield slot.app  # type: ignore[misc]
        finally:
            slot.busy -= 1
            if not slot.busy:
                self._evict()  # what was kept for this request may go now

    def state(self) -> dict[str, object]:
        """What ``/ready`` says of the collections: which are loaded, and the memory they take."""
        loaded = self._loaded()
        return {
            "loaded": sorted(loaded),
            "unloaded": sorted(set(self.settings) - set(loaded)),
            "memory_mb": round(sum(self._size(s) for s in loaded.values()) / MB, 1),
            "memory_budget_mb": round(self.budget / MB, 1) or None,
        }

    def metrics(self) -> str:
        """The collections in Prometheus' text format: loaded now, the memory they take, starts and stops so far."""
        state = self.state()
        lines = [
            ("rag_collections_loaded", "gauge", "collections loaded now", len(state["loaded"])),
            ("rag_collections_memory_bytes", "gauge", "memory the loaded collections take", state["memory_mb"] * MB),
            ("rag_collection_starts_total", "counter", "collections started (by a request, or at start)", self.starts),
            ("rag_collection_stops_total", "counter", "collections unloaded beyond the memory budget", self.stops),
            ("rag_collections_purged_total", "counter", "answers past retention erased while unloaded", self.purged),
        ]
        return "".join(f"# HELP {n} {h}\n# TYPE {n} {t}\n{n} {v:g}\n" for n, t, h, v in lines)

    async def _acquire(self, name: str, wait: bool = True) -> Slot:
        while True:
            slot = self._slots.get(name)
            if slot is not None and slot.stop.is_set():
                await slot.done.wait()
                continue
            if slot is None:
                slot = self._slots[name] = Slot()
                slot.busy += 1
                await self._start(name, slot, wait)
            else:
                slot.busy += 1
                await slot.started.wait()
            if slot.error is not None:
                slot.busy -= 1
                raise ApiError(503, "collection_unavailable", f"the collection {name!r} {slot.error}; try again")
            self._clock += 1
            slot.used = self._clock
            return slot

    async def _start(self, name: str, slot: Slot, wait: bool) -> None:
        try:
            if self._group is None:
                raise RuntimeError("the server is not running")
            encoder = await anyio.to_thread.run_sync(lambda: self.shared.encoder)  # the first loads the model
            app = self.make(name, QueryService(self.settings[name], encoder=encoder))
            slot.app = await self._group.start(self._run, name, slot, app)
            self.starts += 1
        except Exception as exc:  # one collection that cannot start takes no other with it
            log.error("the collection %r could not start: %s", name, exc)
            slot.error = "could not start (the server's log says why)"
            if self._slots.get(name) is slot:
                del self._slots[name]
            slot.done.set()
        finally:
            slot.started.set()
        if slot.app is None:
            return
        loading = getattr(slot.app.state, "loading", None)
        if wait and loading is not None:  # the first request waits for the index, up to a point (then /ready says)
            await asyncio.wait({loading}, timeout=self.load_wait)
        self._evict()  # the one just started is held by its request

    async def _run(self, name: str, slot: Slot, app: FastAPI, *, task_status: TaskStatus[FastAPI]) -> None:
        """One collection's lifespan, in a task of its own (entered and left by the same task)."""
        started = False
        try:
            async with app.router.lifespan_context(app):
                task_status.started(app)
                started = True
                log.info("the collection %r is started", name)
                await slot.stop.wait()
        except Exception as exc:
            if not started:  # the request that started it says so
                raise
            log.error("the collection %r did not stop cleanly: %s", name, exc)
        finally:
            slot.app = None
            if self._slots.get(name) is slot:
                del self._slots[name]
            slot.done.set()
            if not self._quit.is_set():  # unloaded to make room: its memory is for the next one
                await anyio.to_thread.run_sync(_give_back)
            log.info("the collection %r is unloaded", name)

    def _evict(self) -> None:
        """Stop the least recently used collections while the loaded ones take more than the budget."""
        if not self.budget:
            return
        live = self._loaded()
        total = sum(self._size(s) for s in live.values())
        if total <= self.budget:
            return
        idle = sorted((s.used, n) for n, s in live.items() if not s.busy and not self.pinned(n))
        for _, name in idle:
            if total <= self.budget:
                break
            self.stops += 1
            live[name].stop.set()
            total -= self._size(live[name])

    async def _housekeeping(self) -> None:
        """Purge the stores of the collections not loaded (a loaded one's recorder purges its own), now and hourly."""
        while not self._quit.is_set():
            for name in [n for n in self.settings if n not in self._slots]:
                if self._quit.is_set():
                    return
                try:
                    self.purged += await anyio.to_thread.run_sync(purge_at_rest, self.settings[name])
                except Exception as exc:  # a store that cannot be reached now is tried at the next round
                    log.warning("could not purge the unloaded collection %r: %s", name, exc)
            with anyio.move_on_after(PURGE_EVERY):
                await self._quit.wait()

    def _loaded(self) -> dict[str, Slot]:
        """The collections started and not being stopped."""
        return {n: s for n, s in self._slots.items() if s.app is not None and not s.stop.is_set()}

    def _size(self, slot: Slot) -> int:
        """The memory a loaded collection takes, estimated from its index version's folder."""
        query: QueryService = slot.app.state.services.query  # type: ignore[union-attr]
        if not query.ready:
            return APP_BYTES
        version = query.index.version
        if slot.sized[0] != version:  # the folder in service now: the one loaded, or the next to be
            folder = version_dir(query.settings.index.index_dir)
            stored = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) if folder.is_dir() else 0
            slot.sized = (version, APP_BYTES + RESIDENT_PER_STORED * stored)
        return slot.sized[1]


class Lazy:
    """A collection's app as a mount sees it: started by the request, kept until the response is sent."""

    def __init__(self, pool: Pool, name: str) -> None:
        self.pool, self.name = pool, name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # the pool runs each collection's lifespan itself
            return
        try:
            async with self.pool.using(self.name) as app:
                await app(scope, receive, send)
        except ApiError as exc:  # raised before the app took the request: nothing was sent yet
            body = {"error": {"code": exc.code, "message": str(exc)}}
            await JSONResponse(body, exc.status, headers={"Retry-After": "5"})(scope, receive, send)


def _give_back() -> None:
    """Hand the memory an unloaded collection freed back to the system (glibc keeps it otherwise)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once (finding the C library runs a program); None elsewhere."""
    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
