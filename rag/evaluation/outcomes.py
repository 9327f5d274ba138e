"""The three outcomes, scored: how often each kind of question is answered (asserted), suggested (its nearest
entries shown, no answer asserted) or declined; how often an assertion is right (of the in-scope questions
answered, and of all those answered); how often the right entry is
shown at all; and, whatever the service's own thresholds, how many questions the FAQ does not answer a threshold
would decline while keeping 90 % of those it answers (the binary view)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

OUTCOMES = ("answered", "suggested", "declined")
KEPT = 0.9  # the binary view: the share of in-scope questions answered or suggested


def three_way(pairs: Sequence[tuple[Any, Any]], right: Sequence[bool]) -> dict[str, Any]:
    """``pairs``: (query, outcome) of a run; ``right``: whether an entry that answers each is among the first."""
    groups: dict[str, list[str]] = {}
    for q, o in pairs:
        scope = "in_scope" if q.in_scope else q.tags.get("scope", "out_of_scope")
        groups.setdefault(scope, []).append(o.outcome)
    table = {
        scope: {"n": len(found), **{k: round(found.count(k) / len(found), 4) for k in OUTCOMES}}
        for scope, found in sorted(groups.items())
    }
    answered = [(q, r) for (q, o), r in zip(pairs, right) if o.outcome == "answered"]
    answered_in = [r for q, r in answered if q.in_scope]
    inside = [(q, o) for q, o in pairs if q.in_scope]
    shown = [bool(set(q.relevant) & set(o.ranking)) for q, o in inside if o.outcome != "declined"]
    out: dict[str, Any] = {
        "outcomes": table,
        # of the in-scope questions answered, those an entry that answers them is among the first of
        "answered_right": sum(answered_in) / len(answered_in) if answered_in else 1.0,
        # of every question answered (out-of-scope ones too), those answered right: how far an assertion is trusted
        "answer_precision": sum(r and q.in_scope for q, r in answered) / len(answered) if answered else 1.0,
        "suggested_rate": sum(o.outcome == "suggested" for _, o in inside) / max(len(inside), 1),
        "shown_rate": sum(shown) / max(len(inside), 1),
    }
    for scope, row in table.items():
        if scope != "in_scope":
            out[f"declined_{scope}"] = row["declined"]  # declined outright, not even suggested
    binary = declined_at_kept(pairs)
    if binary is not None:
        out["declined_at_kept_90"] = binary
    return out


def declined_at_kept(pairs: Sequence[tuple[Any, Any]], kept: float = KEPT) -> float | None:
    """The share of out-of-scope questions below the highest confidence threshold that keeps ``kept`` of the
    in-scope ones (None without confidences, or without both kinds of question)."""
    inside = sorted((o.confidence for q, o in pairs if q.in_scope and o.confidence is not None), reverse=True)
    outside = [o.confidence for q, o in pairs if not q.in_scope and o.confidence is not None]
    if not inside or not outside:
        return None
    threshold = inside[max(0, int(kept * len(inside) + 0.999999) - 1)]
    return sum(c < threshold for c in outside) / len(outside)
