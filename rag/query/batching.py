"""Micro-batching: concurrent requests for query vectors share one encoder call.

A worker thread (one per lane of the encoder) takes every request waiting when it becomes free (and,
optionally, waits up to ``max_wait`` for more), encodes them together and hands each caller its row.
An idle service adds no delay; under load, requests that arrive while the lanes are busy ride in the
next batch of the first lane to be free.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

R = TypeVar("R")
Encode = Callable[[Sequence[str]], Any]  # texts -> rows, indexable by position (an array, latent terms)


class MicroBatcher(Generic[R]):
    def __init__(self, encode: Encode, max_batch: int = 32, max_wait: float = 0.0, lanes: int = 1) -> None:
        self.encode, self.max_wait, self.lanes = encode, max_wait, lanes
        self.max_batch = -(-max_batch // lanes)  # a lane leaves the rest of a long queue to the next free lane
        self._queue: queue.SimpleQueue[tuple[str, Future[R]]] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._busy = 0  # lanes encoding now (read without a lock: an estimate is enough)

    def __call__(self, text: str, timeout: float | None = 60.0) -> R:
        return self.submit(text).result(timeout)

    def submit(self, text: str) -> Future[R]:
        """Queue ``text``; its row arrives in the returned future."""
        if not self._workers:
            with self._start_lock:
                if not self._workers:
                    for lane in range(self.lanes):
                        worker = threading.Thread(target=self._run, name=f"encoder-lane-{lane}", daemon=True)
                        worker.start()
                        self._workers.append(worker)
        future: Future[R] = Future()
        self._queue.put((text, future))
        return future

    def load(self) -> int:
        """Encoder calls running or waiting now (an estimate)."""
        return self._busy + self._queue.qsize()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    left = deadline - time.monotonic()
                    batch.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            batch = [(text, future) for text, future in batch if future.set_running_or_notify_cancel()]
            if not batch:  # every caller gave up waiting before its turn
                continue
            self._busy += 1
            try:
                vectors = self.encode([text for text, _ in batch])
            except BaseException as exc:  # hand the failure to every caller of this batch
                for _, future in batch:
                    future.set_exception(exc)
                continue
            finally:
                self._busy -= 1
            for row, (_, future) in enumerate(batch):
                future.set_result(vectors[row])
