"""Logging for the service: plain lines on stderr, with secrets never written out."""

from __future__ import annotations

import logging
import re
import sys

from rag.config import Settings

_USERINFO = re.compile(r"(?<=://)[^/@\s:]+(?::[^/@\s]*)?@")
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")


class Redact(logging.Filter):
    """Removes credentials from every record: the configured secrets, ``user:password@`` in URLs and
    bearer tokens."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return _BEARER.sub(r"\1***", _USERINFO.sub("***@", text))

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        return True


def secrets(settings: Settings) -> list[str]:
    """Every configured credential: keys, tokens, and URLs that may carry a password."""
    http = settings.http
    keys = [*http.api_keys, http.admin_token, *http.admin_tokens, settings.llm.api_key, settings.embeddings.api_key]
    return [s for s in (*keys, http.redis_url, http.database_url) if s]


class _Lines(logging.Formatter):
    """The access log's JSON lines as they are; any other message behind its level and its source."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.name == "rag.access" else f"{record.levelname} {record.name}: {message}"


def configure(settings: Settings) -> None:
    """One line per message on stderr, credentials removed; the HTTP client's own request lines are not
    logged. Set before any library installs a handler of its own on the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Lines())
    handler.addFilter(Redact(secrets(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("httpx", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
