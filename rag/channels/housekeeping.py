"""Chat front ends' own background prompts, told apart from users' questions: Open WebUI asks the model for a
title, tags, follow-up questions or search queries (« ### Task: … »), LibreChat for a conversation title. They are
answered here, in the form each asks for, and never searched, recorded or counted as questions."""

from __future__ import annotations

import json
import re

_TASK = re.compile(r"^\s*#{2,3}\s*Task\s*:", re.IGNORECASE)
_JSON_KEY = re.compile(r'JSON format:\s*\{\s*"(\w+)"', re.IGNORECASE)
_TITLE_ASKED = re.compile(r"\btitle for (?:the|this) conversation\b", re.IGNORECASE)
_USER_LINE = re.compile(r"^\s*(?:\|\|>)?user\s*:\s*(\S.*)$", re.IGNORECASE | re.MULTILINE)
LISTS = {"tags", "follow_ups", "queries"}
TITLE_WORDS = 6


def housekeeping(message: str) -> str | None:
    """The reply to a front end's background prompt, or None when ``message`` is a user's question."""
    if _TASK.match(message):
        key = _JSON_KEY.search(message)
        name = key.group(1).lower() if key else None
        if name == "title":
            return json.dumps({"title": _title(message)}, ensure_ascii=False)
        if name in LISTS:
            return json.dumps({name: []})
        return json.dumps({name: ""}) if name else ""
    if _TITLE_ASKED.search(message):
        return _title(message)
    return None


def _title(prompt: str) -> str:
    """The first words of the conversation's first user message, as the title."""
    found = _USER_LINE.search(prompt)
    words = found.group(1).split() if found else []
    return " ".join(words[:TITLE_WORDS]).strip(" ?!.,;:") or "FAQ"
