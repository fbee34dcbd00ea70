"""Reading annotated (gold) text into spaCy Docs, for training and evaluation.

Formats:

- ``jsonl``: our corpus JSON Lines, ``{"id", "text", "spans": [{"start", "end",
  "label"}], "records": [...]}`` (character offsets, end exclusive);
- ``docbin``: spaCy ``DocBin`` files (``.spacy``); tokens whose entity annotation
  is missing (``ent_iob == 0``) stay missing;
- ``bio``: CoNLL/BIO token files, one token per line, the tag in one column,
  blank lines between sentences, ``-DOCSTART-``/``<DOCSTART>`` between documents;
- ``datasets``: local JSON (Lines), CSV or Parquet files loaded with Hugging Face
  ``datasets``, in a tokens + tags layout (``tokens``/``words`` with
  ``ner_tags``/``tags``/``labels``; string tags or a ``ClassLabel`` feature) or a
  text + spans layout (``text`` with ``spans``/``entities`` as in our JSON Lines).

``read_gold`` checks every document: offsets off, spans that overlap or do not
fall on token boundaries, unknown labels and malformed tags are reported as
``GoldProblem`` (file, line, reason), and a document with a problem is skipped
and listed, never dropped silently. The lower-level ``read_bio``, ``bio_spans``
and ``jsonl_docs`` are the readers training uses.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span

FORMATS: Tuple[str, ...] = ("jsonl", "docbin", "bio", "datasets")
BIO_SUFFIXES: Tuple[str, ...] = (".bio", ".conll", ".conllu", ".iob", ".iob2", ".tsv", ".txt")
DATASETS_BUILDERS: Dict[str, str] = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
TOKEN_COLUMNS: Tuple[str, ...] = ("tokens", "words")
TAG_COLUMNS: Tuple[str, ...] = ("ner_tags", "tags", "labels", "ner")
SPAN_COLUMNS: Tuple[str, ...] = ("spans", "entities")

#: ``label_map`` value that drops a gold or predicted label (its tokens become "O").
DROP = ""
#: ``label_map`` key for every gold label that is neither mapped nor known (``*=`` drops them).
ANY = "*"

LabelMap = Mapping[str, str]


# ---------------------------------------------------------------------------
# Low-level readers shared with training


@dataclass
class BioSentence:
    """One sentence of a BIO file: its words, tags, first line and each token's line."""

    words: List[str]
    tags: List[str]
    line: int
    token_lines: List[int] = field(default_factory=list)


def bio_doc(nlp: Language, sentences: Sequence["BioSentence"]) -> Doc:
    """A Doc of BIO sentences' words, with their sentence starts (no entities yet)."""
    words = [w for s in sentences for w in s.words]
    sent_starts: List[bool] = []
    for s in sentences:
        sent_starts.extend([True] + [False] * (len(s.words) - 1))
    return Doc(nlp.vocab, words=words, sent_starts=sent_starts)


def read_bio(path: Path, column: int = -1) -> Iterator[List[BioSentence]]:
    """Read a CoNLL/BIO file: one token per line, tab- or space-separated columns.

    Documents are separated by ``-DOCSTART-``/``<DOCSTART>`` lines (a file without
    them is one document), sentences by blank lines. A line with a single column
    is a token tagged "O".

    path (Path): the file (UTF-8).
    column (int): the column holding the BIO tag (AnnoCTR: the last).
    YIELDS (List[BioSentence]): the sentences of one document.
    """
    doc: List[BioSentence] = []
    words: List[str] = []
    tags: List[str] = []
    lines: List[int] = []
    start = 1
    with Path(path).open(encoding="utf8") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip("\r\n")
            cols = line.split("\t") if "\t" in line else line.split()
            if cols and cols[0] in ("<DOCSTART>", "-DOCSTART-"):
                if words:
                    doc.append(BioSentence(words, tags, start, lines))
                    words, tags, lines = [], [], []
                if doc:
                    yield doc
                doc = []
                continue
            if not line.strip() or not cols or not cols[0].strip():
                if words:
                    doc.append(BioSentence(words, tags, start, lines))
                words, tags, lines = [], [], []
                start = lineno + 1
                continue
            if not words:
                start = lineno
            words.append(cols[0])
            tag = cols[column].strip() if len(cols) > 1 else "O"
            tags.append(tag or "O")
            lines.append(lineno)
    if words:
        doc.append(BioSentence(words, tags, start, lines))
    if doc:
        yield doc


def bio_spans(tags: Sequence[str]) -> List[Tuple[int, int, str]]:
    """Token spans ``(start, end, label)`` from BIO/IOB2 tags (a stray I- opens a span).

    tags (Sequence[str]): one tag per token, "O", "B-LABEL" or "I-LABEL".
    RETURNS (List[Tuple[int, int, str]]): token offsets, end exclusive.
    """
    spans: List[Tuple[int, int, str]] = []
    start, label = None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, lab = tag.partition("-")
        if tag == "O" or prefix == "B" or (prefix == "I" and lab != label):
            if label is not None:
                spans.append((start, i, label))
            start, label = (i, lab) if prefix in ("B", "I") else (None, None)
    return spans


def jsonl_docs(nlp: Language, path: Path) -> Iterator[Tuple[dict, Doc]]:
    """Our corpus JSON Lines as (row, Doc with gold ents) pairs, for training.

    Spans that end inside a token are expanded to whole tokens. Use ``read_gold``
    to check a file instead (it reports such spans).

    nlp (Language): supplies the tokenizer.
    path (Path): a ``.jsonl`` file.
    YIELDS (Tuple[dict, Doc]): the parsed line and its Doc.
    """
    with Path(path).open(encoding="utf8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            doc = nlp.make_doc(row["text"])
            ents = []
            for s in row.get("spans", []):
                span = doc.char_span(s["start"], s["end"], label=s["label"], alignment_mode="expand")
                if span is None:
                    raise ValueError(f"{path}:{lineno}: span {s} does not fit the text")
                ents.append(span)
            doc.ents = ents
            yield row, doc


# ---------------------------------------------------------------------------
# Checked gold documents


@dataclass(frozen=True)
class GoldProblem:
    """Bad gold: where (file and line, DocBin document or dataset row) and why."""

    path: str
    line: int
    reason: str
    unit: str = "line"

    def __str__(self) -> str:
        where = str(self.line) if self.unit == "line" else f"{self.unit} {self.line}"
        return f"{self.path}:{where}: {self.reason}"


@dataclass
class GoldDoc:
    """One gold document and where it came from.

    id (str): the document id (the ``id`` field, else ``FILE#N``).
    path (str): the file it was read from.
    line (int): its line (JSON Lines, BIO), document number (DocBin) or row (datasets).
    unit (str): what ``line`` counts: "line", "doc" or "row".
    doc (Optional[Doc]): the text with gold ``ents``; None when it could not be read.
    tokenised (bool): the gold came as tokens, so predict on these tokens rather
        than re-tokenising ``doc.text``.
    records (Optional[List[Dict[str, Any]]]): gold incident records, None when the
        format has none.
    problems (List[GoldProblem]): why the document cannot be scored (empty if fine).
    """

    id: str
    path: str
    line: int
    unit: str = "line"
    doc: Optional[Doc] = None
    tokenised: bool = False
    records: Optional[List[Dict[str, Any]]] = None
    problems: List[GoldProblem] = field(default_factory=list)

    @property
    def where(self) -> str:
        """RETURNS (str): ``FILE:LINE``, ``FILE:doc N`` or ``FILE:row N``."""
        return f"{self.path}:{self.line}" if self.unit == "line" else f"{self.path}:{self.unit} {self.line}"

    def problem(self, reason: str, line: Optional[int] = None) -> None:
        """Record bad gold in this document (at ``line``, else the document's own)."""
        self.problems.append(GoldProblem(self.path, self.line if line is None else line, reason, self.unit))


@dataclass
class GoldSet:
    """Gold documents read from one or more files.

    docs (List[GoldDoc]): the documents that can be scored.
    skipped (List[GoldDoc]): documents with bad gold, each with its problems.
    formats (Dict[str, str]): file -> format it was read as.
    """

    docs: List[GoldDoc] = field(default_factory=list)
    skipped: List[GoldDoc] = field(default_factory=list)
    formats: Dict[str, str] = field(default_factory=dict)

    @property
    def problems(self) -> List[GoldProblem]:
        """RETURNS (List[GoldProblem]): every problem of every skipped document."""
        return [p for d in self.skipped for p in d.problems]

    @property
    def labels(self) -> Set[str]:
        """The labels the (readable) gold annotates at least once."""
        return {e.label_ for d in self.docs if d.doc is not None for e in d.doc.ents}

    @property
    def has_records(self) -> bool:
        """RETURNS (bool): whether any scored document carries gold records."""
        return any(d.records is not None for d in self.docs)

    def add(self, gold: GoldDoc) -> None:
        """File a document under ``docs`` or, if it has problems, ``skipped``."""
        (self.skipped if gold.problems or gold.doc is None else self.docs).append(gold)


def parse_label_map(items: Iterable[str]) -> Dict[str, str]:
    """``SRC=DST`` strings (or comma-separated lists of them) to a dict.

    An empty DST (``LOC=``) drops the label: its tokens count as "O". ``*=DST``
    applies to every gold label that is neither mapped nor known (``*=`` drops them).
    items (Iterable[str]): e.g. ``["GROUP=ATTACK_GROUP", "LOC=,DATE="]``.
    RETURNS (Dict[str, str]): source label -> our label (or ``DROP``).
    """
    result: Dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            src, sep, dst = part.partition("=")
            if not sep or not src.strip():
                raise ValueError(f"label map entry {part!r} must look like SOURCE=TARGET (e.g. GROUP=ATTACK_GROUP, or LOC= to drop LOC)")
            result[src.strip()] = dst.strip()
    return result


class _Labels:
    """Maps source labels and checks them against the known ones."""

    def __init__(self, label_map: Optional[LabelMap], known: Optional[Collection[str]]):
        self.map = dict(label_map or {})
        self.known = set(known) if known is not None else None

    def __call__(self, label: str) -> Tuple[Optional[str], Optional[str]]:
        """RETURNS (Tuple[Optional[str], Optional[str]]): (our label or None if
        dropped, problem reason or None)."""
        mapped = self.map.get(label, label)
        if ANY in self.map and self.known is not None and mapped != DROP and mapped not in self.known:
            mapped = self.map[ANY]
        if mapped == DROP:
            return None, None
        if self.known is not None and mapped not in self.known:
            via = f" (mapped from {label!r})" if mapped != label else ""
            hint = "" if self.map else "; map it with --label-map SRC=DST or drop it with SRC="
            return None, f"unknown label {mapped!r}{via}; known labels: {', '.join(sorted(self.known))}{hint}"
        return mapped, None


def detect_format(path: Path) -> str:
    """Guess a gold file's format from its name and, for JSON, its first row.

    path (Path): the file.
    RETURNS (str): one of ``FORMATS``.
    """
    suffix = path.suffix.lower()
    if suffix == ".spacy":
        return "docbin"
    if suffix in (".csv", ".parquet"):
        return "datasets"
    if suffix in (".jsonl", ".json"):
        with path.open(encoding="utf8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    continue
                if line.lstrip().startswith("["):
                    return "datasets"
                try:
                    first = json.loads(line)
                except json.JSONDecodeError:
                    return "jsonl"  # the JSONL reader reports the line
                if isinstance(first, dict) and "text" not in first and any(c in first for c in TOKEN_COLUMNS):
                    return "datasets"
                return "jsonl"
        return "jsonl"
    if suffix in BIO_SUFFIXES:
        return "bio"
    raise ValueError(
        f"{path}: cannot tell the gold format from the name; use .jsonl, .spacy, .bio/.conll, .json, .csv or .parquet, "
        f"or pass the format ({', '.join(FORMATS)})"
    )


def read_gold(
    paths: Iterable[Union[str, Path]],
    nlp: Optional[Language] = None,
    *,
    fmt: str = "auto",
    label_map: Optional[LabelMap] = None,
    known_labels: Optional[Collection[str]] = None,
    bio_column: int = -1,
) -> GoldSet:
    """Read and check gold documents from files of any supported format.

    paths (Iterable[Union[str, Path]]): gold files.
    nlp (Optional[Language]): tokenizer and vocab for the gold Docs [default: our
        blank English pipeline, the shipped model's tokenizer].
    fmt (str): "auto" (by file name, see ``detect_format``) or one of ``FORMATS``.
    label_map (Optional[Mapping[str, str]]): source label -> our label; "" drops it.
    known_labels (Optional[Collection[str]]): labels allowed after mapping; any
        other is a problem. None accepts every label.
    bio_column (int): the tag column of BIO files.
    RETURNS (GoldSet): the documents, and the skipped ones with their problems.
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown gold format {fmt!r}; choose auto or one of {', '.join(FORMATS)}")
    if nlp is None:
        from .tokenizer import blank_english

        nlp = blank_english()
    labels = _Labels(label_map, known_labels)
    gold = GoldSet()
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such gold file")
        kind = detect_format(path) if fmt == "auto" else fmt
        gold.formats[str(path)] = kind
        if kind == "bio":
            items = _bio_gold(path, nlp, labels, bio_column)
        else:
            items = {"jsonl": _jsonl_gold, "docbin": _docbin_gold, "datasets": _datasets_gold}[kind](path, nlp, labels)
        for item in items:
            gold.add(item)
    return gold


def _check_char_spans(gold: GoldDoc, text: str, spans: Any, labels: _Labels, line: Optional[int] = None) -> List[Tuple[int, int, str]]:
    """Validate character spans against ``gold.doc``; report problems on ``gold``.

    RETURNS (List[Tuple[int, int, str]]): the good spans, labels mapped, dropped ones left out.
    """
    assert gold.doc is not None
    if spans is None:
        spans = []
    if not isinstance(spans, list):
        gold.problem(f"'spans' must be a list, not {type(spans).__name__}", line)
        return []
    good: List[Tuple[int, int, str]] = []
    for s in spans:
        if not isinstance(s, Mapping) or not all(k in s for k in ("start", "end", "label")):
            gold.problem(f"span {s!r} needs 'start', 'end' and 'label'", line)
            continue
        start, end, label = s["start"], s["end"], s["label"]
        if not (isinstance(start, int) and isinstance(end, int)) or isinstance(start, bool) or isinstance(end, bool):
            gold.problem(f"span {dict(s)!r}: offsets must be integers", line)
            continue
        if not 0 <= start < end <= len(text):
            gold.problem(f"span [{start}, {end}) {label}: offsets off (outside the text of {len(text)} characters, or empty)", line)
            continue
        if s.get("text") is not None and s["text"] != text[start:end]:
            gold.problem(f"span [{start}, {end}) {label}: offsets off: its text is {s['text']!r} but the text there is {text[start:end]!r}", line)
            continue
        mapped, reason = labels(str(label))
        if reason:
            gold.problem(f"span [{start}, {end}) {text[start:end]!r}: {reason}", line)
            continue
        if mapped is None:
            continue
        if gold.doc.char_span(start, end) is None:
            gold.problem(f"span [{start}, {end}) {text[start:end]!r} {mapped}: offsets off: does not start and end on token boundaries", line)
            continue
        good.append((start, end, mapped))
    good.sort()
    for (s1, e1, l1), (s2, e2, l2) in zip(good, good[1:]):
        if s2 < e1:
            gold.problem(f"overlapping spans: [{s1}, {e1}) {text[s1:e1]!r} {l1} and [{s2}, {e2}) {text[s2:e2]!r} {l2}", line)
    return good


def _set_char_ents(doc: Doc, spans: Sequence[Tuple[int, int, str]]) -> None:
    doc.ents = [doc.char_span(s, e, label=lab) for s, e, lab in spans]  # type: ignore[misc]


def _jsonl_gold(path: Path, nlp: Language, labels: _Labels) -> Iterator[GoldDoc]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            gold = GoldDoc(f"{path.name}:{lineno}", str(path), lineno)
            try:
                line = raw.decode("utf8")
            except UnicodeDecodeError as err:
                gold.problem(f"not UTF-8 ({err.reason} at byte {err.start})")
                yield gold
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                gold.problem(f"invalid JSON: {err.msg} (column {err.colno})")
                yield gold
                continue
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                gold.problem("each line must be a JSON object with a string 'text'")
                yield gold
                continue
            if row.get("id") is not None:
                gold.id = str(row["id"])
            records = row.get("records")
            if records is not None and not isinstance(records, list):
                gold.problem(f"'records' must be a list, not {type(records).__name__}")
            gold.records = records
            gold.doc = nlp.make_doc(row["text"])
            spans = _check_char_spans(gold, row["text"], row.get("spans"), labels)
            if not gold.problems:
                _set_char_ents(gold.doc, spans)
            yield gold


def _docbin_gold(path: Path, nlp: Language, labels: _Labels) -> Iterator[GoldDoc]:
    try:
        docs = list(DocBin().from_disk(path).get_docs(nlp.vocab))
    except Exception as err:  # any failure means "not a readable DocBin"
        gold = GoldDoc(f"{path.name}", str(path), 1, unit="doc")
        gold.problem(f"cannot read as a spaCy DocBin: {type(err).__name__}: {err}")
        yield gold
        return
    for n, src in enumerate(docs, 1):
        doc_id = src.user_data.get("id") if isinstance(src.user_data.get("id"), str) else None
        gold = GoldDoc(doc_id or f"{path.name}#{n}", str(path), n, unit="doc", tokenised=True)
        doc = Doc(nlp.vocab, words=[t.text for t in src], spaces=[bool(t.whitespace_) for t in src])
        gold.doc = doc
        if len(src) and all(t.ent_iob == 0 for t in src):
            gold.problem("no entity annotation: every token's gold is missing (was the DocBin saved with ENT_IOB and ENT_TYPE?)")
            yield gold
            continue
        ents: List[Span] = []
        dropped: List[Span] = []
        for ent in src.ents:
            mapped, reason = labels(ent.label_)
            if reason:
                gold.problem(f"entity {ent.text!r} at tokens [{ent.start}, {ent.end}): {reason}")
            elif mapped is None:
                dropped.append(Span(doc, ent.start, ent.end))
            else:
                ents.append(Span(doc, ent.start, ent.end, label=mapped))
        missing = [Span(doc, t.i, t.i + 1) for t in src if t.ent_iob == 0]
        doc.set_ents(ents, missing=missing, outside=dropped, default="outside")
        yield gold


def _bio_gold(path: Path, nlp: Language, labels: _Labels, column: int) -> Iterator[GoldDoc]:
    try:
        documents = list(read_bio(path, column))
    except UnicodeDecodeError as err:
        gold = GoldDoc(path.name, str(path), 1)
        gold.problem(f"not UTF-8 ({err.reason}); the file is not read")
        yield gold
        return
    for n, sentences in enumerate(documents, 1):
        first = sentences[0].line
        gold = GoldDoc(f"{path.name}#{n}", str(path), first, tokenised=True)
        tags = [t for s in sentences for t in s.tags]
        lines = [ln for s in sentences for ln in s.token_lines]
        doc = bio_doc(nlp, sentences)
        gold.doc = doc
        for tag, ln in zip(tags, lines):
            prefix, sep, lab = tag.partition("-")
            if tag != "O" and (prefix not in ("B", "I") or not sep or not lab):
                gold.problem(f"tag {tag!r} is not BIO/IOB2 (O, B-LABEL or I-LABEL); convert BILOU/BIOES tags first", ln)
        if gold.problems:
            yield gold
            continue
        ents: List[Span] = []
        for start, end, label in bio_spans(tags):
            mapped, reason = labels(label)
            if reason:
                gold.problem(f"entity {doc[start:end].text!r}: {reason}", lines[start])
            elif mapped is not None:
                ents.append(Span(doc, start, end, label=mapped))
        doc.set_ents(ents, default="outside")
        yield gold


def _as_list(value: Any) -> Any:
    """CSV cells hold lists as JSON text (or space-separated tokens)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value.split()
    return value


def _class_names(feature: Any) -> Optional[List[str]]:
    inner = getattr(feature, "feature", None)
    names = getattr(inner, "names", None)
    return list(names) if names else None


def _datasets_gold(path: Path, nlp: Language, labels: _Labels) -> Iterator[GoldDoc]:
    import datasets

    builder = DATASETS_BUILDERS.get(path.suffix.lower())
    if builder is None:
        gold = GoldDoc(path.name, str(path), 1, unit="row")
        gold.problem(f"datasets can read {', '.join(DATASETS_BUILDERS)} files, not {path.suffix!r}")
        yield gold
        return
    bars_were_off = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        with tempfile.TemporaryDirectory(prefix="nhs-nlp-datasets-") as cache:
            ds = datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=cache, keep_in_memory=True)
            features = ds.features
            rows = ds.to_list()
    except Exception as err:  # any failure means "not readable by datasets"
        gold = GoldDoc(path.name, str(path), 1, unit="row")
        gold.problem(f"cannot load with datasets ({builder}): {type(err).__name__}: {err}")
        yield gold
        return
    finally:
        if not bars_were_off:
            datasets.enable_progress_bars()
    columns = list(features)
    tok_col = next((c for c in TOKEN_COLUMNS if c in columns), None)
    tag_col = next((c for c in TAG_COLUMNS if c in columns), None)
    span_col = next((c for c in SPAN_COLUMNS if c in columns), None)
    if not ((tok_col and tag_col) or ("text" in columns)):
        gold = GoldDoc(path.name, str(path), 1, unit="row")
        gold.problem(
            f"no tokens+tags ({'/'.join(TOKEN_COLUMNS)} with {'/'.join(TAG_COLUMNS)}) or text+spans "
            f"(text with {'/'.join(SPAN_COLUMNS)}) columns; the columns are: {', '.join(columns)}"
        )
        yield gold
        return
    names = _class_names(features[tag_col]) if tag_col else None
    for n, row in enumerate(rows, 1):
        gold = GoldDoc(str(row["id"]) if row.get("id") is not None else f"{path.name}#{n}", str(path), n, unit="row")
        if tok_col and tag_col:
            gold.tokenised = True
            words, tags = _as_list(row[tok_col]), _as_list(row[tag_col])
            if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
                gold.problem(f"{tok_col!r} and {tag_col!r} must be lists of the same length")
                yield gold
                continue
            if tags and not isinstance(tags[0], str):
                if names is None:
                    gold.problem(f"{tag_col!r} holds integers but the file names no labels for them (save a ClassLabel feature, or use string tags)")
                    yield gold
                    continue
                try:
                    tags = [names[int(t)] for t in tags]
                except (IndexError, ValueError, TypeError):
                    gold.problem(f"{tag_col!r} holds a tag id outside the {len(names)} ClassLabel names")
                    yield gold
                    continue
            doc = Doc(nlp.vocab, words=[str(w) for w in words])
            gold.doc = doc
            for tag in tags:
                prefix, sep, lab = str(tag).partition("-")
                if tag != "O" and (prefix not in ("B", "I") or not sep or not lab):
                    gold.problem(f"tag {tag!r} is not BIO/IOB2 (O, B-LABEL or I-LABEL)")
            if gold.problems:
                yield gold
                continue
            ents: List[Span] = []
            for start, end, label in bio_spans([str(t) for t in tags]):
                mapped, reason = labels(label)
                if reason:
                    gold.problem(f"entity {' '.join(str(w) for w in words[start:end])!r}: {reason}")
                elif mapped is not None:
                    ents.append(Span(doc, start, end, label=mapped))
            doc.set_ents(ents, default="outside")
        else:
            text = row["text"]
            if not isinstance(text, str):
                gold.problem("'text' must be a string")
                yield gold
                continue
            gold.doc = nlp.make_doc(text)
            spans = _check_char_spans(gold, text, _as_list(row.get(span_col)) if span_col else [], labels)
            if not gold.problems:
                _set_char_ents(gold.doc, spans)
            records = _as_list(row["records"]) if "records" in columns else None
            gold.records = records if isinstance(records, list) else None
        yield gold
