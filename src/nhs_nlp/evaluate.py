"""Scoring extraction against annotated text: entity spans and incident records.

- ``score_spans``: strict span precision/recall/F1 per label, micro and macro
  (``benchmarks/benchmark_ner.py`` uses it).
- ``SpanScorer``: the same, plus overlap matching, an error analysis (false
  positives, false negatives, wrong label, wrong boundary), a label confusion
  matrix and bootstrap confidence intervals over documents.
- ``evaluate_pipeline`` / ``run_evaluation``: run pipelines over checked gold
  (``readers.read_gold``) and score them; ``nhs-nlp evaluate`` is a thin wrapper.

Matching. Spans are ``(start_char, end_char, label)``. *Strict*: a prediction is
right when offsets and label equal a gold span's. *Overlap*: a prediction and a
gold span of the same label that share at least one character match, one to one
(each gold span matches at most one prediction and vice versa); precision is
matched predictions / predictions, recall matched gold spans / gold spans.

Partial annotation. Gold tokens whose annotation is missing (``ent_iob == 0``)
make predictions over them neither right nor wrong: strict matching ignores a
prediction that touches one unless it equals a gold span; overlap matching
unless it overlaps a gold span of its label (spaCy's scorer does the same).
"""
from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc

from .labels import LABELS
from .readers import DROP, GoldDoc, GoldSet

Triple = Tuple[int, int, str]
Pair = Tuple[Optional[Triple], Optional[Triple]]

#: Row/column of the confusion matrix for "no span": missed (gold, —) or spurious (—, predicted).
NONE = "—"
#: Error types of the error analysis, in display order.
ERROR_TYPES: Tuple[str, ...] = ("false_positive", "false_negative", "wrong_label", "wrong_boundary", "wrong_label_boundary")
ERROR_NAMES: Dict[str, str] = {
    "false_positive": "false positive",
    "false_negative": "false negative",
    "wrong_label": "wrong label",
    "wrong_boundary": "wrong boundary",
    "wrong_label_boundary": "wrong label and boundary",
}
DEFAULT_BOOTSTRAP = 1000
DEFAULT_SEED = 0
#: nlp.pipe batch size. With int8 dynamic quantization the activation scales are
#: computed per batch, so figures move slightly with it; 8 is what the benchmark uses.
DEFAULT_BATCH_SIZE = 8


def _prf(tp: int, fp: int, fn: int) -> Dict[str, Any]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "support": tp + fn, "tp": tp, "fp": fp, "fn": fn}


def doc_spans(doc: Doc, label_map: Optional[Mapping[str, str]] = None) -> List[Triple]:
    """Character spans of ``doc.ents``, labels renamed by ``label_map`` (unmapped kept).

    doc (Doc): a gold or predicted Doc.
    label_map (Optional[Mapping[str, str]]): label -> new label; ``""`` drops the span.
    RETURNS (List[Triple]): ``(start_char, end_char, label)`` in document order.
    """
    label_map = label_map or {}
    out = [(e.start_char, e.end_char, label_map.get(e.label_, e.label_)) for e in doc.ents]
    return [s for s in out if s[2] != DROP]


def _missing_chars(gold: Doc) -> List[Tuple[int, int]]:
    """Character ranges of tokens whose gold annotation is missing (partial corpora)."""
    return [(t.idx, t.idx + len(t)) for t in gold if t.ent_iob == 0]


def _touches(span: Triple, ranges: Sequence[Tuple[int, int]]) -> bool:
    return any(a < span[1] and span[0] < b for a, b in ranges)


def _overlaps(a: Triple, b: Triple) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def error_type(gold: Optional[Triple], pred: Optional[Triple]) -> Optional[str]:
    """The error type of an aligned (gold, predicted) pair; None when it is right.

    gold (Optional[Triple]): the gold span, None for a spurious prediction.
    pred (Optional[Triple]): the predicted span, None for a missed gold span.
    RETURNS (Optional[str]): one of ``ERROR_TYPES``, or None for an exact match.
    """
    if gold is None and pred is None:
        raise ValueError("an aligned pair needs a gold or a predicted span")
    if gold is None:
        return "false_positive"
    if pred is None:
        return "false_negative"
    same_offsets = gold[:2] == pred[:2]
    same_label = gold[2] == pred[2]
    if same_offsets and same_label:
        return None
    if same_offsets:
        return "wrong_label"
    return "wrong_boundary" if same_label else "wrong_label_boundary"


def span_dict(text: str, span: Optional[Triple]) -> Optional[Dict[str, Any]]:
    """A span as ``{"start", "end", "label", "text"}`` (None stays None)."""
    return None if span is None else {"start": span[0], "end": span[1], "label": span[2], "text": text[span[0] : span[1]]}


def _overlap_matches(gold: Sequence[Triple], pred: Sequence[Triple]) -> int:
    """Size of a maximum one-to-one matching of overlapping spans.

    Both lists hold non-overlapping spans sorted by offset, so a left-to-right
    sweep is optimal.
    """
    i = j = matched = 0
    while i < len(gold) and j < len(pred):
        if gold[i][1] <= pred[j][0]:
            i += 1
        elif pred[j][1] <= gold[i][0]:
            j += 1
        else:
            matched += 1
            i += 1
            j += 1
    return matched


def align_spans(gold: Sequence[Triple], pred: Sequence[Triple]) -> List[Pair]:
    """Pair gold and predicted spans one to one, for the error analysis.

    Same offsets pair first; then overlapping spans, preferring the same label and
    then the larger overlap. Unpaired spans pair with None.
    RETURNS (List[Pair]): pairs in document order.
    """
    pairs: List[Pair] = []
    by_offsets = {(g[0], g[1]): g for g in gold}
    used_g: Set[Triple] = set()
    used_p: Set[Triple] = set()
    for p in pred:
        g = by_offsets.get((p[0], p[1]))
        if g is not None:
            pairs.append((g, p))
            used_g.add(g)
            used_p.add(p)
    rest_p = sorted(p for p in pred if p not in used_p)
    starts = [p[0] for p in rest_p]
    candidates = []
    for g in gold:
        if g in used_g:
            continue
        # Predictions are disjoint, so sorted by start they are sorted by end too.
        k = bisect.bisect_left(starts, g[1]) - 1
        while k >= 0 and rest_p[k][1] > g[0]:
            p = rest_p[k]
            candidates.append((p[2] != g[2], -(min(g[1], p[1]) - max(g[0], p[0])), g, p))
            k -= 1
    for _, _, g, p in sorted(candidates):
        if g not in used_g and p not in used_p:
            pairs.append((g, p))
            used_g.add(g)
            used_p.add(p)
    pairs += [(g, None) for g in gold if g not in used_g]
    pairs += [(None, p) for p in pred if p not in used_p]
    pairs.sort(key=lambda gp: min(s[0] for s in gp if s is not None))
    return pairs


@dataclass
class AlignedDoc:
    """One document's scored spans, their alignment and its counts.

    gold (List[Triple]): gold spans with a scored label.
    pred (List[Triple]): predicted spans scored under strict matching.
    pairs (List[Pair]): the alignment of ``gold`` and ``pred``.
    strict (np.ndarray): (labels, 3) counts of tp, fp, fn under strict matching.
    overlap (np.ndarray): the same under overlap matching.
    """

    gold: List[Triple]
    pred: List[Triple]
    pairs: List[Pair]
    strict: np.ndarray
    overlap: np.ndarray


def align_doc(gold: Doc, pred: Doc, labels: Sequence[str], pred_label_map: Optional[Mapping[str, str]] = None) -> AlignedDoc:
    """Score one (gold, predicted) pair of Docs over the same text.

    gold (Doc): the gold annotation (missing tokens allowed).
    pred (Doc): the prediction.
    labels (Sequence[str]): labels scored; spans with other labels are ignored.
    pred_label_map (Optional[Mapping[str, str]]): rename predicted labels first.
    RETURNS (AlignedDoc): spans, alignment and counts.
    """
    if gold.text != pred.text:
        raise ValueError("gold and predicted docs must have the same text")
    index = {lab: i for i, lab in enumerate(labels)}
    g = sorted(s for s in doc_spans(gold) if s[2] in index)
    p_all = sorted(s for s in doc_spans(pred, pred_label_map) if s[2] in index)
    missing = _missing_chars(gold)
    g_set = set(g)
    p_strict = [s for s in p_all if s in g_set or not missing or not _touches(s, missing)]
    strict = np.zeros((len(labels), 3), dtype=np.int64)
    p_set = set(p_strict)
    for s in p_strict:
        strict[index[s[2]], 0 if s in g_set else 1] += 1
    for s in g:
        if s not in p_set:
            strict[index[s[2]], 2] += 1
    overlap = np.zeros((len(labels), 3), dtype=np.int64)
    for lab, i in index.items():
        gl = [s for s in g if s[2] == lab]
        pl = [s for s in p_all if s[2] == lab]
        if missing:
            pl = [s for s in pl if not _touches(s, missing) or any(_overlaps(s, x) for x in gl)]
        m = _overlap_matches(gl, pl)
        overlap[i] = (m, len(pl) - m, len(gl) - m)
    return AlignedDoc(g, p_strict, align_spans(g, p_strict), strict, overlap)


def _ratios(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        r = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
        f = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)
    return p, r, f


def bootstrap_sums(rows: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """Column sums of ``rows`` (one row of counts per document) over ``samples`` bootstrap
    resamples of the documents: (samples, columns). Resampling n documents with
    replacement is drawing multinomial document weights."""
    n_docs = rows.shape[0]
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_docs, np.full(n_docs, 1.0 / n_docs), size=samples)
    return weights @ rows.astype(np.float64)


def _bootstrap_cis(counts: np.ndarray, macro_mask: np.ndarray, samples: int, seed: int, confidence: float) -> Dict[str, Any]:
    """Percentile bootstrap intervals, resampling documents with replacement.

    counts (np.ndarray): (docs, labels, 3) tp/fp/fn per document.
    RETURNS (Dict[str, Any]): {"per_label": [{metric: [lo, hi]}], "micro": {...}, "macro": {...}}.
    """
    n_docs, n_labels, _ = counts.shape
    sums = bootstrap_sums(counts.reshape(n_docs, -1), samples, seed).reshape(samples, n_labels, 3)
    tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
    p, r, f = _ratios(tp, fp, fn)
    mp, mr, mf = _ratios(tp.sum(1), fp.sum(1), fn.sum(1))
    lo, hi = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2

    def interval(x: np.ndarray) -> List[List[float]]:
        return np.percentile(x, [lo, hi], axis=0).T.tolist()

    per_label = [{"precision": a, "recall": b, "f1": c} for a, b, c in zip(interval(p), interval(r), interval(f))]
    out: Dict[str, Any] = {
        "per_label": per_label,
        "micro": {"precision": interval(mp[:, None])[0], "recall": interval(mr[:, None])[0], "f1": interval(mf[:, None])[0]},
    }
    if macro_mask.any():
        out["macro"] = {
            name: interval(x[:, macro_mask].mean(1)[:, None])[0] for name, x in (("precision", p), ("recall", r), ("f1", f))
        }
    return out


def _block(counts: np.ndarray, labels: Sequence[str]) -> Dict[str, Any]:
    """Per-label, micro and macro figures from (labels, 3) counts.

    Macro averages over the labels with gold spans or predictions (a label with
    neither has no defined score); ``macro_labels`` lists them.
    """
    per_label = {lab: _prf(*(int(x) for x in counts[i])) for i, lab in enumerate(labels)}
    micro = _prf(*(int(x) for x in counts.sum(0))) if len(labels) else _prf(0, 0, 0)
    present = [lab for lab in labels if per_label[lab]["support"] or per_label[lab]["fp"]]
    macro = {k: sum(per_label[lab][k] for lab in present) / len(present) for k in ("precision", "recall", "f1")} if present else {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    return {"per_label": per_label, "micro": micro, "macro": macro, "macro_labels": present}


class SpanScorer:
    """Accumulates aligned documents and reports entity metrics.

    labels (Sequence[str]): labels scored.
    pred_label_map (Optional[Mapping[str, str]]): rename predicted labels first
        ("" drops a label), e.g. a baseline's label set onto ours.
    """

    def __init__(self, labels: Sequence[str], pred_label_map: Optional[Mapping[str, str]] = None):
        self.labels = list(labels)
        self.pred_label_map = dict(pred_label_map or {})
        self.aligned: List[AlignedDoc] = []
        self.doc_info: List[Dict[str, Any]] = []

    def add(self, gold: Doc, pred: Doc, doc_id: str = "", where: str = "") -> AlignedDoc:
        """Score one document pair.

        gold (Doc): gold annotation. pred (Doc): prediction over the same text.
        doc_id (str): its id, where (str): file and line, for the error list.
        RETURNS (AlignedDoc): the document's alignment and counts.
        """
        aligned = align_doc(gold, pred, self.labels, self.pred_label_map)
        self.aligned.append(aligned)
        self.doc_info.append({"id": doc_id or f"#{len(self.aligned)}", "where": where, "text": gold.text})
        return aligned

    @property
    def errors(self) -> List[Dict[str, Any]]:
        """Every error: ``{"doc", "id", "where", "type", "gold", "pred"}``, spans as
        ``{"start", "end", "label", "text"}`` or None; ``doc`` indexes ``doc_info``."""
        out: List[Dict[str, Any]] = []
        for n, (info, aligned) in enumerate(zip(self.doc_info, self.aligned)):
            for g, p in aligned.pairs:
                kind = error_type(g, p)
                if kind is not None:
                    gold, pred = span_dict(info["text"], g), span_dict(info["text"], p)
                    out.append({"doc": n, "id": info["id"], "where": info["where"], "type": kind, "gold": gold, "pred": pred})
        return out

    def confusion(self) -> Dict[str, Any]:
        """Label confusion over aligned spans (rows gold, columns predicted), with a
        ``NONE`` row (spurious predictions) and column (missed gold spans)."""
        from sklearn.metrics import confusion_matrix

        names = self.labels + [NONE]
        y_true = [g[2] if g else NONE for a in self.aligned for g, p in a.pairs]
        y_pred = [p[2] if p else NONE for a in self.aligned for g, p in a.pairs]
        if y_true:
            matrix = confusion_matrix(y_true, y_pred, labels=names).tolist()
        else:
            matrix = [[0] * len(names) for _ in names]
        return {"labels": names, "matrix": matrix, "rows": "gold", "columns": "predicted"}

    def result(self, bootstrap: int = 0, seed: int = DEFAULT_SEED, confidence: float = 0.95) -> Dict[str, Any]:
        """All entity metrics as one JSON-safe dict.

        bootstrap (int): bootstrap samples for confidence intervals (0: none).
        seed (int): the resampling seed (fixed, so reruns give the same intervals).
        confidence (float): the interval's coverage.
        RETURNS (Dict[str, Any]): strict ``per_label``/``micro``/``macro`` at the top,
            ``overlap`` alongside, ``confusion``, ``errors`` (counts by type), ``docs``.
        """
        n_labels = len(self.labels)
        strict = np.stack([a.strict for a in self.aligned]) if self.aligned else np.zeros((0, n_labels, 3), dtype=np.int64)
        overlap = np.stack([a.overlap for a in self.aligned]) if self.aligned else np.zeros((0, n_labels, 3), dtype=np.int64)
        out: Dict[str, Any] = {"matching": "strict", "labels": list(self.labels), "docs": len(self.aligned)}
        out.update(_block(strict.sum(0), self.labels))
        out["overlap"] = {"matching": "overlap", **_block(overlap.sum(0), self.labels)}
        counts = Counter(e["type"] for e in self.errors)
        out["errors"] = {t: counts.get(t, 0) for t in ERROR_TYPES}
        out["confusion"] = self.confusion()
        if bootstrap > 0 and self.aligned and n_labels:
            for block, arr in ((out, strict), (out["overlap"], overlap)):
                mask = np.array([lab in block["macro_labels"] for lab in self.labels])
                cis = _bootstrap_cis(arr, mask, bootstrap, seed, confidence)
                for lab, ci in zip(self.labels, cis["per_label"]):
                    block["per_label"][lab]["ci"] = ci
                block["micro"]["ci"] = cis["micro"]
                if "macro" in cis:
                    block["macro"]["ci"] = cis["macro"]
            out["bootstrap"] = {"samples": bootstrap, "seed": seed, "confidence": confidence, "resampled": "documents"}
        return out


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
        "micro": {...}, "macro": {...}, "docs": n}; macro averages the labels with
        gold spans or predictions.
    """
    scorer = SpanScorer(labels, pred_label_map)
    for gold, pred in pairs:
        scorer.add(gold, pred)
    counts = np.stack([a.strict for a in scorer.aligned]).sum(0) if scorer.aligned else np.zeros((len(labels), 3), dtype=np.int64)
    block = _block(counts, list(labels))
    return {"per_label": block["per_label"], "micro": block["micro"], "macro": block["macro"], "docs": len(scorer.aligned)}


# ---------------------------------------------------------------------------
# Running pipelines over gold


@dataclass
class Evaluation:
    """One pipeline scored on one gold set.

    name (str): how the pipeline was named (path or package).
    labels (List[str]): the labels scored.
    entities (Dict[str, Any]): ``SpanScorer.result()``.
    records (Optional[Dict[str, Any]]): record metrics, or why there are none;
        None when the gold has no records.
    scorer (SpanScorer): documents, alignments and errors (for the report).
    predicted_labels (Optional[List[str]]): the labels the pipeline can predict.
    """

    name: str
    labels: List[str]
    entities: Dict[str, Any]
    records: Optional[Dict[str, Any]]
    scorer: SpanScorer
    predicted_labels: Optional[List[str]] = None
    extra: Dict[str, Any] = field(default_factory=dict)


def label_order(labels: Iterable[str]) -> List[str]:
    """Our labels in their fixed order, then any others alphabetically."""
    labels = set(labels)
    return [lab for lab in LABELS if lab in labels] + sorted(labels - set(LABELS))


def load_pipeline(model: Optional[str] = None) -> Language:
    """Load a pipeline by folder or installed package name (None: the shipped one).

    model (Optional[str]): a pipeline folder (loaded like ``nhs_nlp.load``, so int8
        on CPU, once per process) or the name of an installed spaCy pipeline package.
    RETURNS (Language): the pipeline.
    """
    import spacy

    from .api import _shared

    if model is None:
        return _shared(None)
    if Path(model).exists():
        return _shared(Path(model))
    if spacy.util.is_package(model):
        return spacy.load(model)
    raise FileNotFoundError(f"{model}: neither a pipeline folder nor an installed spaCy pipeline package")


def pipeline_labels(nlp: Language, label_map: Optional[Mapping[str, str]] = None) -> Optional[Set[str]]:
    """The entity labels a pipeline can predict, renamed by ``label_map``.

    RETURNS (Optional[Set[str]]): the labels; None when no component declares them.
    """
    found: Set[str] = set()
    declared = False
    for name, pipe in nlp.pipeline:
        factory = nlp.get_pipe_meta(name).factory
        if factory in ("ner", "beam_ner", "entity_ruler") or (factory == "span_ruler" and getattr(pipe, "annotate_ents", False)):
            declared = True
            found.update(getattr(pipe, "labels", ()))
    if not declared:
        return None
    label_map = label_map or {}
    return {label_map.get(lab, lab) for lab in found} - {DROP}


def predict(nlp: Language, golds: Sequence[GoldDoc], batch_size: int = DEFAULT_BATCH_SIZE) -> List[Doc]:
    """Run ``nlp`` over the gold texts; tokenised gold keeps its tokens.

    RETURNS (List[Doc]): one prediction per gold document, in order.
    """

    def inputs() -> Iterable[Any]:
        for g in golds:
            assert g.doc is not None
            if g.tokenised:
                yield Doc(nlp.vocab, words=[t.text for t in g.doc], spaces=[bool(t.whitespace_) for t in g.doc])
            else:
                yield g.doc.text

    return list(nlp.pipe(inputs(), batch_size=batch_size))


def score_record_docs(golds: Sequence[GoldDoc], preds: Sequence[Doc]) -> Optional[Dict[str, Any]]:
    """Record slot metrics via ``nhs_nlp.records.score_records``, when possible.

    RETURNS (Optional[Dict[str, Any]]): None when the gold has no records; else
        the metrics with ``"status": "scored"``, or ``"status": "skipped"`` and a reason.
    """
    pairs_idx = [i for i, g in enumerate(golds) if g.records is not None]
    if not pairs_idx:
        return None
    if not Doc.has_extension("incidents") or all(preds[i]._.incidents is None for i in pairs_idx):
        return {"status": "skipped", "reason": "the pipeline sets no doc._.incidents (it has no records component)"}
    try:
        from .record_training import default_canonicaliser
        from .records import score_records  # type: ignore[attr-defined]
    except ImportError:
        return {"status": "skipped", "reason": "nhs_nlp.records.score_records is not available in this version"}
    # Gold attack-group names are canonicalised through the alias table, as `nhs-nlp records
    # evaluate` does, so "Cozy Bear" and "APT29" are one group on both sides.
    pairs = [(golds[i].records, preds[i]._.incidents or []) for i in pairs_idx]
    result = dict(score_records(pairs, canonicalise=default_canonicaliser()))
    result.update(status="scored", docs=len(pairs_idx))
    return result


def evaluate_pipeline(
    nlp: Language,
    gold: Sequence[GoldDoc],
    labels: Sequence[str],
    *,
    name: str = "",
    label_map: Optional[Mapping[str, str]] = None,
    preds: Optional[Sequence[Doc]] = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Evaluation:
    """Predict (unless ``preds`` is given) and score one pipeline.

    nlp (Language): the pipeline.
    gold (Sequence[GoldDoc]): checked gold documents (``GoldSet.docs``).
    labels (Sequence[str]): labels scored.
    name (str): the pipeline's name in the output.
    label_map (Optional[Mapping[str, str]]): renames predicted labels ("" drops).
    preds (Optional[Sequence[Doc]]): predictions made already, one per gold doc.
    bootstrap (int): bootstrap samples for the confidence intervals (0: none).
    seed (int): the bootstrap seed.
    batch_size (int): ``nlp.pipe`` batch size.
    RETURNS (Evaluation): entity (and record) metrics with the scorer behind them.
    """
    if preds is None:
        preds = predict(nlp, gold, batch_size)
    scorer = SpanScorer(labels, label_map)
    for g, p in zip(gold, preds):
        assert g.doc is not None
        scorer.add(g.doc, p, g.id, g.where)
    predicted = pipeline_labels(nlp, label_map)
    return Evaluation(
        name=name or nlp.meta.get("name", "pipeline"),
        labels=list(labels),
        entities=scorer.result(bootstrap, seed),
        records=score_record_docs(gold, preds),
        scorer=scorer,
        predicted_labels=label_order(predicted) if predicted is not None else None,
        extra={"preds": preds},
    )


def select_labels(
    selection: Optional[str],
    gold_labels: Set[str],
    model_labels: Optional[Set[str]],
) -> Tuple[List[str], str, str]:
    """Which labels to score, and why.

    selection (Optional[str]): None (default: our label set, the model's labels and
        the gold's), "gold" (the labels the gold annotates: for partially annotated
        gold), or a comma-separated list of labels.
    gold_labels (Set[str]): labels the gold annotates.
    model_labels (Optional[Set[str]]): labels the model predicts (None: unknown).
    RETURNS (Tuple[List[str], str, str]): labels, selection mode, explanation.
    """
    known = set(LABELS) | gold_labels | (model_labels or set())
    if selection is None:
        labels = label_order(known)
        return labels, "default", "every label of the label set, the model and the gold (pass --labels gold if the gold annotates only some labels)"
    if selection.strip().lower() == "gold":
        labels = label_order(gold_labels)
        left = [lab for lab in label_order(known) if lab not in gold_labels]
        note = "the labels the gold annotates (--labels gold)"
        if left:
            note += f"; not scored, predictions ignored: {', '.join(left)}"
        return labels, "gold", note
    wanted = [s.strip() for s in selection.split(",") if s.strip()]
    unknown = [lab for lab in wanted if lab not in known]
    if not wanted or unknown:
        raise ValueError(f"--labels: unknown label(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(label_order(known))}, or 'gold'")
    labels = label_order(wanted)
    return labels, "given", f"the labels given with --labels: {', '.join(labels)}"


def run_evaluation(
    gold: GoldSet,
    nlp: Language,
    *,
    name: str,
    compare: Optional[Language] = None,
    compare_name: str = "",
    labels: Optional[str] = None,
    label_map: Optional[Mapping[str, str]] = None,
    compare_label_map: Optional[Mapping[str, str]] = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Tuple[Dict[str, Any], List[Evaluation]]:
    """Score a pipeline (and optionally a second one) on checked gold.

    gold (GoldSet): from ``readers.read_gold``.
    nlp (Language): the pipeline evaluated; name (str): its name in the output.
    compare (Optional[Language]): a second pipeline scored on the same gold, on the
        labels it shares with the scored ones; compare_name (str): its name.
    labels (Optional[str]): label selection, see ``select_labels``.
    label_map (Optional[Mapping[str, str]]): renames predicted labels of both
        pipelines ("" drops one); the gold was mapped when it was read.
    compare_label_map (Optional[Mapping[str, str]]): renames the compared
        pipeline's labels only (after ``label_map``), e.g. ``{"QUANTITY": ""}`` for
        a baseline whose QUANTITY means something else.
    bootstrap (int), seed (int), batch_size (int): see ``evaluate_pipeline``.
    RETURNS (Tuple[Dict[str, Any], List[Evaluation]]): the JSON-safe metrics
        (``entities`` holds the strict figures of ``nlp``) and the evaluations.
    """
    from . import __version__

    model_labels = pipeline_labels(nlp, label_map)
    scored, mode, note = select_labels(labels, gold.labels, model_labels)
    main = evaluate_pipeline(nlp, gold.docs, scored, name=name, label_map=label_map, bootstrap=bootstrap, seed=seed, batch_size=batch_size)
    unannotated = [lab for lab in scored if main.entities["per_label"][lab]["support"] == 0 and main.entities["per_label"][lab]["fp"] > 0]
    result: Dict[str, Any] = {
        "nhs_nlp_version": __version__,
        "model": {"name": name, "labels": main.predicted_labels},
        "gold": {
            "files": dict(gold.formats),
            "documents": len(gold.docs) + len(gold.skipped),
            "scored": len(gold.docs),
            "skipped": len(gold.skipped),
            "skipped_documents": [{"id": d.id, "where": d.where, "reasons": [p.reason for p in d.problems]} for d in gold.skipped],
            "problems": [str(p) for p in gold.problems],
            "labels": label_order(gold.labels),
            "has_records": gold.has_records,
        },
        "labels": {"scored": scored, "selection": mode, "note": note, "predicted_but_not_in_gold": unannotated},
        "entities": main.entities,
    }
    if main.records is not None:
        result["records"] = main.records
    evaluations = [main]
    if compare is not None:
        other_map = {**(label_map or {}), **(compare_label_map or {})}
        other_labels = pipeline_labels(compare, other_map)
        shared = [lab for lab in scored if other_labels is None or lab in other_labels]
        other = evaluate_pipeline(compare, gold.docs, shared, name=compare_name, label_map=other_map, bootstrap=bootstrap, seed=seed, batch_size=batch_size)
        evaluations.append(other)
        on_shared = evaluate_pipeline(nlp, gold.docs, shared, name=name, label_map=label_map, preds=main.extra["preds"], bootstrap=bootstrap, seed=seed)
        result["compare"] = {
            "model": {"name": compare_name, "labels": other.predicted_labels},
            "labels": {
                "scored": shared,
                "note": f"the scored labels {compare_name} can predict"
                + (" (labels of the same name; drop one that means something else there with --compare-label-map LABEL=)" if other_labels is not None else " (it declares none: all scored labels)"),
            },
            "entities": other.entities,
            "model_on_shared_labels": {k: on_shared.entities[k] for k in ("per_label", "micro", "macro", "macro_labels", "overlap")},
        }
        if other.records is not None:
            result["compare"]["records"] = other.records
    for ev in evaluations:
        ev.extra.pop("preds", None)
    return result, evaluations
