"""Answer ids the service signs: ``<time in ms, 12 hex><random, 12 hex><tag, 16 hex>``, the tag an HMAC of the rest
with a key the replicas share. A vote (or a handoff) naming an id that does not carry a valid tag was never
issued here: it is refused without asking the store, and never spooled. The time lets a vote on an answer given
moments ago, whose record has not reached the store yet, wait for it."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
import uuid
from pathlib import Path

ID = re.compile(r"[0-9a-f]{40}\Z")  # ASCII only: str.isdigit() and friends accept « ² » and other digits
KEY_FILE = "secret.key"


class AnswerIds:
    """Issues and checks answer ids with ``key``."""

    def __init__(self, key: bytes) -> None:
        self.key = hashlib.sha256(b"rag-answer-id\x00" + key).digest()

    def _tag(self, body: str) -> str:
        return hmac.new(self.key, body.encode("ascii"), hashlib.sha256).hexdigest()[:16]

    def issue(self, now: float | None = None) -> str:
        body = f"{int((time.time() if now is None else now) * 1000):012x}{uuid.uuid4().hex[:12]}"
        return body + self._tag(body)

    def valid(self, answer_id: object) -> bool:
        """Whether ``answer_id`` was issued with this key (compared as bytes, in constant time)."""
        if not isinstance(answer_id, str) or not ID.match(answer_id):
            return False
        return hmac.compare_digest(answer_id[24:].encode("ascii"), self._tag(answer_id[:24]).encode("ascii"))

    @staticmethod
    def issued_at(answer_id: str) -> float | None:
        """When an id was issued (epoch seconds); None for one that is not an answer id at all."""
        return int(answer_id[:12], 16) / 1000 if ID.match(answer_id) else None


def shared_key(setting: str | None, folder: Path) -> bytes:
    """The key: ``RAG_SECRET_KEY`` when set (replicas on several machines set the same), else a random key kept in
    ``folder/secret.key``, made once (exclusively, readable by its owner only) and read by every process there."""
    if setting:
        return setting.encode("utf-8")
    path = Path(folder) / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile
        return path.read_bytes().strip()
    key = secrets.token_hex(32).encode("ascii")
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return key
