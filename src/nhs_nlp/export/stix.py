"""STIX 2.1 bundles of incident records, built with the ``stix2`` library.

Mapping, per record:

- the record → an ``incident`` (name ``"<victims> <attack type> incident"``, a
  description summarising the fields). The whole record, offsets included, rides
  along losslessly in a property extension (``extensions[EXTENSION_ID]``), defined
  by an ``extension-definition`` object whose schema is the committed JSON Schema;
- organisations → ``identity`` (``identity_class: organization``) with their roles
  (``victim``/``affected``/``other``) in ``roles``. The incident ``targets`` its
  victims, ``impacts`` the affected organisations and is ``related-to`` the others;
- attack groups (ransomware operations too) → ``intrusion-set`` with aliases and
  external references (``mitre-attack`` ids with their URL, ``misp-galaxy`` uuids);
  the incident is ``attributed-to`` each;
- malware → ``malware`` (``is_family: true``; ``malware_types: ["ransomware"]`` for
  ransomware). The core spec defines no relationship from an incident to malware, so
  each of the record's intrusion-sets ``uses`` it (a relationship the spec defines)
  and the incident is ``related-to`` it (a common relationship), which also links it
  when the record names no group.

``incident → attributed-to/targets/impacts`` come from the OASIS Incident Core
Extension's relationship table (cti-stix-common-objects, incident-core); the core
spec leaves the incident a stub, so ``stix2-validator`` warns that they are "not
suggested". That, UUIDv5 ids (``uuid-check``) and ATT&CK URLs without hashes
(``extref-hashes``) are the warnings we accept (``ACCEPTED_WARNINGS``); the
validator reports no errors.

Determinism: the same input gives the same bundle, byte for byte. Ids are UUIDv5
in our own namespace (``NAMESPACE``; the spec allows non-v4 ids for SDOs/SROs when
the namespace is unique, and forbids only the SCO namespace): organisations by
name, groups and malware by canonical name (else name), the incident by
``incident_id``, relationships by (type, source, target), the bundle by its object
ids. No wall-clock time is used: the incident and its relationships take
``created`` when given, else the article's ``date``, else ``EPOCH``; objects shared
between articles (organisations, groups, malware, group→malware relationships, the
producer identity, the extension definition) always take ``EPOCH``, so one id
never carries two different ``created`` values.

An organisation's ``roles`` are the roles it has in the records of that bundle; a
consumer merging bundles by id should read roles from the relationships.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import stix2

from ..records import ROLES, SCHEMA_VERSION, Actor, IncidentRecord, Organisation
from .csv import format_quantity
from .jsonl import Result, load_schema, records_of

#: Namespace of every STIX id we derive (uuid5 of the project URL; not the SCO namespace).
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/nhs-nlp/nhs-nlp/stix")
#: ``created``/``modified`` of objects shared between articles, and of incidents without a date.
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
PRODUCER_NAME = "nhs_nlp"
#: Relationship from the incident to an organisation, per role.
ROLE_RELATIONSHIPS: Dict[str, str] = {"victim": "targets", "affected": "impacts", "other": "related-to"}
ROLE_DESCRIPTIONS: Dict[str, str] = {
    "victim": "{} is a victim of the incident.",
    "affected": "{} was affected by the incident.",
    "other": "{} is named in the report of the incident.",
}
#: Incident relationships defined by the OASIS Incident Core Extension, not the core spec.
INCIDENT_CORE_RELATIONSHIPS: Tuple[str, ...] = ("attributed-to", "targets", "impacts")
#: stix2-validator warnings our bundles are expected to raise, and why.
ACCEPTED_WARNINGS: Dict[str, str] = {
    "uuid-check": "ids are UUIDv5 in NAMESPACE, for reproducible bundles (the spec says SHOULD use v4)",
    "relationship-types": "incident attributed-to/targets/impacts, from the Incident Core Extension",
    "extref-hashes": "ATT&CK external references carry a URL without hashes, as ATT&CK's own data does",
}
ATTACK_URLS: Dict[str, str] = {
    "G": "https://attack.mitre.org/groups/{}/",
    "S": "https://attack.mitre.org/software/{}/",
    "C": "https://attack.mitre.org/campaigns/{}/",
}
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})


def _key(name: str) -> str:
    """Case, space and apostrophe-insensitive key of a name ("Guy’s" = "guy's")."""
    return " ".join(name.translate(_APOSTROPHES).split()).casefold()


def stix_id(object_type: str, key: str) -> str:
    """A deterministic STIX identifier: ``<type>--<uuid5(NAMESPACE, "<type>|<key>")>``.

    object_type (str): the STIX type, e.g. ``"identity"``.
    key (str): what identifies the object (a normalised name, an incident id).
    RETURNS (str): the identifier.
    """
    return f"{object_type}--{uuid.uuid5(NAMESPACE, f'{object_type}|{key}')}"


PRODUCER_ID = stix_id("identity", f"system|{PRODUCER_NAME}")
EXTENSION_ID = stix_id("extension-definition", f"incident-record|{SCHEMA_VERSION}")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def article_time(result: Result) -> Optional[datetime]:
    """The article's ``date`` (ISO 8601 date or date-time) as a UTC datetime.

    result (Result): a tagged result.
    RETURNS (Optional[datetime]): midnight UTC for a bare date; None without a date.
    RAISES (ValueError): when ``date`` is present but not ISO 8601.
    """
    value = result.get("date")
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    try:
        return _utc(datetime.fromisoformat(str(value)))
    except ValueError:
        raise ValueError(f"result {result.get('id')!r}: date {value!r} is not an ISO 8601 date (YYYY-MM-DD[THH:MM:SS])") from None


def _attack_reference(attack_id: str) -> Dict[str, str]:
    ref = {"source_name": "mitre-attack", "external_id": attack_id}
    pattern = ATTACK_URLS.get(attack_id[:1].upper())
    if pattern and re.fullmatch(r"[GSC]\d{4}", attack_id):
        ref["url"] = pattern.format(attack_id)
    return ref


def _strip_empty(obj: Any) -> Any:
    """Drop nulls and empty lists/dicts (STIX forbids empty lists; nulls are noise)."""
    if isinstance(obj, dict):
        out = {k: _strip_empty(v) for k, v in obj.items()}
        return {k: v for k, v in out.items() if v is not None and v != [] and v != {}}
    if isinstance(obj, list):
        return [_strip_empty(v) for v in obj]
    return obj


def _add_unique(target: List[str], values: Iterable[str], exclude: str = "") -> None:
    keys = {_key(v) for v in target} | ({_key(exclude)} if exclude else set())
    for v in values:
        if v and _key(v) not in keys:
            target.append(v)
            keys.add(_key(v))


def incident_name(record: IncidentRecord) -> str:
    """``"<victims> <attack type> incident"``; affected organisations stand in for victims.

    record (IncidentRecord): the record.
    RETURNS (str): e.g. ``"Synnovis ransomware incident"``, or ``"Cyber incident (doc#1)"``
        when the record names no organisation hit.
    """
    kind = record.attack_type.value if record.attack_type else "cyber"
    orgs = record.victims or record.affected_organisations
    if orgs:
        names: List[str] = []
        _add_unique(names, (o.name for o in orgs))
        return f"{' and '.join(names)} {kind} incident"
    return f"{kind[:1].upper()}{kind[1:]} incident ({record.incident_id})"


def incident_description(record: IncidentRecord, result: Result) -> str:
    """A plain-text summary of the record's fields, one line each.

    record (IncidentRecord): the record.
    result (Result): its document (``id``, ``title``).
    RETURNS (str): the description.
    """
    def names(items: Iterable[Any]) -> str:
        return "; ".join(getattr(i, "canonical", None) or i.name for i in items)

    lines = []
    for label, value in (
        ("Attack type", record.attack_type.value if record.attack_type else ""),
        ("Attack groups", names(record.attack_groups)),
        ("Malware", names(record.malware)),
        ("Attribution", record.attribution.value if record.attribution else ""),
        ("Victims", names(record.victims)),
        ("Affected organisations", names(record.affected_organisations)),
        ("Other organisations", names(record.other_organisations)),
        ("Disrupted services", names(record.affected_services)),
        ("Quantities", "; ".join(format_quantity(q) for q in record.quantities)),
        ("Dates", "; ".join(d.value for d in record.dates)),
    ):
        if value:
            lines.append(f"{label}: {value}.")
    source = result.get("title") or result.get("id")
    where = f" from {source!r}" if source else ""
    lines.append(f"Extracted by {PRODUCER_NAME}{where} (record {record.incident_id}, schema {record.schema_version}).")
    return "\n".join(lines)


class _Builder:
    """Collects object properties by id (merging repeats), then makes stix2 objects in order."""

    def __init__(self) -> None:
        self.objects: Dict[str, Dict[str, Any]] = {}

    def add(self, props: Dict[str, Any]) -> Dict[str, Any]:
        return self.objects.setdefault(props["id"], props)

    def relationship(self, rel_type: str, source: str, target: str, when: datetime, description: str) -> None:
        self.add({
            "type": "relationship", "id": stix_id("relationship", f"{rel_type}|{source}|{target}"),
            "created_by_ref": PRODUCER_ID, "created": when, "modified": when,
            "relationship_type": rel_type, "source_ref": source, "target_ref": target, "description": description,
        })

    def organisation(self, org: Organisation) -> str:
        obj = self.add({
            "type": "identity", "id": stix_id("identity", f"organization|{_key(org.name)}"),
            "created_by_ref": PRODUCER_ID, "created": EPOCH, "modified": EPOCH,
            "name": org.name, "identity_class": "organization", "roles": [],
        })
        if org.role not in obj["roles"]:
            obj["roles"] = sorted(obj["roles"] + [org.role], key=ROLES.index)
        return obj["id"]

    def actor(self, stix_type: str, actor: Actor) -> str:
        name = actor.canonical or actor.name
        props: Dict[str, Any] = {
            "type": stix_type, "id": stix_id(stix_type, _key(name)),
            "created_by_ref": PRODUCER_ID, "created": EPOCH, "modified": EPOCH, "name": name, "aliases": [],
        }
        if stix_type == "malware":
            props["is_family"] = True
            props["malware_types"] = []
        props["external_references"] = []
        obj = self.add(props)
        _add_unique(obj["aliases"], [actor.name, *actor.aliases], exclude=obj["name"])
        if stix_type == "malware" and actor.kind == "ransomware" and "ransomware" not in obj["malware_types"]:
            obj["malware_types"].append("ransomware")
        refs = [_attack_reference(i) for i in actor.attack_ids]
        if actor.misp_uuid:
            refs.append({"source_name": "misp-galaxy", "external_id": actor.misp_uuid})
        for ref in refs:
            if ref not in obj["external_references"]:
                obj["external_references"].append(ref)
        return obj["id"]

    def record(self, record: IncidentRecord, result: Result, when: datetime) -> None:
        incident_id = stix_id("incident", record.incident_id)
        content = _strip_empty(record.model_dump(mode="json"))
        props = {
            "type": "incident", "id": incident_id, "created_by_ref": PRODUCER_ID, "created": when, "modified": when,
            "name": incident_name(record), "description": incident_description(record, result),
            "extensions": {EXTENSION_ID: {"extension_type": "property-extension", **content}},
        }
        if self.add(props) != props:
            raise ValueError(f"incident_id {record.incident_id!r} occurs twice with different records or dates; incident ids must be unique")
        for org in record.victims + record.affected_organisations + record.other_organisations:
            target = self.organisation(org)
            self.relationship(ROLE_RELATIONSHIPS[org.role], incident_id, target, when, ROLE_DESCRIPTIONS[org.role].format(org.name))
        groups = []
        for group in record.attack_groups:
            groups.append(self.actor("intrusion-set", group))
            self.relationship("attributed-to", incident_id, groups[-1], when, f"The report attributes the incident to {group.canonical or group.name}.")
        for mal in record.malware:
            malware_id = self.actor("malware", mal)
            self.relationship("related-to", incident_id, malware_id, when, f"{mal.canonical or mal.name} was used in the incident.")
            for group_id in groups:
                self.relationship("uses", group_id, malware_id, EPOCH, "Reported together in an incident.")

    def build(self) -> List[Any]:
        makers = {
            "identity": stix2.Identity, "extension-definition": stix2.ExtensionDefinition, "incident": stix2.Incident,
            "intrusion-set": stix2.IntrusionSet, "malware": stix2.Malware, "relationship": stix2.Relationship,
        }
        out = []
        for props in self.objects.values():
            props = {k: v for k, v in props.items() if v != []}
            out.append(makers[props["type"]](**{k: v for k, v in props.items() if k != "type"}))
        return out


def _preamble(builder: _Builder) -> None:
    builder.add({
        "type": "identity", "id": PRODUCER_ID, "created": EPOCH, "modified": EPOCH, "name": PRODUCER_NAME,
        "identity_class": "system", "description": "nhs_nlp: incident records extracted from news reports of cyber attacks.",
    })
    builder.add({
        "type": "extension-definition", "id": EXTENSION_ID, "created_by_ref": PRODUCER_ID, "created": EPOCH, "modified": EPOCH,
        "name": f"nhs_nlp incident record {SCHEMA_VERSION}",
        "description": "The nhs_nlp IncidentRecord behind an incident, with the character offsets of its evidence.",
        "schema": load_schema()["$id"], "version": SCHEMA_VERSION, "extension_types": ["property-extension"],
    })


def bundle_for_results(results: Iterable[Result], *, created: Optional[datetime] = None) -> stix2.Bundle:
    """One bundle for many tagged results; objects shared between them appear once.

    results (Iterable[Result]): tagged results (``records`` as dicts or IncidentRecords).
    created (Optional[datetime]): ``created``/``modified`` of every incident and its
        relationships (naive = UTC); by default each article's ``date``, else ``EPOCH``.
    RETURNS (stix2.Bundle): the bundle; no objects when no result has records.
    RAISES (ValueError): for a record that does not match the schema, a bad ``date``, or an
        ``incident_id`` repeated with a different record.
    """
    builder = _Builder()
    for result in results:
        records = records_of(result)
        if not records:
            continue
        if not builder.objects:
            _preamble(builder)
        when = _utc(created) if created is not None else (article_time(result) or EPOCH)
        for record in records:
            builder.record(record, result, when)
    objects = builder.build()
    bundle_id = stix_id("bundle", "\n".join(sorted(o.id for o in objects)))
    return stix2.Bundle(*objects, id=bundle_id) if objects else stix2.Bundle(id=bundle_id)


def bundle_for_result(result: Result, *, created: Optional[datetime] = None) -> stix2.Bundle:
    """The STIX 2.1 bundle of one tagged result (see the module docstring for the mapping).

    result (Result): ``{"id", "records", "title"?, "date"?, ...}``.
    created (Optional[datetime]): timestamp for the incident objects and their
        relationships; default: the article's ``date``, else ``EPOCH``.
    RETURNS (stix2.Bundle): the bundle; the same input gives the same bundle.
    """
    return bundle_for_results([result], created=created)


def serialize(bundle: stix2.Bundle) -> str:
    """The bundle as JSON text, 2-space indented (deterministic for a given bundle).

    bundle (stix2.Bundle): the bundle.
    RETURNS (str): the JSON text.
    """
    return bundle.serialize(indent=2, ensure_ascii=False)


def _code(warning: str) -> str:
    from stix2validator.v21.enums import CHECK_CODES

    match = re.search(r"\{(\d+)\}", warning)
    return CHECK_CODES.get(match.group(1), "") if match else ""


def _accepted(warning: str) -> bool:
    code = _code(warning)
    if code == "relationship-types":
        found = re.search(r"'incident' is permitted, but not a suggested relationship source object for the '([a-z-]+)'", warning)
        return bool(found) and found.group(1) in INCIDENT_CORE_RELATIONSHIPS
    return code in ACCEPTED_WARNINGS


def validate_bundle(bundle: Union[stix2.Bundle, str, Dict[str, Any]]) -> List[str]:
    """Validate with ``stix2-validator`` (STIX 2.1, every check enabled).

    bundle (Union[stix2.Bundle, str, Dict[str, Any]]): a bundle or its JSON.
    RETURNS (List[str]): the warnings other than the ``ACCEPTED_WARNINGS`` (empty for
        the bundles this module makes).
    RAISES (ValueError): listing the validator's errors when the bundle is invalid.
    """
    from stix2validator import ValidationOptions, validate_parsed_json

    if isinstance(bundle, stix2.Bundle):
        parsed = json.loads(bundle.serialize())
    elif isinstance(bundle, str):
        parsed = json.loads(bundle)
    else:
        parsed = bundle
    results = validate_parsed_json(parsed, ValidationOptions(version="2.1"))
    for result in results if isinstance(results, list) else [results]:
        if not result.is_valid:
            raise ValueError("invalid STIX 2.1 bundle: " + "; ".join(str(e) for e in result.errors))
    return [w for r in (results if isinstance(results, list) else [results]) for w in r.warnings if not _accepted(w)]
