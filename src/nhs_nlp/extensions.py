"""Extension attributes set by nhs_nlp components, registered in one place.

All values are JSON-safe (dicts, lists, strings, numbers, None), so docs survive
``n_process > 1`` and DocBin (with ``store_user_data=True``).

- ``Span._.link`` (dict | None): for ATTACK_GROUP/MALWARE spans, the alias-table
  entry ``{"canonical", "kind", "aliases", "attack_ids", "misp_uuid"}``; None when unknown.
- ``Span._.quantity`` (dict | None): for QUANTITY spans, ``parse_quantity()`` as a dict
  (``text, value, value_high, unit, qualifier, kind, currency``).
- ``Doc._.incidents`` (list[dict]): ``IncidentRecord`` dicts (``model_dump(mode="json")``).
"""
from spacy.tokens import Doc, Span


def install_extensions() -> None:
    """Register the extensions (idempotent; never overwrites someone else's)."""
    if not Span.has_extension("link"):
        Span.set_extension("link", default=None)
    if not Span.has_extension("quantity"):
        Span.set_extension("quantity", default=None)
    if not Doc.has_extension("incidents"):
        Doc.set_extension("incidents", default=None)
