"""The incident record: pydantic models shared by extraction, exports and evaluation.

One ``IncidentRecord`` per incident an article describes. Every item carries the
character offsets (``mentions``) of the text behind it, and ``evidence`` gathers
them per field, so a reader can always go back to the sentence that says so.
Bump ``SCHEMA_VERSION`` on any change to these models and regenerate the
committed JSON Schema (``nhs-nlp schema -o src/nhs_nlp/data/incident-record.schema.json``).
"""
from __future__ import annotations

from typing import Dict, List, Literal, Optional, Tuple

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
