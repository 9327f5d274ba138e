"""Self-contained HTML reports of eval runs (``report.html``) and of comparisons (``compare.html``): one file,
styles, script and plot inside it, no request to any other place; every question filterable."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from typing import Any

from rag.evaluation.run import MAIN_METRICS, TABLES, EvalQuery, Outcome
from rag.models import ANSWER_DEPTH

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1rem 1.5rem;color:#161616}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}table{border-collapse:collapse;margin:.5rem 0 1rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}th{background:#eef}
td.n{text-align:right;font-variant-numeric:tabular-nums}.regressed{color:#a00;font-weight:600}
.improved{color:#060;font-weight:600}.right{background:#eefbee}.wrong{background:#fdecec}
.filters{display:flex;gap:1rem;flex-wrap:wrap;align-items:end;margin:.5rem 0}label{display:block;font-weight:600}
input,select{font:inherit;padding:.2rem}img{max-width:100%;height:auto}small{color:#555}
"""
SCRIPT = """
function filterRows(){
  const text=document.getElementById('q').value.toLowerCase();
  const kind=document.getElementById('kind').value;
  let shown=0;
  for(const row of document.querySelectorAll('tbody.questions tr')){
    const ok=row.textContent.toLowerCase().includes(text)&&(!kind||row.dataset.kind.split(' ').includes(kind));
    row.hidden=!ok; if(ok) shown++;
  }
  document.getElementById('shown').textContent=shown;
}
document.getElementById('q').addEventListener('input',filterRows);
document.getElementById('kind').addEventListener('change',filterRows);
"""


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head>'
        f"<body><main><h1>{escape(title)}</h1>{body}</main><script>{SCRIPT}</script></body></html>"
    )


class Safe(str):
    """HTML made here from escaped parts: a cell that holds it is written as it is."""


def cell(value: Any) -> str:
    """One table cell: a number to three places, HTML marked :class:`Safe` as it is, anything else escaped."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"<td>{value if isinstance(value, Safe) else escape(str(value))}</td>"
    return f'<td class="n">{value:.3f}</td>' if isinstance(value, float) else f'<td class="n">{value}</td>'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
    cells = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"


def _filters(kinds: Sequence[str], count: int) -> str:
    options = "".join(f'<option value="{escape(k)}">{escape(k)}</option>' for k in kinds)
    return (
        '<div class="filters"><div><label for="q">Filter the questions</label><input id="q" type="search" size="40">'
        f'</div><div><label for="kind">Only</label><select id="kind"><option value="">all</option>{options}</select>'
        f'</div><p role="status"><span id="shown">{count}</span> questions shown</p></div>'
    )


def _summary(report: dict[str, Any]) -> str:
    names = [*MAIN_METRICS, *(m for m in report if m.startswith("abstention_recall_"))]
    rows = [(m, report[m]) for m in names if m in report]
    rows.append(("queries (in scope / out of scope)", f"{report['in_scope']} / {report['out_of_scope']}"))
    parts = [_table(["metric", "value"], rows)]
    for key, groups in report.items():
        if key in TABLES or key.startswith("by_"):
            columns = list(next(iter(groups.values())))
            parts.append(f"<h2>{escape(key.replace('_', ' '))}</h2>")
            parts.append(_table(["group", *columns], [(g, *v.values()) for g, v in groups.items()]))
    return "".join(parts)


def _kinds(q: EvalQuery, o: Outcome) -> list[str]:
    """What the filters know of a question: its scope, the decision, and whether the user got it right."""
    right = (not o.abstained and bool(set(q.relevant) & set(o.ranking[:ANSWER_DEPTH]))) if q.in_scope else o.abstained
    return [
        "in-scope" if q.in_scope else "out-of-scope",
        o.outcome,
        "right" if right else "wrong",
    ]


def _question_row(q: EvalQuery, o: Outcome) -> str:
    kinds = _kinds(q, o)
    tags = ", ".join(f"{k}: {v}" for k, v in q.tags.items())
    confidence = "" if o.confidence is None else f"{o.confidence:.3f}"
    ranking = Safe(" ".join(f"<b>{escape(r)}</b>" if r in q.relevant else escape(r) for r in o.ranking[:5]))
    cells = [
        q.qid,
        Safe(f"{escape(q.query)}<br><small>{escape(tags)}</small>"),
        ", ".join(q.relevant) or "—",
        ranking,
        kinds[1],
        confidence,
        Safe(f"{escape(o.answer)}<br><small>cites: {escape(', '.join(o.cited))}</small>"),
    ]
    return f'<tr class="{kinds[2]}" data-kind="{" ".join(kinds)}">' + "".join(cell(c) for c in cells) + "</tr>"


QUESTION_HEADER = [
    "id",
    "question",
    "relevant",
    "ranking (first 5; relevant in bold)",
    "decision",
    "confidence",
    "answer",
]


def run_page(
    title: str,
    report: dict[str, Any],
    queries: Sequence[EvalQuery],
    outcomes: Sequence[Outcome],
    plot: bytes | None = None,
) -> str:
    """The report of one run: the summary, the risk–coverage plot, the per-group tables and every question."""
    image = ""
    if plot:
        data = base64.b64encode(plot).decode()
        image = (
            f'<h2>Risk–coverage</h2><img alt="accuracy of the answered questions against the share answered" '
            f'src="data:image/png;base64,{data}">'
        )
    rows = "".join(_question_row(q, o) for q, o in zip(queries, outcomes))
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in QUESTION_HEADER)
    body = (
        f"<h2>Summary</h2>{_summary(report)}{image}<h2>Every question</h2>"
        f"{_filters(['in-scope', 'out-of-scope', 'answered', 'suggested', 'declined', 'right', 'wrong'], len(queries))}"
        f'<table><thead><tr>{head}</tr></thead><tbody class="questions">{rows}</tbody></table>'
    )
    return _page(title, body)


def compare_page(title: str, comparison: dict[str, Any], base: tuple[list, list], new: tuple[list, list]) -> str:
    """Two runs side by side: the metrics with their intervals, the questions that flipped first, then all."""
    metric_rows = [
        (
            name,
            d["base"],
            d["new"],
            f"{d['difference']:+.4f}",
            f"[{d['interval'][0]:+.4f}, {d['interval'][1]:+.4f}]",
            Safe(f'<span class="{escape(d["verdict"].split()[0])}">{escape(d["verdict"])}</span>'),
        )
        for name, d in comparison["metrics"].items()
    ]
    flipped: dict[str, list[str]] = {}
    for kind, rows in comparison["flips"].items():
        for row in rows:
            flipped.setdefault(row["id"], []).append(kind.replace("_", "-"))
    new_by_id = {q.qid: o for q, o in zip(*new)}
    ordered = sorted(zip(*base), key=lambda qo: (qo[0].qid not in flipped, qo[0].qid))
    rows = []
    for q, o in ordered:
        no = new_by_id[q.qid]
        kinds = flipped.get(q.qid, ["unchanged"])
        cells = (
            q.qid,
            q.query,
            ", ".join(k.replace("-", " ") for k in kinds),
            "declined" if o.abstained else ", ".join(o.ranking[:ANSWER_DEPTH]),
            "declined" if no.abstained else ", ".join(no.ranking[:ANSWER_DEPTH]),
            o.answer,
            no.answer,
        )
        rows.append(f'<tr data-kind="{" ".join(kinds)}">' + "".join(cell(c) for c in cells) + "</tr>")
    choices = ["newly-wrong", "newly-right", "newly-declined", "newly-answered", "unchanged"]
    head = "".join(
        f'<th scope="col">{h}</th>'
        for h in ("id", "question", "change", "base: first entries", "new: first entries", "base answer", "new answer")
    )
    body = (
        f"<p>{comparison['questions']} questions; 95 % intervals from a paired bootstrap of "
        f"{comparison['resamples']} draws (seed {comparison['seed']}).</p>"
        + _table(["metric", "base", "new", "difference", "95 % interval", "verdict"], metric_rows)
        + f"<h2>Questions, those that changed first</h2>{_filters(choices, len(rows))}"
        f'<table><thead><tr>{head}</tr></thead><tbody class="questions">{"".join(rows)}</tbody></table>'
    )
    return _page(title, body)
