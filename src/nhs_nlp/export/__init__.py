"""Exports of tagged results and their incident records.

- ``jsonl``: JSON Lines in and out; records checked against the committed JSON Schema;
- ``stix``: STIX 2.1 bundles through the ``stix2`` library (imported on first use:
  ``from nhs_nlp.export.stix import bundle_for_result``);
- ``csv``: one row per record, for spreadsheets.

``export_results`` converts tagged results into any of the three (``nhs-nlp export``).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Iterable, List, Literal, Optional

from .csv import COLUMNS, rows_for_result, write_csv
from .jsonl import (
    Result,
    dumps_line,
    read_results,
    records_of,
    validate_record,
    write_jsonl,
)

FORMATS = ("jsonl", "stix", "csv")
Format = Literal["jsonl", "stix", "csv"]


@dataclass
class ExportSummary:
    """What ``export_results`` wrote.

    records (int): records written (JSON lines, CSV rows or STIX incidents).
    warnings (List[str]): STIX only: validator warnings beyond the accepted ones.
    """

    records: int
    warnings: List[str] = field(default_factory=list)


def export_results(results: Iterable[Result], fmt: Format, out: IO[str], *, created: Optional[datetime] = None, validate: bool = True) -> ExportSummary:
    """Write tagged results in one of the export formats.

    results (Iterable[Result]): tagged results (e.g. from ``read_results``).
    fmt (Format): ``"jsonl"`` (one record per line), ``"stix"`` (one bundle for all
        results, JSON) or ``"csv"`` (one row per record, with a header).
    out (IO[str]): the text file to write (open CSV files with ``newline=""``).
    created (Optional[datetime]): STIX only: timestamp of the incidents and their relationships.
    validate (bool): STIX only: check the bundle with ``stix2-validator`` first.
    RETURNS (ExportSummary): the number of records written, and unexpected validator warnings.
    RAISES (ValueError): for an unknown format, a bad record, or an invalid bundle.
    """
    if fmt == "jsonl":
        return ExportSummary(write_jsonl((rec for result in results for rec in records_of(result)), out))
    if fmt == "csv":
        return ExportSummary(write_csv(results, out))
    if fmt == "stix":
        from .stix import bundle_for_results, serialize, validate_bundle

        bundle = bundle_for_results(results, created=created)
        warnings = validate_bundle(bundle) if validate else []
        out.write(serialize(bundle) + "\n")
        return ExportSummary(sum(1 for o in bundle.get("objects", []) if o["type"] == "incident"), warnings)
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def export_file(source: Path, fmt: Format, output: Optional[Path], *, created: Optional[datetime] = None, validate: bool = True) -> ExportSummary:
    """Convert a JSON Lines file of tagged results; the output appears only when all went well.

    source (Path): tagged results, one JSON object per line; every record is checked
        against the committed schema.
    fmt (Format): ``"jsonl"``, ``"stix"`` or ``"csv"`` (see ``export_results``).
    output (Optional[Path]): the file to write (replaced atomically), or None for stdout.
    created (Optional[datetime]): STIX only: timestamp of the incidents.
    validate (bool): STIX only: check the bundle with ``stix2-validator``.
    RETURNS (ExportSummary): what was written.
    RAISES (ValueError): ``FILE:LINE: reason`` for bad input; invalid bundles.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    results = read_results(source)
    if output is None:
        return export_results(results, fmt, sys.stdout, created=created, validate=validate)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf8", newline="" if fmt == "csv" else "\n") as f:
            summary = export_results(results, fmt, f, created=created, validate=validate)
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return summary


__all__ = [
    "COLUMNS", "FORMATS", "ExportSummary", "dumps_line", "export_file", "export_results", "read_results", "records_of",
    "rows_for_result", "validate_record", "write_csv", "write_jsonl",
]
