"""Batch tagging (`nhs-nlp tag`): every input format, awkward inputs, resume, n_process=2, Dask."""
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
import spacy
from spacy.language import Language

from nhs_nlp.tagging import (
    ReaderOptions,
    TaggingError,
    default_errors_path,
    progress_path,
    read_documents,
    run_tagging,
)

ROOT = Path(__file__).resolve().parents[1]

# (id, title, date, text): short articles written for these tests.
ARTICLES = [
    ("a1", "Qilin attack halts blood tests", "2024-06-04",
     "The Qilin ransomware gang attacked Synnovis on Monday, and blood tests were cancelled at six NHS trusts."),
    ("a2", "LockBit hits Royal Mail", "2023-01-11",
     "LockBit claimed the attack on Royal Mail, which stopped international deliveries for several weeks."),
    ("a3", "Conti and the health service", "2021-05-14",
     "The Conti group encrypted computers at the Health Service Executive, and Microsoft helped to restore 2,000 systems."),
]
IDS = [a[0] for a in ARTICLES]
TEXTS = {a[0]: a[3] for a in ARTICLES}


@Language.component("test_tagging_explode")
def _explode(doc):
    """Fails on one kind of document, as a real component can on odd input."""
    if "EXPLODE" in doc.text:
        raise ValueError("cannot tag this one")
    return doc


_INTERRUPT = {"armed": False}


@Language.component("test_tagging_interrupt")
def _interrupt(doc):
    """Stops the whole run (like Ctrl-C) at a marked document while armed."""
    if _INTERRUPT["armed"] and "STOP" in doc.text:
        raise KeyboardInterrupt
    return doc


@pytest.fixture(scope="module")
def nlp(shipped_nlp):
    return shipped_nlp


def lines(path: Path) -> List[Dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf8").splitlines()]


def tag(inputs, out: Path, model, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("commit_seconds", 0.0)
    return run_tagging([str(i) for i in inputs], out, model=model, **kwargs)


def records(with_meta: bool = True) -> List[Dict]:
    return [{"id": i, "title": t, "date": d, "text": x} if with_meta else {"text": x} for i, t, d, x in ARTICLES]


@pytest.fixture(scope="module")
def reference(nlp, tmp_path_factory):
    """Entities per article from plain JSON Lines input (the other formats must agree)."""
    folder = tmp_path_factory.mktemp("reference")
    src = folder / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records()), encoding="utf8")
    tag([src], folder / "out.jsonl", nlp)
    return {line["id"]: line["entities"] for line in lines(folder / "out.jsonl")}


# ---------------------------------------------------------------------------
# Input formats


def _write_dir(folder: Path, suffix: str, compress: bool = False) -> Path:
    folder.mkdir()
    for i, title, date, text in ARTICLES:
        body = f"---\ntitle: {title}\ndate: {date}\n---\n{text}" if suffix == ".md" else text
        data = body.encode("utf8")
        name = f"{i}{suffix}"
        if compress:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def _write_table(path: Path, kind: str) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(records())
    if kind == "parquet":
        pq.write_table(table, path)
    elif kind == "arrow-file":
        with pa.ipc.new_file(str(path), table.schema) as writer:
            writer.write_table(table)
    else:
        with pa.ipc.new_stream(str(path), table.schema) as writer:
            writer.write_table(table)
    return path


def _make_input(kind: str, tmp: Path) -> Path:
    if kind == "txt-dir":
        return _write_dir(tmp / "txt", ".txt")
    if kind == "txt.gz-dir":
        return _write_dir(tmp / "txtgz", ".txt", compress=True)
    if kind == "md-dir":
        return _write_dir(tmp / "md", ".md")
    if kind in ("jsonl", "jsonl.gz"):
        data = "".join(json.dumps(r) + "\n" for r in records()).encode("utf8")
        path = tmp / f"in.{kind}"
        path.write_bytes(gzip.compress(data) if kind.endswith(".gz") else data)
        return path
    if kind == "json-array":
        path = tmp / "in.json"
        path.write_text(json.dumps(records(), indent=2), encoding="utf8")
        return path
    if kind in ("csv", "tsv"):
        import csv

        path = tmp / f"in.{kind}"
        with path.open("w", encoding="utf8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["id", "title", "date", "text"], delimiter="\t" if kind == "tsv" else ",")
            writer.writeheader()
            writer.writerows(records())
        return path
    if kind == "parquet":
        return _write_table(tmp / "in.parquet", "parquet")
    if kind == "parquet.gz":
        plain = _write_table(tmp / "plain.parquet", "parquet")
        path = tmp / "in.parquet.gz"
        path.write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
        return path
    if kind == "arrow-file":
        return _write_table(tmp / "in.arrow", "arrow-file")
    if kind == "arrow-stream":
        return _write_table(tmp / "in.arrow", "arrow-stream")
    if kind == "datasets":
        from datasets import Dataset

        path = tmp / "saved"
        Dataset.from_list(records()).save_to_disk(str(path))
        return path
    raise AssertionError(kind)


FORMATS = ["txt-dir", "txt.gz-dir", "md-dir", "jsonl", "jsonl.gz", "json-array", "csv", "tsv", "parquet", "parquet.gz", "arrow-file", "arrow-stream", "datasets"]


@pytest.mark.parametrize("kind", FORMATS)
def test_each_input_format(kind, nlp, reference, tmp_path):
    src = _make_input(kind, tmp_path)
    out = tmp_path / "out" / "tags.jsonl"
    summary = tag([src], out, nlp, include_text=True)
    got = lines(out)
    assert summary.tagged == 3 and summary.errors == 0, default_errors_path(out).read_text()
    assert lines(default_errors_path(out)) == []
    assert [g["status"] for g in got] == ["ok"] * 3
    by_text = {g["text"]: g for g in got}
    assert set(by_text) == set(TEXTS.values())
    for doc_id, text in TEXTS.items():
        line = by_text[text]
        assert line["entities"] == reference[doc_id]
        assert list(line)[:5] == ["id", "status", "source", "title", "date"]
        if kind.endswith("-dir"):
            assert line["id"].startswith(str(src)) and Path(line["id"]).name.startswith(doc_id)
            assert line["source"] == {"file": line["id"]}
        else:
            assert line["id"] == doc_id
        if kind not in ("txt-dir", "txt.gz-dir"):
            title, date = next((t, d) for i, t, d, _ in ARTICLES if i == doc_id)
            assert (line["title"], line["date"]) == (title, date)
    if kind in ("jsonl", "jsonl.gz"):
        assert [g["source"] for g in got] == [{"file": str(src), "line": n} for n in (1, 2, 3)]
    if kind in ("csv", "parquet"):
        assert [g["source"]["row"] for g in got] == [1, 2, 3]
    if kind == "json-array":
        assert [g["source"]["index"] for g in got] == [0, 1, 2]


def test_html_article_text_without_boilerplate(nlp, tmp_path):
    folder = tmp_path / "html"
    folder.mkdir()
    (folder / "page.html").write_text(
        """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Ransomware gang hits pathology firm | Example News</title>
<meta property="og:title" content="Ransomware gang hits pathology firm"></head><body>
<header><nav><a href="/">Home</a> <a href="/subscribe">Subscribe now for unlimited access</a></nav></header>
<div class="cookie-banner">We use cookies to improve your experience. Manage cookie settings.</div>
<main><article><h1>Ransomware gang hits pathology firm</h1>
<p class="byline">By a staff reporter, <time datetime="2024-06-05">5 June 2024</time></p>
<p>The Qilin ransomware gang attacked Synnovis, a pathology services provider, on Monday, according to the National Cyber Security Centre.</p>
<p>Blood tests were cancelled at six hospital trusts in south-east London while Synnovis restored its systems, and more than 1,000 operations were postponed.</p>
<p>The company said it was working with investigators and would publish an update once the extent of the breach was known.</p>
</article></main>
<aside><h2>Most read</h2><ul><li><a href="/x">Football transfer rumours</a></li></ul></aside>
<footer><p>Copyright 2024 Example News Ltd. All rights reserved. Privacy policy.</p></footer></body></html>""",
        encoding="utf8",
    )
    (folder / "gallery.htm").write_text(
        "<html><head><title>Gallery</title><script>var a = 1;</script></head><body><img src='a.jpg'><script>track()</script></body></html>",
        encoding="utf8",
    )
    out = tmp_path / "out.jsonl"
    tag([folder], out, nlp, include_text=True)
    [line] = lines(out)
    assert line["title"] == "Ransomware gang hits pathology firm" and line["date"] == "2024-06-05"
    assert "Synnovis restored its systems" in line["text"]
    for boilerplate in ("Subscribe", "cookie", "Football", "Copyright"):
        assert boilerplate not in line["text"]
    found = {(e["text"], label) for label, ents in line["entities"].items() for e in ents}
    assert ("Qilin", "ATTACK_GROUP") in found and ("Synnovis", "ORG") in found
    for ents in line["entities"].values():
        for e in ents:
            assert line["text"][e["start"] : e["end"]] == e["text"]
    [error] = lines(default_errors_path(out))
    assert error["id"].endswith("gallery.htm") and "no article text" in error["reason"]


@pytest.mark.parametrize("compress", [False, True])
def test_stdin_sniffed_jsonl(nlp, reference, tmp_path, monkeypatch, compress):
    data = "".join(json.dumps(r) + "\n" for r in records()).encode("utf8")
    stdin = io.TextIOWrapper(io.BytesIO(gzip.compress(data) if compress else data))
    monkeypatch.setattr(sys, "stdin", stdin)
    out = tmp_path / "out.jsonl"
    tag(["-"], out, nlp)
    got = lines(out)
    assert [g["id"] for g in got] == IDS
    assert [g["source"] for g in got] == [{"file": "<stdin>", "line": n} for n in (1, 2, 3)]
    assert all(g["entities"] == reference[g["id"]] for g in got)


def test_stdin_plain_text_is_one_document(nlp, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(ARTICLES[1][3].encode("utf8"))))
    out = tmp_path / "out.jsonl"
    tag(["-"], out, nlp)
    [line] = lines(out)
    assert line["id"] == "<stdin>"
    assert {e["text"] for e in line["entities"]["ORG"]} >= {"Royal Mail"}


def test_reading_streams_without_loading_the_archive(tmp_path):
    """Documents come out while most of a large file is still unread."""
    big_jsonl = tmp_path / "big.jsonl"
    big_array = tmp_path / "big.json"
    line = {"text": "LockBit attacked Royal Mail. " * 40}
    with big_jsonl.open("w", encoding="utf8") as f:
        for i in range(20000):
            f.write(json.dumps({"id": f"d{i}", **line}) + "\n")
    with big_array.open("w", encoding="utf8") as f:
        f.write("[" + ",\n".join(json.dumps({"id": f"d{i}", **line}) for i in range(20000)) + "]")
    for path in (big_jsonl, big_array):
        size = path.stat().st_size
        assert size > 20_000_000
        docs = read_documents([path])
        first = [next(docs) for _ in range(5)]
        assert [d.id for d in first] == ["d0", "d1", "d2", "d3", "d4"]
        assert first[-1].pos < size / 20, (path, first[-1].pos, size)
        docs.close()


# ---------------------------------------------------------------------------
# Awkward input


def test_awkward_inputs_reach_the_errors_file(nlp, tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.txt").write_text("   \n\t  \n", encoding="utf8")
    (folder / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    (folder / "noise.txt").write_bytes(bytes((i * 7919 + 13) % 255 + 1 for i in range(4000)))
    (folder / "legacy.txt").write_bytes(
        ("The attack on Société Générale cost £3.5m, a “significant” sum, said the Autorité des marchés financiers. " * 3).encode("cp1252")
    )
    (folder / "huge.txt").write_bytes(b"Ransomware hit the hospital again. " * 800_000)  # 28 MB
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0")  # other extension: ignored, not a document
    jsonl = tmp_path / "in.jsonl"
    legacy_field = "Qilin attaqué l'hôpital de Liège; la rançon était énorme selon les enquêteurs.".encode("cp1252")
    rows = [
        json.dumps({"id": "ok1", "text": TEXTS["a1"]}).encode(),
        b"{not json at all",
        json.dumps({"id": "no-text", "body": "x"}).encode(),
        json.dumps({"id": "null-text", "text": None}).encode(),
        json.dumps({"id": "number-text", "text": 42}).encode(),
        b"[1, 2, 3]",
        b"",
        json.dumps({"id": "ok1", "text": "the same id again"}).encode(),
        b'{"id": "legacy-field", "text": "' + legacy_field + b'"}',
        json.dumps({"id": "long-line", "text": "word " * 3_000_000}).encode(),  # 15 MB line
        json.dumps({"id": "empty-text", "text": ""}).encode(),
    ]
    jsonl.write_bytes(b"\n".join(rows) + b"\n")
    truncated = tmp_path / "cut.jsonl.gz"
    good = "".join(json.dumps({"id": f"g{i}", "text": TEXTS["a2"]}) + "\n" for i in range(3))
    filler = "".join(" \t\n"[(i * i + 7 * i) % 3] for i in range(300_000))  # blank lines: no documents
    full = gzip.compress((good + filler + json.dumps({"id": "g-last", "text": "x"}) + "\n").encode())
    truncated.write_bytes(full[: len(full) - 40])
    array = tmp_path / "broken.json"
    array.write_text('[{"id": "arr-ok", "text": "LockBit attacked Royal Mail."}, {"id": "arr-bad", "text": }, {"id": "never"}]', encoding="utf8")
    table = tmp_path / "rows.csv"
    table.write_text('id,title,text\ncsv-ok,T,"LockBit attacked Royal Mail."\ncsv-short,T\n', encoding="utf8")
    binary_jsonl = tmp_path / "binary.jsonl"
    binary_jsonl.write_bytes(b"\x00\x01\x02 not json \x00" * 10)

    out = tmp_path / "out.jsonl"
    summary = tag([folder, jsonl, truncated, array, table, binary_jsonl], out, nlp, include_text=True)
    ok = {line["id"]: line for line in lines(out)}
    errors = lines(default_errors_path(out))
    reasons = {}
    for e in errors:
        assert e["status"] == "error" and e["reason"]
        reasons.setdefault(e["id"], []).append(e["reason"])

    def reason(doc_id: str) -> str:
        [r] = reasons[doc_id]
        return r

    assert "empty document" in reason(f"{folder}/empty.txt")
    assert "empty document" in reason(f"{folder}/blank.txt")
    assert "binary content" in reason(f"{folder}/image.txt")
    assert "binary" in reason(f"{folder}/noise.txt") or "no text encoding" in reason(f"{folder}/noise.txt")
    assert "28,000,000 characters is over --max-chars 200,000" in reason(f"{folder}/huge.txt")
    assert "malformed JSON" in reason(f"{jsonl}:2")
    assert "no 'text' field" in reason("no-text")
    assert "is null" in reason("null-text")
    assert "is a number, not a string" in reason("number-text")
    assert "must be an object or a string" in reason(f"{jsonl}:6")
    assert "duplicate id 'ok1'" in reason("ok1") and f"{jsonl}:8" in reason("ok1")
    assert "over --max-chars" in reason("long-line")
    assert "empty document" in reason("empty-text")
    assert "malformed JSON" in reason(f"{array}[1]") and "rest of the array" in reason(f"{array}[1]")
    assert "binary content" in reason(str(binary_jsonl))
    assert "no 'text' field (the row has 2 cells, the header 3)" in reason("csv-short")
    [cut_reason] = [r for i, rs in reasons.items() if i.startswith(str(truncated)) for r in rs]
    assert "reading stopped" in cut_reason
    # Decoded with charset detection, and the encoding is reported.
    legacy = ok[f"{folder}/legacy.txt"]
    assert "Société Générale cost £3.5m, a “significant” sum" in legacy["text"]
    assert legacy["source"]["encoding"] == "cp1252"
    assert ok["legacy-field"]["text"].startswith("Qilin attaqué l'hôpital de Liège")
    assert ok["legacy-field"]["source"]["encoding"]
    # Every input exactly once: the ids seen are the inputs, one line each (the duplicate twice).
    gz_ok = [i for i in ok if i.startswith("g")]
    assert gz_ok == ["g0", "g1", "g2"]
    assert set(ok) == {f"{folder}/legacy.txt", "ok1", "legacy-field", "arr-ok", "csv-ok", *gz_ok}
    assert summary.tagged == len(ok) and summary.errors == len(errors) == 17
    assert summary.ignored_files == [str(folder / "photo.jpg")]


def test_a_failing_document_does_not_stop_its_batch(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("test_tagging_explode")
    src = tmp_path / "in.jsonl"
    texts = [f"document number {i}" + (" EXPLODE" if i in (3, 8) else "") for i in range(12)]
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf8")
    outputs = []
    for n_process in (1, 2):
        out = tmp_path / f"out{n_process}.jsonl"
        tag([src], out, nlp, batch_size=4, n_process=n_process)
        assert [line["id"] for line in lines(out)] == [f"d{i}" for i in range(12) if i not in (3, 8)]
        errors = lines(default_errors_path(out))
        assert [e["id"] for e in errors] == ["d3", "d8"]
        assert all("tagging failed (ValueError: cannot tag this one)" in e["reason"] for e in errors)
        outputs.append((out.read_bytes(), default_errors_path(out).read_bytes()))
        assert nlp.pipe_names == ["test_tagging_explode"]  # the workers' memory releaser is gone again
    assert outputs[0] == outputs[1]


def test_memory_releaser_passes_documents_through_in_worker_processes():
    nlp = spacy.blank("en")
    nlp.add_pipe("nhs_release_memory")
    texts = [f"text {i}" for i in range(10)]
    docs = list(nlp.pipe(texts, batch_size=3, n_process=2))
    assert [d.text for d in docs] == texts


# ---------------------------------------------------------------------------
# Overwrite, resume


def _jsonl_input(path: Path, n: int, stop_at: int = -1) -> Path:
    words = [a[3] for a in ARTICLES]
    rows = []
    for i in range(n):
        text = words[i % 3] + (" STOP" if i == stop_at else "")
        rows.append(json.dumps({"id": f"doc-{i:03d}", "text": text}))
        if i % 7 == 3:
            rows.append("{broken json")  # errors interleaved with results
        if i % 11 == 5:
            rows.append(json.dumps({"id": f"doc-{i:03d}", "text": "duplicate"}))
    path.write_text("\n".join(rows) + "\n", encoding="utf8")
    return path


def _every_input_once(out: Path, src: Path) -> None:
    ok = [line["id"] for line in lines(out)]
    err = [(e["id"], e["reason"]) for e in lines(default_errors_path(out))]
    n_lines = len(src.read_text(encoding="utf8").splitlines())
    assert len(ok) + len(err) == n_lines
    assert len(set(ok)) == len(ok)
    assert len(set(err)) == len(err)
    dups = [i for i, r in err if "duplicate id" in r]
    assert set(dups) <= set(ok) and len(dups) == len(set(dups))


def test_refuses_to_overwrite_without_force(tmp_path):
    nlp = spacy.blank("en")
    src = _jsonl_input(tmp_path / "in.jsonl", 5)
    out = tmp_path / "out.jsonl"
    tag([src], out, nlp)
    before = out.read_bytes()
    with pytest.raises(TaggingError, match="exists; pass --force"):
        tag([src], out, nlp)
    assert out.read_bytes() == before
    tag([src], out, nlp, force=True)
    assert out.read_bytes() == before
    # A finished run has nothing to resume; other settings cannot resume it.
    assert tag([src], out, nlp, resume=True).already_complete
    with pytest.raises(TaggingError, match="different settings.*text_field"):
        tag([src], out, nlp, resume=True, options=ReaderOptions(text_field="body"))
    progress_path(out).unlink()
    with pytest.raises(TaggingError, match="no progress file"):
        tag([src], out, nlp, resume=True)
    with pytest.raises(TaggingError, match="is both an input and an output"):
        tag([out], out, nlp, force=True)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_resume_after_an_interrupted_run(tmp_path, fmt):
    """Stopped mid-way (a torn line left at the end), then resumed: same bytes as an uninterrupted run."""
    nlp = spacy.blank("en")
    nlp.add_pipe("test_tagging_interrupt")
    src = _jsonl_input(tmp_path / "in.jsonl", 40, stop_at=23)
    reference = tmp_path / "ref" / "out.jsonl"
    tag([src], reference, nlp, fmt=fmt, batch_size=3)
    out = tmp_path / "run" / "out.jsonl"
    _INTERRUPT["armed"] = True
    try:
        with pytest.raises(KeyboardInterrupt):
            tag([src], out, nlp, fmt=fmt, batch_size=3)
    finally:
        _INTERRUPT["armed"] = False
    done = lines(progress_path(out))[-1]
    assert 0 < done["n"] < 40 and "done" not in done
    with out.open("ab") as f:
        f.write(b'{"id": "doc-0')  # as if killed while writing
    with default_errors_path(out).open("ab") as f:
        f.write(b'{"id": "half')
    summary = tag([src], out, nlp, fmt=fmt, batch_size=3, resume=True)
    assert summary.resumed_from == done["n"]
    assert out.read_bytes() == reference.read_bytes()
    assert default_errors_path(out).read_bytes() == default_errors_path(reference).read_bytes()
    if fmt == "jsonl":
        _every_input_once(out, src)
    else:
        assert out.read_text(encoding="utf8").count("doc_id,") == 1  # the header once


def test_resume_refuses_a_changed_input(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("test_tagging_interrupt")
    src = _jsonl_input(tmp_path / "in.jsonl", 20, stop_at=15)
    out = tmp_path / "out.jsonl"
    _INTERRUPT["armed"] = True
    try:
        with pytest.raises(KeyboardInterrupt):
            tag([src], out, nlp, batch_size=2)
    finally:
        _INTERRUPT["armed"] = False
    _jsonl_input(src, 20)
    src.write_text("\n".join(reversed(src.read_text(encoding="utf8").splitlines())) + "\n", encoding="utf8")
    with pytest.raises(TaggingError, match="did the input change"):
        tag([src], out, nlp, batch_size=2, resume=True)


def _checkpointed(journal: Path) -> int:
    """Documents done at the last whole checkpoint line of a progress file being written."""
    done = 0
    for raw in journal.read_bytes().splitlines(keepends=True)[1:]:
        if raw.endswith(b"\n"):
            done = json.loads(raw)["n"]
    return done


@pytest.mark.slow
def test_resume_after_kill_9(nlp, tmp_path, monkeypatch):
    """A real `nhs-nlp tag` subprocess killed with SIGKILL mid-way, then --resume: every id once,
    and the same bytes as an uninterrupted run. The input arrives on a pipe, a line at a time,
    so the kill lands mid-way on a fast machine as on a slow one."""
    src = _jsonl_input(tmp_path / "in.jsonl", 40)
    rows = src.read_bytes().splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    journal = progress_path(out)
    cmd = [sys.executable, "-m", "nhs_nlp.cli", "tag", "-", "-o", str(out), "--batch-size", "2", "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = (tmp_path / "stderr.txt").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=log, stderr=log)
    assert proc.stdin is not None
    deadline = time.monotonic() + 300
    sent = 0
    try:
        while not journal.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the progress file appears once the model is loaded
        while proc.poll() is None and time.monotonic() < deadline:
            if _checkpointed(journal) > 0:
                break
            if sent < len(rows) - 10:
                proc.stdin.write(rows[sent])
                proc.stdin.flush()
                sent += 1
            time.sleep(0.05)
        proc.stdin.write(b"".join(rows[sent : sent + 4]))  # busy again when the kill comes
        proc.stdin.flush()
        time.sleep(0.2)
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    entries = lines(journal)
    assert 0 < entries[-1]["n"] < len(rows) and "done" not in entries[-1]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(src.read_bytes())))
    summary = tag(["-"], out, nlp, batch_size=2, resume=True)
    assert summary.resumed_from == entries[-1]["n"]
    _every_input_once(out, src)
    reference = tmp_path / "ref.jsonl"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(src.read_bytes())))
    tag(["-"], reference, nlp, batch_size=2)
    assert out.read_bytes() == reference.read_bytes()
    assert default_errors_path(out).read_bytes() == default_errors_path(reference).read_bytes()


# ---------------------------------------------------------------------------
# Engines, output formats, CLI, progress


@pytest.mark.slow
def test_n_process_2_equals_n_process_1(nlp, tmp_path):
    src = _jsonl_input(tmp_path / "in.jsonl", 12)
    outs = []
    for n in (1, 2):
        out = tmp_path / f"out{n}.jsonl"
        tag([src], out, nlp, batch_size=2, n_process=n)
        outs.append((out.read_bytes(), default_errors_path(out).read_bytes()))
    assert outs[0] == outs[1]
    assert any(line["entities"]["ATTACK_GROUP"] for line in lines(tmp_path / "out2.jsonl"))


@pytest.fixture(scope="module")
def dask_client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.slow
def test_dask_engine_equals_local_engine(nlp, dask_client, tmp_path):
    from nhs_nlp.distributed import model_loads

    src = _jsonl_input(tmp_path / "in.jsonl", 16)
    local = tmp_path / "local.jsonl"
    tag([src], local, nlp, batch_size=2)
    for chunk_size in (1, 5):
        out = tmp_path / f"dask{chunk_size}.jsonl"
        tag([src], out, None, batch_size=2, engine="dask", client=dask_client, chunk_size=chunk_size)
        local_lines = local.read_text(encoding="utf8").splitlines()
        dask_lines = out.read_text(encoding="utf8").splitlines()
        assert len(dask_lines) == len(local_lines) > 0
        for a, b in zip(local_lines, dask_lines):
            assert a == b
        assert default_errors_path(out).read_bytes() == default_errors_path(local).read_bytes()
    # Two jobs, many tasks: each worker loaded the model once.
    loads = dask_client.run(model_loads)
    assert len(loads) == 2 and all(v == {"": 1} for v in loads.values()), loads


def test_dask_engine_needs_a_model_name(nlp, tmp_path):
    src = _jsonl_input(tmp_path / "in.jsonl", 2)
    with pytest.raises(TaggingError, match="not a loaded pipeline"):
        tag([src], tmp_path / "out.jsonl", nlp, engine="dask")


@Language.component("test_tagging_records")
def _one_record(doc):
    """One incident record per document from its entities (a stand-in for the trained record builder)."""
    from nhs_nlp.extensions import install_extensions
    from nhs_nlp.records import Actor, IncidentRecord, Organisation

    install_extensions()
    groups = [e for e in doc.ents if e.label_ == "ATTACK_GROUP"]
    victims = [e for e in doc.ents if e.label_ == "ORG"]
    if not groups and not victims:
        doc._.incidents = []
        return doc
    record = IncidentRecord(
        incident_id="1",
        attack_groups=[Actor(name=g.text, mentions=[(g.start_char, g.end_char)]) for g in groups],
        victims=[Organisation(name=v.text, role="victim", mentions=[(v.start_char, v.end_char)]) for v in victims],
    ).fill_evidence()
    doc._.incidents = [record.model_dump(mode="json")]
    return doc


@pytest.fixture(scope="module")
def records_nlp():
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "ATTACK_GROUP", "pattern": g} for g in ("Qilin", "LockBit", "Conti")]
                       + [{"label": "ORG", "pattern": o} for o in ("Synnovis", "Royal Mail")])
    nlp.add_pipe("test_tagging_records")
    return nlp


def test_records_reach_jsonl_csv_and_stix(records_nlp, tmp_path):
    from nhs_nlp.export.csv import COLUMNS
    from nhs_nlp.export.stix import validate_bundle

    src = _make_input("jsonl", tmp_path)
    out = tmp_path / "out.jsonl"
    tag([src], out, records_nlp)
    got = {line["id"]: line for line in lines(out)}
    assert [r["incident_id"] for r in got["a1"]["records"]] == ["a1#1"]
    assert got["a1"]["records"][0]["victims"][0]["name"] == "Synnovis"
    assert list(got["a1"])[-2:] == ["entities", "records"]
    two = tmp_path / "out2.jsonl"
    tag([src], two, records_nlp, n_process=2)  # records travel back from the worker processes
    assert two.read_bytes() == out.read_bytes()

    table = tmp_path / "table.csv"
    tag([src], table, records_nlp, fmt="csv")
    import csv

    with table.open(encoding="utf8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert table.read_text(encoding="utf8").splitlines()[0] == ",".join(COLUMNS)
    assert [(r["doc_id"], r["incident_id"]) for r in rows] == [("a1", "a1#1"), ("a2", "a2#1"), ("a3", "a3#1")]
    assert rows[1]["victims"] == "Royal Mail" and rows[1]["title"] == "LockBit hits Royal Mail"

    stix = tmp_path / "out.stix.jsonl"
    tag([src], stix, records_nlp, fmt="stix")
    bundles = lines(stix)
    assert len(bundles) == 3 and all(b["type"] == "bundle" for b in bundles)
    names = {(o["type"], o.get("name")) for o in bundles[0]["objects"]}
    assert ("intrusion-set", "Qilin") in names and ("identity", "Synnovis") in names
    assert validate_bundle(bundles[0]) == []
    assert lines(default_errors_path(stix)) == []


def test_progress_lines_when_not_a_terminal(tmp_path, capsys):
    nlp = spacy.blank("en")
    src = _jsonl_input(tmp_path / "in.jsonl", 6)
    tag([src], tmp_path / "out.jsonl", nlp, progress=True, progress_interval=0.0)
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith("tag: ") for line in err)
    assert "docs/s" in err[-1] and "words/s" in err[-1] and "ETA" in err[-1] and "100% of the input" in err[-1]


def test_cli_reads_stdin_and_refuses_to_overwrite(nlp, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from nhs_nlp import api
    from nhs_nlp.cli import app

    monkeypatch.setitem(api._cache, str(api.default_model_path().resolve()), nlp)  # the session's model
    data = "".join(json.dumps(r) + "\n" for r in records()).encode("utf8")
    out = tmp_path / "out.jsonl"
    stats = tmp_path / "stats.json"
    runner = CliRunner()
    result = runner.invoke(app, ["tag", "-", "-o", str(out), "--no-progress", "--stats", str(stats)], input=data)
    assert result.exit_code == 0, result.output
    assert [line["id"] for line in lines(out)] == IDS
    assert json.loads(stats.read_text())["tagged"] == 3
    again = runner.invoke(app, ["tag", "-", "-o", str(out), "--no-progress"], input=data)
    assert again.exit_code == 2 and "pass --force" in again.output
    bad = runner.invoke(app, ["tag", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "x.jsonl")])
    assert bad.exit_code == 2 and "no such file" in bad.output
    wrong = runner.invoke(app, ["tag", "-", "-o", str(tmp_path / "y.jsonl"), "--engine", "dask", "--n-process", "2"], input=data)
    assert wrong.exit_code == 2 and "--n-process is for the local engine" in wrong.output


def test_release_memory_returns_freed_memory_to_the_system():
    """glibc keeps freed blocks between live ones; release_memory() hands their pages back."""
    import ctypes

    from nhs_nlp.api import release_memory

    def rss_mb() -> float:
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

    if not release_memory():
        pytest.skip("not glibc")
    blocks = [ctypes.create_string_buffer(64 * 1024) for _ in range(3000)]  # ~190 MB in the heap
    for b in blocks:
        ctypes.memset(b, 1, 64 * 1024)
    keep = blocks[1::2]  # every other block stays alive: the freed ones are holes, not the heap top
    del blocks, b
    after_free = rss_mb()
    release_memory()
    assert rss_mb() < after_free - 50
    assert len(keep) == 1500
