"""The incident record: pydantic models shared by extraction, exports and evaluation.

One ``IncidentRecord`` per incident an article describes. Every item carries the
character offsets (``mentions``) of the text behind it, and ``evidence`` gathers
them per field, so a reader can always go back to the sentence that says so.
Bump ``SCHEMA_VERSION`` on any change to these models and regenerate the
committed JSON Schema (``nhs-nlp schema -o src/nhs_nlp/data/incident-record.schema.json --force``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.0"

Offsets = Tuple[int, int]

ROLES: Tuple[str, ...] = ("victim", "affected", "other")
ROLE_FIELDS: Dict[str, str] = {
    "victim": "victims",
    "affected": "affected_organisations",
    "other": "other_organisations",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Mentioned(_Model):
    """A name (or phrase) and where the article says it."""

    name: str = Field(description="The name as written at its first mention.")
    mentions: List[Offsets] = Field(default_factory=list, description="[start, end) character offsets of every mention.")


class Actor(Mentioned):
    """An attack group or a malware family, linked to the alias table when known."""

    canonical: Optional[str] = Field(None, description="Canonical name from the alias table; null for unknown names.")
    kind: Optional[Literal["group", "ransomware", "malware"]] = None
    aliases: List[str] = Field(default_factory=list)
    attack_ids: List[str] = Field(default_factory=list, description="MITRE ATT&CK ids (G…/S…).")
    misp_uuid: Optional[str] = None


class Organisation(Mentioned):
    role: Literal["victim", "affected", "other"]
    score: Optional[float] = Field(None, description="Classifier probability of the role.")


class Service(Mentioned):
    pass


class QuantityItem(_Model):
    text: str
    value: Optional[float] = None
    value_high: Optional[float] = None
    unit: Optional[str] = None
    qualifier: str = "exact"
    kind: str = "count"
    currency: Optional[str] = None
    measures: Optional[str] = Field(None, description="What is counted or measured, in a few words (the counted noun or its head).")
    mentions: List[Offsets] = Field(default_factory=list)


class Stated(_Model):
    """A value the article states (attack type, attribution, date) and where."""

    value: str
    mentions: List[Offsets] = Field(default_factory=list)


class IncidentRecord(_Model):
    schema_version: str = SCHEMA_VERSION
    incident_id: str = Field(description="Document id and incident number, e.g. 'article-17#1'.")
    attack_groups: List[Actor] = Field(default_factory=list)
    malware: List[Actor] = Field(default_factory=list)
    victims: List[Organisation] = Field(default_factory=list)
    affected_organisations: List[Organisation] = Field(default_factory=list)
    other_organisations: List[Organisation] = Field(default_factory=list)
    attack_type: Optional[Stated] = None
    attribution: Optional[Stated] = None
    dates: List[Stated] = Field(default_factory=list)
    affected_services: List[Service] = Field(default_factory=list)
    quantities: List[QuantityItem] = Field(default_factory=list)
    evidence: Dict[str, List[Offsets]] = Field(default_factory=dict, description="Field name -> every offset behind it.")

    def fill_evidence(self) -> "IncidentRecord":
        """Recompute ``evidence`` from the items' mentions."""
        ev: Dict[str, List[Offsets]] = {}
        for field in ("attack_groups", "malware", "victims", "affected_organisations", "other_organisations", "affected_services", "quantities", "dates"):
            offsets = sorted({tuple(m) for item in getattr(self, field) for m in item.mentions})
            if offsets:
                ev[field] = [tuple(o) for o in offsets]  # type: ignore[misc]
        for field in ("attack_type", "attribution"):
            item = getattr(self, field)
            if item is not None and item.mentions:
                ev[field] = sorted({tuple(m) for m in item.mentions})  # type: ignore[misc]
        self.evidence = ev
        return self


def json_schema() -> dict:
    """The JSON Schema of one record (committed as data/incident-record.schema.json)."""
    schema = IncidentRecord.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://github.com/nhs-nlp/nhs-nlp/schema/incident-record-{SCHEMA_VERSION}.json"
    return schema


# ---------------------------------------------------------------------------
# Record-level evaluation
# ---------------------------------------------------------------------------

#: Fields scored by ``score_records``; their values are compared as described there.
SCORED_FIELDS: Tuple[str, ...] = (
    "attack_groups",
    "malware",
    "victims",
    "affected_organisations",
    "other_organisations",
    "affected_services",
    "quantities",
    "attack_type",
    "attribution",
)


def _norm_name(text: str) -> str:
    import re

    t = " ".join(str(text).replace("’", "'").split()).lower()
    t = re.sub(r"^the\s+", "", t)
    return re.sub(r"'s?$", "", t).strip(" .,'")


def _overlaps(a: List[Offsets], b: List[Offsets]) -> bool:
    return any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b)


def _item_mentions(item: dict) -> List[Offsets]:
    return [tuple(m) for m in item.get("mentions", [])]  # type: ignore[misc]


def _gold_actor_key(item: dict, canonicalise) -> str:
    """The normalised canonical name of a gold attack group or malware item. The writer's own
    canonical ("Winnti Group -> Winnti") is a name too: the alias table resolves it as it does the
    predicted names ("Winnti" is APT41 there), so both sides name one actor the same way."""
    written = item.get("canonical")
    name = None
    if canonicalise is not None:
        name = canonicalise(written) if written else canonicalise(item["text"])
    return _norm_name(name or written or item["text"])


def _pred_actor_key(item: dict) -> str:
    """The normalised canonical name of a predicted attack group or malware item (its name when unlinked)."""
    return _norm_name(item.get("canonical") or item.get("name") or "")


def _same_item(field: str, gold: dict, pred: dict, canonicalise) -> bool:
    """Whether a predicted item is the gold item.

    Attack groups and malware: same canonical name (gold names, and the canonical
    names gold records give, go through the alias table as predictions do).
    Organisations and services: a shared mention (overlapping offsets) or the same
    normalised name. Quantities: a shared mention and the same value.
    """
    if field in ("attack_groups", "malware"):
        return _gold_actor_key(gold, canonicalise) == _pred_actor_key(pred)
    if field == "quantities":
        if not _overlaps(_item_mentions(gold), _item_mentions(pred)):
            return False
        gv, pv = gold.get("value"), pred.get("value")
        if gv is None or pv is None:
            return gv is None and pv is None
        same = abs(float(gv) - float(pv)) <= 1e-6 * max(1.0, abs(float(gv)))
        if gold.get("value_high") is not None:
            same = same and pred.get("value_high") is not None and abs(float(gold["value_high"]) - float(pred["value_high"])) <= 1e-6 * max(1.0, abs(float(gold["value_high"])))
        return same
    if _overlaps(_item_mentions(gold), _item_mentions(pred)):
        return True
    return _norm_name(gold["text"]) == _norm_name(pred.get("name", pred.get("text", "")))


def _value(obj: Any) -> Any:
    return obj.get("value") if isinstance(obj, dict) else obj


def _field_diff(field: str, gold: Optional[dict], pred: Optional[dict], canonicalise) -> Tuple[int, int, int, List[str], List[str]]:
    """(tp, n_pred, n_gold, missed gold names, spurious predicted names) of one field for an
    aligned pair of records (either may be None)."""
    if field in ("attack_type", "attribution"):
        gv = gold.get(field) if gold else None
        pv = _value(pred.get(field)) if pred else None
        tp = int(gv is not None and pv is not None and _norm_name(gv) == _norm_name(pv))
        return tp, int(pv is not None), int(gv is not None), [gv] if gv is not None and not tp else [], [pv] if pv is not None and not tp else []
    g_items = gold.get(field, []) if gold else []
    p_items = pred.get(field, []) if pred else []
    if field in ("attack_groups", "malware"):
        # Sets of canonical names: two mentions of one actor ("APT29", "Cozy Bear") count once.
        gs = {_gold_actor_key(i, canonicalise) for i in g_items}
        ps = {_pred_actor_key(i) for i in p_items}
        return len(gs & ps), len(ps), len(gs), sorted(gs - ps), sorted(ps - gs)
    used: set = set()
    missed: List[str] = []
    for g in g_items:
        for k, p in enumerate(p_items):
            if k not in used and _same_item(field, g, p, canonicalise):
                used.add(k)
                break
        else:
            missed.append(g.get("text", ""))
    spurious = [p.get("name", p.get("text", "")) for k, p in enumerate(p_items) if k not in used]
    return len(used), len(p_items), len(g_items), missed, spurious


def _slot_counts(field: str, gold: Optional[dict], pred: Optional[dict], canonicalise) -> Tuple[int, int, int]:
    """(tp, n_pred, n_gold) of one field for an aligned pair of records (either may be None)."""
    return _field_diff(field, gold, pred, canonicalise)[:3]


def record_errors(gold: List[dict], pred: List[dict], canonicalise=None) -> List[Dict[str, Any]]:
    """What one document's predicted records get wrong, per aligned pair of records (``align_records``):
    for each field, the gold items missed and the predicted items that are spurious (canonical
    names for attack groups and malware), and a wrong attack type or attribution. Pairs with
    nothing wrong are left out; an unaligned record is a missed or a spurious incident.
    RETURNS (List[Dict[str, Any]]): [{"gold_incident", "predicted_incident", "fields": {field: {"missed", "spurious"}}}].
    """
    out: List[Dict[str, Any]] = []
    for g, p in align_records(list(gold), list(pred), canonicalise):
        fields: Dict[str, Dict[str, List[str]]] = {}
        for field in SCORED_FIELDS:
            _, _, _, missed, spurious = _field_diff(field, g, p, canonicalise)
            if missed or spurious:
                fields[field] = {"missed": missed, "spurious": spurious}
        if fields:
            out.append({
                "gold_incident": (g.get("incident") or "") if g is not None else None,
                "predicted_incident": (p.get("incident_id") or "") if p is not None else None,
                "fields": fields,
            })
    return out


def _record_similarity(gold: dict, pred: dict, canonicalise) -> float:
    """How much two records share: matched victims and attack groups (services and other items break ties)."""
    score = 0.0
    for field, weight in (("victims", 2.0), ("attack_groups", 2.0), ("affected_organisations", 0.5), ("affected_services", 0.5), ("malware", 0.5)):
        score += weight * _slot_counts(field, gold, pred, canonicalise)[0]
    return score


def align_records(gold: List[dict], pred: List[dict], canonicalise=None) -> List[Tuple[Optional[dict], Optional[dict]]]:
    """Pair gold and predicted records of one document (maximum total similarity).

    Records that share nothing are not paired: each is left with None (a missed or
    a spurious record).
    """
    from scipy.optimize import linear_sum_assignment
    import numpy as np

    if not gold or not pred:
        return [(g, None) for g in gold] + [(None, p) for p in pred]
    sim = np.array([[_record_similarity(g, p, canonicalise) for p in pred] for g in gold])
    if len(gold) == 1 and len(pred) == 1:
        rows, cols = np.array([0]), np.array([0])  # one incident on each side: the same incident
    else:
        rows, cols = linear_sum_assignment(-sim)
    pairs: List[Tuple[Optional[dict], Optional[dict]]] = []
    matched_g, matched_p = set(), set()
    for r, c in zip(rows, cols):
        if sim[r, c] > 0 or (len(gold) == 1 and len(pred) == 1):
            pairs.append((gold[r], pred[c]))
            matched_g.add(r)
            matched_p.add(c)
    pairs += [(g, None) for i, g in enumerate(gold) if i not in matched_g]
    pairs += [(None, p) for i, p in enumerate(pred) if i not in matched_p]
    return pairs


#: Per-document count columns behind ``score_records``: tp/predicted/gold per field, the
#: same for whole records, then attack types right/aligned and quantity values same/aligned.
_COUNT_COLUMNS: Tuple[str, ...] = (
    *(f"{field}.{k}" for field in SCORED_FIELDS for k in ("tp", "predicted", "gold")),
    "records.tp", "records.predicted", "records.gold", "attack_type.right", "attack_type.aligned",
    "quantity_value.same", "quantity_value.aligned",
)


def record_counts(gold_recs: List[dict], pred_recs: List[dict], canonicalise=None) -> Dict[str, int]:
    """One document's counts (``_COUNT_COLUMNS``) for ``score_records``."""
    c = dict.fromkeys(_COUNT_COLUMNS, 0)
    c["records.gold"], c["records.predicted"] = len(gold_recs), len(pred_recs)
    for g, p in align_records(list(gold_recs), list(pred_recs), canonicalise):
        if g is not None and p is not None:
            c["records.tp"] += 1
            if g.get("attack_type"):
                c["attack_type.aligned"] += 1
                pv = (p.get("attack_type") or {}).get("value") if isinstance(p.get("attack_type"), dict) else p.get("attack_type")
                c["attack_type.right"] += int(pv == g["attack_type"])
            for gq in g.get("quantities", []):
                for pq in p.get("quantities", []):
                    if _overlaps(_item_mentions(gq), _item_mentions(pq)):
                        c["quantity_value.aligned"] += 1
                        c["quantity_value.same"] += int(_same_item("quantities", gq, pq, canonicalise))
                        break
        for field in SCORED_FIELDS:
            a, b, n = _slot_counts(field, g, p, canonicalise)
            c[f"{field}.tp"] += a
            c[f"{field}.predicted"] += b
            c[f"{field}.gold"] += n
    return c


def score_records(pairs, canonicalise=None, bootstrap: int = 0, seed: int = 0, confidence: float = 0.95) -> Dict[str, object]:
    """Slot precision/recall/F1 per field of predicted records against gold records.

    pairs (Iterable[Tuple[List[dict], List[dict]]]): per document, (gold records in the
        compiled corpus form, predicted ``IncidentRecord`` dicts).
    canonicalise (Optional[Callable[[str], Optional[str]]]): maps a gold attack-group or
        malware name to its canonical name when the gold gives none (the alias table).
    bootstrap (int): when > 0, add ``intervals``: percentile bootstrap intervals at
        ``confidence`` over this many resamples of the documents (``seed``), for each
        field's precision/recall/F1, the records' and the two accuracies. A few dozen
        articles give wide intervals: they say how far a difference between two pipelines
        on the same split can be chance.
    Records are aligned per document (``align_records``); an unaligned record counts
    all its slots as missed (gold) or spurious (predicted). Attack type accuracy is
    over aligned pairs; quantity value exact match is over predicted quantities that
    share a mention with a gold quantity.
    RETURNS (dict): {"per_field": {field: {precision, recall, f1, tp, predicted, gold}},
        "records": {precision, recall, f1, ...}, "attack_type_accuracy", "quantity_value_exact_match", "docs"}
        (+ "intervals": {"per_field": {field: {metric: [lo, hi]}}, "records": {...},
        "attack_type_accuracy": [lo, hi], "quantity_value_exact_match": [lo, hi]}).
    """
    import numpy as np

    rows = [record_counts(gold_recs, pred_recs, canonicalise) for gold_recs, pred_recs in pairs]
    t = {k: sum(r[k] for r in rows) for k in _COUNT_COLUMNS}

    def prf(a: int, b: int, c: int) -> Dict[str, float]:
        p = a / b if b else 0.0
        r = a / c if c else 0.0
        return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
                "tp": a, "predicted": b, "gold": c, "support": c}

    def ratio(a: int, b: int) -> Optional[float]:
        return round(a / b, 4) if b else None

    out: Dict[str, object] = {
        "per_field": {f: prf(t[f"{f}.tp"], t[f"{f}.predicted"], t[f"{f}.gold"]) for f in SCORED_FIELDS},
        "records": prf(t["records.tp"], t["records.predicted"], t["records.gold"]),
        "attack_type_accuracy": ratio(t["attack_type.right"], t["attack_type.aligned"]),
        "quantity_value_exact_match": ratio(t["quantity_value.same"], t["quantity_value.aligned"]),
        "quantity_pairs": t["quantity_value.aligned"],
        "docs": len(rows),
    }
    if bootstrap > 0 and rows:
        from .evaluate import _ratios, bootstrap_sums

        sums = bootstrap_sums(np.array([[r[k] for k in _COUNT_COLUMNS] for r in rows]), bootstrap, seed)
        col = {k: sums[:, i] for i, k in enumerate(_COUNT_COLUMNS)}
        lo, hi = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2

        def interval(x: np.ndarray) -> List[float]:
            return [round(float(v), 4) for v in np.percentile(x, [lo, hi])]

        def slot_intervals(name: str) -> Dict[str, List[float]]:
            tp, pred, gold = col[f"{name}.tp"], col[f"{name}.predicted"], col[f"{name}.gold"]
            p, r, f = _ratios(tp, pred - tp, gold - tp)
            return {"precision": interval(p), "recall": interval(r), "f1": interval(f)}

        def accuracy_interval(a: str, b: str) -> Optional[List[float]]:
            right, total = col[a], col[b]
            keep = total > 0  # resamples without an aligned item have no accuracy
            return interval(right[keep] / total[keep]) if keep.any() else None

        out["intervals"] = {
            "confidence": confidence, "samples": bootstrap, "seed": seed,
            "per_field": {f: slot_intervals(f) for f in SCORED_FIELDS},
            "records": slot_intervals("records"),
            "attack_type_accuracy": accuracy_interval("attack_type.right", "attack_type.aligned"),
            "quantity_value_exact_match": accuracy_interval("quantity_value.same", "quantity_value.aligned"),
        }
    return out
