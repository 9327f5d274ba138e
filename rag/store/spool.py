"""Writes the store could not take, kept on local disk until it can.

One append-only file of JSON lines per process (``<folder>/<host>-<pid>-<random>.jsonl``), locked for the
process's life; a line is flushed and synced to disk before the write it holds is acknowledged. When the
store answers again, the lines are replayed in order: the process's own file, and the files of processes
that died (their lock is free) — a replica killed during an outage loses nothing it acknowledged. Replaying
is idempotent (answers are inserted once, a vote keeps the latest by time), so a line replayed twice after
a crash changes nothing. An erasure rewrites every file, those of live processes included, while it holds the
folder's lock alone (appends and replays share it).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from rag.errors import StoreUnavailable

log = logging.getLogger("rag.store.spool")
Apply = Callable[[dict[str, Any]], bool]  # replays one record: True when done, False to keep it for later
FOLDER_LOCK = ".lock"


class Spool:
    """The local spool of one process (see the module's text)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._own: IO[str] | None = None
        self._path: Path | None = None
        self._pending = 0  # appended, not handed to a replay yet
        self._replaying = 0  # handed to the replay under way
        self._kept = 0  # left waiting by the last replay (votes whose answer is not in the store yet)

    @contextmanager
    def _folder(self, alone: bool = False) -> Iterator[None]:
        """The folder's lock: shared by appends and replays, held ``alone`` by an erasure."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / FOLDER_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
            yield

    def _open(self) -> IO[str]:
        if self._own is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            self._path = self.folder / name
            handle = open(self._path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the process's life
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._own = handle
        return self._own

    def append(self, record: dict[str, Any]) -> None:
        """Keep ``record``; returns once it is on disk. :class:`StoreUnavailable` when it cannot be."""
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            try:
                with self._folder():
                    handle = self._open()
                    handle.write(line)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as exc:
                raise StoreUnavailable(
                    f"the store is unavailable and the local spool {self.folder} cannot be written ({exc}); "
                    "try again later",
                    headers={"Retry-After": "5"},
                ) from None
            self._pending += 1

    @property
    def pending(self) -> int:
        """Records this process appended that are not replayed yet."""
        return self._pending

    @property
    def waiting(self) -> int:
        """Records under replay, or that the last replay kept for later: not written yet either, so a reader of
        :attr:`pending` plus this never sees nothing left while a replay is still writing."""
        return self._replaying + self._kept

    @property
    def kept(self) -> int:
        """Records the last replay kept for later."""
        return self._kept

    def replay(self, apply: Apply) -> tuple[int, int]:
        """Replay every record that can be — this process's, then those of processes that died, each file in
        order — keeping those ``apply`` puts off; returns (replayed, kept). Stops at the first
        :class:`StoreUnavailable`, keeping the rest. Appends go on meanwhile, into a new file."""
        done = kept = 0
        files = self._rotated() + self._orphans()
        finished = False
        try:
            for handle, path in files:
                replayed, left, interrupted = self._replay_file(handle, path, apply)
                done, kept = done + replayed, kept + left
                if interrupted:
                    break
            finished = True
        finally:
            for handle, _ in files:
                handle.close()  # its lock goes with it: a file kept is replayed at the next round
            with self._lock:
                self._kept = kept if finished else self._kept + self._replaying
                self._replaying = 0
        return done, kept

    def _rotated(self) -> list[tuple[IO[str], Path]]:
        """This process's file, handed over for replaying; appends go to a new one."""
        with self._lock:
            if self._own is None or self._path is None or self._pending == 0:
                return []
            handed = (self._own, self._path)
            self._replaying = self._pending
            self._own, self._path, self._pending = None, None, 0
        return [handed]

    def _orphans(self) -> list[tuple[IO[str], Path]]:
        """The files of processes that died (their lock is free), oldest first, each locked for replaying."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in sorted(self.folder.glob("*.jsonl"), key=_age):
            if path == self._path:
                continue
            try:
                handle = open(path, "r+", encoding="utf-8")  # noqa: SIM115 - closed by replay()
            except OSError:  # gone meanwhile: another process replayed it
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()  # a live process's file
                continue
            if os.fstat(handle.fileno()).st_nlink == 0:  # replayed and removed by another process before the lock
                handle.close()
                continue
            found.append((handle, path))
        return found

    def _replay_file(self, handle: IO[str], path: Path, apply: Apply) -> tuple[int, int, bool]:
        with self._folder():
            return self._replay_lines(handle, path, apply)

    def _replay_lines(self, handle: IO[str], path: Path, apply: Apply) -> tuple[int, int, bool]:
        handle.seek(0)
        lines = [line for line in handle.read().splitlines() if line.strip()]
        keep: list[str] = []
        done, interrupted = 0, False
        for number, line in enumerate(lines):
            try:
                record = json.loads(line)
            except ValueError:
                log.warning("dropped a damaged line of the spool %s", path.name)  # a line cut by a crash
                continue
            try:
                if apply(record):
                    done += 1
                else:
                    keep.append(line)
            except StoreUnavailable:
                keep.extend(lines[number:])
                interrupted = True
                break
        if keep and done == 0 and len(keep) == len(lines):
            return 0, len(keep), interrupted  # nothing changed: the file stays as it is, no rewrite, no sync
        if keep:
            handle.seek(0)
            handle.truncate()
            handle.write("".join(line + "\n" for line in keep))
            handle.flush()
            os.fsync(handle.fileno())
        else:
            path.unlink(missing_ok=True)
        return done, len(keep), interrupted

    def erase(self, erased: Callable[[dict[str, Any]], bool]) -> int:
        """Take out of every file, in place, the records ``erased`` names; how many."""
        if not self.folder.is_dir():
            return 0
        count = 0
        with self._folder(alone=True):
            for path in sorted(self.folder.glob("*.jsonl")):
                try:
                    with open(path, "r+", encoding="utf-8") as handle:
                        lines = handle.read().splitlines(keepends=True)
                        kept = [line for line in lines if not _names(line, erased)]
                        if len(kept) < len(lines):
                            handle.seek(0)
                            handle.truncate()
                            handle.write("".join(kept))
                            handle.flush()
                            os.fsync(handle.fileno())
                            count += len(lines) - len(kept)
                except FileNotFoundError:  # replayed and removed meanwhile
                    continue
        return count

    def close(self) -> None:
        with self._lock:
            if self._own is not None:
                self._own.close()
                if self._path is not None and self._pending == 0:
                    self._path.unlink(missing_ok=True)
                self._own = None


def _age(path: Path) -> float:
    """When a spool file was last written; one removed meanwhile (replayed by another process) sorts first and is
    then skipped."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _names(line: str, erased: Callable[[dict[str, Any]], bool]) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and erased(record)
