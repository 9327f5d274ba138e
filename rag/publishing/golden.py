"""The golden eval file the team's decisions grow: one JSON line per question a resolution covered (``relevant``
the entry chosen, ``[]`` when out of scope), appended durably by one writer at a time, and rewritten without
the lines an erasure names (only those the service wrote: ``"source": "gap"``)."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from rag.errors import StoreUnavailable

SOURCE = "gap"  # the rows the service writes; any other row is the team's own and never touched


@contextmanager
def _locked(path: Path) -> Iterator[IO[str]]:
    """The file opened and locked; opened again when an erasure replaced it while this waited for the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = path.open("a+", encoding="utf-8")
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    try:
        yield handle
    finally:
        handle.close()


def append(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append eval queries, durably; a row the file already holds for the same gap (a resolution tried again) is
    not written twice."""
    try:
        with _locked(path) as fh:
            fh.seek(0)
            held = {_key(line) for line in fh if line.strip()}
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows if _key(r) not in held)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise StoreUnavailable(f"the golden eval file {path} cannot be written ({exc.strerror})") from None


def erase(path: Path, names: Callable[[str], bool]) -> int:
    """Rewrite the file (atomically) without the service's rows whose question ``names`` matches; how many."""
    if not path.is_file():
        return 0
    with _locked(path) as fh:
        fh.seek(0)
        lines = fh.read().splitlines(keepends=True)
        kept = [line for line in lines if not _erased(line, names)]
        if len(kept) == len(lines):
            return 0
        tmp = path.with_name(f".{path.name}.erasing")
        with tmp.open("w", encoding="utf-8") as out:
            out.write("".join(kept))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    return len(lines) - len(kept)


def _erased(line: str, names: Callable[[str], bool]) -> bool:
    try:
        row = json.loads(line)
    except ValueError:
        return False
    return isinstance(row, dict) and row.get("source") == SOURCE and names(str(row.get("query", "")))


def _key(row: str | dict[str, Any]) -> tuple[str, str] | None:
    try:
        data = json.loads(row) if isinstance(row, str) else row
    except ValueError:
        return None
    return (str(data.get("gap")), str(data.get("query"))) if isinstance(data, dict) and data.get("gap") else None
