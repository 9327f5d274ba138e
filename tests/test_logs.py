"""Secrets never reach the log."""

import logging

from rag.logs import Redact


def test_secrets_never_reach_the_log() -> None:
    redact = Redact(["sk-admin-secret", "k-one-key"])
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, "POST %s %s", ("http://bob:pa55word@llm.internal:8001/v1", "ok"), None
    )
    redact.filter(record)
    assert record.getMessage() == "POST http://***@llm.internal:8001/v1 ok"
    assert redact.redact("Authorization: Bearer abc.def and sk-admin-secret, k-one-key") == (
        "Authorization: Bearer *** and ***, ***"
    )
