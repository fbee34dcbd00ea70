"""Corpus tools: one test per validator rejection class, determinism, round trips."""
import json
from pathlib import Path
from typing import List

import pytest
from spacy.tokens import DocBin

from nhs_nlp.corpus import (
    audit_article,
    build,
    load_sources,
    read_article,
    strip_markup,
)
from nhs_nlp.tokenizer import blank_english

GOOD = """---
id: {id}
title: "[Qilin](ATTACK_GROUP) attack halts [blood tests](SERVICE) at London hospitals"
outlet: national-newspaper
date: 2024-06-04
sectors: [health]
countries: [GB]
incidents: [{incident}]
split: {split}
records:
  - incident: {incident}
    attack_type: ransomware
    attack_groups: ["Qilin", "Agenda -> Qilin"]
    malware: []
    victims: [Synnovis]
    affected_organisations: ["King’s College Hospital"]
    other_organisations: []
    affected_services: [blood tests]
    quantities: ["six NHS trusts = 6", "£4.5m = 4500000 GBP"]
    attribution: Russia
    date: 2024-06-03
---
The [Qilin](ATTACK_GROUP) gang, also tracked as [Agenda](ATTACK_GROUP), attacked [Synnovis](ORG).

[Blood tests](SERVICE) at [King’s College Hospital](ORG) were cancelled across [six NHS trusts](QUANTITY), and [blood tests](SERVICE) resumed in July 2024 after costs of [£4.5m](QUANTITY).
"""


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / f"{name}.md"
    path.write_text(text, encoding="utf8")
    return path


def good(tmp: Path, id: str = "a-001-good", incident: str = "synnovis-2024", split: str = "train") -> Path:
    return write(tmp, id, GOOD.format(id=id, incident=incident, split=split))


def reasons(paths: List[Path]) -> List[str]:
    return [f"{Path(p.path).name}:{p.line}: {p.reason}" for p in load_sources(paths).problems]


def test_good_article_parses(tmp_path):
    art, problems = read_article(good(tmp_path))
    assert problems == []
    assert art.text.startswith("Qilin attack halts blood tests at London hospitals\n\nThe Qilin gang")
    labelled = [(art.text[s.start : s.end], s.label) for s in art.spans]
    assert labelled[:3] == [("Qilin", "ATTACK_GROUP"), ("blood tests", "SERVICE"), ("Qilin", "ATTACK_GROUP")]
    assert ("£4.5m", "QUANTITY") in labelled
    assert reasons([tmp_path]) == []
    loaded = load_sources([tmp_path])
    rec = loaded.articles[0].records[0]
    assert rec["attack_groups"][1] == {"text": "Agenda", "canonical": "Qilin", "mentions": rec["attack_groups"][1]["mentions"]}
    assert rec["quantities"][1]["value"] == 4500000 and rec["quantities"][1]["currency"] == "GBP"
    assert len(rec["affected_services"][0]["mentions"]) == 2  # both lowercase mentions are evidence


def test_audit_hints_at_a_name_variant_no_record_lists(tmp_path):
    text = GOOD.format(id="a-002-variant", incident="synnovis-2024", split="train").replace(
        "attacked [Synnovis](ORG).", "attacked [Synnovis](ORG). [Synnovis Ltd](ORG) said it was working with the NHS."
    )
    art = load_sources([write(tmp_path, "a-002-variant", text)]).articles[0]
    hints = [p.reason for p in audit_article(art) if "no record lists" in p.reason]
    assert hints == ["warning: 'Synnovis Ltd' names 'Synnovis' (victims of record 1) but no record lists this mention"]
    assert not [p for p in audit_article(load_sources([good(tmp_path)]).articles[0]) if "no record lists" in p.reason]

def test_strip_markup_keeps_plain_brackets():
    text, spans = strip_markup("He said [sic] that [LockBit](ATTACK_GROUP) (a gang) struck.")
    assert text == "He said [sic] that LockBit (a gang) struck."
    assert [(text[s:e], lab) for s, e, lab, _ in spans] == [("LockBit", "ATTACK_GROUP")]


def test_rejects_unknown_label(tmp_path):
    write(tmp_path, "a-002-x", GOOD.format(id="a-002-x", incident="x-2024", split="train").replace("(SERVICE) at London", "(SYSTEM) at London"))
    out = reasons([tmp_path])
    assert any("unknown label 'SYSTEM'" in r and r.startswith("a-002-x.md:3:") for r in out), out


def test_rejects_boundary_whitespace_and_punctuation(tmp_path):
    text = GOOD.format(id="a-003-x", incident="x-2024", split="train")
    text = text.replace("[Synnovis](ORG).", "[Synnovis.](ORG)").replace("[six NHS trusts](QUANTITY)", "[six NHS trusts ](QUANTITY)")
    text = text.replace("victims: [Synnovis]", "victims: []").replace('"six NHS trusts = 6", ', "")
    write(tmp_path, "a-003-x", text)
    out = reasons([tmp_path])
    assert any("'Synnovis.' ends with punctuation" in r and ":23:" in r for r in out), out
    assert any("'six NHS trusts ' has leading or trailing whitespace" in r and ":25:" in r for r in out), out


def test_accepts_punctuation_that_belongs_to_names(tmp_path):
    text = GOOD.format(id="a-004-x", incident="x-2024", split="train").replace(
        "attacked [Synnovis](ORG).", "attacked [Synnovis](ORG) with [Lapsus$](ATTACK_GROUP), [NoName057(16)](ATTACK_GROUP) and [Acme Inc.](ORG)"
    )
    write(tmp_path, "a-004-x", text)
    assert reasons([tmp_path]) == []


def test_rejects_overlapping_spans_and_bad_offsets_in_jsonl(tmp_path):
    rows = [
        {"id": "j1", "text": "LockBit hit Boeing.", "spans": [{"start": 0, "end": 7, "label": "ATTACK_GROUP"}, {"start": 4, "end": 11, "label": "ORG"}], "records": []},
        {"id": "j2", "text": "LockBit hit Boeing.", "spans": [{"start": 12, "end": 40, "label": "ORG"}], "records": []},
    ]
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf8")
    out = reasons([path])
    assert any(r.startswith("gold.jsonl:1:") and "overlapping spans 'LockBit'" in r for r in out), out
    assert any(r.startswith("gold.jsonl:2:") and "do not fit the text" in r for r in out), out


def test_rejects_nested_markup(tmp_path):
    text = GOOD.format(id="a-005-x", incident="x-2024", split="train").replace(
        "attacked [Synnovis](ORG).", "attacked [[Synnovis](ORG) Ltd](ORG)."
    ).replace("victims: [Synnovis]", "victims: []")
    write(tmp_path, "a-005-x", text)
    assert any("nested or malformed span markup" in r for r in reasons([tmp_path]))


def test_rejects_duplicate_ids(tmp_path):
    good(tmp_path, id="a-006-x")
    sub = tmp_path / "sub"
    sub.mkdir()
    good(sub, id="a-006-x")
    out = reasons([tmp_path])
    assert any("duplicate id 'a-006-x'" in r for r in out), out


def test_rejects_record_values_pointing_at_no_span(tmp_path):
    text = GOOD.format(id="a-007-x", incident="x-2024", split="train").replace("victims: [Synnovis]", "victims: [Synlab]")
    text = text.replace('"six NHS trusts = 6"', '"seven NHS trusts = 7"')
    write(tmp_path, "a-007-x", text)
    out = reasons([tmp_path])
    assert any(":15:" in r and "'victims' value 'Synlab' points at no ORG span" in r for r in out), out
    assert any(":19:" in r and "'seven NHS trusts' points at no QUANTITY span" in r for r in out), out


def test_rejects_malformed_record_values(tmp_path):
    text = GOOD.format(id="a-008-x", incident="x-2024", split="train")
    text = text.replace('"six NHS trusts = 6"', '"six NHS trusts"').replace("attack_type: ransomware", "attack_type: hacking")
    write(tmp_path, "a-008-x", text)
    out = reasons([tmp_path])
    assert any("needs '= value'" in r for r in out), out
    assert any("attack_type 'hacking' is not one of" in r for r in out), out


def test_rejects_incident_in_two_splits(tmp_path):
    good(tmp_path, id="a-009-x", incident="shared-2024", split="train")
    good(tmp_path, id="a-010-x", incident="shared-2024", split="test")
    out = reasons([tmp_path])
    assert any("incident 'shared-2024' is in split 'train' here but in 'test'" in r or "incident 'shared-2024' is in split 'test' here" in r for r in out), out


def test_rejects_spans_off_token_boundaries(tmp_path):
    text = GOOD.format(id="a-011-x", incident="x-2024", split="train").replace("[Synnovis](ORG).", "[Synno](ORG)vis.")
    text = text.replace("victims: [Synnovis]", "victims: []")
    write(tmp_path, "a-011-x", text)
    assert any("'Synno' does not align with spaCy token boundaries" in r for r in reasons([tmp_path]))


def test_rejects_bad_header(tmp_path):
    text = GOOD.format(id="a-012-wrong", incident="x-2024", split="validation").replace("outlet: national-newspaper", "outlet: tabloid")
    write(tmp_path, "a-012-x", text)
    out = reasons([tmp_path])
    assert any("id 'a-012-wrong' must equal the file name" in r for r in out), out
    assert any("outlet 'tabloid'" in r for r in out), out
    assert any("split 'validation'" in r for r in out), out
    write(tmp_path, "a-012-x", "---\ntitle: [unclosed\n---\nBody\n")
    assert any("invalid YAML header" in r for r in reasons([tmp_path / "a-012-x.md"]))


def test_build_is_deterministic_and_round_trips(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    good(src, id="a-020-x", incident="one-2024", split="train")
    good(src, id="a-021-x", incident="two-2024", split="dev")
    good(src, id="a-022-x", incident="three-2024", split="test")
    counts = build([src], tmp_path / "out1")
    build([src], tmp_path / "out2")
    assert counts == {"train": 1, "dev": 1, "test": 1}
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl", "train.spacy", "dev.spacy", "test.spacy"):
        assert (tmp_path / "out1" / name).read_bytes() == (tmp_path / "out2" / name).read_bytes(), name
    row = json.loads((tmp_path / "out1" / "dev.jsonl").read_text(encoding="utf8"))
    nlp = blank_english()
    docs = list(DocBin().from_disk(tmp_path / "out1" / "dev.spacy").get_docs(nlp.vocab))
    assert docs[0].text == row["text"]
    assert [(e.start_char, e.end_char, e.label_) for e in docs[0].ents] == [(s["start"], s["end"], s["label"]) for s in row["spans"]]
    # The compiled JSONL validates too, including record evidence offsets.
    assert load_sources([tmp_path / "out1" / "dev.jsonl"]).problems == []


def test_build_refuses_articles_without_split(tmp_path):
    write(tmp_path, "a-030-x", GOOD.format(id="a-030-x", incident="x-2024", split="train").replace("split: train\n", ""))
    from nhs_nlp.corpus import CorpusError

    with pytest.raises(CorpusError, match="no split"):
        build([tmp_path], tmp_path / "out")


def test_assign_splits_groups_by_incident(tmp_path):
    from nhs_nlp.corpus import assign_splits, write_split_headers

    for i in range(12):
        write(tmp_path, f"a-04{i:02d}-x", GOOD.format(id=f"a-04{i:02d}-x", incident=f"inc-{i % 4}", split="train").replace("split: train\n", ""))
    arts = load_sources([tmp_path]).articles
    splits = assign_splits(arts)
    by_incident = {}
    for art in arts:
        by_incident.setdefault(art.incidents[0], set()).add(splits[art.id])
    assert all(len(s) == 1 for s in by_incident.values())
    assert write_split_headers(arts, splits) == 12
    again = load_sources([tmp_path])
    assert again.problems == [] and all(a.split == splits[a.id] for a in again.articles)
    assert assign_splits(again.articles) == splits


def test_agreement_between_passes(tmp_path):
    from nhs_nlp.corpus import agreement

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    good(one, id="a-050-x")
    # Second pass: misses one SERVICE mention and labels an extra ORG.
    text = GOOD.format(id="a-050-x", incident="synnovis-2024", split="train")
    text = text.replace("[blood tests](SERVICE) resumed", "blood tests resumed").replace("at London hospitals", "at [London](ORG) hospitals")
    write(two, "a-050-x", text)
    res = agreement(load_sources([one]).articles, load_sources([two], check_tokens=False).articles)
    # Titles differ in text? No: markup only. First pass has 10 spans; 9 shared.
    assert res["articles"] == 1
    assert res["per_label"]["SERVICE"] == {"f1": 2 * 2 / (2 * 2 + 1 + 0), "both": 2, "only_first": 1, "only_second": 0}
    assert res["per_label"]["ORG"]["only_second"] == 1
    assert res["micro"]["both"] == 9 and round(res["micro"]["f1"], 4) == round(18 / 20, 4)


def test_agreement_compares_only_text_both_passes_saw(tmp_path):
    from nhs_nlp.corpus import agreement

    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    good(one, id="a-051-x")
    # The first pass was edited after the blind copy: the second pass lacks a sentence.
    text = GOOD.format(id="a-051-x", incident="synnovis-2024", split="train")
    text = text.replace(", also tracked as [Agenda](ATTACK_GROUP),", "")
    write(two, "a-051-x", text.replace('"Agenda -> Qilin"', '"Qilin"'))
    res = agreement(load_sources([one]).articles, load_sources([two]).articles)
    assert res["edited_since_copy"] == ["a-051-x"]
    # "Agenda" sat in the edited stretch: left out of both sides, everything else agrees.
    assert res["micro"] == {"f1": 1.0, "both": 9, "only_first": 0, "only_second": 0}
