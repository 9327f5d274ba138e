"""The index folder on disk: versions side by side and a pointer to the one in service.

::

    <index dir>/current            -> versions/<version>   (a symbolic link, replaced atomically)
    <index dir>/versions/<version>/manifest.json, entries.jsonl, chunks.jsonl, views.npy, keys.npy,
                                   vectors.faiss, bm25/, glossary.json, latents.npz (when the encoder has them),
                                   calibration.json (when the confidence was fitted on this FAQ),
                                   curation.jsonl and out-of-scope.npy (when the team curated questions)
    <index dir>/.tmp-<id>/          a version being written (removed if the build dies)
    <index dir>/web/pages.json      what the FAQ's web pages gave at the last sync (when sources are web pages)

A version is written in full in a temporary folder, renamed into ``versions/``, then the pointer is
swapped: at every instant ``current`` names a complete version, so a killed build never leaves the
service without an index. The folder is the service's own: it refuses to write into one that holds
anything else.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import ValidationError

from rag.config import is_url
from rag.corpus.web.pages import WEB
from rag.errors import ConfigError, IndexNotReady, ParentChanged
from rag.indexing.manifest import FORMAT_VERSION, Manifest

MANIFEST = "manifest.json"
CURRENT = "current"
VERSIONS = "versions"
KEEP_VERSIONS = 2  # the one in service and the one before it (a replica may still be reading it)
REBUILD_HINT = "Run `rag index` to build it again."
VERSION_FILES = (MANIFEST, "entries.jsonl", "chunks.jsonl", "views.npy", "keys.npy", "vectors.faiss", "glossary.json")
LATENTS = "latents.npz"  # the chunks' latent terms, when the encoder has them
CALIBRATION = "calibration.json"  # the confidence fitted on this FAQ, when it was
CURATION = "curation.jsonl"  # the team's decisions the version was built with, when there are any
OUT_OF_SCOPE = "out-of-scope.npy"  # the vectors of the questions marked out of scope, when there are any
# an index folder of an earlier layout held one version's files directly: they are the service's own too
OWN_NAMES = {CURRENT, VERSIONS, ".lock", "bm25", LATENTS, CALIBRATION, *VERSION_FILES}


def version_dir(directory: Path) -> Path:
    """The folder of the version in service: ``current``'s target, or the folder itself (one version)."""
    directory = Path(directory)
    pointer = directory / CURRENT
    return pointer.resolve() if pointer.is_symlink() or pointer.exists() else directory


def check_target(directory: Path) -> None:
    """Refuse to write an index over anything that is not an index: a user's files are never replaced."""
    directory = Path(directory)
    if not directory.exists() and not directory.is_symlink():
        return
    if not directory.is_dir():
        raise ConfigError(f"{directory} is a file, not an index folder; choose another --index-dir (nothing changed)")
    found = {p.name for p in directory.iterdir()}
    strangers = sorted(n for n in found - OWN_NAMES - {WEB} if not n.startswith(".tmp-"))
    if strangers or (found - {WEB} and not found & {CURRENT, VERSIONS, MANIFEST}):
        raise ConfigError(
            f"{directory} holds files that are not an index ({', '.join(strangers[:5]) or 'no manifest'}); "
            "choose an empty or new folder for --index-dir (nothing was changed)"
        )


@contextlib.contextmanager
def _writer(directory: Path) -> Iterator[None]:
    """One writer at a time per index folder, across processes."""
    with open(directory / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


ANY = object()  # publish whatever version is in service


def current_version(directory: Path) -> str | None:
    """The name of the version in service (None when there is none)."""
    pointer = Path(directory) / CURRENT
    return os.readlink(pointer).rpartition("/")[2] if pointer.is_symlink() else None


def publish(directory: Path, version: str, write: Callable[[Path], None], parent: object = ANY) -> Path:
    """Have ``write`` fill a new folder, keep it as ``versions/<version>``, then point ``current`` at it in
    one atomic step. ``write`` must write the manifest last. ``parent``: the version this one was built from;
    when another was published meanwhile, :class:`ParentChanged` and nothing is published."""
    directory = Path(directory)
    check_target(directory)
    (directory / VERSIONS).mkdir(parents=True, exist_ok=True)
    with _writer(directory):
        now = current_version(directory)
        if parent is not ANY and now != parent:
            raise ParentChanged(f"version {now} was published while this one was built from {parent or 'none'}")
        for orphan in directory.glob(".tmp-*"):  # left by builds that died: no writer is running now
            _remove(orphan)
        tmp = directory / f".tmp-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            write(tmp)
            target = directory / VERSIONS / version
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        pointer = directory / f".tmp-{uuid.uuid4().hex[:8]}"
        pointer.symlink_to(Path(VERSIONS) / version)
        os.replace(pointer, directory / CURRENT)
        _clean(directory, keep=version)
    return target


def _clean(directory: Path, keep: str) -> None:
    """Drop the files of an earlier one-version layout and all but the newest versions."""
    for name in OWN_NAMES - {CURRENT, VERSIONS, ".lock"}:
        _remove(directory / name)
    versions = sorted((p for p in (directory / VERSIONS).iterdir() if p.name != keep), reverse=True)
    for old in versions[KEEP_VERSIONS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def forget(directory: Path, holds: Callable[[Path], bool]) -> list[str]:
    """Remove the versions, all but the one in service, that ``holds`` names (an erasure); their names."""
    directory = Path(directory)
    if not (directory / VERSIONS).is_dir():
        return []
    gone = []
    with _writer(directory):
        keep = current_version(directory)
        for path in sorted((directory / VERSIONS).iterdir()):
            if path.name != keep and holds(path):
                shutil.rmtree(path, ignore_errors=True)
                gone.append(path.name)
    return gone


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def read_manifest(directory: Path) -> Manifest:
    """The manifest of the version in service, checked; :class:`IndexNotReady` names what is wrong."""
    path = version_dir(directory) / MANIFEST
    if not path.exists():
        raise IndexNotReady(f"no index at {directory} (no {MANIFEST}). {REBUILD_HINT}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexNotReady(f"the index manifest {path} is unreadable ({exc}). {REBUILD_HINT}") from None
    found = data.get("format_version") if isinstance(data, dict) else None
    if found != FORMAT_VERSION:
        raise IndexNotReady(
            f"the index at {directory} has format version {found}, this version reads {FORMAT_VERSION}. {REBUILD_HINT}"
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise IndexNotReady(f"the index manifest {path} is invalid ({where}: {first['msg']}). {REBUILD_HINT}") from None


def manifest_sources(directory: Path) -> list[Path | str]:
    """The FAQ files and web addresses an index was built from (the newest readable version that names existing
    files)."""
    directory = Path(directory)
    candidates = [version_dir(directory)]
    if (directory / VERSIONS).is_dir():
        candidates += sorted((directory / VERSIONS).iterdir(), reverse=True)
    for folder in candidates:
        try:
            sources = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("sources", [])
            paths = [s["path"] if is_url(s["path"]) else Path(s["path"]) for s in sources]
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
        if paths and all(is_url(p) or p.is_file() for p in paths):
            return paths
    return []
