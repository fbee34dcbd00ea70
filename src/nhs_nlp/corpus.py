"""The annotated corpus: source articles, validation, compilation and statistics.

Source format (one file per article, see ``corpus/GUIDELINES.md``): a YAML header
between ``---`` lines, then the body with inline span markup ``[text](LABEL)``.
The model text is ``title + "\\n\\n" + body`` with the markup removed.

Compiled format (JSON Lines, one article per line)::

    {"id", "text", "spans": [{"start", "end", "label"}], "records": [...], "meta": {...}}

with character offsets into ``text`` (end exclusive). Records point at their
evidence through ``mentions``: every ``[start, end]`` of a span with that text and
label.
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import yaml

from .labels import (
    ATTACK_GROUP,
    ATTACK_TYPES,
    LABELS,
    OUTLETS,
    RECORD_SPAN_FIELDS,
    RECORD_VALUE_FIELDS,
    SECTORS,
)

SPLITS: Tuple[str, ...] = ("train", "dev", "test")
SPLIT_SALT = "nhs-nlp-corpus-v1"

MARKUP_RE = re.compile(r"\[([^\[\]\n]+)\]\(([A-Z][A-Z_]*)\)")
# Anything that still looks like markup after stripping: nested or broken markup.
LEFTOVER_MARKUP_RE = re.compile(r"\]\([A-Z][A-Z_]*\)")
QUANTITY_VALUE_RE = re.compile(
    r"^(?P<low>\d+(?:\.\d+)?)(?:-(?P<high>\d+(?:\.\d+)?))?(?:\s+(?P<currency>[A-Z]{3}))?$"
)
DATE_RE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")

REQUIRED_HEADER = ("id", "title", "outlet", "date", "sectors", "countries", "incidents")
OPTIONAL_HEADER = ("byline", "dateline", "spelling", "split", "records")
RECORD_KEYS = set(RECORD_SPAN_FIELDS) | set(RECORD_VALUE_FIELDS)

# Characters that may not open or close a span (names that really end in one,
# such as "Lapsus$" or "NoName057(16)", are handled below).
BAD_EDGE_CHARS = set(".,;:!?\"“”‘«»()[]{}-–—/\\*")
TRAILING_ABBREVIATIONS = {"inc.", "ltd.", "co.", "corp.", "plc.", "bros.", "llc.", "s.a.", "n.v.", "ag.", "e.v.", "u.s.", "u.k."}
DETERMINERS = ("the ", "a ", "an ")


@dataclass(frozen=True)
class Problem:
    """One validation problem: where, and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class Span:
    start: int
    end: int
    label: str
    line: int = 0

    def as_dict(self) -> Dict[str, Any]:
        return {"start": self.start, "end": self.end, "label": self.label}


@dataclass
class Article:
    """One corpus article, from a source file or a compiled JSON line."""

    id: str
    text: str
    spans: List[Span]
    records: List[Dict[str, Any]]
    meta: Dict[str, Any]
    path: str = ""
    line: int = 1
    record_lines: Dict[Tuple[int, str], int] = field(default_factory=dict)

    @property
    def split(self) -> Optional[str]:
        return self.meta.get("split")

    @property
    def incidents(self) -> List[str]:
        return list(self.meta.get("incidents") or [])

    def span_text(self, span: Span) -> str:
        return self.text[span.start : span.end]

    def to_json(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "spans": [s.as_dict() for s in sorted(self.spans, key=lambda s: (s.start, s.end))],
            "records": self.records,
            "meta": self.meta,
        }


class CorpusError(ValueError):
    """Raised when the corpus cannot be built; carries every problem found."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        shown = "\n".join(str(p) for p in self.problems[:50])
        more = f"\n... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"{len(self.problems)} corpus problem(s):\n{shown}{more}")


# ---------------------------------------------------------------------------
# Reading the source format


def strip_markup(marked: str, offset: int = 0) -> Tuple[str, List[Tuple[int, int, str, int]]]:
    """Remove ``[text](LABEL)`` markup.

    marked (str): text with inline markup.
    offset (int): added to every returned offset.
    RETURNS (Tuple[str, list]): the plain text and ``(start, end, label, marked_pos)``
        for every span, where ``marked_pos`` is the span's position in ``marked``.
    """
    out: List[str] = []
    spans: List[Tuple[int, int, str, int]] = []
    pos = 0
    length = 0
    for m in MARKUP_RE.finditer(marked):
        before = marked[pos : m.start()]
        out.append(before)
        length += len(before)
        inner = m.group(1)
        spans.append((offset + length, offset + length + len(inner), m.group(2), m.start()))
        out.append(inner)
        length += len(inner)
        pos = m.end()
    out.append(marked[pos:])
    return "".join(out), spans


def _split_front_matter(raw: str, path: str) -> Tuple[str, str, int]:
    """RETURNS (Tuple[str, str, int]): header text, body text, line number where the body starts."""
    lines = raw.split("\n")
    if not lines or lines[0].strip() != "---":
        raise CorpusError([Problem(path, 1, "file must start with a '---' line opening the YAML header")])
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            header = "\n".join(lines[1:i])
            body = "\n".join(lines[i + 1 :])
            return header, body, i + 2
    raise CorpusError([Problem(path, 1, "YAML header is not closed by a '---' line")])


def _record_line_map(header: str, first_line: int) -> Dict[Tuple[int, str], int]:
    """Map ``(record index, field)`` to the file line where that field is written."""
    result: Dict[Tuple[int, str], int] = {}
    try:
        node = yaml.compose(header)
    except yaml.YAMLError:
        return result
    if not isinstance(node, yaml.MappingNode):
        return result
    for key, value in node.value:
        if key.value == "records" and isinstance(value, yaml.SequenceNode):
            for i, rec in enumerate(value.value):
                result[(i, "")] = first_line + rec.start_mark.line
                if isinstance(rec, yaml.MappingNode):
                    for rkey, rval in rec.value:
                        result[(i, rkey.value)] = first_line + rval.start_mark.line
        elif isinstance(key, yaml.ScalarNode):
            result[(-1, key.value)] = first_line + key.start_mark.line
    return result


def _yaml_scalar(value: Any) -> Any:
    # YAML turns 2024-06-04 into a date object: keep the corpus JSON-safe.
    if isinstance(value, date):
        return value.isoformat()
    return value


def read_article(path: Path) -> Tuple[Optional[Article], List[Problem]]:
    """Parse one source file.

    RETURNS (Tuple[Optional[Article], List[Problem]]): the article (None when it cannot
        be parsed at all) and the problems found while parsing.
    """
    spath = str(path)
    problems: List[Problem] = []
    try:
        raw = path.read_text(encoding="utf8")
    except UnicodeDecodeError as err:
        return None, [Problem(spath, 1, f"not valid UTF-8: {err}")]
    raw = raw.replace("\r\n", "\n")
    try:
        header_text, body, body_line = _split_front_matter(raw, spath)
    except CorpusError as err:
        return None, err.problems
    try:
        header = yaml.safe_load(header_text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = 2 + mark.line if mark is not None else 1
        return None, [Problem(spath, line, f"invalid YAML header: {getattr(err, 'problem', err)}")]
    if not isinstance(header, dict):
        return None, [Problem(spath, 2, "YAML header must be a mapping")]
    lines = _record_line_map(header_text, 2)
    header = {k: _yaml_scalar(v) for k, v in header.items()}

    title_marked = header.get("title")
    if not isinstance(title_marked, str) or not title_marked.strip():
        problems.append(Problem(spath, lines.get((-1, "title"), 2), "header field 'title' must be a non-empty string"))
        title_marked = ""
    title_marked = title_marked.strip()
    title, title_spans = strip_markup(title_marked)
    title_line = lines.get((-1, "title"), 2)
    body = body.strip("\n")
    # Line numbers in the body: count the leading blank lines we removed.
    raw_body_after = raw.split("\n", body_line - 1)[-1] if body_line > 1 else raw
    lead = len(raw_body_after) - len(raw_body_after.lstrip("\n"))
    body_first_line = body_line + lead
    prefix = title + "\n\n"
    body_text, body_spans = strip_markup(body, offset=len(prefix))
    text = prefix + body_text

    spans: List[Span] = []
    for start, end, label, _ in title_spans:
        spans.append(Span(start, end, label, title_line))
    for start, end, label, marked_pos in body_spans:
        spans.append(Span(start, end, label, body_first_line + body.count("\n", 0, marked_pos)))
    for m in LEFTOVER_MARKUP_RE.finditer(title):
        problems.append(Problem(spath, title_line, f"nested or malformed span markup near {title[max(0, m.start() - 20) : m.end()]!r}"))
    for m in LEFTOVER_MARKUP_RE.finditer(body_text):
        line = body_first_line + body_text.count("\n", 0, m.start())
        problems.append(Problem(spath, line, f"nested or malformed span markup near {body_text[max(0, m.start() - 30) : m.end()]!r}"))

    meta = {k: header[k] for k in header if k not in ("records",)}
    meta["title"] = title
    records = header.get("records") or []
    art = Article(
        id=str(header.get("id", "")),
        text=text,
        spans=spans,
        records=records if isinstance(records, list) else [],
        meta=meta,
        path=spath,
        line=1,
        record_lines=lines,
    )
    if not isinstance(records, list):
        problems.append(Problem(spath, lines.get((-1, "records"), 2), "header field 'records' must be a list"))
    return art, problems


def iter_source_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Expand directories into their ``*.md`` article files, sorted."""
    for p in paths:
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*.md") if f.is_file())
        else:
            yield p


def read_jsonl(path: Path) -> Iterator[Tuple[int, Optional[Article], List[Problem]]]:
    """Read a compiled JSON Lines corpus file, one article per line."""
    with path.open(encoding="utf8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                yield lineno, None, [Problem(str(path), lineno, f"invalid JSON: {err.msg}")]
                continue
            problems: List[Problem] = []
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                yield lineno, None, [Problem(str(path), lineno, "each line must be an object with a string 'text'")]
                continue
            spans: List[Span] = []
            for s in obj.get("spans") or []:
                try:
                    spans.append(Span(int(s["start"]), int(s["end"]), str(s["label"]), lineno))
                except (KeyError, TypeError, ValueError):
                    problems.append(Problem(str(path), lineno, f"span {s!r} needs integer 'start', 'end' and a 'label'"))
            art = Article(
                id=str(obj.get("id", "")),
                text=obj["text"],
                spans=spans,
                records=obj.get("records") or [],
                meta=obj.get("meta") or {},
                path=str(path),
                line=lineno,
            )
            yield lineno, art, problems


# ---------------------------------------------------------------------------
# Validation


def _tokenizer():
    from .tokenizer import blank_english

    return blank_english()


def check_spans(art: Article, nlp=None) -> List[Problem]:
    """Span-level checks shared by source and compiled articles."""
    problems: List[Problem] = []
    text = art.text
    doc = nlp.make_doc(text) if nlp is not None else None
    ordered = sorted(art.spans, key=lambda s: (s.start, s.end))
    for span in ordered:
        where = span.line or art.line

        def bad(reason: str) -> None:
            problems.append(Problem(art.path, where, reason))

        if span.label not in LABELS:
            bad(f"unknown label {span.label!r} (known: {', '.join(LABELS)})")
        if not (0 <= span.start < span.end <= len(text)):
            bad(f"offsets [{span.start}, {span.end}) do not fit the text (length {len(text)})")
            continue
        s = text[span.start : span.end]
        if s != s.strip():
            bad(f"span {s!r} has leading or trailing whitespace")
            continue
        if s[0] in BAD_EDGE_CHARS or s[0] in "'’":
            bad(f"span {s!r} starts with punctuation {s[0]!r}")
        last = s[-1]
        if last in BAD_EDGE_CHARS:
            ok = (last == ")" and "(" in s) or (
                last == "." and (s.split()[-1].lower() in TRAILING_ABBREVIATIONS or s.split()[-1].count(".") > 1)
            )
            if not ok:
                bad(f"span {s!r} ends with punctuation {last!r}")
        low = s.lower()
        if span.label != "QUANTITY" and low.startswith(DETERMINERS):
            bad(f"span {s!r} starts with a determiner; drop it")
        if doc is not None and doc.char_span(span.start, span.end) is None:
            bad(f"span {s!r} does not align with spaCy token boundaries")
    for a, b in zip(ordered, ordered[1:]):
        if b.start < a.end:
            problems.append(
                Problem(
                    art.path,
                    b.line or art.line,
                    f"overlapping spans {text[a.start:a.end]!r} [{a.start},{a.end}) {a.label} and "
                    f"{text[b.start:b.end]!r} [{b.start},{b.end}) {b.label}",
                )
            )
    return problems


def parse_record_value(fieldname: str, value: Any) -> Tuple[str, Dict[str, Any]]:
    """Split a record value such as ``"ALPHV -> BlackCat"`` or ``"six NHS trusts = 6"``.

    RETURNS (Tuple[str, dict]): the span text and the extra attributes it carries.
    Raises ValueError with the reason when the value is malformed.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{fieldname} entries must be non-empty strings, got {value!r}")
    extra: Dict[str, Any] = {}
    text = value.strip()
    if fieldname in ("attack_groups", "malware") and "->" in text:
        text, canonical = (part.strip() for part in text.split("->", 1))
        if not canonical:
            raise ValueError(f"empty canonical name in {value!r}")
        extra["canonical"] = canonical
    elif fieldname == "quantities":
        if "=" not in text:
            raise ValueError(f"quantity {value!r} needs '= value' (see GUIDELINES.md)")
        text, raw = (part.strip() for part in text.rsplit("=", 1))
        m = QUANTITY_VALUE_RE.match(raw)
        if not m:
            raise ValueError(f"quantity value {raw!r} must be a number, 'low-high', optionally followed by an ISO currency")
        low = float(m.group("low"))
        extra["value"] = int(low) if low.is_integer() else low
        if m.group("high"):
            high = float(m.group("high"))
            extra["value_high"] = int(high) if high.is_integer() else high
        if m.group("currency"):
            extra["currency"] = m.group("currency")
    return text, extra


def compile_records(art: Article) -> Tuple[List[Dict[str, Any]], List[Problem]]:
    """Resolve a source article's records to span evidence.

    RETURNS (Tuple[list, list]): compiled records and the problems found.
    """
    problems: List[Problem] = []
    by_text: Dict[Tuple[str, str], List[List[int]]] = defaultdict(list)
    for s in sorted(art.spans, key=lambda s: s.start):
        by_text[(art.text[s.start : s.end], s.label)].append([s.start, s.end])
    incidents = set(art.incidents)
    compiled: List[Dict[str, Any]] = []
    seen_incidents: Set[str] = set()
    for i, rec in enumerate(art.records):
        line = art.record_lines.get((i, ""), art.line)
        if not isinstance(rec, dict):
            problems.append(Problem(art.path, line, f"record {i + 1} must be a mapping"))
            continue
        for key in rec:
            if key not in RECORD_KEYS:
                problems.append(Problem(art.path, art.record_lines.get((i, key), line), f"unknown record field {key!r}"))
        out: Dict[str, Any] = {}
        inc = rec.get("incident")
        if not isinstance(inc, str) or inc not in incidents:
            problems.append(
                Problem(art.path, art.record_lines.get((i, "incident"), line), f"record incident {inc!r} is not listed in the header's incidents {sorted(incidents)}")
            )
        elif inc in seen_incidents:
            problems.append(Problem(art.path, line, f"two records for incident {inc!r}"))
        seen_incidents.add(str(inc))
        out["incident"] = inc
        atype = rec.get("attack_type")
        if atype not in ATTACK_TYPES:
            problems.append(
                Problem(art.path, art.record_lines.get((i, "attack_type"), line), f"attack_type {atype!r} is not one of {', '.join(ATTACK_TYPES)}")
            )
        out["attack_type"] = atype
        attribution = rec.get("attribution")
        if attribution is not None and not isinstance(attribution, str):
            problems.append(Problem(art.path, art.record_lines.get((i, "attribution"), line), "attribution must be a string or null"))
        out["attribution"] = attribution
        when = _yaml_scalar(rec.get("date"))
        if when is not None and not (isinstance(when, str) and DATE_RE.match(when)):
            problems.append(Problem(art.path, art.record_lines.get((i, "date"), line), f"date {when!r} must be YYYY, YYYY-MM or YYYY-MM-DD"))
        out["date"] = when
        for fname, label in RECORD_SPAN_FIELDS.items():
            values = rec.get(fname) or []
            fline = art.record_lines.get((i, fname), line)
            if not isinstance(values, list):
                problems.append(Problem(art.path, fline, f"record field {fname!r} must be a list"))
                values = []
            items = []
            for v in values:
                try:
                    stext, extra = parse_record_value(fname, v)
                except ValueError as err:
                    problems.append(Problem(art.path, fline, str(err)))
                    continue
                mentions = by_text.get((stext, label))
                if not mentions:
                    problems.append(Problem(art.path, fline, f"record field {fname!r} value {stext!r} points at no {label} span in the article"))
                    continue
                item = {"text": stext, "mentions": mentions}
                item.update(extra)
                items.append(item)
            out[fname] = items
        compiled.append(out)
    missing = incidents - seen_incidents
    if missing:
        problems.append(Problem(art.path, art.record_lines.get((-1, "incidents"), art.line), f"header incidents without a record: {sorted(missing)}"))
    return compiled, problems


def check_header(art: Article) -> List[Problem]:
    problems: List[Problem] = []
    meta = art.meta
    lines = art.record_lines

    def bad(key: str, reason: str) -> None:
        problems.append(Problem(art.path, lines.get((-1, key), 2), reason))

    for key in REQUIRED_HEADER:
        if key not in meta or meta[key] in (None, ""):
            bad(key, f"header field {key!r} is missing")
    for key in meta:
        if key not in REQUIRED_HEADER and key not in OPTIONAL_HEADER:
            bad(key, f"unknown header field {key!r}")
    stem = Path(art.path).stem
    if art.id != stem:
        bad("id", f"id {art.id!r} must equal the file name {stem!r}")
    if art.id and not ID_RE.match(art.id):
        bad("id", f"id {art.id!r} must be lowercase ASCII letters, digits and hyphens")
    if meta.get("outlet") is not None and meta.get("outlet") not in OUTLETS:
        bad("outlet", f"outlet {meta.get('outlet')!r} is not one of {', '.join(OUTLETS)}")
    if meta.get("date") is not None and not (isinstance(meta["date"], str) and DATE_RE.match(meta["date"])):
        bad("date", f"date {meta['date']!r} must be YYYY-MM-DD")
    for s in meta.get("sectors") or []:
        if s not in SECTORS:
            bad("sectors", f"sector {s!r} is not one of {', '.join(SECTORS)}")
    for c in meta.get("countries") or []:
        if not (isinstance(c, str) and COUNTRY_RE.match(c)):
            bad("countries", f"country {c!r} must be an ISO 3166-1 alpha-2 code such as GB")
    for inc in meta.get("incidents") or []:
        if not (isinstance(inc, str) and ID_RE.match(inc)):
            bad("incidents", f"incident id {inc!r} must be lowercase ASCII letters, digits and hyphens")
    split = meta.get("split")
    if split is not None and split not in SPLITS:
        bad("split", f"split {split!r} is not one of {', '.join(SPLITS)}")
    if meta.get("spelling") not in (None, "en-GB", "en-US"):
        bad("spelling", f"spelling {meta.get('spelling')!r} must be en-GB or en-US")
    return problems


def check_record_offsets(art: Article) -> List[Problem]:
    """Checks for compiled records: every mention must be one of the article's spans."""
    problems: List[Problem] = []
    spans = {(s.start, s.end, s.label) for s in art.spans}
    for i, rec in enumerate(art.records):
        if not isinstance(rec, dict):
            problems.append(Problem(art.path, art.line, f"record {i + 1} must be an object"))
            continue
        for fname, label in RECORD_SPAN_FIELDS.items():
            for item in rec.get(fname) or []:
                mentions = item.get("mentions") if isinstance(item, dict) else None
                if not mentions:
                    problems.append(Problem(art.path, art.line, f"record {i + 1} field {fname!r} item {item!r} has no mentions"))
                    continue
                for m in mentions:
                    if not (isinstance(m, list) and len(m) == 2 and (m[0], m[1], label) in spans):
                        problems.append(Problem(art.path, art.line, f"record {i + 1} field {fname!r} mention {m!r} points at no {label} span"))
    return problems


@dataclass
class LoadedCorpus:
    articles: List[Article]
    problems: List[Problem]


def load_sources(paths: Iterable[Path], check_tokens: bool = True) -> LoadedCorpus:
    """Read and validate source articles and/or compiled JSONL files.

    paths (Iterable[Path]): files or directories (``*.md`` sources, ``*.jsonl`` compiled).
    check_tokens (bool): check spans against spaCy's English tokenizer.
    RETURNS (LoadedCorpus): parsed articles (records compiled) and all problems.
    """
    nlp = _tokenizer() if check_tokens else None
    articles: List[Article] = []
    problems: List[Problem] = []
    for path in iter_source_files(paths):
        if not path.exists():
            problems.append(Problem(str(path), 0, "no such file"))
            continue
        if path.suffix == ".jsonl":
            for _, art, probs in read_jsonl(path):
                problems.extend(probs)
                if art is None:
                    continue
                problems.extend(check_spans(art, nlp))
                problems.extend(check_record_offsets(art))
                articles.append(art)
            continue
        art, probs = read_article(path)
        problems.extend(probs)
        if art is None:
            continue
        problems.extend(check_header(art))
        problems.extend(check_spans(art, nlp))
        compiled, rprobs = compile_records(art)
        problems.extend(rprobs)
        art.records = compiled
        articles.append(art)
    problems.extend(check_collection(articles))
    return LoadedCorpus(articles, problems)


def check_collection(articles: Sequence[Article]) -> List[Problem]:
    """Cross-article checks: duplicate ids, incidents spread over two splits."""
    problems: List[Problem] = []
    first: Dict[str, Article] = {}
    for art in articles:
        if art.id in first:
            other = first[art.id]
            problems.append(Problem(art.path, art.line, f"duplicate id {art.id!r} (also in {other.path}:{other.line})"))
        else:
            first[art.id] = art
    split_of: Dict[str, Tuple[str, Article]] = {}
    for art in articles:
        if art.split is None:
            continue
        for inc in art.incidents:
            if inc in split_of and split_of[inc][0] != art.split:
                s, other = split_of[inc]
                problems.append(
                    Problem(art.path, art.line, f"incident {inc!r} is in split {art.split!r} here but in {s!r} in {other.path}")
                )
            split_of.setdefault(inc, (art.split, art))
    return problems


# ---------------------------------------------------------------------------
# Splits, building, statistics


def incident_components(articles: Sequence[Article]) -> Dict[str, str]:
    """Group articles that share an incident (transitively).

    RETURNS (Dict[str, str]): article id -> component key (its smallest incident id,
        or the article id for an article without incidents).
    """
    parent: Dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for art in articles:
        node = "article:" + art.id
        find(node)
        for inc in art.incidents:
            union(node, "incident:" + inc)
    return {art.id: find("article:" + art.id) for art in articles}


SPLIT_TARGETS: Dict[str, float] = {"train": 0.70, "dev": 0.15, "test": 0.15}


def _component_order(key: str) -> str:
    return hashlib.sha256(f"{SPLIT_SALT}:{key}".encode("utf8")).hexdigest()


def assign_splits(articles: Sequence[Article], keep_existing: bool = True) -> Dict[str, str]:
    """Split articles by incident component, about 70/15/15 by words.

    Components (articles linked through shared incidents) are visited in a fixed
    pseudo-random order (a hash of their key) and each goes to the split furthest
    below its target share of words, so the result is deterministic and balanced.

    keep_existing (bool): a component where any article already has a split keeps it,
        so adding articles never moves old ones between splits.
    RETURNS (Dict[str, str]): article id -> split.
    """
    comp = incident_components(articles)
    words: Counter = Counter()
    for art in articles:
        words[comp[art.id]] += len(art.text.split())
    fixed: Dict[str, str] = {}
    if keep_existing:
        for art in articles:
            if art.split in SPLITS:
                fixed.setdefault(comp[art.id], art.split)
    assigned: Counter = Counter()
    for key, split in fixed.items():
        assigned[split] += words[key]
    for key in sorted((k for k in words if k not in fixed), key=_component_order):
        total = sum(assigned.values()) + words[key]
        split = max(SPLITS, key=lambda sp: (SPLIT_TARGETS[sp] * total - assigned[sp], -SPLITS.index(sp)))
        fixed[key] = split
        assigned[split] += words[key]
    return {art.id: fixed[comp[art.id]] for art in articles}


def write_split_headers(articles: Sequence[Article], splits: Dict[str, str]) -> int:
    """Write ``split:`` into source headers that lack or differ from it.

    RETURNS (int): the number of files changed.
    """
    changed = 0
    for art in articles:
        want = splits[art.id]
        if art.split == want or not art.path.endswith(".md"):
            continue
        path = Path(art.path)
        raw = path.read_text(encoding="utf8")
        lines = raw.split("\n")
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
        header = [ln for ln in lines[1:end] if not ln.startswith("split:")]
        # Put the split just before 'records:' (or at the end of the header).
        idx = next((i for i, ln in enumerate(header) if ln.startswith("records:")), len(header))
        header.insert(idx, f"split: {want}")
        path.write_text("\n".join([lines[0]] + header + lines[end:]), encoding="utf8")
        changed += 1
    return changed


def to_doc(nlp, art: Article):
    """Make a spaCy Doc with the article's spans as ``doc.ents``."""
    doc = nlp.make_doc(art.text)
    ents = []
    for s in sorted(art.spans, key=lambda s: s.start):
        span = doc.char_span(s.start, s.end, label=s.label)
        if span is None:
            raise CorpusError([Problem(art.path, s.line, f"span {art.text[s.start:s.end]!r} does not align with tokens")])
        ents.append(span)
    doc.ents = ents
    return doc


def build(paths: Iterable[Path], out_dir: Path) -> Dict[str, int]:
    """Validate and compile the corpus into JSONL and DocBin files per split.

    RETURNS (Dict[str, int]): number of articles per split.
    Raises CorpusError listing every problem when the corpus is invalid.
    """
    from spacy.tokens import DocBin

    loaded = load_sources(paths)
    problems = list(loaded.problems)
    for art in loaded.articles:
        if art.split is None:
            problems.append(Problem(art.path, art.line, "no split: run `nhs-nlp corpus assign-splits` first"))
    if problems:
        raise CorpusError(problems)
    nlp = _tokenizer()
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: Dict[str, int] = {}
    for split in SPLITS:
        arts = sorted((a for a in loaded.articles if a.split == split), key=lambda a: a.id)
        counts[split] = len(arts)
        with (out_dir / f"{split}.jsonl").open("w", encoding="utf8", newline="\n") as fh:
            for art in arts:
                fh.write(json.dumps(art.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
        db = DocBin(attrs=["ORTH", "ENT_IOB", "ENT_TYPE"], store_user_data=False)
        for art in arts:
            db.add(to_doc(nlp, art))
        db.to_disk(out_dir / f"{split}.spacy")
    return counts


def normalise_group(name: str) -> str:
    """Fold a group mention for counting: case, spacing, punctuation, common suffixes."""
    s = unicodedata.normalize("NFKC", name).casefold()
    s = re.sub(r"\b(ransomware|gang|group|team|crew)\b", " ", s)
    return re.sub(r"[^0-9a-z$]+", "", s)


def statistics(articles: Sequence[Article]) -> Dict[str, Any]:
    """Corpus statistics per split and overall (JSON-safe)."""
    canonical: Dict[str, str] = {}
    for art in articles:
        for rec in art.records:
            for item in rec.get("attack_groups") or []:
                if item.get("canonical"):
                    canonical[normalise_group(item["text"])] = normalise_group(item["canonical"])

    def summarise(arts: Sequence[Article]) -> Dict[str, Any]:
        labels: Counter = Counter()
        groups: Set[str] = set()
        sectors: Set[str] = set()
        countries: Set[str] = set()
        for a in arts:
            for s in a.spans:
                labels[s.label] += 1
                if s.label == ATTACK_GROUP:
                    key = normalise_group(a.text[s.start : s.end])
                    groups.add(canonical.get(key, key))
            sectors.update(a.meta.get("sectors") or [])
            countries.update(a.meta.get("countries") or [])
        words = [len(a.text.split()) for a in arts]
        return {
            "articles": len(arts),
            "words": sum(words),
            "min_words": min(words) if words else 0,
            "max_words": max(words) if words else 0,
            "spans": {lab: labels.get(lab, 0) for lab in LABELS},
            "distinct_attack_groups": len(groups),
            "records": sum(len(a.records) for a in arts),
            "negatives": sum(1 for a in arts if not a.records),
            "multi_incident": sum(1 for a in arts if len(a.records) > 1),
            "health_incident_articles": sum(
                1 for a in arts if a.records and {"health", "pharmacy"} & set(a.meta.get("sectors") or [])
            ),
            "sectors": len(sectors),
            "countries": len(countries),
        }

    result: Dict[str, Any] = {"all": summarise(articles)}
    for split in SPLITS:
        result[split] = summarise([a for a in articles if a.split == split])
    unsplit = [a for a in articles if a.split is None]
    if unsplit:
        result["unsplit"] = summarise(unsplit)
    return result


# ---------------------------------------------------------------------------
# Audit hints: likely annotation misses (warnings, not errors)

_QUANTITY_HINT_RE = re.compile(
    r"(?:[£$€]\s?\d[\d,.]*(?:\s?(?:m|bn|k|million|billion|trillion)\b)?)"
    r"|(?:\b\d[\d,.]*\s?(?:%|per\s?cent\b|percent\b))"
    r"|(?:\b\d[\d,.]*\s?(?:[KMGTP]B|[kmgtp]b)\b)"
    r"|(?:\b\d[\d,.]*\s(?:million|billion|thousand|hundred)\b)"
    r"|(?:\b(?!(?:19|20)\d\d\b)\d[\d,.]*\s(?!(?:am|pm|a\.m|p\.m)\b)[a-z][a-z-]+s\b)"
)


def audit_article(art: Article) -> List[Problem]:
    """Hints at likely misses: unannotated repeats of annotated names, unannotated quantities.

    RETURNS (List[Problem]): one warning per hint (reason starts with 'warning:').
    """
    warnings: List[Problem] = []
    text = art.text
    covered = [False] * (len(text) + 1)
    for s in art.spans:
        for i in range(max(0, s.start), min(len(text), s.end)):
            covered[i] = True

    def line_of(pos: int) -> int:
        if art.path.endswith(".jsonl"):
            return art.line
        # Approximate: position of the nearest span before pos gives its line.
        before = [s for s in art.spans if s.start <= pos]
        return max(before, key=lambda s: s.start).line if before else art.line

    names = {(text[s.start : s.end], s.label) for s in art.spans if s.label in ("ORG", "ATTACK_GROUP", "MALWARE")}
    for name, label in sorted(names):
        for m in re.finditer(r"(?<![\w$])" + re.escape(name) + r"(?![\w$])", text):
            if not any(covered[m.start() : m.end()]):
                warnings.append(Problem(art.path, line_of(m.start()), f"warning: {name!r} is annotated {label} elsewhere in this article but not here"))
    for s in art.spans:
        name = text[s.start : s.end]
        # A warning, not an error: "Sainsbury's" and "McDonald's" are names.
        if s.label in ("ORG", "ATTACK_GROUP", "MALWARE") and name.endswith(("'s", "’s")):
            warnings.append(Problem(art.path, s.line or art.line, f"warning: {name!r} ends with 's: drop it if it is a possessive, keep it if it is part of the name"))
    for m in _QUANTITY_HINT_RE.finditer(text):
        if not any(covered[m.start() : m.end()]):
            warnings.append(Problem(art.path, line_of(m.start()), f"warning: possible unannotated QUANTITY {m.group(0)!r}"))
    warnings.extend(_unlisted_variants(art))
    return warnings


def _unlisted_variants(art: Article) -> List[Problem]:
    """ORG mentions that no record lists although a record lists a variant of their name
    ("Latitude" beside the victim "Latitude Financial", "JLR" beside "Jaguar Land Rover"):
    the record builder gives all names of one organisation one role, and the role model
    learns "no role" from such mentions."""
    from .components.records import same_organisation

    listed: Dict[str, Tuple[str, int]] = {}
    used: Set[Tuple[int, int]] = set()
    for k, rec in enumerate(art.records):
        if not isinstance(rec, dict):
            continue
        for fname in ("victims", "affected_organisations", "other_organisations"):
            for item in rec.get(fname) or []:
                if isinstance(item, dict) and item.get("text"):
                    listed.setdefault(item["text"], (fname, k + 1))
                    used.update((m[0], m[1]) for m in item.get("mentions") or [] if isinstance(m, list) and len(m) == 2)
    out: List[Problem] = []
    for s in art.spans:
        if s.label != "ORG" or (s.start, s.end) in used:
            continue
        name = art.text[s.start : s.end]
        for other, (fname, k) in listed.items():
            if other != name and same_organisation(other, name):
                out.append(Problem(art.path, s.line or art.line, f"warning: {name!r} names {other!r} ({fname} of record {k}) but no record lists this mention"))
                break
    return out


# ---------------------------------------------------------------------------
# Inter-annotator agreement


def _common_spans(a: Article, b: Article) -> Tuple[Set[Tuple[int, int, str]], Set[Tuple[int, int, str]], int]:
    """Spans of both passes over the text they share, in ``a``'s offsets.

    When the first pass's text was edited after the blind copy was made, only the
    stretches of text that both annotators saw are compared (difflib alignment);
    spans touching an edited stretch are left out of both sides.
    RETURNS: spans of a, spans of b (mapped), characters compared.
    """
    import difflib

    if a.text == b.text:
        return {(s.start, s.end, s.label) for s in a.spans}, {(s.start, s.end, s.label) for s in b.spans}, len(a.text)
    blocks = difflib.SequenceMatcher(None, a.text, b.text, autojunk=False).get_matching_blocks()

    def in_block(start: int, end: int, use_b: bool) -> Optional[int]:
        for ai, bi, size in blocks:
            lo = bi if use_b else ai
            if lo <= start and end <= lo + size:
                return ai - bi if use_b else 0
        return None

    sa = {(s.start, s.end, s.label) for s in a.spans if in_block(s.start, s.end, False) is not None}
    sb = set()
    for s in b.spans:
        shift = in_block(s.start, s.end, True)
        if shift is not None:
            sb.add((s.start + shift, s.end + shift, s.label))
    return sa, sb, sum(size for _, _, size in blocks)


def agreement(first: Sequence[Article], second: Sequence[Article]) -> Dict[str, Any]:
    """Span agreement between two annotation passes over the same articles.

    Articles are matched by id; where the texts differ, only the stretches both
    passes saw are compared. Agreement is the strict F1 of the second pass against
    the first (symmetric: swapping swaps P and R).
    RETURNS (Dict[str, Any]): per-label and micro F1, articles and characters
        compared, and ids that could not be compared.
    """
    by_id = {a.id: a for a in first}
    tp: Counter = Counter()
    only_first: Counter = Counter()
    only_second: Counter = Counter()
    compared, chars, skipped, edited = 0, 0, [], []
    for b in second:
        a = by_id.get(b.id)
        if a is None:
            skipped.append(b.id)
            continue
        sa, sb, n = _common_spans(a, b)
        if a.text != b.text:
            edited.append(b.id)
        compared += 1
        chars += n
        for s in sa & sb:
            tp[s[2]] += 1
        for s in sa - sb:
            only_first[s[2]] += 1
        for s in sb - sa:
            only_second[s[2]] += 1

    def f1(t: int, x: int, y: int) -> Dict[str, Any]:
        return {"f1": 2 * t / (2 * t + x + y) if t + x + y else 1.0, "both": t, "only_first": x, "only_second": y}

    per_label = {lab: f1(tp[lab], only_first[lab], only_second[lab]) for lab in LABELS}
    micro = f1(sum(tp.values()), sum(only_first.values()), sum(only_second.values()))
    return {"articles": compared, "characters": chars, "edited_since_copy": edited, "skipped": skipped, "per_label": per_label, "micro": micro}


def blind_sample(articles: Sequence[Article], fraction: float, salt: str = "agreement-v1") -> List[Article]:
    """A deterministic sample of about ``fraction`` of the articles, stratified by the
    id prefix (the part before the first hyphen: one stratum per writer/batch)."""
    strata: Dict[str, List[Article]] = defaultdict(list)
    for art in articles:
        strata[art.id.split("-", 1)[0]].append(art)
    chosen: List[Article] = []
    for _, arts in sorted(strata.items()):
        ranked = sorted(arts, key=lambda a: hashlib.sha256(f"{salt}:{a.id}".encode()).hexdigest())
        chosen.extend(ranked[: max(1, round(fraction * len(arts)))])
    return sorted(chosen, key=lambda a: a.id)


def write_blind_copy(art: Article, out_dir: Path) -> Path:
    """Write the article with all span markup and records removed, for a blind second pass.

    The title and body text stay byte-identical, so the second pass can be compared
    span by span with ``agreement()``.
    """
    raw = Path(art.path).read_text(encoding="utf8").replace("\r\n", "\n")
    header_text, body, _ = _split_front_matter(raw, art.path)
    header = yaml.safe_load(header_text)
    title, _ = strip_markup(str(header["title"]).strip())
    plain_body, _ = strip_markup(body)
    keep = {k: _yaml_scalar(v) for k, v in header.items() if k not in ("records", "title", "incidents")}
    out_header = {"id": header["id"], "title": title, **{k: v for k, v in keep.items() if k != "id"}, "incidents": [], "records": []}
    out = out_dir / Path(art.path).name
    out.write_text("---\n" + yaml.safe_dump(out_header, allow_unicode=True, sort_keys=False, width=10_000) + "---\n" + plain_body, encoding="utf8")
    return out
