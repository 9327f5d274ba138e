"""Personal data removed from what users type before anything of it is written (the question log, the spool,
votes' comments): each kind replaced by a typed placeholder, so the log still reads as a question.

What users paste into a helpdesk question: e-mail addresses, phone numbers (French, and international), the
French social-security number (NIR), bank account numbers (IBAN), card numbers (checked with Luhn's sum),
the identifiers of health professionals (RPPS, ADELI) and of patients' records, IP addresses, and secrets
(tokens, keys, passwords written after « mot de passe »). A run of nine digits or more that is none of these
is an identifier all the same.
"""

from __future__ import annotations

import re
import unicodedata

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_NIR = re.compile(
    r"\b[12][ .]?\d{2}[ .]?(?:0[1-9]|1[0-2]|[2-9]\d)[ .]?(?:\d{2}|2[AB])[ .]?\d{3}[ .]?\d{3}(?:[ .]?\d{2})?\b"
)
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)?(?:33[ .-]?(?:\(0\))?[ .-]?[1-9]|0[1-9])(?:[ .-]?\d{2}){4}(?!\d)")
_INTERNATIONAL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\d{2,4}){3,5}(?!\d)")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_IP = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
_WORDS = r"mot de passe|password|mdp|pwd|code secret|code pin|pin"
# a password after a separator ("mot de passe : …", "mdp = …", "mon mot de passe est …"), or a word that looks
# like one (letters and digits) right after the word: never the ordinary words of a question about passwords
_PASSWORD = re.compile(rf"(?i)\b({_WORDS})(\s*(?:\best\b|\bis\b|[:=])\s*|\s+(?=\S*\d)(?=\S*[^\W\d]))(\S+)")
_SECRET = re.compile(r"\b(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{24,}\b")
_NUMBER = re.compile(r"(?<!\d)\d(?:[ .]?\d){8,}(?!\d)")


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[CARTE]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


def scrub(text: str | None) -> str | None:
    """``text`` with personal data replaced by ``[EMAIL]``, ``[TÉLÉPHONE]``, ``[NIR]``, ``[IBAN]``, ``[CARTE]``,
    ``[IP]``, ``[SECRET]`` or ``[NUMÉRO]``."""
    if not text:
        return text
    text = _EMAIL.sub("[EMAIL]", text)
    text = _PASSWORD.sub(lambda m: f"{m.group(1)}{m.group(2)}[SECRET]", text)
    text = _IBAN.sub("[IBAN]", text)
    text = _NIR.sub("[NIR]", text)
    text = _CARD.sub(_card, text)
    text = _PHONE.sub("[TÉLÉPHONE]", text)
    text = _INTERNATIONAL.sub("[TÉLÉPHONE]", text)
    text = _IP.sub("[IP]", text)
    text = _SECRET.sub("[SECRET]", text)
    return _NUMBER.sub("[NUMÉRO]", text)


def mentions(text: str, words: str) -> bool:
    """Whether ``text`` holds ``words`` in any case, with or without accents (« Elodie » names « ÉLODIE »): the one
    rule of an erasure, which had rather take too much than leave a copy."""
    return _fold(words) in _fold(text) if words.strip() else False


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))
