"""JSON Lines in and out, and validation of records against the committed JSON Schema.

One JSON object per line, UTF-8, no ASCII escaping. A tagged *result* is one
document: ``{"id", "entities", "records", "title"?, "date"?}``; its ``records``
are ``IncidentRecord`` dicts, each carrying ``schema_version``. The schema that
records are checked against is the committed ``data/incident-record.schema.json``
(regenerate it with ``nhs-nlp schema -o FILE --force`` after a model change; a
test fails while it differs from ``records.json_schema()``).
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import IO, Any, Dict, Iterable, Iterator, List, Mapping, Tuple, Union

from pydantic import ValidationError

from ..records import SCHEMA_VERSION, IncidentRecord, json_schema

SCHEMA_FILE = "incident-record.schema.json"

Result = Mapping[str, Any]
RecordLike = Union[IncidentRecord, Mapping[str, Any]]


def schema_text() -> str:
    """The JSON Schema of one record as committed: ``records.json_schema()``, 2-space indent.

    RETURNS (str): the schema text, ending in a newline.
    """
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def schema_path() -> Path:
    """Where the committed schema lives inside the installed package.

    RETURNS (Path): the path of ``nhs_nlp/data/incident-record.schema.json``.
    """
    return Path(str(resources.files("nhs_nlp") / "data" / SCHEMA_FILE))


@lru_cache(maxsize=1)
def load_schema() -> Dict[str, Any]:
    """Read the committed JSON Schema (once per process).

    RETURNS (Dict[str, Any]): the parsed schema.
    """
    path = schema_path()
    if not path.is_file():
        raise FileNotFoundError(f"the record schema {path} is missing; regenerate it with `nhs-nlp schema -o {path}`")
    return json.loads(path.read_text(encoding="utf8"))


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def record_errors(record: Any) -> List[str]:
    """Every way ``record`` breaks the committed schema, as readable strings.

    Beyond the schema, ``schema_version`` must be this release's ``SCHEMA_VERSION``:
    the schema accepts any string there, but other versions have other shapes.

    record (Any): one record as parsed from JSON.
    RETURNS (List[str]): ``"path: message"`` per problem, empty when the record is valid.
    """
    if not isinstance(record, Mapping):
        return [f"a record must be a JSON object, got {type(record).__name__}"]
    errors = sorted(_validator().iter_errors(dict(record)), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [f"{'/'.join(str(p) for p in e.absolute_path) or '(record)'}: {e.message}" for e in errors]
    version = record.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, str) and version != SCHEMA_VERSION:
        problems.append(f"schema_version: {version!r}, but this nhs_nlp reads and writes {SCHEMA_VERSION!r}")
    return problems


def validate_record(record: Any) -> None:
    """Check one record against the committed JSON Schema (with ``jsonschema``).

    record (Any): one record as parsed from JSON (a dict).
    RAISES (ValueError): naming the record's ``incident_id`` and every problem.
    """
    problems = record_errors(record)
    if problems:
        name = record.get("incident_id", "?") if isinstance(record, Mapping) else "?"
        raise ValueError(f"record {name!r} does not match the incident-record schema {SCHEMA_VERSION}: " + "; ".join(problems))


def records_of(result: Result) -> List[IncidentRecord]:
    """The records of one tagged result, as ``IncidentRecord`` objects.

    A result without a ``records`` key has none.
    result (Result): one tagged document.
    RETURNS (List[IncidentRecord]): its records, in order.
    RAISES (ValueError): when ``records`` is not a list or an item is not a valid record.
    """
    if not isinstance(result, Mapping):
        raise ValueError(f"a result must be a JSON object, got {type(result).__name__}")
    raw = result.get("records", [])
    where = f"result {result.get('id')!r}" if result.get("id") is not None else "result"
    if not isinstance(raw, list):
        raise ValueError(f"{where}: 'records' must be a list, got {type(raw).__name__}")
    out: List[IncidentRecord] = []
    for i, item in enumerate(raw):
        if isinstance(item, IncidentRecord):
            out.append(item)
            continue
        problems = record_errors(item)
        if problems:
            raise ValueError(f"{where}, record {i}: " + "; ".join(problems))
        try:
            out.append(IncidentRecord.model_validate(item))
        except ValidationError as err:  # the schema and the models should agree; say so if not
            raise ValueError(f"{where}, record {i}: {err}") from err
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, IncidentRecord):
        return obj.model_dump(mode="json")
    if isinstance(obj, Mapping):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def dumps_line(obj: Any) -> str:
    """One JSON line (no trailing newline); ``IncidentRecord`` values become dicts.

    obj (Any): a result, a record or anything JSON-serialisable.
    RETURNS (str): the compact JSON text, non-ASCII kept as is.
    """
    return json.dumps(_jsonable(obj), ensure_ascii=False)


def write_jsonl(objs: Iterable[Any], out: Union[str, Path, IO[str]]) -> int:
    """Write one JSON line per object.

    objs (Iterable[Any]): results, records or other JSON-serialisable values.
    out (Union[str, Path, IO[str]]): a path (overwritten) or an open text file.
    RETURNS (int): the number of lines written.
    """
    if isinstance(out, (str, Path)):
        with Path(out).open("w", encoding="utf8", newline="\n") as f:
            return write_jsonl(objs, f)
    n = 0
    for obj in objs:
        out.write(dumps_line(obj) + "\n")
        n += 1
    return n


def read_jsonl(path: Union[str, Path]) -> Iterator[Tuple[int, Any]]:
    """Parse a JSON Lines file; blank lines are skipped.

    path (Union[str, Path]): the file.
    YIELDS (Tuple[int, Any]): the 1-based line number and the parsed value.
    RAISES (ValueError): ``FILE:LINE: reason`` for undecodable bytes or invalid JSON.
    """
    path = Path(path)
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not UTF-8 ({err.reason} at byte {err.start})") from err
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno})") from err


def read_results(path: Union[str, Path]) -> Iterator[Dict[str, Any]]:
    """Tagged results from a JSON Lines file, every record checked against the schema.

    path (Union[str, Path]): one result per line.
    YIELDS (Dict[str, Any]): each result, with its records as ``IncidentRecord`` objects.
    RAISES (ValueError): ``FILE:LINE: reason`` for the first bad line.
    """
    for lineno, obj in read_jsonl(path):
        try:
            records = records_of(obj)
        except ValueError as err:
            raise ValueError(f"{path}:{lineno}: {err}") from err
        yield {**obj, "records": records}
