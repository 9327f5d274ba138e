"""Answers and votes recorded without making anyone wait for the store.

An answer is handed to a background writer and the request goes on; a vote is written at once, with a
short bound. When the store is away (a database restarting, a full disk), both go to the local
:class:`~rag.store.spool.Spool` — a vote synced to disk before it is acknowledged — and the writer replays the
spool, in order, once the store answers again, trying it with a doubling wait. A vote on an answer the
store does not know yet (still spooled here, or on another replica) is kept until that answer arrives, for
:data:`PENDING_HORIZON` seconds at most; one on an id this service never gave is refused.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from rag.config import Settings
from rag.errors import StoreUnavailable, UnknownAnswer
from rag.models import Answer
from rag.store import Store
from rag.store.answer_ids import AnswerIds
from rag.store.answers import answer_row
from rag.store.privacy import scrub
from rag.store.spool import Spool

log = logging.getLogger("rag.store.recorder")
PENDING_HORIZON = 24 * 3600.0  # seconds a vote waits for its answer to reach the store
RETRY_FIRST, RETRY_MAX = 0.5, 15.0  # the wait between tries of a store that failed, doubling
ORPHANS_EVERY = 5.0  # seconds between looks for the spool files of processes that died
PURGE_EVERY = 3600.0  # seconds between erasures of what is older than the retention


def make_recorder(settings: Settings, store: Store) -> Recorder:
    """The recorder of ``store`` as the settings say: its spool, how long a vote waits, what is kept and how long."""
    http = settings.http
    return Recorder(
        store,
        Spool(settings.spool_path),
        wait=http.store_timeout,
        keep_text=http.store_questions,
        retention_days=http.retention_days,
    )


class Recorder:
    """Writes answers and votes to ``store``, through ``spool`` while the store is away (see the module's text).
    :meth:`start` runs the writer; the counters say what was spooled, replayed and dropped."""

    def __init__(
        self,
        store: Store,
        spool: Spool,
        backlog: int = 10_000,
        wait: float = 1.0,
        keep_text: bool = True,
        retention_days: float = 90.0,
    ) -> None:
        """``wait``: how long a vote waits for its answer's record, queued here moments before, to be written;
        ``keep_text``: keep what users typed (personal data removed) or only the counts; ``retention_days``: how
        long answers and votes are kept."""
        self.store, self.spool, self.wait = store, spool, wait
        self.keep_text, self.retention = keep_text, retention_days * 86400
        self._purge_at = 0.0
        self._queued: set[str] = set()  # answers queued and not written (nor spooled) yet
        self._written = threading.Condition()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(backlog)
        self._retry_at = 0.0  # while in the future, the store is not tried
        self._wait = RETRY_FIRST
        self._kept_wait, self._kept_until = RETRY_FIRST, 0.0
        self._orphans_at = 0.0
        self._counting = threading.Lock()
        self._thread: threading.Thread | None = None
        self.spooled = self.replayed = self.dropped = 0
        self.last_error: str | None = None

    @property
    def pending(self) -> int:
        """Records of this process in the spool, not written to the store yet."""
        return self.spool.pending + self.spool.waiting

    @property
    def state(self) -> str:
        """``ok``; ``spooling`` while records wait for the store; ``unavailable`` while it is away."""
        if time.monotonic() < self._retry_at:
            return "unavailable"
        return "spooling" if self.pending else "ok"

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (to the store, or to the spool) and stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def record_answer(self, answer_id: str, answer: Answer, channel: str = "api", question: bool = True) -> None:
        """Queue the answer's record (``channel``: where it was asked); never waits (a full queue spills into the
        spool). Personal data is removed before anything is written, here or in the spool. What is not a
        question (``question`` false: a greeting) is recorded without its text, so a vote on it is kept and the
        question log never shows it."""
        keep_text = self.keep_text and question
        record = {"kind": "answer", **answer_row(answer_id, answer, channel=channel, keep_text=keep_text)}
        with self._written:
            self._queued.add(answer_id)
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._done(answer_id)
            self._spool(record)

    def _done(self, answer_id: str) -> None:
        with self._written:
            self._queued.discard(answer_id)
            self._written.notify_all()

    def add_feedback(self, answer_id: str, helpful: bool, comment: str | None) -> bool | None:
        """Record a vote, durably, before returning: True when it replaced an earlier one, False when it is the
        first, None when it waits in the spool. :class:`UnknownAnswer` for an answer the store does not know that
        was given too long ago (the id's signature is checked before: :class:`~rag.store.answer_ids.AnswerIds`);
        :class:`StoreUnavailable` (retryable) when it can be kept nowhere."""
        comment = scrub(comment) if self.keep_text else None
        record = {"kind": "vote", "answer_id": answer_id, "helpful": helpful, "comment": comment, "at": time.time()}
        with self._written:  # an answer given here moments ago: its record first
            self._written.wait_for(lambda: answer_id not in self._queued, timeout=self.wait)
        if time.monotonic() >= self._retry_at:
            try:
                return self.store.votes.add(answer_id, helpful, comment, record["at"])
            except UnknownAnswer:
                given = AnswerIds.issued_at(answer_id)
                if given is None or not 0 <= time.time() - given <= PENDING_HORIZON:
                    raise
            except StoreUnavailable as exc:
                self._failed(exc)
        self._spool(record)
        return None

    def recorded(self, answer_id: str) -> dict[str, Any] | None:
        """An answer as the store holds it, once its record (queued here moments ago) is written; None when the store
        does not hold it. :class:`StoreUnavailable` while the store is away."""
        with self._written:
            self._written.wait_for(lambda: answer_id not in self._queued, timeout=self.wait)
        return self.store.answers.record(answer_id)

    def _spool(self, record: dict[str, Any]) -> None:
        self.spool.append(record)
        with self._counting:
            self.spooled += 1

    def _failed(self, exc: Exception) -> None:
        if self.last_error is None:
            log.warning("%s: keeping answers and votes in the local spool until it answers", exc)
        self.last_error = str(exc)
        self._retry_at = time.monotonic() + self._wait
        self._wait = min(self._wait * 2, RETRY_MAX)

    def _recovered(self) -> None:
        if self.last_error is not None:
            log.warning("the feedback store answers again: replaying the local spool")
        self.last_error, self._wait, self._retry_at = None, RETRY_FIRST, 0.0

    def _run(self) -> None:
        while True:
            try:
                record = self._queue.get(timeout=0.5)
            except queue.Empty:
                record = {}
            if record is None:
                break
            if record:
                self._write(record)
            now = time.monotonic()
            due = self.spool.pending or (self.spool.kept and now >= self._kept_until) or now >= self._orphans_at
            if now >= self._retry_at and due:
                self._orphans_at = now + ORPHANS_EVERY
                self._replay()
            if now >= self._purge_at and now >= self._retry_at:
                self._purge_at = now + PURGE_EVERY
                self._purge()
        while not self._queue.empty():  # closing: whatever is left is kept for the next run
            left = self._queue.get_nowait()
            if left:
                self._write(left)

    def _purge(self) -> None:
        """Erase what is older than the retention; the store away (or still connecting), it is tried again a little
        later — housekeeping, which says nothing of the store's state (the writes do)."""
        try:
            if not self.store.ready:
                raise StoreUnavailable("the store is connecting")
            erased = self.store.purge(time.time() - self.retention)
        except StoreUnavailable:
            self._purge_at = time.monotonic() + RETRY_MAX
            return
        if erased:
            log.info("erased %d answers older than %.0f days, and their votes", erased, self.retention / 86400)

    def _write(self, record: dict[str, Any]) -> None:
        try:
            if time.monotonic() >= self._retry_at:
                try:
                    self.store.answers.insert(record)
                    self._recovered()
                    return
                except StoreUnavailable as exc:
                    self._failed(exc)
            self._spool(record)
        except StoreUnavailable as exc:  # nor the spool: the record of this answer is lost, said and counted
            with self._counting:
                self.dropped += 1
            log.error("the record of answer %s was lost: %s", record["id"], exc)
        finally:
            self._done(record["id"])

    def _replay(self) -> None:
        try:
            replayed, kept = self.spool.replay(self._apply)
        except OSError as exc:  # the spool folder itself: said once, tried again later
            self._failed(exc)
            return
        with self._counting:
            self.replayed += replayed
        if replayed:
            self._recovered()
        # votes waiting for their answer: looked at again after a doubling wait, not at every turn of the loop
        self._kept_wait = RETRY_FIRST if replayed or not kept else min(self._kept_wait * 2, RETRY_MAX)
        self._kept_until = time.monotonic() + self._kept_wait

    def _apply(self, record: dict[str, Any]) -> bool:
        """Write one spooled record: True when written (or given up), False to keep it for later."""
        try:
            if record.get("kind") == "answer":
                self.store.answers.insert(record)
            else:
                self.store.votes.add(record["answer_id"], record["helpful"], record.get("comment"), record["at"])
            return True
        except UnknownAnswer:
            if time.time() - record.get("at", 0) <= PENDING_HORIZON:
                return False  # its answer is still on its way (spooled here or on another replica)
            with self._counting:
                self.dropped += 1
            log.warning("dropped a vote on answer %s: the answer never reached the store", record.get("answer_id"))
            return True
        except StoreUnavailable as exc:
            self._failed(exc)
            raise
