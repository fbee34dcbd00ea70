"""Evaluation output: terminal tables, ``metrics.json`` and a self-contained HTML report.

The HTML report works offline (inline CSS, JavaScript and SVG; no external
resources): summary, per-label metrics with confidence intervals, charts, the
confusion matrix, record metrics, the comparison, skipped gold and every error
in context, gold and predicted entities side by side (displaCy), filterable by
label, error type and pipeline.
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from rich import box
from rich.console import Console
from rich.table import Table

from .evaluate import ERROR_NAMES, ERROR_TYPES, NONE, Evaluation, span_dict

TEMPLATE_DIR = Path(__file__).parent / "templates"
REPORT_HTML = "report.html"
METRICS_JSON = "metrics.json"
#: displaCy colours of our labels (others get displaCy's default grey).
COLORS: Dict[str, str] = {
    "ORG": "#7aecec",
    "ATTACK_GROUP": "#ff9561",
    "MALWARE": "#f0a3ff",
    "SERVICE": "#bfe1d9",
    "QUANTITY": "#e4e7d2",
}
CONTEXT_CHARS = 120


# ---------------------------------------------------------------------------
# Terminal


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci(m: Dict[str, Any], key: str = "f1") -> str:
    ci = m.get("ci", {}).get(key)
    return f"{_pct(ci[0])}–{_pct(ci[1])}" if ci else ""


def print_tables(result: Dict[str, Any], console: Console) -> None:
    """Print the metrics as terminal tables (strict, overlap and 95% intervals).

    result (Dict[str, Any]): ``evaluate.run_evaluation``'s metrics.
    console (Console): where to print.
    """
    gold = result["gold"]
    console.print(
        f"{result['model']['name']} on {gold['scored']} of {gold['documents']} document(s) "
        f"from {', '.join(f'{k} ({v})' for k, v in gold['files'].items())}",
        markup=False, highlight=False, soft_wrap=True,
    )
    console.print(f"labels scored: {', '.join(result['labels']['scored']) or '(none)'} — {result['labels']['note']}", markup=False, soft_wrap=True)
    if result["labels"]["predicted_but_not_in_gold"]:
        console.print(
            f"[yellow]note:[/yellow] the gold has no {', '.join(result['labels']['predicted_but_not_in_gold'])} spans but the model "
            "predicted some; if the gold does not annotate them, pass --labels gold"
        )
    systems: List[Tuple[str, Dict[str, Any]]] = [(result["model"]["name"], result["entities"])]
    if "compare" in result:
        systems.append((result["compare"]["model"]["name"], result["compare"]["entities"]))
    for name, ent in systems:
        table = Table(title=f"{name}: entities, strict match (%; overlap F1 alongside)", box=box.SIMPLE_HEAD)
        for col in ("label", "support", "P", "R", "F1", "F1 95% CI", "overlap F1"):
            table.add_column(col, justify="left" if col == "label" else "right", no_wrap=True)
        rows = [(lab, ent["per_label"][lab], ent["overlap"]["per_label"][lab]) for lab in ent["labels"]]
        rows += [("micro", ent["micro"], ent["overlap"]["micro"]), ("macro", ent["macro"], ent["overlap"]["macro"])]
        for lab, m, o in rows:
            table.add_row(lab, str(m.get("support", "")), _pct(m["precision"]), _pct(m["recall"]), _pct(m["f1"]), _ci(m), _pct(o["f1"]))
        console.print(table)
        console.print("errors: " + ", ".join(f"{ERROR_NAMES[t]} {ent['errors'][t]}" for t in ERROR_TYPES))
    if "compare" in result:
        cmp = result["compare"]
        table = Table(title=f"Side by side on shared labels ({', '.join(cmp['labels']['scored']) or 'none'}), strict F1 % (95% CI)", box=box.SIMPLE_HEAD)
        for col in ("label", "support", result["model"]["name"], cmp["model"]["name"]):
            table.add_column(col, justify="left" if col == "label" else "right")
        mine = cmp["model_on_shared_labels"]
        for lab in cmp["labels"]["scored"] + ["micro"]:
            a = mine["micro"] if lab == "micro" else mine["per_label"][lab]
            b = cmp["entities"]["micro"] if lab == "micro" else cmp["entities"]["per_label"][lab]
            table.add_row(lab, str(a["support"]), f"{_pct(a['f1'])} ({_ci(a)})", f"{_pct(b['f1'])} ({_ci(b)})")
        console.print(table)
    records = result.get("records")
    if records:
        if records.get("status") == "scored":
            table = Table(title="Incident record slots (%)", box=box.SIMPLE_HEAD)
            for col in ("field", "support", "P", "R", "F1"):
                table.add_column(col, justify="left" if col == "field" else "right")
            for fieldname, m in records.get("per_field", {}).items():
                table.add_row(fieldname, str(m.get("support", m.get("gold", ""))), _pct(m["precision"]), _pct(m["recall"]), _pct(m["f1"]))
            console.print(table)
        else:
            console.print(f"records not scored: {records.get('reason')}")
    if gold["skipped"]:
        console.print(f"[yellow]{gold['skipped']} document(s) skipped for bad gold[/yellow] (problems: {len(gold['problems'])})")


# ---------------------------------------------------------------------------
# HTML


def _svg_bars(groups: Sequence[str], series: Sequence[Tuple[str, str, Sequence[float], Sequence[Optional[Sequence[float]]]]], title: str) -> str:
    """A grouped bar chart (values 0..1) as inline SVG, with optional interval whiskers.

    groups (Sequence[str]): x-axis groups (labels).
    series (Sequence[Tuple[str, str, Sequence[float], Sequence[Optional[Sequence[float]]]]]):
        (name, colour, one value per group, one [low, high] interval or None per group).
    title (str): the chart's title (also its accessible name).
    RETURNS (str): ``<svg>`` markup.
    """
    bar, left, top, height = 16, 44, 28, 180
    group_w = max(bar * len(series) + 18, 96)
    gap = group_w - bar * len(series)
    width = max(left + group_w * max(1, len(groups)) + 10, 8 * len(title) + left)
    legend_y = top + height + 46
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" height="{legend_y + 20}" '
        f'viewBox="0 0 {width} {legend_y + 20}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        y = top + height * (1 - tick)
        parts.append(f'<line x1="{left - 4}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" class="tick">{tick:.2f}</text>')
    for gi, group in enumerate(groups):
        x0 = left + gi * group_w + gap / 2
        for si, (name, colour, values, cis) in enumerate(series):
            v = max(0.0, min(1.0, float(values[gi])))
            x = x0 + si * bar
            h = height * v
            parts.append(
                f'<rect x="{x:.1f}" y="{top + height - h:.1f}" width="{bar - 2}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(group)} {escape(name)}: {v:.3f}</title></rect>"
            )
            ci = cis[gi] if gi < len(cis) else None
            if ci:
                cx = x + (bar - 2) / 2
                y_lo, y_hi = top + height * (1 - ci[0]), top + height * (1 - ci[1])
                parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y_lo:.1f}" y2="{y_hi:.1f}" class="whisker"/>')
        label = group if len(group) <= 14 else group[:13] + "…"
        parts.append(f'<text x="{x0 + bar * len(series) / 2:.1f}" y="{top + height + 16}" text-anchor="middle" class="tick">{escape(label)}</text>')
    lx = left
    for name, colour, _, _ in series:
        parts.append(f'<rect x="{lx}" y="{legend_y - 10}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14}" y="{legend_y}" class="tick">{escape(name)}</text>')
        lx += 14 + 8 * len(name) + 16
    parts.append("</svg>")
    return "".join(parts)


def _charts(ev: Evaluation, other: Optional[Evaluation], shared: Optional[Dict[str, Any]]) -> List[str]:
    ent = ev.entities
    labels = ent["labels"]
    per = ent["per_label"]
    ovl = ent["overlap"]["per_label"]
    charts = [
        _svg_bars(
            labels,
            [
                ("precision", "#4c78a8", [per[lab]["precision"] for lab in labels], [per[lab].get("ci", {}).get("precision") for lab in labels]),
                ("recall", "#f58518", [per[lab]["recall"] for lab in labels], [per[lab].get("ci", {}).get("recall") for lab in labels]),
                ("F1", "#54a24b", [per[lab]["f1"] for lab in labels], [per[lab].get("ci", {}).get("f1") for lab in labels]),
            ],
            f"{ev.name}: strict precision, recall and F1 per label (95% CI)",
        ),
        _svg_bars(
            labels,
            [
                ("strict F1", "#54a24b", [per[lab]["f1"] for lab in labels], [per[lab].get("ci", {}).get("f1") for lab in labels]),
                ("overlap F1", "#b279a2", [ovl[lab]["f1"] for lab in labels], [ovl[lab].get("ci", {}).get("f1") for lab in labels]),
            ],
            f"{ev.name}: F1 per label, strict and overlap matching",
        ),
    ]
    if other is not None and shared is not None:
        sl = other.entities["labels"]
        a = shared["per_label"]
        b = other.entities["per_label"]
        charts.append(
            _svg_bars(
                sl,
                [
                    (ev.name, "#54a24b", [a[lab]["f1"] for lab in sl], [a[lab].get("ci", {}).get("f1") for lab in sl]),
                    (other.name, "#9d755d", [b[lab]["f1"] for lab in sl], [b[lab].get("ci", {}).get("f1") for lab in sl]),
                ],
                "Strict F1 on shared labels, side by side",
            )
        )
    return charts


def _window(text: str, start: int, end: int, spans: Sequence[Dict[str, Any]]) -> Tuple[int, int]:
    """Context around [start, end): about ``CONTEXT_CHARS`` each side, cut at
    whitespace, widened so no entity is cut."""
    a = max(0, start - CONTEXT_CHARS)
    b = min(len(text), end + CONTEXT_CHARS)
    if a > 0:
        space = text.find(" ", a, start)
        a = space + 1 if space != -1 else a
    if b < len(text):
        space = text.rfind(" ", end, b)
        b = space if space != -1 else b
    changed = True
    while changed:
        changed = False
        for s in spans:
            if s["start"] < a < s["end"]:
                a, changed = s["start"], True
            if s["start"] < b < s["end"]:
                b, changed = s["end"], True
    return a, b


def _displacy(text: str, a: int, b: int, spans: Sequence[Dict[str, Any]]) -> str:
    from spacy import displacy

    before = "… " if a > 0 else ""
    after = " …" if b < len(text) else ""
    shift = len(before) - a
    ents = [{"start": s["start"] + shift, "end": s["end"] + shift, "label": s["label"]} for s in spans if s["start"] >= a and s["end"] <= b]
    return displacy.render(
        {"text": before + text[a:b] + after, "ents": ents, "title": None}, style="ent", manual=True, jupyter=False, options={"colors": COLORS}
    )


def _error_cards(ev: Evaluation) -> List[Dict[str, Any]]:
    scorer = ev.scorer
    cards = []
    spans_by_doc: Dict[int, Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]] = {}
    for n, aligned in enumerate(scorer.aligned):
        text = scorer.doc_info[n]["text"]
        spans_by_doc[n] = ([span_dict(text, s) for s in aligned.gold], [span_dict(text, s) for s in aligned.pred])  # type: ignore[misc]
    for err in scorer.errors:
        text = scorer.doc_info[err["doc"]]["text"]
        involved = [s for s in (err["gold"], err["pred"]) if s is not None]
        start, end = min(s["start"] for s in involved), max(s["end"] for s in involved)
        gold_spans, pred_spans = spans_by_doc[err["doc"]]
        a, b = _window(text, start, end, gold_spans + pred_spans)
        labels = sorted({s["label"] for s in involved})
        cards.append(
            {
                "system": ev.name,
                "type": err["type"],
                "type_name": ERROR_NAMES[err["type"]],
                "labels": labels,
                "id": err["id"],
                "where": err["where"],
                "gold": err["gold"],
                "pred": err["pred"],
                "gold_html": _displacy(text, a, b, gold_spans),
                "pred_html": _displacy(text, a, b, pred_spans),
            }
        )
    return cards


def _heat(value: int, top: int) -> str:
    if not value or not top:
        return ""
    alpha = 0.12 + 0.6 * value / top
    return f"background: rgba(76, 120, 168, {alpha:.2f})"


def render_html(result: Dict[str, Any], evaluations: Sequence[Evaluation]) -> str:
    """The HTML report as one self-contained string.

    result (Dict[str, Any]): ``evaluate.run_evaluation``'s metrics.
    evaluations (Sequence[Evaluation]): the evaluations behind them (errors).
    RETURNS (str): the HTML page.
    """
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATE_DIR)), autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = _pct
    env.filters["ci"] = _ci
    main = evaluations[0]
    other = evaluations[1] if len(evaluations) > 1 else None
    shared = result.get("compare", {}).get("model_on_shared_labels")
    systems = [{"name": main.name, "entities": result["entities"], "records": result.get("records")}]
    if other is not None:
        systems.append({"name": other.name, "entities": result["compare"]["entities"], "records": result["compare"].get("records")})
    for system in systems:
        matrix = system["entities"]["confusion"]["matrix"]
        top = max((v for row in matrix for v in row), default=0)
        system["heat"] = [[_heat(v, top) for v in row] for row in matrix]
    cards = [card for ev in evaluations for card in _error_cards(ev)]
    all_labels = sorted({lab for card in cards for lab in card["labels"]}, key=lambda lab: (lab not in COLORS, lab))
    return env.get_template("report.html").render(
        result=result,
        systems=systems,
        charts=_charts(main, other, shared),
        cards=cards,
        error_types=[(t, ERROR_NAMES[t]) for t in ERROR_TYPES],
        filter_labels=all_labels,
        none_label=NONE,
        colors=COLORS,
        compare=result.get("compare"),
    )


def write_report(result: Dict[str, Any], evaluations: Sequence[Evaluation], out_dir: Path, force: bool = False) -> Dict[str, Path]:
    """Write ``metrics.json`` and ``report.html`` into ``out_dir``.

    result (Dict[str, Any]): the metrics. evaluations (Sequence[Evaluation]): behind them.
    out_dir (Path): the report folder (created).
    force (bool): overwrite an existing report.
    RETURNS (Dict[str, Path]): the files written.
    """
    out_dir = Path(out_dir)
    targets = {"metrics": out_dir / METRICS_JSON, "html": out_dir / REPORT_HTML}
    existing = [p for p in targets.values() if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{existing[0]} exists; pass --force to overwrite the report in {out_dir}")
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    targets["metrics"].write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    targets["html"].write_text(render_html(result, evaluations), encoding="utf8")
    return targets
