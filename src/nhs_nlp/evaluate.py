"""Scoring extraction against annotated text."""
from __future__ import annotations

from collections import Counter
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.tokens import Doc

Triple = Tuple[int, int, str]


def _prf(tp: int, fp: int, fn: int) -> Dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "support": tp + fn, "tp": tp, "fp": fp, "fn": fn}


def doc_spans(doc: Doc, label_map: Optional[Dict[str, str]] = None) -> List[Triple]:
    """Character spans of ``doc.ents``, labels renamed by ``label_map`` (unmapped kept)."""
    label_map = label_map or {}
    return [(e.start_char, e.end_char, label_map.get(e.label_, e.label_)) for e in doc.ents]


def _missing_chars(gold: Doc) -> List[Tuple[int, int]]:
    """Character ranges of tokens whose gold annotation is missing (partial corpora)."""
    return [(t.idx, t.idx + len(t)) for t in gold if t.ent_iob == 0]


def score_spans(
    pairs: Iterable[Tuple[Doc, Doc]],
    labels: Sequence[str],
    pred_label_map: Optional[Dict[str, str]] = None,
) -> Dict[str, object]:
    """Strict span precision/recall/F1 per label, micro and macro.

    pairs (Iterable[Tuple[Doc, Doc]]): (gold, predicted) docs over the same text.
    labels (Sequence[str]): labels scored; other gold and predicted spans are ignored.
    pred_label_map (Optional[Dict[str, str]]): rename predicted labels first (a
        baseline's label set onto ours).
    Predictions that touch a token with missing gold annotation are neither right nor
    wrong and are skipped, as spaCy's scorer does.
    RETURNS (dict): {"per_label": {LABEL: {precision, recall, f1, support, tp, fp, fn}},
        "micro": {...}, "macro": {...}, "docs": n}.
    """
    tp: Counter = Counter()
    fp: Counter = Counter()
    fn: Counter = Counter()
    n = 0
    wanted = set(labels)
    for gold, pred in pairs:
        if gold.text != pred.text:
            raise ValueError("gold and predicted docs must have the same text")
        n += 1
        g = {s for s in doc_spans(gold) if s[2] in wanted}
        p = {s for s in doc_spans(pred, pred_label_map) if s[2] in wanted}
        missing = _missing_chars(gold)
        if missing:
            p = {s for s in p if s in g or not any(a < s[1] and s[0] < b for a, b in missing)}
        for s in p & g:
            tp[s[2]] += 1
        for s in p - g:
            fp[s[2]] += 1
        for s in g - p:
            fn[s[2]] += 1
    per_label = {lab: _prf(tp[lab], fp[lab], fn[lab]) for lab in labels}
    micro = _prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    macro = {k: sum(per_label[lab][k] for lab in labels) / len(labels) for k in ("precision", "recall", "f1")} if labels else {}
    return {"per_label": per_label, "micro": micro, "macro": macro, "docs": n}
