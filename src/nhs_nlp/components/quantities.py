"""``nhs_quantity_parser``: attach ``parse_quantity()`` to every QUANTITY entity.

Sets ``span._.quantity`` (a JSON-safe dict) on each QUANTITY in ``doc.ents``:
``text, value, value_high, unit, qualifier, kind, currency, measures``; spans
whose number cannot be read keep ``None`` (and stay entities).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from spacy.language import Language
from spacy.tokens import Doc, Span

from ..extensions import install_extensions
from ..labels import QUANTITY
from ..quantities import parse_quantity

# "a ransom of £4.5m", "losses of $22 million": the measured noun before "of".
_MEASURE_BEFORE = 3


def measured_noun(span: Span, parsed_unit: Optional[str], kind: str) -> Optional[str]:
    """What a quantity counts or measures, in a few words.

    Counts and percentages name it inside the span ("six NHS trusts" -> "nhs trusts");
    money, data sizes and durations usually next to it ("a ransom of £4.5m" ->
    "ransom", "400GB of patient data" -> "patient data", "a three-week outage" -> "outage").
    span (Span): the QUANTITY span.
    parsed_unit (Optional[str]): ``parse_quantity``'s unit.
    kind (str): ``parse_quantity``'s kind.
    RETURNS (Optional[str]): lower-case words, or None.
    """
    if kind in ("count", "percentage") and parsed_unit:
        return parsed_unit
    doc = span.doc
    # "<noun> of <QUANTITY>"
    left = doc[max(0, span.start - _MEASURE_BEFORE): span.start]
    if len(left) >= 2 and left[-1].lower_ in ("of", "for", "at") and left[-2].is_alpha and not left[-2].is_stop:
        return left[-2].lower_
    # "<QUANTITY> of <adj>* <noun>" or "<QUANTITY> <noun>" ("a £2m bill")
    right = doc[span.end: min(len(doc), span.end + 4)]
    words = []
    for i, tok in enumerate(right):
        if i == 0 and tok.lower_ == "of":
            continue
        if not tok.is_alpha or tok.is_stop or tok.ent_type_:
            break
        words.append(tok.lower_)
        if len(words) == 2:
            break
    if words:
        return " ".join(words)
    return parsed_unit


def quantity_dict(span: Span) -> Optional[Dict[str, Any]]:
    """``parse_quantity(span.text)`` as a JSON-safe dict with ``measures``, or None."""
    parsed = parse_quantity(span.text)
    if parsed is None:
        return None
    out = parsed.model_dump(mode="json")
    out["measures"] = measured_noun(span, parsed.unit, parsed.kind)
    return out


class QuantityParser:
    """Parse every QUANTITY entity into ``span._.quantity``. Stateless."""

    def __init__(self, nlp: Language, name: str = "nhs_quantity_parser") -> None:
        self.name = name
        install_extensions()

    def __call__(self, doc: Doc) -> Doc:
        for ent in doc.ents:
            if ent.label_ == QUANTITY:
                ent._.quantity = quantity_dict(ent)
        return doc

    # Stateless: nothing to save, but spaCy serialises every component.
    def to_bytes(self, *, exclude: tuple = ()) -> bytes:
        return b""

    def from_bytes(self, data: bytes, *, exclude: tuple = ()) -> "QuantityParser":
        return self

    def to_disk(self, path: Any, *, exclude: tuple = ()) -> None:
        return None

    def from_disk(self, path: Any, *, exclude: tuple = ()) -> "QuantityParser":
        return self


@Language.factory(
    "nhs_quantity_parser",
    assigns=["span._.quantity"],
    requires=["doc.ents"],
)
def make_quantity_parser(nlp: Language, name: str) -> QuantityParser:
    """Attach parse_quantity() results to QUANTITY entities."""
    return QuantityParser(nlp, name)
