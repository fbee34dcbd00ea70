"""CSV for spreadsheets: one row per incident record.

List fields are joined with ``"; "``. Organisations, groups and malware appear by
name (a group or malware by its canonical name when the alias table knows it);
character offsets are summarised in one ``evidence`` column (``field start-end``
of the first mention, ``+N`` more). A result without records gives no rows.

Cells that a spreadsheet would run as a formula (text starting with ``=``, ``+``,
``-``, ``@``, tab or carriage return: article text is untrusted) get a leading
``'``, the usual guard against CSV injection.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import IO, Dict, Iterable, List, Sequence, Tuple, Union

from ..records import Actor, IncidentRecord, QuantityItem
from .jsonl import Result, records_of

SEP = "; "

#: The columns, in order.
COLUMNS: Tuple[str, ...] = (
    "doc_id",
    "title",
    "date",
    "incident_id",
    "schema_version",
    "attack_type",
    "attribution",
    "attack_groups",
    "malware",
    "attack_ids",
    "victims",
    "affected_organisations",
    "other_organisations",
    "affected_services",
    "quantities",
    "dates",
    "evidence",
)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def _join(values: Iterable[str]) -> str:
    seen: List[str] = []
    for v in values:
        if v and v not in seen:
            seen.append(v)
    return SEP.join(seen)


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def format_quantity(q: QuantityItem) -> str:
    """A quantity as text with its normalised value: ``about 2 million people = 2000000 (approximate)``.

    q (QuantityItem): the quantity.
    RETURNS (str): the text as written, then ``= value`` (``low–high`` for ranges),
        currency or unit, and the qualifier unless it is ``exact``.
    """
    if q.value is None:
        return q.text
    value = _number(q.value)
    if q.value_high is not None and q.value_high != q.value:
        value += "–" + _number(q.value_high)
    unit = q.currency or q.unit
    out = f"{q.text} = {value}" + (f" {unit}" if unit else "")
    if q.qualifier and q.qualifier != "exact":
        out += f" ({q.qualifier})"
    return out


def _actor_name(a: Actor) -> str:
    return a.canonical or a.name


def summarise_evidence(evidence: Dict[str, Sequence[Sequence[int]]]) -> str:
    """Offsets per field in one cell: ``victims 40-48 +2`` (first span, number of others).

    evidence (Dict[str, Sequence[Sequence[int]]]): field -> ``[start, end)`` offsets.
    RETURNS (str): one ``field start-end [+N]`` item per field with offsets, ``"; "``-joined.
    """
    parts = []
    for field, offsets in evidence.items():
        if not offsets:
            continue
        first = min(tuple(o) for o in offsets)
        more = f" +{len(offsets) - 1}" if len(offsets) > 1 else ""
        parts.append(f"{field} {first[0]}-{first[1]}{more}")
    return SEP.join(parts)


def row_for_record(record: IncidentRecord, result: Result) -> Dict[str, str]:
    """The CSV row of one record of ``result``.

    record (IncidentRecord): the record.
    result (Result): its document (for ``id``, ``title``, ``date``).
    RETURNS (Dict[str, str]): one string per column of ``COLUMNS``.
    """
    evidence = record.evidence or record.model_copy(deep=True).fill_evidence().evidence
    row = {
        "doc_id": result.get("id"),
        "title": result.get("title"),
        "date": result.get("date"),
        "incident_id": record.incident_id,
        "schema_version": record.schema_version,
        "attack_type": record.attack_type.value if record.attack_type else "",
        "attribution": record.attribution.value if record.attribution else "",
        "attack_groups": _join(_actor_name(a) for a in record.attack_groups),
        "malware": _join(_actor_name(m) for m in record.malware),
        "attack_ids": _join(i for a in record.attack_groups + record.malware for i in a.attack_ids),
        "victims": _join(o.name for o in record.victims),
        "affected_organisations": _join(o.name for o in record.affected_organisations),
        "other_organisations": _join(o.name for o in record.other_organisations),
        "affected_services": _join(s.name for s in record.affected_services),
        "quantities": _join(format_quantity(q) for q in record.quantities),
        "dates": _join(d.value for d in record.dates),
        "evidence": summarise_evidence(evidence),
    }
    return {col: _cell(row[col]) for col in COLUMNS}


def rows_for_result(result: Result) -> List[Dict[str, str]]:
    """One row per record of a tagged result.

    result (Result): ``{"id", "records", "title"?, "date"?, ...}``; records as dicts
        or ``IncidentRecord`` objects.
    RETURNS (List[Dict[str, str]]): the rows, keyed by ``COLUMNS``; empty without records.
    RAISES (ValueError): when a record does not match the schema.
    """
    return [row_for_record(rec, result) for rec in records_of(result)]


def write_csv(results: Iterable[Result], path: Union[str, Path, IO[str]]) -> int:
    """Write the rows of many results, with a header, as UTF-8 CSV (RFC 4180 line ends).

    results (Iterable[Result]): tagged results.
    path (Union[str, Path, IO[str]]): a file path (overwritten) or a text file opened with ``newline=""``.
    RETURNS (int): the number of rows written (records), not counting the header.
    """
    if isinstance(path, (str, Path)):
        with Path(path).open("w", encoding="utf8", newline="") as f:
            return write_csv(results, f)
    writer = csv.DictWriter(path, fieldnames=list(COLUMNS))
    writer.writeheader()
    n = 0
    for result in results:
        rows = rows_for_result(result)
        writer.writerows(rows)
        n += len(rows)
    return n
