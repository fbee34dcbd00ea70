"""Batch tagging of news archives: readers, the local engine, the writer, resume.

``run_tagging()`` reads documents from files, folders or stdin (plain text,
Markdown, HTML, JSON Lines, JSON arrays, CSV/TSV, Parquet, Arrow, saved
``datasets``; any of them gzip-compressed), tags them with a spaCy pipeline and
writes one result per document to the output (JSON Lines, STIX or CSV) or one
line with the reason to the errors file. Every input document ends up in
exactly one of the two.

The run is a chain of generators (read → screen → tag → write), so memory does
not grow with the archive; the one exception is duplicate-id detection, which
keeps a 64-bit hash per id (about 50 bytes per document).

Resume: the writer appends whole batches to the output and errors files, fsyncs
them, then appends a line to the progress file ``OUT.progress`` that records
how many input documents are done and the byte size of both files. ``--resume``
truncates both files to the last recorded sizes (dropping anything written after
it, half-written lines included), re-reads the input without tagging the
documents already done (their ids still count for duplicate detection), and goes
on from there. Input order is deterministic, so a resumed run writes the same
bytes as an uninterrupted one.

Batches: the int8 transformer scales its activations per batch, so a document's
entities can depend on the documents it shares a batch with. Batches are
therefore fixed (runs of ``batch_size`` taggable documents from the start of the
input), and checkpoints, Dask chunks and failure recovery all respect them; the
local engine with any ``n_process``, the Dask engine and resumed runs write the
same bytes.
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
import unicodedata
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import count
from pathlib import Path
from typing import (
    IO,
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    TextIO,
    Tuple,
    Union,
)

from spacy.language import Language

STDIN = "-"
STDIN_LABEL = "<stdin>"
DEFAULT_MAX_CHARS = 200_000
DEFAULT_BATCH_SIZE = 16
OUTPUT_FORMATS: Tuple[str, ...] = ("jsonl", "stix", "csv")
INPUT_FORMATS: Tuple[str, ...] = ("auto", "text", "markdown", "html", "jsonl", "json", "csv", "tsv", "parquet", "arrow")
SUFFIX_FORMATS: Dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
# One file, one document; the others hold many documents (records).
DOCUMENT_FORMATS = frozenset({"text", "markdown", "html"})
GZIP_MAGIC = b"\x1f\x8b"
# trafilatura refuses larger HTML (its MAX_FILE_SIZE); we say so instead of "no text found".
HTML_MAX_BYTES = 20_000_000
ARROW_SLICE_ROWS = 64
PROGRESS_SUFFIX = ".progress"
JOURNAL_VERSION = 1


class TaggingError(ValueError):
    """A problem with the job as a whole (paths, options, resume), not with one document."""


class DecodeError(ValueError):
    """Bytes that are not text (binary content, or no encoding fits)."""


# ---------------------------------------------------------------------------
# Documents


@dataclass
class Document:
    """One input document on its way through the pipeline.

    id (str): the document id (the id field, else the path or ``path:line``/``path:row``/``path[index]``).
    source (Dict[str, Any]): where it came from: ``file`` and ``line``/``row``/``index``, and
        ``encoding`` when the bytes were not UTF-8.
    text (Optional[str]): the text to tag (None until loaded, and for failed documents).
    title (Optional[str]): the title, from the title field, Markdown front matter or HTML.
    date (Optional[str]): the date, likewise.
    error (Optional[str]): why the document cannot be tagged; it then goes to the errors file.
    pos (int): input bytes consumed when it was read (for progress and ETA).
    words (int): whitespace-separated words in ``text``.
    fed (bool): passed screening, so it goes to the model (and counts towards a batch).
    """

    id: str
    source: Dict[str, Any]
    text: Optional[str] = None
    title: Optional[str] = None
    date: Optional[str] = None
    error: Optional[str] = None
    pos: int = 0
    words: int = 0
    fed: bool = False
    loader: Optional[Callable[["Document"], None]] = field(default=None, repr=False, compare=False)
    seq: int = field(default=-1, repr=False, compare=False)

    @property
    def where(self) -> str:
        """RETURNS (str): ``file:line``, ``file:row``, ``file[index]`` or ``file``."""
        src = self.source
        if "line" in src:
            return f"{src['file']}:{src['line']}"
        if "row" in src:
            return f"{src['file']}:{src['row']}"
        if "index" in src:
            return f"{src['file']}[{src['index']}]"
        return str(src.get("file", self.id))

    def load(self) -> None:
        """Read deferred content (files in folders are read only when their turn comes)."""
        if self.loader is not None and self.error is None:
            try:
                self.loader(self)
            except DecodeError as err:
                self.fail(str(err))
            except (OSError, EOFError, zlib.error) as err:
                self.fail(f"{self.where}: cannot read ({type(err).__name__}: {getattr(err, 'strerror', None) or err})")
        self.loader = None

    def fail(self, reason: str) -> None:
        """Mark the document failed and drop its text (failed documents stay small in buffers)."""
        self.error = reason
        self.text = None
        self.loader = None


@dataclass
class ReaderOptions:
    """How to read inputs.

    input_format (str): one of ``INPUT_FORMATS``; ``auto`` picks by extension (and by content for stdin).
    text_field (str): field holding the text (JSON, CSV, Parquet, Arrow); dots reach into objects (``meta.body``).
    id_field (str): field holding the document id; a missing or empty id defaults to the location.
    title_field (str): field holding the title (optional in the data).
    date_field (str): field holding the date (optional in the data).
    max_chars (int): longer documents go to the errors file (``0`` means no limit).
    """

    input_format: str = "auto"
    text_field: str = "text"
    id_field: str = "id"
    title_field: str = "title"
    date_field: str = "date"
    max_chars: int = DEFAULT_MAX_CHARS

    def settings(self) -> Dict[str, Any]:
        """RETURNS (Dict[str, Any]): the options that change the output (checked on resume)."""
        return {
            "input_format": self.input_format,
            "text_field": self.text_field,
            "id_field": self.id_field,
            "title_field": self.title_field,
            "date_field": self.date_field,
            "max_chars": self.max_chars,
        }


# ---------------------------------------------------------------------------
# Decoding


def _control_ratio(text: str) -> float:
    sample = text[:20000]
    if not sample:
        return 0.0
    bad = sum(1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f\v\x1b")
    return bad / len(sample)


def decode_bytes(raw: bytes, what: str = "input") -> Tuple[str, str]:
    """Decode bytes as UTF-8, else with charset detection (charset-normalizer).

    Short texts in a legacy encoding are ambiguous (cp1250, cp1252 and cp1257
    often tie); on a near tie cp1252, the usual legacy encoding of English and
    Western European news, wins.
    raw (bytes): the bytes.
    what (str): how to name the input in an error.
    RETURNS (Tuple[str, str]): the text and the encoding used.
    """
    from charset_normalizer import from_bytes

    boms = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    else:
        if "\x00" in text:
            raise DecodeError(f"{what}: binary content (NUL bytes), not text")
        return text, "utf-8"
    if b"\x00" in raw[:65536] and not raw.startswith(boms):
        raise DecodeError(f"{what}: binary content (NUL bytes), not text")
    matches = from_bytes(raw)
    best = matches.best()
    if best is None:
        raise DecodeError(f"{what}: not UTF-8 and no text encoding fits (binary content?)")
    encoding = best.encoding
    for match in matches:
        if match.encoding == "cp1252" and match.chaos <= best.chaos and match.coherence >= best.coherence - 0.05:
            encoding = "cp1252"
            break
    text = raw.decode(encoding)
    if _control_ratio(text) > 0.01:
        raise DecodeError(f"{what}: binary content (control characters), not text")
    return text.lstrip("\ufeff"), encoding


def _fix_escaped(value: str, what: str) -> Tuple[str, Optional[str]]:
    """Text read with ``surrogateescape``: re-decode the original bytes if there were non-UTF-8 ones.

    RETURNS (Tuple[str, Optional[str]]): the text, and the encoding detected (None when it was UTF-8).
    """
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value, None
    text, encoding = decode_bytes(value.encode("utf-8", "surrogateescape"), what)
    return text, encoding


def _scalar(value: Any) -> Optional[str]:
    """A title/date/id value as a string (None for missing or empty); stray non-UTF-8 bytes
    are decoded as well as detection allows, else replaced."""
    if value is None:
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    try:
        text, _ = _fix_escaped(text, "field")
    except DecodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text if text.strip() else None


def _get_field(obj: Dict[str, Any], name: str) -> Tuple[bool, Any]:
    """Look ``name`` up in ``obj``, following dots into nested objects. RETURNS (found, value)."""
    if name in obj:
        return True, obj[name]
    current: Any = obj
    for part in name.split("."):
        if not isinstance(current, dict) or part not in current:
            return False, None
        current = current[part]
    return True, current


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", bool: "a boolean", int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def document_from_record(value: Any, default_id: str, source: Dict[str, Any], options: ReaderOptions, pos: int = 0) -> Document:
    """A document from one JSON value / CSV row / table row.

    value (Any): an object (fields per ``options``) or a string (the text itself).
    default_id (str): the id when the record has none.
    source (Dict[str, Any]): where the record was read.
    RETURNS (Document): the document, with ``error`` set when the record is unusable.
    """
    doc = Document(id=default_id, source=source, pos=pos)
    if isinstance(value, str):
        doc.text = value
        return doc
    if not isinstance(value, dict):
        doc.fail(f"{doc.where}: a record must be an object or a string, not {_type_name(value)}")
        return doc
    found, raw_id = _get_field(value, options.id_field)
    if found and isinstance(raw_id, (dict, list)):
        doc.fail(f"{doc.where}: field '{options.id_field}' is {_type_name(raw_id)}, not an id")
        return doc
    doc.id = _scalar(raw_id) or default_id
    for name, attr in ((options.title_field, "title"), (options.date_field, "date")):
        found, meta = _get_field(value, name)
        if found and not isinstance(meta, (dict, list)):
            setattr(doc, attr, _scalar(meta))
    found, text = _get_field(value, options.text_field)
    if not found:
        doc.fail(f"{doc.where}: no '{options.text_field}' field")
    elif text is None:
        doc.fail(f"{doc.where}: field '{options.text_field}' is null")
    elif isinstance(text, bytes):
        try:
            doc.text, encoding = decode_bytes(text, f"{doc.where}: field '{options.text_field}'")
        except DecodeError as err:
            doc.fail(str(err))
        else:
            if encoding != "utf-8":
                doc.source["encoding"] = encoding
    elif not isinstance(text, str):
        doc.fail(f"{doc.where}: field '{options.text_field}' is {_type_name(text)}, not a string")
    else:
        try:
            doc.text, encoding = _fix_escaped(text, f"{doc.where}: field '{options.text_field}'")
        except DecodeError as err:
            doc.fail(str(err))
        else:
            if encoding is not None:
                doc.source["encoding"] = encoding
    return doc


# ---------------------------------------------------------------------------
# Opening files


class _Input:
    """A binary input stream (gzip handled) and a way to tell how far into the raw bytes we are."""

    def __init__(self, path: Optional[Path], label: str, base: int = 0) -> None:
        self.label = label
        self.base = base
        self._raw: IO[bytes]
        if path is None:
            self._raw = sys.stdin.buffer
        else:
            self._raw = open(path, "rb")
        buffered = self._raw if isinstance(self._raw, io.BufferedReader) else io.BufferedReader(self._raw)  # type: ignore[arg-type]
        self.gzipped = buffered.peek(2)[:2] == GZIP_MAGIC
        self.stream: IO[bytes] = io.BufferedReader(gzip.GzipFile(fileobj=buffered, mode="rb"), 1 << 16) if self.gzipped else buffered  # type: ignore[arg-type]
        self._buffered = buffered

    def position(self) -> int:
        try:
            return self.base + self._raw.tell()
        except (OSError, ValueError):
            return self.base

    def peek(self, n: int = 4096) -> bytes:
        return self.stream.peek(n)[:n]  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._raw is not sys.stdin.buffer:
            self._raw.close()


def _strip_gz(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name


def format_for_name(name: str) -> Optional[str]:
    """The input format its extension implies (``.gz`` ignored), or None.

    name (str): a file name.
    RETURNS (Optional[str]): one of ``INPUT_FORMATS`` but ``auto``, or None.
    """
    return SUFFIX_FORMATS.get(Path(_strip_gz(name)).suffix.lower())


def _sniff(head: bytes) -> str:
    """Format of unnamed content: JSON Lines, JSON array or plain text."""
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{"):
        return "jsonl"
    if stripped.startswith(b"["):
        return "json"
    return "text"


def _binary_head(head: bytes) -> bool:
    boms = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
    return b"\x00" in head and not head.startswith(boms)


# ---------------------------------------------------------------------------
# Readers


def _front_matter(text: str) -> Tuple[str, Dict[str, Any]]:
    """Split YAML front matter (``---`` … ``---``) off a Markdown text; the body is what gets tagged."""
    import yaml

    if not text.startswith("---"):
        return text, {}
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        return text, {}
    for i in range(1, min(len(lines), 500)):
        if lines[i].rstrip() in ("---", "..."):
            try:
                header = yaml.safe_load("\n".join(lines[1:i]))
            except yaml.YAMLError:
                return text, {}
            if not isinstance(header, dict):
                return text, {}
            return "\n".join(lines[i + 1 :]).lstrip("\n"), header
    return text, {}


def _read_all(path: Optional[Path], label: str) -> bytes:
    handle = _Input(path, label)
    try:
        return handle.stream.read()
    finally:
        handle.close()


def _load_text(doc: Document, raw: bytes, fmt: str) -> None:
    """Fill ``doc`` from the bytes of one text, Markdown or HTML document."""
    if fmt == "html":
        _load_html(doc, raw)
        return
    text, encoding = decode_bytes(raw, doc.where)
    if encoding != "utf-8":
        doc.source["encoding"] = encoding
    if fmt == "markdown":
        text, header = _front_matter(text)
        for attr in ("title", "date"):
            value = header.get(attr)
            setattr(doc, attr, None if isinstance(value, (dict, list)) else _scalar(value))
    doc.text = text


def _load_html(doc: Document, raw: bytes) -> None:
    """Article text and metadata from HTML with trafilatura (navigation, ads and comments dropped)."""
    import logging

    import trafilatura

    if len(raw) > HTML_MAX_BYTES:
        raise DecodeError(f"{doc.where}: HTML of {len(raw):,} bytes is over the extractor's limit of {HTML_MAX_BYTES:,}")
    if _binary_head(raw[:8192]):
        raise DecodeError(f"{doc.where}: binary content (NUL bytes), not HTML")
    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    logging.getLogger("htmldate").setLevel(logging.CRITICAL)
    try:
        extracted = trafilatura.bare_extraction(raw, include_comments=False, with_metadata=True, favor_precision=True)
    except Exception as err:  # lxml and friends raise a zoo of types on broken markup
        raise DecodeError(f"{doc.where}: cannot parse HTML ({type(err).__name__}: {err})") from err
    text = getattr(extracted, "text", None) if extracted is not None else None
    if not text or not text.strip():
        raise DecodeError(f"{doc.where}: no article text found in the HTML")
    doc.text = text
    doc.title = _scalar(getattr(extracted, "title", None))
    doc.date = _scalar(getattr(extracted, "date", None))


def _file_document(path: Path, label: str, fmt: str, pos: int) -> Document:
    def loader(doc: Document) -> None:
        _load_text(doc, _read_all(path, label), fmt)

    return Document(id=label, source={"file": label}, pos=pos, loader=loader)


def _read_jsonl(handle: _Input, options: ReaderOptions) -> Iterator[Document]:
    label = handle.label
    for lineno, line in enumerate(handle.stream, 1):
        if not line.strip():
            continue
        source = {"file": label, "line": lineno}
        default_id = f"{label}:{lineno}"
        try:
            value = json.loads(line.decode("utf-8", "surrogateescape"))
        except json.JSONDecodeError as err:
            doc = Document(id=default_id, source=source, pos=handle.position())
            doc.fail(f"{default_id}: malformed JSON ({err.msg} at column {err.colno})")
            yield doc
            continue
        except RecursionError:
            doc = Document(id=default_id, source=source, pos=handle.position())
            doc.fail(f"{default_id}: malformed JSON (nested too deeply)")
            yield doc
            continue
        yield document_from_record(value, default_id, source, options, handle.position())


def _read_json_array(handle: _Input, options: ReaderOptions) -> Iterator[Document]:
    """Stream the elements of a top-level JSON array without loading the file."""
    label = handle.label
    decoder = json.JSONDecoder()
    text_decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    buf = ""
    pos = 0
    eof = False

    def more() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        # Grow geometrically so a huge element is re-parsed O(log n) times, not O(n).
        data = handle.stream.read(max(1 << 16, len(buf) - pos))
        if not data:
            eof = True
            buf = buf[pos:] + text_decoder.decode(b"", final=True)
        else:
            buf = buf[pos:] + text_decoder.decode(data)
        pos = 0
        return True

    def skip_ws() -> bool:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n\ufeff":
                pos += 1
            if pos < len(buf):
                return True
            if not more():
                return False

    if not skip_ws() or buf[pos] != "[":
        doc = Document(id=label, source={"file": label}, pos=handle.position())
        doc.fail(f"{label}: not a JSON array")
        yield doc
        return
    pos += 1
    index = 0
    while True:
        if not skip_ws():
            doc = Document(id=f"{label}[{index}]", source={"file": label, "index": index}, pos=handle.position())
            doc.fail(f"{label}: JSON array ends early, after {index} element(s)")
            yield doc
            return
        if buf[pos] == "]" and index == 0:
            return
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as err:
                if more():
                    continue
                doc = Document(id=f"{label}[{index}]", source={"file": label, "index": index}, pos=handle.position())
                doc.fail(f"{label}[{index}]: malformed JSON ({err.msg}); the rest of the array cannot be read")
                yield doc
                return
            if end >= len(buf) and not eof:  # a number may go on in the next chunk
                more()
                continue
            break
        pos = end
        source = {"file": label, "index": index}
        yield document_from_record(value, f"{label}[{index}]", source, options, handle.position())
        index += 1
        if not skip_ws():
            doc = Document(id=f"{label}[{index}]", source={"file": label, "index": index}, pos=handle.position())
            doc.fail(f"{label}: JSON array ends early, after {index} element(s)")
            yield doc
            return
        if buf[pos] == ",":
            pos += 1
            continue
        if buf[pos] == "]":
            return
        doc = Document(id=f"{label}[{index}]", source={"file": label, "index": index}, pos=handle.position())
        doc.fail(f"{label}[{index}]: malformed JSON (expected ',' or ']'); the rest of the array cannot be read")
        yield doc
        return


def _read_csv(handle: _Input, options: ReaderOptions, delimiter: str) -> Iterator[Document]:
    label = handle.label
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # the default (128 KiB) rejects long articles
    text = io.TextIOWrapper(handle.stream, encoding="utf-8-sig", errors="surrogateescape", newline="")  # type: ignore[arg-type]
    missing = object()
    reader = csv.DictReader(text, delimiter=delimiter, restval=missing)
    row = 0
    failures = 0
    while True:
        row += 1
        source = {"file": label, "row": row}
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            failures += 1
            doc = Document(id=f"{label}:{row}", source=source, pos=handle.position())
            doc.fail(f"{label}:{row}: malformed CSV ({err})")
            yield doc
            if failures > 1000:
                doc = Document(id=f"{label}:{row + 1}", source={"file": label, "row": row + 1}, pos=handle.position())
                doc.fail(f"{label}: over 1,000 malformed CSV rows; the rest of the file is skipped")
                yield doc
                return
            continue
        except UnicodeDecodeError as err:  # pragma: no cover - surrogateescape makes this unreachable
            doc = Document(id=f"{label}:{row}", source=source, pos=handle.position())
            doc.fail(f"{label}:{row}: {err}")
            yield doc
            return
        cells = {k: v for k, v in record.items() if k is not None and v is not missing}  # key None: cells beyond the header
        doc = document_from_record(cells, f"{label}:{row}", source, options, handle.position())
        if len(cells) < len(record) - (None in record) and doc.error and "field" in doc.error:
            doc.error += f" (the row has {len(cells)} cells, the header {len(reader.fieldnames or [])})"
        yield doc


def _table_columns(names: Sequence[str], options: ReaderOptions) -> List[str]:
    wanted = [options.text_field, options.id_field, options.title_field, options.date_field]
    heads = {w.split(".")[0] for w in wanted} | set(wanted)
    return [n for n in names if n in heads]


def _read_record_batches(batches: Iterable[Any], label: str, options: ReaderOptions, position: Callable[[], int]) -> Iterator[Document]:
    row = 0
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as err:  # pyarrow raises ArrowInvalid/OSError on corrupt pages
            doc = Document(id=f"{label}:{row + 1}", source={"file": label, "row": row + 1}, pos=position())
            doc.fail(f"{label}: cannot read rows after {row} ({type(err).__name__}: {err})")
            yield doc
            return
        for start in range(0, batch.num_rows, ARROW_SLICE_ROWS):
            for record in batch.slice(start, ARROW_SLICE_ROWS).to_pylist():
                row += 1
                yield document_from_record(record, f"{label}:{row}", {"file": label, "row": row}, options, position())


@contextlib.contextmanager
def _seekable(path: Optional[Path], handle: _Input) -> Iterator[Path]:
    """A real file for readers that need to seek (Parquet, Arrow): the path itself, or a temporary copy
    of gzip-compressed or piped content (spooled to disk, not memory)."""
    if path is not None and not handle.gzipped:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="nhs-nlp-tag-") as tmp:
        target = Path(tmp) / "input"
        with open(target, "wb") as out:
            shutil.copyfileobj(handle.stream, out, 1 << 20)
        yield target


def _read_parquet(path: Optional[Path], handle: _Input, options: ReaderOptions) -> Iterator[Document]:
    import pyarrow.parquet as pq

    label = handle.label
    with _seekable(path, handle) as real:
        try:
            pf = pq.ParquetFile(real)
        except Exception as err:
            doc = Document(id=label, source={"file": label}, pos=handle.position())
            doc.fail(f"{label}: cannot read Parquet ({type(err).__name__}: {err})")
            yield doc
            return
        columns = _table_columns(pf.schema_arrow.names, options)
        yield from _read_record_batches(pf.iter_batches(batch_size=ARROW_SLICE_ROWS, columns=columns), label, options, handle.position)


def _read_arrow(path: Optional[Path], handle: _Input, options: ReaderOptions) -> Iterator[Document]:
    """Arrow IPC, file (random access, Feather v2) or stream format (``datasets`` cache files)."""
    import pyarrow as pa

    label = handle.label
    with _seekable(path, handle) as real:
        source = pa.memory_map(str(real), "r")
        try:
            try:
                reader: Any = pa.ipc.open_file(source)
                batches: Iterable[Any] = (reader.get_batch(i) for i in range(reader.num_record_batches))
            except pa.ArrowInvalid:
                source.seek(0)
                reader = pa.ipc.open_stream(source)
                batches = reader
        except Exception as err:
            doc = Document(id=label, source={"file": label}, pos=handle.position())
            doc.fail(f"{label}: cannot read Arrow ({type(err).__name__}: {err})")
            yield doc
            source.close()
            return
        columns = _table_columns(reader.schema.names, options)
        selected = (batch.select(columns) for batch in batches)
        try:
            yield from _read_record_batches(selected, label, options, handle.position)
        finally:
            source.close()


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()


def _read_saved_dataset(folder: Path, label: str, options: ReaderOptions, base: int) -> Iterator[Document]:
    """A folder written by ``datasets.Dataset.save_to_disk`` (memory-mapped, streamed in slices)."""
    from datasets import load_from_disk

    try:
        dataset = load_from_disk(str(folder))
    except Exception as err:
        doc = Document(id=label, source={"file": label}, pos=base)
        doc.fail(f"{label}: cannot load the saved dataset ({type(err).__name__}: {err})")
        yield doc
        return
    if not hasattr(dataset, "data"):
        doc = Document(id=label, source={"file": label}, pos=base)
        doc.fail(f"{label}: a DatasetDict; pass one split's folder")
        yield doc
        return
    table = dataset.data.table
    columns = _table_columns(table.column_names, options)
    size = _tree_size(folder)
    yield from _read_record_batches(table.select(columns).to_batches(max_chunksize=ARROW_SLICE_ROWS), label, options, lambda: base + size)


def _read_records(path: Optional[Path], label: str, fmt: str, options: ReaderOptions, base: int) -> Iterator[Document]:
    """All documents of one record file (or stdin)."""
    try:
        handle = _Input(path, label, base)
    except OSError as err:
        doc = Document(id=label, source={"file": label}, pos=base)
        doc.fail(f"{label}: cannot read ({err.strerror or err})")
        yield doc
        return
    try:
        try:
            head = handle.peek(8192)
        except (OSError, EOFError, zlib.error) as err:
            doc = Document(id=label, source={"file": label}, pos=base)
            doc.fail(f"{label}: cannot read ({type(err).__name__}: {err})")
            yield doc
            return
        if fmt == "auto":
            fmt = _sniff(head)
        if fmt in ("jsonl", "json", "csv", "tsv") and _binary_head(head):
            doc = Document(id=label, source={"file": label}, pos=base)
            doc.fail(f"{label}: binary content (NUL bytes), not {fmt.upper()}")
            yield doc
            return
        if fmt in DOCUMENT_FORMATS:
            doc = Document(id=label, source={"file": label}, pos=base)
            try:
                _load_text(doc, handle.stream.read(), fmt)
            except DecodeError as err:
                doc.fail(str(err))
            except (OSError, EOFError, zlib.error) as err:
                doc.fail(f"{label}: cannot read ({type(err).__name__}: {err})")
            doc.pos = handle.position()
            yield doc
            return
        try:
            if fmt == "jsonl":
                yield from _read_jsonl(handle, options)
            elif fmt == "json":
                if _sniff(head) == "jsonl":  # a single object, or JSON Lines named .json
                    yield from _read_jsonl(handle, options)
                else:
                    yield from _read_json_array(handle, options)
            elif fmt in ("csv", "tsv"):
                yield from _read_csv(handle, options, "\t" if fmt == "tsv" else ",")
            elif fmt == "parquet":
                yield from _read_parquet(path, handle, options)
            elif fmt == "arrow":
                yield from _read_arrow(path, handle, options)
            else:  # pragma: no cover - options are checked before
                raise TaggingError(f"unknown input format {fmt!r}")
        except (OSError, EOFError, zlib.error) as err:
            # A truncated gzip member or an I/O error ends the file; what was read stands.
            doc = Document(id=f"{label}#truncated", source={"file": label}, pos=handle.position())
            doc.fail(f"{label}: reading stopped ({type(err).__name__}: {err})")
            yield doc
    finally:
        handle.close()


def _walk(folder: Path) -> Iterator[Path]:
    """Files under ``folder`` in a deterministic order (sorted names, hidden entries skipped)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def _tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in _walk(folder) if p.is_file())


@dataclass
class InputStats:
    """What the readers saw besides documents."""

    ignored_files: List[str] = field(default_factory=list)
    total_bytes: Optional[int] = 0


def _planned_files(path: Path, options: ReaderOptions, stats: InputStats) -> Iterator[Tuple[Path, str]]:
    """(file, format) pairs of one folder: by extension, or every file with an explicit format."""
    for file in _walk(path):
        fmt = options.input_format if options.input_format != "auto" else format_for_name(file.name)
        if fmt is None:
            stats.ignored_files.append(str(file))
            continue
        yield file, fmt


def input_size(inputs: Sequence[Union[str, Path]], options: ReaderOptions) -> Optional[int]:
    """Bytes the readers will go through (None when stdin is among the inputs)."""
    total = 0
    for item in inputs:
        if str(item) == STDIN:
            return None
        path = Path(item)
        if path.is_dir():
            if _is_saved_dataset(path):
                total += _tree_size(path)
            else:
                total += sum(f.stat().st_size for f, _ in _planned_files(path, options, InputStats()))
        elif path.exists():
            total += path.stat().st_size
    return total


def read_documents(inputs: Sequence[Union[str, Path]], options: Optional[ReaderOptions] = None, stats: Optional[InputStats] = None) -> Iterator[Document]:
    """Stream the documents of all inputs, in order. Never raises for one bad document or file:
    those come out with ``error`` set.

    inputs (Sequence[Union[str, Path]]): files, folders (walked recursively, sorted) and ``-`` for stdin.
    options (Optional[ReaderOptions]): formats and field names.
    stats (Optional[InputStats]): filled with the files a folder walk ignored.
    YIELDS (Document): documents; text, Markdown and HTML files load lazily (``Document.load()``).
    """
    options = options or ReaderOptions()
    stats = stats if stats is not None else InputStats()
    base = 0
    for item in inputs:
        if str(item) == STDIN:
            yield from _read_records(None, STDIN_LABEL, options.input_format, options, base)
            continue
        path = Path(item)
        label = str(item)
        if path.is_dir():
            if _is_saved_dataset(path):
                yield from _read_saved_dataset(path, label, options, base)
                base += _tree_size(path)
                continue
            for file, fmt in _planned_files(path, options, stats):
                size = file.stat().st_size
                if fmt in DOCUMENT_FORMATS:
                    yield _file_document(file, str(file), fmt, base + size)
                else:
                    yield from _read_records(file, str(file), fmt, options, base)
                base += size
            continue
        fmt = options.input_format if options.input_format != "auto" else (format_for_name(path.name) or "auto")
        size = path.stat().st_size if path.exists() else 0
        if fmt in DOCUMENT_FORMATS:
            yield _file_document(path, label, fmt, base + size)
        else:
            yield from _read_records(path, label, fmt, options, base)
        base += size


# ---------------------------------------------------------------------------
# Screening: duplicates, empty and overlong documents


def _id_key(doc_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def screen(docs: Iterable[Document], seen: Set[int], max_chars: int) -> Iterator[Document]:
    """Load each document and reject duplicates, empty and overlong ones (with the reason).

    docs (Iterable[Document]): from ``read_documents``.
    seen (Set[int]): hashes of the ids met so far (updated; pre-filled on resume).
    max_chars (int): longest text accepted; 0 for no limit.
    YIELDS (Document): every document, loaded, ``error`` set when it cannot be tagged.
    """
    for doc in docs:
        key = _id_key(doc.id)
        if key in seen:
            doc.fail(f"{doc.where}: duplicate id {doc.id!r} (an earlier document has it)")
            yield doc
            continue
        seen.add(key)
        doc.load()
        if doc.error is None:
            text = doc.text or ""
            if not text.strip():
                doc.fail(f"{doc.where}: empty document")
            elif max_chars and len(text) > max_chars:
                doc.fail(f"{doc.where}: {len(text):,} characters is over --max-chars {max_chars:,}")
            else:
                doc.words = len(text.split())
                doc.fed = True
        yield doc


# ---------------------------------------------------------------------------
# Models and the local engine


def load_model(model: Optional[Union[str, Path, Language]] = None) -> Language:
    """A pipeline from a folder, an installed package name or None (the shipped model).

    model (Optional[Union[str, Path, Language]]): what to load; a Language is returned as is.
    RETURNS (Language): the pipeline (nhs_nlp pipelines load with ``nhs_nlp.load()``, int8 on CPU).
    """
    from .api import _shared

    if isinstance(model, Language):
        return model
    if model is None or Path(model).exists():
        return _shared(model)  # once per process, like nhs_nlp.extract()
    import spacy

    if spacy.util.is_package(str(model)):
        return spacy.load(str(model))
    raise TaggingError(f"model {model}: no such folder or installed spaCy package")


def model_label(model: Optional[Union[str, Path, Language]]) -> str:
    """A name for the model in the progress file (a resumed run must use the same one)."""
    if isinstance(model, Language):
        return f"{model.meta.get('lang', '')}_{model.meta.get('name', '')}-{model.meta.get('version', '')}"
    from .api import default_model_path

    path = default_model_path() if model is None else Path(model)
    meta_path = path / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf8"))
        return f"{meta.get('lang', '')}_{meta.get('name', '')}-{meta.get('version', '')}"
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{model}-{version(str(model))}"
    except PackageNotFoundError:
        return str(model)


@contextlib.contextmanager
def _single_torch_thread(active: bool) -> Iterator[None]:
    """Torch's OpenMP pool deadlocks in a child forked from a multi-threaded parent, so with
    ``n_process > 1`` the parent drops to one thread (as ``api._extract_multiprocess`` does)."""
    if not active:
        yield
        return
    try:
        import torch
    except ImportError:  # pragma: no cover - a pipeline without torch
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


Tagged = Tuple[Document, Optional[Dict[str, Any]]]


def _result(nlp_doc: Any, doc: Document) -> Optional[Dict[str, Any]]:
    from .api import doc_to_result

    try:
        result = doc_to_result(nlp_doc, doc.id)
    except Exception as err:
        doc.fail(f"{doc.where}: building the result failed ({type(err).__name__}: {err})")
        return None
    result.pop("id", None)
    return result


def _tag_one(nlp: Language, doc: Document) -> Tagged:
    """Tag one document on its own: isolates the one that breaks a batch."""
    if doc.error is not None:
        return doc, None
    try:
        nlp_doc = nlp(doc.text or "")
    except Exception as err:
        message = str(err).strip().splitlines()[0][:500] if str(err).strip() else ""
        doc.fail(f"{doc.where}: tagging failed ({type(err).__name__}{': ' + message if message else ''})")
        return doc, None
    return doc, _result(nlp_doc, doc)


def _retry(nlp: Language, pending: Deque[Document], batch_size: int) -> Iterator[Tagged]:
    """Tag what a failed ``nlp.pipe`` left, batch by batch as it would have (so results match
    an undisturbed run), and one document at a time within a batch that fails again."""
    while pending:
        group: List[Document] = []
        live = 0
        while pending and live < batch_size:
            doc = pending.popleft()
            group.append(doc)
            live += doc.error is None
        valid = [d for d in group if d.error is None]
        try:
            tagged = list(nlp.pipe([d.text or "" for d in valid], batch_size=batch_size)) if valid else []
        except Exception:
            for doc in group:
                yield _tag_one(nlp, doc)
            continue
        by_doc = {id(d): t for d, t in zip(valid, tagged)}
        for doc in group:
            yield (doc, _result(by_doc[id(doc)], doc)) if doc.error is None else (doc, None)


@contextlib.contextmanager
def _workers_release_memory(nlp: Language, active: bool) -> Iterator[None]:
    """While ``active``, end the pipeline with ``nhs_release_memory`` so that spaCy's worker
    processes trim their heap after every batch as the single-process loop does."""
    name = "nhs_release_memory"
    added = active and name not in nlp.pipe_names
    if added:
        nlp.add_pipe(name, last=True)
    try:
        yield
    finally:
        if added and name in nlp.pipe_names:
            nlp.remove_pipe(name)


def tag_stream(nlp: Language, docs: Iterable[Document], *, batch_size: int = DEFAULT_BATCH_SIZE, n_process: int = 1) -> Iterator[Tagged]:
    """The local engine: tag a stream of documents with ``nlp.pipe``, in order.

    Batches are fixed: consecutive runs of ``batch_size`` taggable documents from
    the start of the stream, whatever the engine or the number of processes. This
    matters because a model's output can depend on its batch (the int8 transformer
    scales activations per batch), and it keeps the local and Dask engines and
    resumed runs byte-identical. Failed documents pass through untouched. When
    ``nlp.pipe`` raises, the documents it had taken but not returned are tagged again
    batch by batch, and one at a time within the batch that fails (so only the culprit
    fails, with its reason); a fresh ``nlp.pipe`` carries on with the rest.
    nlp (Language): the pipeline.
    docs (Iterable[Document]): screened documents.
    batch_size (int): ``nlp.pipe`` batch size.
    n_process (int): ``nlp.pipe`` worker processes.
    YIELDS (Tuple[Document, Optional[Dict[str, Any]]]): each document and its result
        (from ``api.doc_to_result``, without ``id``), or None with ``doc.error`` set.
    """
    source = iter(docs)
    pending: Deque[Document] = deque()
    numbers = count()
    exhausted = False

    def pull() -> Optional[Document]:
        nonlocal exhausted
        doc = next(source, None)
        if doc is None:
            exhausted = True
            return None
        doc.seq = next(numbers)
        pending.append(doc)
        return doc

    def feed() -> Iterator[Tuple[str, int]]:
        while True:
            doc = pull()
            if doc is None:
                return
            if doc.error is None:
                yield doc.text or "", doc.seq

    from .api import release_memory

    done = 0
    with _single_torch_thread(n_process > 1), _workers_release_memory(nlp, n_process > 1):
        while True:
            stream = nlp.pipe(feed(), as_tuples=True, batch_size=batch_size, n_process=n_process)
            failed = False
            try:
                while True:
                    try:
                        nlp_doc, seq = next(stream)
                    except StopIteration:
                        break
                    except Exception:
                        failed = True
                        break
                    while pending and pending[0].seq != seq:
                        yield _tag_one(nlp, pending.popleft())  # failed ones; or one a component dropped
                    doc = pending.popleft()
                    yield doc, _result(nlp_doc, doc)
                    done += 1
                    if n_process == 1 and done % batch_size == 0:
                        release_memory()  # keeps RSS flat over long streams (see api.release_memory)
            finally:
                with contextlib.suppress(Exception):
                    stream.close()  # joins the workers; spaCy raises if one exited badly
            if not failed:
                while pending:
                    yield _tag_one(nlp, pending.popleft())
                return
            # pending starts at a batch boundary; complete its last batch so the next pipe starts on one.
            live = sum(1 for d in pending if d.error is None)
            while live % batch_size and not exhausted:
                doc = pull()
                live += doc is not None and doc.error is None
            yield from _retry(nlp, pending, batch_size)
            if exhausted:
                return


# ---------------------------------------------------------------------------
# Output formats


def output_record(doc: Document, result: Dict[str, Any], include_text: bool = False) -> Dict[str, Any]:
    """The JSON line of a tagged document, keys in a fixed order.

    RETURNS (Dict[str, Any]): ``id, status, source, title, date, [text,]`` then the result
        (``entities``, ``records``, …) as ``doc_to_result`` orders it.
    """
    record: Dict[str, Any] = {"id": doc.id, "status": "ok", "source": doc.source, "title": doc.title, "date": doc.date}
    if include_text:
        record["text"] = doc.text
    record.update(result)
    return record


def error_record(doc: Document) -> Dict[str, Any]:
    """The errors-file line of a failed document."""
    return {"id": doc.id, "status": "error", "source": doc.source, "reason": doc.error}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": ")) + "\n"


class JsonlFormat:
    """One JSON object per document (``output_record``)."""

    name = "jsonl"

    def header(self) -> str:
        return ""

    def lines(self, record: Dict[str, Any]) -> str:
        return _dumps(record)


class StixFormat:
    """One STIX 2.1 bundle per document per line (``export.stix.bundle_for_result``)."""

    name = "stix"

    def __init__(self) -> None:
        from .export.stix import bundle_for_result

        self._bundle = bundle_for_result

    def header(self) -> str:
        return ""

    def lines(self, record: Dict[str, Any]) -> str:
        bundle = self._bundle(record)
        return json.dumps(json.loads(bundle.serialize()), ensure_ascii=False) + "\n"


class CsvFormat:
    """Rows of ``export.csv.rows_for_result`` (one per incident record), header once."""

    name = "csv"

    def __init__(self) -> None:
        from .export.csv import COLUMNS, rows_for_result

        self._columns = list(COLUMNS)
        self._rows = rows_for_result

    def _render(self, rows: Iterable[Dict[str, Any]], header: bool) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self._columns, extrasaction="ignore")  # RFC 4180 line ends, as `nhs-nlp export`
        if header:
            writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    def header(self) -> str:
        return self._render([], header=True)

    def lines(self, record: Dict[str, Any]) -> str:
        return self._render(self._rows(record), header=False)


FORMATS: Dict[str, Callable[[], Any]] = {"jsonl": JsonlFormat, "stix": StixFormat, "csv": CsvFormat}


def make_format(name: str) -> Any:
    """The output format ``name`` (``jsonl``, ``stix``, ``csv``): ``header()`` and ``lines(record)``."""
    if name not in FORMATS:
        raise TaggingError(f"unknown output format {name!r}; choose one of {', '.join(FORMATS)}")
    try:
        return FORMATS[name]()
    except ImportError as err:
        raise TaggingError(f"--format {name} needs nhs_nlp.export ({err})") from err


# ---------------------------------------------------------------------------
# Writer, progress file and resume


def default_errors_path(output: Path) -> Path:
    """``out.jsonl`` → ``out.errors.jsonl`` (beside the output)."""
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    return output.with_name(f"{stem}.errors.jsonl")


def progress_path(output: Path) -> Path:
    """The progress file of a run writing ``output``."""
    return output.with_name(output.name + PROGRESS_SUFFIX)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


@dataclass
class _Checkpoint:
    n: int
    out: int
    err: int
    last: Optional[str]
    last_id: Optional[str] = None
    done: bool = False


def _read_journal(path: Path) -> Tuple[Optional[Dict[str, Any]], Optional[_Checkpoint]]:
    """The header and last whole checkpoint of a progress file (a torn last line is ignored)."""
    header: Optional[Dict[str, Any]] = None
    last: Optional[_Checkpoint] = None
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                entry = json.loads(raw)
            except json.JSONDecodeError:
                break
            if header is None:
                header = entry
            else:
                last = _Checkpoint(entry["n"], entry["out"], entry["err"], entry.get("last"), entry.get("id"), bool(entry.get("done")))
    return header, last


class Writer:
    """Appends results and errors in whole batches; checkpoints them in the progress file.

    output (Path): results file.
    errors (Path): errors file (JSON Lines).
    fmt (Any): an output format (``make_format``).
    header (Dict[str, Any]): settings recorded in the progress file (compared on resume).
    checkpoint (Optional[_Checkpoint]): where a resumed run picks up; None to start afresh.
    include_text (bool): add the tagged text to each JSON line.
    commit_docs (int): commit once this many documents are buffered…
    commit_seconds (float): …and this long has passed since the last commit (or 10x the documents).
    align (int): commit only after a whole batch of this many taggable documents, so a resumed
        run forms the same batches as an uninterrupted one (see ``tag_stream``).
    """

    def __init__(
        self,
        output: Path,
        errors: Path,
        fmt: Any,
        header: Dict[str, Any],
        checkpoint: Optional[_Checkpoint] = None,
        include_text: bool = False,
        commit_docs: int = DEFAULT_BATCH_SIZE,
        commit_seconds: float = 1.0,
        align: int = 1,
    ) -> None:
        self.fmt = fmt
        self.align = max(1, align)
        self._fed = 0
        self.failed = False
        self.include_text = include_text
        self.commit_docs = max(1, commit_docs)
        self.commit_seconds = commit_seconds
        self.journal_path = progress_path(output)
        if checkpoint is None:
            for p in (output, errors):
                p.parent.mkdir(parents=True, exist_ok=True)
            self._out = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            self._err = os.open(errors, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            self._journal = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            self.n = 0
            self.out_bytes = 0
            self.err_bytes = 0
            _write_all(self._journal, (json.dumps(header, sort_keys=True) + "\n").encode("utf8"))
            head = fmt.header().encode("utf8")
            if head:
                _write_all(self._out, head)
                self.out_bytes = len(head)
            self.last: Optional[str] = None
            self.last_id: Optional[str] = None
            self._sync(force=True)
        else:
            for p, size in ((output, checkpoint.out), (errors, checkpoint.err)):
                if not p.exists() or p.stat().st_size < size:
                    raise TaggingError(f"cannot resume: {p} is shorter than the progress file records ({size:,} bytes)")
                os.truncate(p, size)  # drops lines written after the last checkpoint, torn ones included
            self._out = os.open(output, os.O_WRONLY | os.O_APPEND)
            self._err = os.open(errors, os.O_WRONLY | os.O_APPEND)
            self._journal = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND)
            self.n, self.out_bytes, self.err_bytes = checkpoint.n, checkpoint.out, checkpoint.err
            self.last, self.last_id = checkpoint.last, checkpoint.last_id
        self._out_buf: List[str] = []
        self._err_buf: List[str] = []
        self._buffered = 0
        self._last_commit = time.monotonic()

    def add(self, doc: Document, result: Optional[Dict[str, Any]]) -> None:
        """Buffer one document's line(s); commit when the batch is due."""
        if doc.error is None and result is not None:
            try:
                self._out_buf.append(self.fmt.lines(output_record(doc, result, self.include_text)))
            except Exception as err:
                doc.fail(f"{doc.where}: writing it as {self.fmt.name} failed ({type(err).__name__}: {err})")
        if doc.error is not None or result is None:
            self._err_buf.append(_dumps(error_record(doc)))
        self._buffered += 1
        self._fed += doc.fed
        self.last, self.last_id = doc.where, doc.id
        if self._fed % self.align:
            return
        due = self._buffered >= self.commit_docs and time.monotonic() - self._last_commit >= self.commit_seconds
        if due or self._buffered >= 10 * self.commit_docs:
            self.commit()

    def commit(self, done: bool = False) -> None:
        """Write the buffered lines whole, fsync, then record the checkpoint.

        A lone surrogate (legal in JSON escapes, not in UTF-8) is written back as its
        JSON escape. After a failed write nothing more is written: the checkpoint
        still marks the last good state for ``--resume``.
        """
        if self.failed:
            return
        out = "".join(self._out_buf).encode("utf8", "backslashreplace")
        err = "".join(self._err_buf).encode("utf8", "backslashreplace")
        self.failed = True
        if out:
            _write_all(self._out, out)
        if err:
            _write_all(self._err, err)
        self.out_bytes += len(out)
        self.err_bytes += len(err)
        self.n += self._buffered
        self._out_buf.clear()
        self._err_buf.clear()
        self._buffered = 0
        self._sync(force=bool(out or err), done=done)
        self.failed = False
        self._last_commit = time.monotonic()

    def _sync(self, force: bool, done: bool = False) -> None:
        if not force and not done:
            return
        os.fsync(self._out)
        os.fsync(self._err)
        entry: Dict[str, Any] = {"n": self.n, "out": self.out_bytes, "err": self.err_bytes, "last": self.last, "id": self.last_id}
        if done:
            entry["done"] = True
        _write_all(self._journal, (json.dumps(entry) + "\n").encode("utf8"))
        os.fsync(self._journal)

    def close(self) -> None:
        for fd in (self._out, self._err, self._journal):
            with contextlib.suppress(OSError):
                os.close(fd)


class Progress:
    """Docs/s, words/s and ETA: a tqdm bar on a terminal, plain lines every ``interval`` s otherwise."""

    def __init__(self, total_bytes: Optional[int], enabled: bool = True, stream: Optional[TextIO] = None, interval: float = 30.0, start_docs: int = 0) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.total = total_bytes
        self.interval = interval
        self.docs = 0
        self.errors = 0
        self.words = 0
        self.start = time.monotonic()
        self._last_line = self.start
        self._pos = 0
        self._bar: Any = None
        self._start_docs = start_docs
        if enabled and hasattr(self.stream, "isatty") and self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, file=self.stream, dynamic_ncols=True, desc="tag")

    def rates(self) -> Tuple[float, float]:
        secs = max(time.monotonic() - self.start, 1e-9)
        return self.docs / secs, self.words / secs

    def update(self, doc: Document) -> None:
        self.docs += 1
        if doc.error is not None:
            self.errors += 1
        else:
            self.words += doc.words
        if not self.enabled:
            return
        pos = max(self._pos, doc.pos)
        if self._bar is not None:
            self._bar.update(pos - self._pos)
            self._pos = pos
            if self.docs % 8 == 1:  # the first document, then every eighth
                dps, wps = self.rates()
                self._bar.set_postfix_str(f"{self.docs:,} docs, {self.errors:,} errors, {dps:.1f} docs/s, {wps:,.0f} words/s", refresh=False)
            return
        self._pos = pos
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def line(self) -> str:
        dps, wps = self.rates()
        text = f"tag: {self._start_docs + self.docs:,} docs ({self.errors:,} errors), {dps:.1f} docs/s, {wps:,.0f} words/s"
        if self.total:
            share = min(self._pos / self.total, 1.0)
            elapsed = time.monotonic() - self.start
            text += f", {share:.0%} of the input"
            if share > 0.001:
                eta = int(elapsed * (1 - share) / share)
                text += f", ETA {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}"
        return text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@dataclass
class TagSummary:
    """What a run did (this invocation only; ``resumed_from`` counts the documents done before)."""

    output: str
    errors_path: str
    documents: int = 0
    tagged: int = 0
    errors: int = 0
    words: int = 0
    seconds: float = 0.0
    resumed_from: int = 0
    already_complete: bool = False
    ignored_files: List[str] = field(default_factory=list)

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0

    @property
    def words_per_second(self) -> float:
        return self.words / self.seconds if self.seconds else 0.0

    def as_dict(self) -> Dict[str, Any]:
        """RETURNS (Dict[str, Any]): JSON-safe statistics."""
        return {
            "output": self.output,
            "errors_path": self.errors_path,
            "documents": self.documents,
            "tagged": self.tagged,
            "errors": self.errors,
            "words": self.words,
            "seconds": round(self.seconds, 3),
            "docs_per_second": round(self.docs_per_second, 3),
            "words_per_second": round(self.words_per_second, 1),
            "resumed_from": self.resumed_from,
            "already_complete": self.already_complete,
            "ignored_files": len(self.ignored_files),
        }


def _check_paths(inputs: Sequence[Union[str, Path]], output: Path, errors: Path) -> None:
    if not inputs:
        raise TaggingError("no inputs")
    if sum(1 for i in inputs if str(i) == STDIN) > 1:
        raise TaggingError("'-' (stdin) can be given once")
    for item in inputs:
        if str(item) != STDIN and not Path(item).exists():
            raise TaggingError(f"{item}: no such file or directory")
    if output == errors:
        raise TaggingError(f"the output and the errors file are the same file: {output}")
    for item in inputs:
        if str(item) != STDIN and Path(item).resolve() in (output.resolve(), errors.resolve()):
            raise TaggingError(f"{item} is both an input and an output")


def run_tagging(
    inputs: Sequence[Union[str, Path]],
    output: Union[str, Path],
    *,
    errors: Optional[Union[str, Path]] = None,
    fmt: str = "jsonl",
    model: Optional[Union[str, Path, Language]] = None,
    options: Optional[ReaderOptions] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    n_process: int = 1,
    resume: bool = False,
    force: bool = False,
    include_text: bool = False,
    engine: str = "local",
    scheduler: Optional[str] = None,
    dask_workers: int = 2,
    chunk_size: int = 64,
    client: Any = None,
    progress: bool = True,
    progress_interval: float = 30.0,
    commit_seconds: float = 1.0,
) -> TagSummary:
    """Tag every document of ``inputs``; write results to ``output`` and failures to ``errors``.

    inputs (Sequence[Union[str, Path]]): files, folders and ``-`` (stdin).
    output (Union[str, Path]): the results file.
    errors (Optional[Union[str, Path]]): the errors file [default: ``OUT.errors.jsonl`` beside the output].
    fmt (str): ``jsonl``, ``stix`` or ``csv``.
    model (Optional[Union[str, Path, Language]]): pipeline folder, package name, loaded pipeline or
        None for the shipped model. The Dask engine needs a name/path (workers load it themselves).
    options (Optional[ReaderOptions]): input format, field names, ``max_chars``.
    batch_size (int): ``nlp.pipe`` batch size.
    n_process (int): worker processes of the local engine.
    resume (bool): continue an interrupted run from its progress file.
    force (bool): overwrite existing output.
    include_text (bool): add the tagged text to each JSON line (offsets refer to it).
    engine (str): ``local`` or ``dask``.
    scheduler (Optional[str]): Dask scheduler address; None starts a local cluster.
    dask_workers (int): workers of that local cluster.
    chunk_size (int): documents per Dask task.
    client (Any): an existing ``distributed.Client`` (overrides ``scheduler``).
    progress (bool): report progress on stderr.
    progress_interval (float): seconds between plain progress lines (when stderr is no terminal).
    commit_seconds (float): least time between two commits (fsyncs) of the output.
    RETURNS (TagSummary): counts and rates.
    """
    options = options or ReaderOptions()
    output = Path(output)
    errors_path = Path(errors) if errors is not None else default_errors_path(output)
    if options.input_format not in INPUT_FORMATS:
        raise TaggingError(f"unknown input format {options.input_format!r}; choose one of {', '.join(INPUT_FORMATS)}")
    if engine not in ("local", "dask"):
        raise TaggingError(f"unknown engine {engine!r}; choose 'local' or 'dask'")
    if batch_size < 1 or n_process < 1 or chunk_size < 1:
        raise TaggingError("--batch-size, --n-process and --chunk-size must be at least 1")
    if options.max_chars < 0:
        raise TaggingError("--max-chars must be 0 (no limit) or more")
    if engine == "dask" and isinstance(model, Language):
        raise TaggingError("the Dask engine loads the model on its workers: pass a model name or folder, not a loaded pipeline")
    _check_paths(inputs, output, errors_path)
    fmt_obj = make_format(fmt)
    header = {
        "nhs_nlp_tag": JOURNAL_VERSION,
        "format": fmt,
        "inputs": [str(i) for i in inputs],
        "errors": str(errors_path),
        "include_text": include_text,
        "model": model_label(model),
        "batch_size": batch_size,
        **options.settings(),
    }
    summary = TagSummary(output=str(output), errors_path=str(errors_path))
    journal = progress_path(output)
    checkpoint: Optional[_Checkpoint] = None
    if resume and journal.exists():
        old, checkpoint = _read_journal(journal)
        if old is None:
            checkpoint = None
        else:
            changed = [f"{k}: was {old.get(k)!r}, now {v!r}" for k, v in header.items() if old.get(k) != v]
            if changed:
                raise TaggingError("cannot resume with different settings (" + "; ".join(changed) + "); use --force to start over")
        if checkpoint is not None and checkpoint.done:
            summary.already_complete = True
            summary.resumed_from = checkpoint.n
            return summary
    elif resume and (output.exists() or errors_path.exists()):
        raise TaggingError(f"cannot resume: {output} has no progress file ({journal.name}); use --force to start over")
    elif not force:
        for p in (output, errors_path):
            if p.exists():
                raise TaggingError(f"{p} exists; pass --force to overwrite it or --resume to continue that run")

    stats = InputStats()
    documents = read_documents(inputs, options, stats)
    seen: Set[int] = set()
    if checkpoint is not None and checkpoint.n:
        last: Optional[Document] = None
        for _ in range(checkpoint.n):
            last = next(documents, None)
            if last is None:
                raise TaggingError(f"cannot resume: the input has fewer than the {checkpoint.n:,} documents already done; did it change?")
            seen.add(_id_key(last.id))
        if last is not None and checkpoint.last is not None and (last.where, last.id) != (checkpoint.last, checkpoint.last_id):
            raise TaggingError(
                f"cannot resume: document {checkpoint.n:,} is now {last.id!r} at {last.where}, "
                f"was {checkpoint.last_id!r} at {checkpoint.last}; did the input change?"
            )
        summary.resumed_from = checkpoint.n
    screened = screen(documents, seen, options.max_chars)

    if engine == "dask":
        from .distributed import tag_stream_dask

        tagged: Iterator[Tagged] = tag_stream_dask(
            screened,
            model=None if model is None else str(Path(model).resolve()) if Path(model).exists() else str(model),
            batch_size=batch_size,
            max_chars=options.max_chars,
            scheduler=scheduler,
            n_workers=dask_workers,
            chunk_size=chunk_size,
            client=client,
        )
    else:
        nlp = load_model(model)
        if options.max_chars and nlp.max_length <= options.max_chars:
            nlp.max_length = options.max_chars + 1
        tagged = tag_stream(nlp, screened, batch_size=batch_size, n_process=n_process)

    total = input_size(inputs, options)
    meter = Progress(total, enabled=progress, interval=progress_interval, start_docs=summary.resumed_from)
    writer = Writer(output, errors_path, fmt_obj, header, checkpoint, include_text, commit_docs=batch_size, commit_seconds=commit_seconds, align=batch_size)
    completed = False
    try:
        for doc, result in tagged:
            writer.add(doc, result)
            meter.update(doc)
        completed = True
    finally:
        # Whole lines only reach the files, so what is buffered can be committed even on an error.
        writer.commit(done=completed)
        writer.close()
        meter.close()
        if hasattr(tagged, "close"):
            tagged.close()  # type: ignore[union-attr]
    summary.documents = meter.docs
    summary.errors = meter.errors
    summary.tagged = meter.docs - meter.errors
    summary.words = meter.words
    summary.seconds = time.monotonic() - meter.start
    summary.ignored_files = stats.ignored_files
    return summary
