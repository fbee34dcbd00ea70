"""The label set of nhs_nlp: the single source of truth.

Every other module (corpus tools, training, evaluation, records) imports the
labels from here. Definitions are one line each; the full boundary rules with
positive and negative examples live in ``corpus/GUIDELINES.md``.
"""
from typing import Dict, Tuple

ORG = "ORG"
ATTACK_GROUP = "ATTACK_GROUP"
MALWARE = "MALWARE"
SERVICE = "SERVICE"
QUANTITY = "QUANTITY"

#: Entity labels in a fixed order (used for reports and config label lists).
LABELS: Tuple[str, ...] = (ORG, ATTACK_GROUP, MALWARE, SERVICE, QUANTITY)

DEFINITIONS: Dict[str, str] = {
    ORG: "A named organisation (company, supplier, hospital, NHS trust, council, "
    "department, agency, police force, regulator, university, outlet, vendor).",
    ATTACK_GROUP: "A named threat actor, hacking group or ransomware operation/brand.",
    MALWARE: "A named malware family or attack tool that is not a group's brand.",
    SERVICE: "A service, operation or system the text says was disrupted, degraded, "
    "put at risk, suspended or restored by the incident.",
    QUANTITY: "A number expression with what it counts or measures (counts, money, "
    "data sizes, durations, percentages); not dates, times, ages, versions or ids.",
}

#: Attack types allowed in incident records.
ATTACK_TYPES: Tuple[str, ...] = (
    "ransomware",
    "data breach",
    "ddos",
    "phishing",
    "supply chain",
    "wiper",
    "other",
)

#: Sectors an article's header may name (corpus statistics count them).
SECTORS: Tuple[str, ...] = (
    "health",
    "pharmacy",
    "insurance",
    "government",
    "local-government",
    "defence",
    "law-enforcement",
    "education",
    "research",
    "retail",
    "finance",
    "telecoms",
    "energy",
    "water",
    "transport",
    "logistics",
    "manufacturing",
    "technology",
    "media",
    "legal",
    "hospitality",
    "food",
    "charity",
    "cryptocurrency",
    "elections",
    "sport",
)

#: Outlet styles an article may be written in.
OUTLETS: Tuple[str, ...] = (
    "national-newspaper",
    "wire",
    "regional-newspaper",
    "broadcaster",
    "health-trade",
    "it-trade",
    "security-blog",
    "press-release",
    "nhs-statement",
    "regulator-statement",
    "parliamentary-answer",
    "court-report",
)

#: Fields of a gold incident record in the corpus source format, and the span
#: label their values must point at (``None``: free value, not a span).
RECORD_SPAN_FIELDS: Dict[str, str] = {
    "attack_groups": ATTACK_GROUP,
    "malware": MALWARE,
    "victims": ORG,
    "affected_organisations": ORG,
    "other_organisations": ORG,
    "affected_services": SERVICE,
    "quantities": QUANTITY,
}
RECORD_VALUE_FIELDS: Tuple[str, ...] = ("incident", "attack_type", "attribution", "date")
