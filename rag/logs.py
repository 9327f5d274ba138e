"""Logging for the service: plain lines on stderr, with secrets never written out."""

from __future__ import annotations

import logging
import re
import sys

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


def configure(secrets: list[str]) -> None:
    """One line per message on stderr; the HTTP client's own request lines are not logged."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(Redact(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("httpx", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
