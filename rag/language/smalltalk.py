"""Greetings, thanks and goodbyes: not questions for the FAQ, they get a polite reply; and requests to talk to a
person, which get the handoff."""

from __future__ import annotations

import re

from rag.language.analyzer import fold

_KINDS = {
    "greeting": {"bonjour", "bonsoir", "salut", "coucou", "hello", "hi", "hey", "allo", "good morning", "good evening"},
    "thanks": {"merci", "merci beaucoup", "merci bien", "thanks", "thank you", "thx", "parfait", "super", "top"},
    "goodbye": {"au revoir", "bye", "goodbye", "a bientot", "a plus", "bonne journee", "bonne soiree", "ciao"},
    "ack": {"ok", "d accord", "oui", "non", "ok merci", "tres bien", "cool", "yes", "no"},
}
_POLITE = {
    "et",
    "and",
    "madame",
    "monsieur",
    "a tous",
    "tout le monde",
    "encore",
    "a vous",
    "la",
    "beaucoup",
    "bien",
    "!",
    "ca va",
}
_PHRASES = sorted({p for words in _KINDS.values() for p in words} | _POLITE, key=len, reverse=True)


def smalltalk(query: str) -> str | None:
    """The kind of small talk when the whole message is small talk (``"Bonjour !"``, ``"merci"``), else None."""
    text = " " + re.sub(r"[^a-z0-9!]+", " ", fold(query)).strip() + " "
    if len(text) > 60:
        return None
    found: list[tuple[int, str]] = []  # (position, kind): the message's first words say what it is
    for phrase in _PHRASES:
        pattern = f" {phrase} "
        while (at := text.find(pattern)) >= 0:
            kind = next((k for k, words in _KINDS.items() if phrase in words), None)
            if kind:
                found.append((at, kind))
            text = text[:at] + " " * (len(pattern) - 1) + text[at + len(pattern) - 1 :]
    return min(found)[1] if found and not text.strip(" !") else None


# a request for a person, in French or English, once accents and case are folded
_ASKS = re.compile(
    r"\b(?:parler|discuter|echanger|etre mis en relation|mettre en relation|joindre|contacter|appeler|avoir)\b.{0,30}"
    r"\b(?:conseiller|conseillere|humain|humaine|personne|agent|operateur|operatrice|quelqu un|support|equipe)\b"
    r"|\b(?:un|une|le|la) (?:conseiller|conseillere|humain|agent|operateur|operatrice) svp\b"
    r"|\b(?:talk|speak|chat)\b.{0,20}\b(?:human|person|agent|someone|somebody|operator|representative)\b"
    r"|\b(?:human|real person|live agent) please\b"
    r"|^\s*(?:conseiller|humain|agent|human|operator)\s*[!?.]*\s*$"
)


def asks_for_person(text: str) -> bool:
    """Whether the message asks to talk to a person (« je veux parler à un conseiller », "talk to a human")."""
    return bool(_ASKS.search(fold(text).replace("'", " ")))
