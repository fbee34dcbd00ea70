"""Alias table (build, lookup), the actor linker and the actor ruler.

Small gazetteers written here test the merge rules; the packaged table (built from
../shared/data/gazetteers) is tested for the variants named in issue 4 and must
equal a fresh build.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import yaml
from spacy.tokens import Span
from typer.testing import CliRunner

from nhs_nlp.aliases import (
    DEFAULT_TABLE,
    AliasError,
    AliasTable,
    build_table,
    fold_leet,
    is_common_word,
    normalise,
    strip_version,
    table_bytes,
)
from nhs_nlp.cli import app
from nhs_nlp.components.linker import CANDIDATES_KEY, RULER_CONFIG, actor_patterns, add_actor_pipes

ROOT = Path(__file__).resolve().parents[1]
SHARED_GAZETTEERS = ROOT.parent / "shared" / "data" / "gazetteers"
TOKENIZER = {"nlp": {"tokenizer": {"@tokenizers": "nhs_nlp.Tokenizer.v1"}}}


# ---------------------------------------------------------------- small gazetteers


def write_gazetteers(folder: Path) -> Path:
    """Invented actors that exercise each merge rule."""
    (folder / "misp-galaxy").mkdir(parents=True)
    (folder / "mitre-attack").mkdir(parents=True)

    def obj(kind, attack_id, name, aliases, revoked=False):
        ref = {"source_name": "mitre-attack", "external_id": attack_id, "url": f"https://attack.mitre.org/x/{attack_id}"}
        uid = f"{attack_id[-4:]}0000-0000-4000-8000-000000000000"
        return {"type": kind, "id": f"{kind}--{uid}", "name": name, "aliases": aliases, "x_mitre_aliases": None,
                "description": "", "external_references": [ref], "revoked": revoked, "x_mitre_deprecated": False}

    mitre = {"source": "test ATT&CK v0", "objects": [
        obj("intrusion-set", "G9001", "Foxtrot Team", ["Foxtrot Team", "Shared Name"]),
        obj("intrusion-set", "G9002", "Golf Group", ["Golf Group", "Shared Name"]),
        obj("malware", "S9001", "Kilolock", ["Kilolock"]),
        obj("malware", "S9002", "Oscarware", ["Oscarware"]),
        obj("malware", "S9003", "Oscarware Two", ["Oscarware Two"]),
        obj("intrusion-set", "G9009", "Retired Name", ["Retired Name"], revoked=True),
    ]}
    actors = {"type": "threat-actor", "version": 7, "values": [
        {"uuid": "aaaaaaaa-0000-4000-8000-000000000001", "value": "Zulu Panda", "meta": {"synonyms": ["G9001", "Zulu Crew"]}},
        {"uuid": "aaaaaaaa-0000-4000-8000-000000000002", "value": "Golf Group", "meta": {}},
        {"uuid": "aaaaaaaa-0000-4000-8000-000000000003", "value": "Hotel Bear",
         "meta": {"refs": ["https://attack.mitre.org/groups/G9001/", "https://attack.mitre.org/groups/G9002/"]}},
        {"uuid": "aaaaaaaa-0000-4000-8000-000000000004", "value": "India Kitten", "meta": {"synonyms": ["Foxtrot Team"]}},
    ]}
    ransomware = {"type": "ransomware", "version": 3, "values": [
        {"uuid": "bbbbbbbb-0000-4000-8000-000000000001", "value": "Kilolock", "meta": {"links": ["http://leak.example"]}},
        {"uuid": "bbbbbbbb-0000-4000-8000-000000000002", "value": "Limelock", "meta": {}},
        {"uuid": "bbbbbbbb-0000-4000-8000-000000000003", "value": "Novalock Ransomware", "meta": {"synonyms": ["Nova"]}},
        {"uuid": "bbbbbbbb-0000-4000-8000-000000000004", "value": "oscarware", "meta": {"links": ["http://leak.example"]}},
    ]}
    (folder / "mitre-attack" / "enterprise-groups-and-malware.json").write_text(json.dumps(mitre), encoding="utf8")
    (folder / "misp-galaxy" / "threat-actor.json").write_text(json.dumps(actors), encoding="utf8")
    (folder / "misp-galaxy" / "ransomware.json").write_text(json.dumps(ransomware), encoding="utf8")
    return folder


OVERRIDES = {
    "merge": [{"canonical": "Limelock", "members": ["misp-ransomware:Limelock", "misp-ransomware:Novalock Ransomware"],
               "reason": "invented: one family under two names"}],
    "split": [{"members": ["attack:S9003", "misp-ransomware:oscarware"], "reason": "invented: a different program"}],
    "aliases": [{"entry": "misp-ransomware:Limelock", "add": ["Lime"], "remove": ["Nova"], "reason": "invented"}],
    "common": {"add": [], "remove": []},
}


@pytest.fixture()
def small(tmp_path):
    gaz = write_gazetteers(tmp_path / "gaz")
    ov = tmp_path / "overrides.yaml"
    ov.write_text(yaml.safe_dump(OVERRIDES), encoding="utf8")
    return gaz, ov


def canonical(table: AliasTable, name: str):
    m = table.lookup(name)
    return table.entries[m.entry]["canonical"] if m.entry is not None else None


def test_merge_rules(small):
    gaz, ov = small
    raw = build_table(gaz, ov)
    table = AliasTable(raw)
    # An ATT&CK id among a MISP cluster's synonyms merges it with that object.
    zulu = table.link(table.lookup("Zulu Panda").entry)
    assert zulu["attack_ids"] == ["G9001"] and zulu["misp_uuid"] == "aaaaaaaa-0000-4000-8000-000000000001"
    assert canonical(table, "Zulu Crew") == canonical(table, "Foxtrot Team") == "Foxtrot Team"
    # The same own name merges; a ransomware cluster with a leak site is an operation.
    assert table.link(table.lookup("Golf Group").entry)["misp_uuid"] == "aaaaaaaa-0000-4000-8000-000000000002"
    kilo = table.link(table.lookup("Kilolock").entry)
    assert kilo["kind"] == "ransomware" and kilo["attack_ids"] == ["S9001"]
    # A shared synonym merges nothing and resolves to nothing.
    shared = table.lookup("Shared Name")
    assert shared.entry is None and len(shared.candidates) == 2
    assert raw["ambiguous"]["sharedname"] == ["Foxtrot Team", "Golf Group"]
    # A synonym that is another entry's own name resolves to that entry ("India Kitten" lists it).
    assert canonical(table, "India Kitten") == "India Kitten"
    # A cluster naming two ATT&CK groups is merged with neither, and the build says so.
    assert table.link(table.lookup("Hotel Bear").entry)["attack_ids"] == []
    assert any("Hotel Bear names several" in r for r in raw["report"]["refused_merges"])
    # Two ATT&CK objects of one type with one name stay apart; the split keeps S9003 out too.
    oscar = table.link(table.lookup("oscarware").entry)
    assert oscar["attack_ids"] == ["S9002"]
    assert canonical(table, "Oscarware Two") == "Oscarware Two"
    # Overrides: merge, added and removed aliases; revoked objects are left out.
    assert canonical(table, "Novalock") == canonical(table, "Lime") == "Limelock"
    assert table.lookup("Nova").entry is None
    assert table.lookup("Retired Name").entry is None
    assert table.link(table.lookup("Limelock").entry)["kind"] == "malware"


def test_build_is_deterministic_and_cli_refuses_to_overwrite(small, tmp_path):
    gaz, ov = small
    runner = CliRunner()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for out in (a, b):
        result = runner.invoke(app, ["aliases", "build", "--gazetteers", str(gaz), "--overrides", str(ov), "-o", str(out)])
        assert result.exit_code == 0, result.output
    assert a.read_bytes() == b.read_bytes()
    assert table_bytes(json.loads(a.read_text(encoding="utf8"))) == a.read_bytes()
    again = runner.invoke(app, ["aliases", "build", "--gazetteers", str(gaz), "--overrides", str(ov), "-o", str(a)])
    assert again.exit_code == 2 and "--force" in again.output
    lookup = runner.invoke(app, ["aliases", "lookup", "--table", str(a), "Zulu Panda's", "Nobody Known"])
    lines = [json.loads(line) for line in lookup.stdout.splitlines() if line.startswith("{")]
    assert lines[0]["link"]["canonical"] == "Foxtrot Team" and lines[1]["link"] is None
    assert lookup.exit_code == 1  # one name was not found


@pytest.mark.parametrize(
    "change, message",
    [
        ({"merge": [{"members": ["attack:G0000"], "reason": "x"}]}, "matches no gazetteer entry"),
        ({"merge": [{"members": ["attack:G9001", "attack:G9002"]}]}, "needs a one-line reason"),
        ({"merge": [{"members": ["attack:G9001"], "kind": "botnet", "reason": "x"}]}, "kind 'botnet'"),
        ({"bogus": []}, "unknown section"),
        ({"split": [{"members": ["misp-ransomware:Limelock", "misp-ransomware:Novalock Ransomware"], "reason": "x"}]}, "keeps apart"),
    ],
)
def test_bad_overrides_name_the_item(small, tmp_path, change, message):
    gaz, _ = small
    bad = tmp_path / "bad.yaml"
    data = {k: v for k, v in OVERRIDES.items() if k != "merge" or "merge" not in change}
    data.update(change)
    bad.write_text(yaml.safe_dump(data), encoding="utf8")
    with pytest.raises(AliasError, match=message) as err:
        build_table(gaz, bad)
    assert str(bad) in str(err.value)


def test_missing_gazetteers_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="threat-actor.json"):
        build_table(tmp_path)


# ---------------------------------------------------------------- normalisation


def test_normalisation():
    assert normalise("Black Basta ransomware") == normalise("BlackBasta") == normalise("black-basta") == "blackbasta"
    assert normalise("the Qilin gang's") == "qilin"
    assert normalise("Lazarus Group") == "lazarus" and normalise("Lazarus Group", strip_suffixes=False) == "lazarusgroup"
    assert normalise("Group") == "group"  # a suffix alone is still a name
    assert fold_leet(normalise("Cl0p")) == fold_leet(normalise("CLOP")) and fold_leet("lapsus$") == "lapsuss"
    assert strip_version("LockBit 3.0") == "LockBit" and strip_version("Akira_v2") == "Akira" and strip_version("APT29") is None
    assert strip_version("Storm-1359") is None and strip_version("TA505") is None  # designations, not versions


@pytest.mark.parametrize("name, common", [("Play", True), ("Royal", True), ("Hunters", True), ("Agenda", True), ("Medusa", True),
                                          ("Akira", True), ("Rhysida", False), ("LockBit", False), ("Black Basta", False), ("Play ransomware", True)])
def test_common_words_by_frequency(name, common):
    assert is_common_word(name) is common


# ---------------------------------------------------------------- the packaged table


@pytest.fixture(scope="module")
def table():
    return AliasTable.from_file()


@pytest.mark.parametrize(
    "name, expected",
    [
        ("BlackBasta", "Black Basta"), ("Black Basta ransomware", "Black Basta"), ("BLACK BASTA", "Black Basta"),
        ("LOCKBIT", "LockBit"), ("LockBit 3.0", "LockBit"), ("LockBit Black", "LockBit"), ("Lockbit3", "LockBit"),
        ("Cl0p", "Clop"), ("CL0P", "Clop"), ("ALPHV", "BlackCat"), ("Alphv", "BlackCat"), ("Agenda", "Qilin"),
        ("Qilin's", "Qilin"), ("Scattered Spider", "Scattered Spider"), ("Octo Tempest", "Scattered Spider"),
        ("Sodinokibi", "REvil"), ("Hunters International", "Hunters International"), ("WannaCry", "WannaCry"),
        ("Lazarus", "Lazarus Group"), ("Fancy Bear", "APT28"), ("Medusa", "Medusa"), ("Play", "Play"), ("PlayCrypt", "Play"),
    ],
)
def test_packaged_table_variants(table, name, expected):
    assert canonical(table, name) == expected


def test_packaged_table_shape(table):
    link = table.link(table.lookup("Qilin").entry)
    assert set(link) == {"canonical", "kind", "aliases", "attack_ids", "misp_uuid"}
    assert link["kind"] == "ransomware" and "S1242" in link["attack_ids"] and "Agenda" in link["aliases"]
    assert json.loads(json.dumps(link)) == link
    assert table.link(table.lookup("WannaCry").entry)["kind"] == "malware"
    assert table.link(table.lookup("Lazarus Group").entry)["kind"] == "group"
    assert table.lookup("Agenda").common and not table.lookup("Qilin").common
    assert table.lookup("Cozy Bear").entry is None and len(table.lookup("Cozy Bear").candidates) == 2
    assert DEFAULT_TABLE.stat().st_size < 2_000_000
    notice = (DEFAULT_TABLE.parent / "ALIASES-NOTICE.md").read_text(encoding="utf8")
    assert "The MITRE Corporation" in notice and "CC0" in notice


@pytest.mark.skipif(not SHARED_GAZETTEERS.is_dir(), reason="needs ../shared/data/gazetteers")
def test_committed_table_equals_a_fresh_build():
    fresh = table_bytes(build_table(SHARED_GAZETTEERS))
    assert fresh == DEFAULT_TABLE.read_bytes(), "src/nhs_nlp/data/aliases.json is stale: run `nhs-nlp aliases build -o src/nhs_nlp/data/aliases.json --force`"


def test_bad_table_files(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_bytes(b"\xff\xfe not json")
    with pytest.raises(AliasError, match="not a JSON alias table"):
        AliasTable.from_file(bad)
    bad.write_text('{"entries": []}', encoding="utf8")
    with pytest.raises(AliasError, match="not an nhs_nlp alias table"):
        AliasTable.from_file(bad)
    with pytest.raises(AliasError, match="does not exist"):
        AliasTable.from_file(tmp_path / "missing.json")
    with pytest.raises(TypeError, match="takes a str"):
        AliasTable.from_file().lookup(b"LockBit")


# ---------------------------------------------------------------- the linker


def linker_nlp(**config):
    nlp = spacy.blank("en", config=TOKENIZER)
    nlp.add_pipe("nhs_actor_linker", config=config)
    nlp.initialize()
    return nlp


@pytest.fixture(scope="module")
def linker(table):
    return linker_nlp()


def tag(nlp, text, *names, label="ATTACK_GROUP"):
    """A doc whose entities are set by hand on the first occurrence of each name."""
    doc = nlp.make_doc(text)
    spans, pos = [], 0
    for name in names:
        start = text.index(name, pos)
        spans.append(doc.char_span(start, start + len(name), label=label))
        pos = start + len(name)
    doc.ents = spans
    return nlp(doc)


def links(doc):
    return [(e.text, e._.link["canonical"] if e._.link else None) for e in doc.ents]


@pytest.mark.parametrize(
    "text, names, expected",
    [
        ("BlackBasta hit a Swiss firm.", ["BlackBasta"], ["Black Basta"]),
        ("The Black Basta ransomware was found.", ["Black Basta ransomware"], ["Black Basta"]),
        ("LOCKBIT posted the files.", ["LOCKBIT"], ["LockBit"]),
        ("Cl0p exploited MOVEit.", ["Cl0p"], ["Clop"]),
        ("ALPHV claimed it.", ["ALPHV"], ["BlackCat"]),
        ("A LockBit 3.0 affiliate struck.", ["LockBit 3.0"], ["LockBit"]),
        ("The Agenda ransomware encrypted servers.", ["Agenda"], ["Qilin"]),
        ("Play claimed the attack on its leak site.", ["Play"], ["Play"]),
        ("Hackers linked to Royal struck Dallas.", ["Royal"], ["Royal"]),
        ("The Zorblax Collective says it did it.", ["Zorblax Collective"], [None]),
    ],
)
def test_linker_variants_and_context(linker, text, names, expected):
    doc = tag(linker, text, *names)
    assert links(doc) == list(zip(names, expected))


@pytest.mark.parametrize(
    "text, name",
    [
        ("It was a play on words, Play said.", "Play"),
        ("Hunters said the season was good.", "Hunters"),
        ("The board set the Agenda for May.", "Agenda"),
        ("Akira is a 1988 film.", "Akira"),
    ],
)
def test_common_words_without_context_stay_unlinked_but_kept(linker, text, name):
    doc = tag(linker, text, name)
    assert links(doc) == [(name, None)]


def test_doc_level_support_links_later_common_mentions(linker):
    text = "Hunters International claimed the theft. Later, Hunters said talks had failed."
    doc = linker.make_doc(text)
    first = doc.char_span(0, 21, label="ATTACK_GROUP")
    second_at = text.index("Hunters said")
    doc.ents = [first, doc.char_span(second_at, second_at + 7, label="ATTACK_GROUP")]
    assert links(linker(doc)) == [("Hunters International", "Hunters International"), ("Hunters", "Hunters International")]


def test_ambiguous_names_use_the_label(linker):
    doc = tag(linker, "Cozy Bear was blamed.", "Cozy Bear", label="ATTACK_GROUP")
    assert links(doc) == [("Cozy Bear", "APT29")]
    doc = tag(linker, "Cozy Bear was found on hosts.", "Cozy Bear", label="MALWARE")
    assert links(doc) == [("Cozy Bear", "CozyCar")]


def test_other_labels_untouched_and_awkward_inputs(linker):
    doc = linker.make_doc("Synnovis was hit by Qilin.")
    doc.ents = [Span(doc, 0, 1, label="ORG"), Span(doc, 4, 5, label="ATTACK_GROUP")]
    doc = linker(doc)
    assert doc.ents[0]._.link is None and doc.ents[1]._.link["canonical"] == "Qilin"
    for text in ["", "   \n ", "LockBit " * 20000]:
        assert linker(text).text == text


def test_uninitialised_and_bad_config_are_clear_errors():
    nlp = spacy.blank("en")
    nlp.add_pipe("nhs_actor_linker")
    with pytest.raises(ValueError, match="has no alias table"):
        nlp("LockBit")
    with pytest.raises(ValueError, match="window must be 0 or more"):
        spacy.blank("en").add_pipe("nhs_actor_linker", config={"window": -1})


def test_linker_round_trips_bytes_and_disk(linker, tmp_path):
    data = linker.get_pipe("nhs_actor_linker").to_bytes()
    other = spacy.blank("en", config=TOKENIZER)
    other.add_pipe("nhs_actor_linker").from_bytes(data)
    assert links(tag(other, "Cl0p struck.", "Cl0p")) == [("Cl0p", "Clop")]
    linker.to_disk(tmp_path / "p")
    assert (tmp_path / "p" / "nhs_actor_linker" / "aliases.json").read_bytes() == DEFAULT_TABLE.read_bytes()
    loaded = spacy.load(tmp_path / "p")
    assert links(tag(loaded, "ALPHV struck.", "ALPHV")) == [("ALPHV", "BlackCat")]


@pytest.mark.slow
def test_entry_points_in_a_fresh_process(tmp_path):
    """Factory and misc function resolve without importing nhs_nlp (entry points)."""
    code = f"""
import sys, spacy
assert "nhs_nlp" not in sys.modules
nlp = spacy.blank("en")
nlp.add_pipe("span_ruler", name="actor_ruler", config={RULER_CONFIG!r})
nlp.add_pipe("nhs_actor_linker", name="actor_linker")
config = nlp.config.copy()
config["initialize"]["components"]["actor_ruler"] = {{"patterns": {{"@misc": "nhs_nlp.actor_patterns.v1"}}}}
nlp = spacy.util.load_model_from_config(config, auto_fill=True)
nlp.initialize()
nlp.to_disk({str(tmp_path / 'model')!r})
doc = spacy.load({str(tmp_path / 'model')!r})("The Qilin gang and Cl0p struck.")
print([(e.text, e.label_, e._.link["canonical"]) for e in doc.ents])
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "('Qilin', 'ATTACK_GROUP', 'Qilin'), ('Cl0p', 'ATTACK_GROUP', 'Clop')" in proc.stdout
    assert (tmp_path / "model" / "actor_ruler" / "patterns").stat().st_size > 100_000  # saved with the pipeline


# ---------------------------------------------------------------- the ruler


@pytest.fixture(scope="module")
def ruled(table):
    nlp = spacy.blank("en", config=TOKENIZER)
    return add_actor_pipes(nlp, table=table)


def found(doc):
    return [(e.text, e.label_, e._.link["canonical"] if e._.link else None) for e in doc.ents]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("It was a play on words.", []),
        ("Letters from the Royal Mail were late.", []),
        ("Hunters said the deer were plentiful.", []),
        ("Akira Kurosawa made films.", []),
        ("The Russian hackers were not named.", []),
        ("The Play ransomware gang claimed the attack.", [("Play", "ATTACK_GROUP", "Play")]),
        ("BlackBasta and BLACK BASTA, not black basta.", [("BlackBasta", "ATTACK_GROUP", "Black Basta"), ("BLACK BASTA", "ATTACK_GROUP", "Black Basta")]),
        ("The EnCrypt family; encrypt the files.", [("EnCrypt", "MALWARE", "EnCrypt")]),
        ("lockbit and LOCKBIT both.", [("lockbit", "ATTACK_GROUP", "LockBit"), ("LOCKBIT", "ATTACK_GROUP", "LockBit")]),
        ("Hunters International claimed it. Hunters later said more.",
         [("Hunters International", "ATTACK_GROUP", "Hunters International"), ("Hunters", "ATTACK_GROUP", "Hunters International")]),
        ("WannaCry spread in 2017.", [("WannaCry", "MALWARE", "WannaCry")]),
        ("Police said Operation Medusa targeted the Snake malware, not the Medusa gang.", [("Medusa", "ATTACK_GROUP", "Medusa")]),
    ],
)
def test_ruler_adds_with_context_only(ruled, text, expected):
    assert found(ruled(text)) == expected


def test_ruler_never_overrides_existing_entities(ruled):
    doc = ruled.make_doc("The Royal Mail said Royal ransomware hit it.")
    doc.ents = [Span(doc, 1, 3, label="ORG")]
    for _, proc in ruled.pipeline:
        doc = proc(doc)
    assert found(doc) == [("Royal Mail", "ORG", None), ("Royal", "ATTACK_GROUP", "Royal")]
    assert CANDIDATES_KEY not in doc.spans


@pytest.mark.parametrize(
    "text, tagged, label, expected",
    [
        ("The Winnti Group was named.", "Winnti", "ATTACK_GROUP", ("Winnti Group", "ATTACK_GROUP", "Winnti Group")),
        ("Cyber Army of Russia Reborn posted a video.", "Cyber Army", "ATTACK_GROUP",
         ("Cyber Army of Russia Reborn", "ATTACK_GROUP", "Cyber Army of Russia Reborn")),
        ("The Daixin Team leaked records.", "Daixin", "ORG", ("Daixin Team", "ATTACK_GROUP", "Daixin Team")),
        ("INC Ransom listed the council.", "INC", "ATTACK_GROUP", ("INC Ransom", "ATTACK_GROUP", "INC Ransom")),
        # a table name ending in "ransomware" describes the tagged name: the name stays
        ("Ryuk ransomware hit the hospital.", "Ryuk", "MALWARE", ("Ryuk", "MALWARE", "Ryuk")),
    ],
)
def test_a_known_longer_name_replaces_the_tagged_part(ruled, text, tagged, label, expected):
    doc = ruled.make_doc(text)
    start = text.index(tagged)
    doc.ents = [doc.char_span(start, start + len(tagged), label=label)]
    for _, proc in ruled.pipeline:
        doc = proc(doc)
    assert found(doc)[0] == expected


def test_two_tagged_names_inside_one_table_name_stay_two(ruled):
    doc = ruled.make_doc("ALPHV/BlackCat claimed the attack.")
    doc.ents = [doc.char_span(0, 5, label="ATTACK_GROUP"), doc.char_span(6, 14, label="ATTACK_GROUP")]
    for _, proc in ruled.pipeline:
        doc = proc(doc)
    assert [e.text for e in doc.ents] == ["ALPHV", "BlackCat"]


def test_ruler_patterns_are_exact_case_phrases(table):
    patterns = actor_patterns(table)
    assert patterns == sorted(patterns, key=lambda p: (p["label"], p["pattern"], p["id"]))
    strings = {p["pattern"] for p in patterns}
    assert {"LockBit", "lockbit", "LOCKBIT", "Play", "PLAY"} <= strings
    assert "play" not in strings and "royal" not in strings and "Russian" not in strings and "encrypt" not in strings
    assert "Core" not in strings  # a common word that names only a sample-known family


def test_n_process_2_keeps_links(ruled):
    texts = ["Cl0p hit Zellis.", "", "The Agenda ransomware hit a firm.", "Nothing here."]
    single = [found(d) for d in ruled.pipe(texts)]
    multi = [found(d) for d in ruled.pipe(texts, n_process=2, batch_size=2)]
    assert single == multi and single[0] == [("Cl0p", "ATTACK_GROUP", "Clop")]


# ---------------------------------------------------------------- the shipped model


def test_with_the_shipped_model(shipped_nlp, table):
    """The shipped NER's spans are kept, linked, and the ruler adds only missing names."""
    actors = spacy.blank("en", vocab=shipped_nlp.vocab, config=TOKENIZER)
    add_actor_pipes(actors, table=table, after=None)
    text = (
        "The LockBit ransomware gang attacked Advanced, and later ALPHV claimed a separate attack on the trust. "
        "Investigators said a LockBit 3.0 affiliate used Cobalt Strike. The council's agenda was postponed."
    )
    doc = shipped_nlp(text)
    before = {(e.start_char, e.end_char, e.label_) for e in doc.ents}
    for _, proc in actors.pipeline:
        doc = proc(doc)
    after = {(e.start_char, e.end_char, e.label_) for e in doc.ents}
    assert before <= after, "no NER span may be dropped"
    got = {e.text: (e._.link or {}).get("canonical") for e in doc.ents if e.label_ in ("ATTACK_GROUP", "MALWARE")}
    assert got.get("LockBit") == "LockBit" and got.get("ALPHV") == "BlackCat"
    assert "agenda" not in got
    assert all(e._.link is None for e in doc.ents if e.label_ not in ("ATTACK_GROUP", "MALWARE"))


def test_add_actor_pipes_reuses_an_existing_linker(table):
    nlp = spacy.blank("en", config=TOKENIZER)
    nlp.add_pipe("nhs_actor_linker")
    add_actor_pipes(nlp, table=table)
    assert nlp.pipe_names == ["actor_ruler", "nhs_actor_linker"]
    assert found(nlp("Anonymous Sudan claimed the outage.")) == [("Anonymous Sudan", "ATTACK_GROUP", "Anonymous Sudan")]
    bare = spacy.blank("en")
    bare.add_pipe("nhs_actor_linker", config={"candidates_key": None})
    with pytest.raises(ValueError, match="candidates_key = null"):
        add_actor_pipes(bare, table=table)
