"""Exports: JSON Lines + committed JSON Schema, STIX 2.1 bundles (stix2 + stix2-validator), CSV, CLI."""
import csv
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from stix2validator import ValidationOptions, validate_parsed_json
from stix2validator.v21.enums import CHECK_CODES
from typer.testing import CliRunner

from nhs_nlp.cli import app
from nhs_nlp.export import (
    export_results,
    read_results,
    records_of,
    rows_for_result,
    validate_record,
    write_csv,
    write_jsonl,
)
from nhs_nlp.export.csv import COLUMNS
from nhs_nlp.export.jsonl import dumps_line, record_errors, schema_path, schema_text
from nhs_nlp.export.stix import (
    ACCEPTED_WARNINGS,
    EPOCH,
    EXTENSION_ID,
    NAMESPACE,
    bundle_for_result,
    bundle_for_results,
    serialize,
    validate_bundle,
)
from nhs_nlp.records import (
    SCHEMA_VERSION,
    Actor,
    IncidentRecord,
    Organisation,
    QuantityItem,
    Service,
    Stated,
    json_schema,
)

ROOT = Path(__file__).resolve().parents[1]

# Written for this test; the facts are those of the June 2024 Synnovis attack.
TEXT = (
    "Qilin ransomware hit Synnovis, a pathology supplier, halting blood tests and blood transfusions "
    "at King's College Hospital NHS Foundation Trust and Guy's and St Thomas' NHS Foundation Trust; "
    "about 2 million people were affected."
)
KCH = "King's College Hospital NHS Foundation Trust"
GSTT = "Guy's and St Thomas' NHS Foundation Trust"


def span(phrase: str) -> tuple:
    start = TEXT.index(phrase)
    return (start, start + len(phrase))


def synnovis_record() -> IncidentRecord:
    return IncidentRecord(
        incident_id="synnovis-2024#1",
        attack_groups=[Actor(name="Qilin", canonical="Qilin", kind="ransomware", aliases=["Agenda"], attack_ids=["S1242"], mentions=[span("Qilin")])],
        victims=[Organisation(name="Synnovis", role="victim", mentions=[span("Synnovis")])],
        affected_organisations=[
            Organisation(name=KCH, role="affected", mentions=[span(KCH)]),
            Organisation(name=GSTT, role="affected", mentions=[span(GSTT)]),
        ],
        attack_type=Stated(value="ransomware", mentions=[span("ransomware")]),
        affected_services=[Service(name="blood tests", mentions=[span("blood tests")]), Service(name="blood transfusions", mentions=[span("blood transfusions")])],
        quantities=[QuantityItem(text="about 2 million people", value=2000000, qualifier="approximate", measures="people", mentions=[span("about 2 million people")])],
    ).fill_evidence()


def synnovis_result(**extra) -> dict:
    return {"id": "synnovis-2024", "title": "Blood tests halted after attack on pathology firm", "date": "2024-06-04",
            "entities": {}, "records": [synnovis_record().model_dump(mode="json")], **extra}


def bare_result() -> dict:
    """A record that names no group, victim or malware."""
    rec = IncidentRecord(incident_id="council-note#1", affected_services=[Service(name="online payments", mentions=[[10, 25]])])
    return {"id": "council-note", "records": [rec.model_dump(mode="json")]}


def objects_by_type(bundle) -> dict:
    out: dict = {}
    for obj in json.loads(serialize(bundle))["objects"]:
        out.setdefault(obj["type"], []).append(obj)
    return out


def relationships(bundle) -> set:
    objs = {o["id"]: o for o in json.loads(serialize(bundle))["objects"]}
    def name(ref: str) -> str:
        return objs[ref].get("name", ref)

    return {(name(o["source_ref"]), o["relationship_type"], name(o["target_ref"])) for o in objs.values() if o["type"] == "relationship"}


# --- JSON Schema and JSON Lines -------------------------------------------------------------


def test_committed_schema_is_generated_from_the_models():
    committed = schema_path().read_text(encoding="utf8")
    assert json.loads(committed) == json_schema(), "run `nhs-nlp schema -o src/nhs_nlp/data/incident-record.schema.json --force`"
    assert committed == schema_text()
    assert schema_path() == ROOT / "src" / "nhs_nlp" / "data" / "incident-record.schema.json"
    assert SCHEMA_VERSION in json.loads(committed)["$id"]


def test_schema_file_is_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf8"))
    patterns = config["tool"]["setuptools"]["package-data"]["nhs_nlp"]
    assert any(Path("data/incident-record.schema.json").match(p) for p in patterns), patterns


def test_jsonl_lines_validate_and_round_trip(tmp_path):
    path = tmp_path / "results.jsonl"
    assert write_jsonl([synnovis_result(), bare_result()], path) == 2
    lines = path.read_text(encoding="utf8").splitlines()
    assert len(lines) == 2 and "Guy's and St Thomas'" in lines[0]
    for line in lines:
        for rec in json.loads(line)["records"]:
            validate_record(rec)
            assert rec["schema_version"] == SCHEMA_VERSION
    results = list(read_results(path))
    assert results[0]["records"] == [synnovis_record()]
    assert results[1]["records"][0].incident_id == "council-note#1"
    assert json.loads(dumps_line(synnovis_record())) == synnovis_record().model_dump(mode="json")


@pytest.mark.parametrize(
    "change,expected",
    [
        (lambda r: r["victims"][0].update(role="boss"), "victims/0/role"),
        (lambda r: r.pop("incident_id"), "'incident_id' is a required property"),
        (lambda r: r.update(severity="high"), "Additional properties are not allowed"),
        (lambda r: r["attack_groups"][0].update(mentions=[[0]]), "attack_groups/0/mentions/0"),
        (lambda r: r["quantities"][0].update(value="two million"), "quantities/0/value"),
        (lambda r: r.update(schema_version="0.9"), "schema_version: '0.9'"),
    ],
)
def test_validate_record_names_the_problem(change, expected):
    record = synnovis_record().model_dump(mode="json")
    change(record)
    assert any(expected in p for p in record_errors(record)), record_errors(record)
    with pytest.raises(ValueError, match="synnovis-2024#1|'\\?'"):
        validate_record(record)


def test_validate_record_rejects_non_objects():
    with pytest.raises(ValueError, match="must be a JSON object, got list"):
        validate_record([1, 2])


def test_read_results_reports_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    bad = synnovis_result()
    bad["records"][0]["victims"][0]["role"] = "boss"
    path.write_text(dumps_line(synnovis_result()) + "\n\n" + dumps_line(bad) + "\n", encoding="utf8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: result 'synnovis-2024', record 0: victims/0/role"):
        list(read_results(path))
    path.write_text('{"id": "x", "records": []}\n{"id": \n', encoding="utf8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid JSON"):
        list(read_results(path))
    path.write_bytes(b'{"id": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: not UTF-8"):
        list(read_results(path))
    with pytest.raises(ValueError, match="'records' must be a list, got str"):
        records_of({"id": "x", "records": "none"})


# --- STIX 2.1 -----------------------------------------------------------------------------------


def test_stix_bundle_is_valid_with_only_accepted_warnings():
    bundle = bundle_for_result(synnovis_result())
    assert validate_bundle(bundle) == []
    # The same check by hand, every validator check on: no errors, and each warning is one we accept.
    (result,) = [validate_parsed_json(json.loads(serialize(bundle)), ValidationOptions(version="2.1"))]
    assert result.is_valid and not result.errors
    codes = {CHECK_CODES[w.split("{", 1)[1].split("}", 1)[0]] for w in result.warnings}
    assert codes <= set(ACCEPTED_WARNINGS), result.warnings


def test_stix_bundle_objects_and_relationships():
    bundle = bundle_for_result(synnovis_result())
    by_type = objects_by_type(bundle)
    (incident,) = by_type["incident"]
    assert incident["name"] == "Synnovis ransomware incident"
    assert "Disrupted services: blood tests; blood transfusions." in incident["description"]
    assert incident["created"] == incident["modified"] == "2024-06-04T00:00:00.000Z"  # the article's date
    orgs = {o["name"]: o for o in by_type["identity"] if o["identity_class"] == "organization"}
    assert {n: o["roles"] for n, o in orgs.items()} == {"Synnovis": ["victim"], KCH: ["affected"], GSTT: ["affected"]}
    (group,) = by_type["intrusion-set"]
    assert group["name"] == "Qilin" and group["aliases"] == ["Agenda"]
    assert group["external_references"] == [{"source_name": "mitre-attack", "url": "https://attack.mitre.org/software/S1242/", "external_id": "S1242"}]
    assert "malware" not in by_type
    assert relationships(bundle) == {
        ("Synnovis ransomware incident", "targets", "Synnovis"),
        ("Synnovis ransomware incident", "impacts", KCH),
        ("Synnovis ransomware incident", "impacts", GSTT),
        ("Synnovis ransomware incident", "attributed-to", "Qilin"),
    }
    # The whole record rides along in the property extension, losslessly.
    (ext_def,) = by_type["extension-definition"]
    assert ext_def["id"] == EXTENSION_ID and ext_def["schema"] == json_schema()["$id"]
    content = dict(incident["extensions"][EXTENSION_ID])
    assert content.pop("extension_type") == "property-extension"
    assert IncidentRecord.model_validate(content) == synnovis_record()


def test_stix_groups_use_malware_and_misp_references():
    rec = synnovis_record()
    rec.attack_groups.append(Actor(name="Scattered Spider", canonical="Scattered Spider", kind="group", attack_ids=["G1015"], misp_uuid="6f3c5e1a-0000-4000-8000-000000000001"))
    rec.malware = [Actor(name="BlackCat", canonical="ALPHV", kind="ransomware", aliases=["Noberus"], attack_ids=["S1068"])]
    result = {"id": "two-groups", "records": [rec.model_dump(mode="json")]}
    bundle = bundle_for_result(result)
    assert validate_bundle(bundle) == []
    by_type = objects_by_type(bundle)
    (malware,) = by_type["malware"]
    assert malware["name"] == "ALPHV" and malware["is_family"] is True and malware["malware_types"] == ["ransomware"]
    assert malware["aliases"] == ["BlackCat", "Noberus"]
    spider = next(o for o in by_type["intrusion-set"] if o["name"] == "Scattered Spider")
    assert {"source_name": "misp-galaxy", "external_id": "6f3c5e1a-0000-4000-8000-000000000001"} in spider["external_references"]
    assert {"source_name": "mitre-attack", "url": "https://attack.mitre.org/groups/G1015/", "external_id": "G1015"} in spider["external_references"]
    rels = relationships(bundle)
    assert {("Qilin", "uses", "ALPHV"), ("Scattered Spider", "uses", "ALPHV"), ("Synnovis ransomware incident", "related-to", "ALPHV")} <= rels
    assert ("Synnovis ransomware incident", "attributed-to", "Scattered Spider") in rels


def test_stix_is_deterministic():
    one, two = serialize(bundle_for_result(synnovis_result())), serialize(bundle_for_result(synnovis_result()))
    assert one == two
    ids = [o["id"] for o in json.loads(one)["objects"]] + [json.loads(one)["id"]]
    assert all(uuid.UUID(i.split("--")[1]).version == 5 for i in ids)
    assert all(uuid.UUID(i.split("--")[1]) != uuid.uuid5(uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7"), i.split("--")[0]) for i in ids)
    # A different record gives a different bundle id; the shared organisation keeps its id.
    other = synnovis_result()
    other["records"][0]["incident_id"] = "synnovis-2024#2"
    other_bundle = json.loads(serialize(bundle_for_result(other)))
    assert other_bundle["id"] != json.loads(one)["id"]
    def synnovis(b: dict) -> str:
        return next(o["id"] for o in b["objects"] if o.get("name") == "Synnovis")

    assert synnovis(other_bundle) == synnovis(json.loads(one))
    assert NAMESPACE.version == 5


@pytest.mark.slow
def test_stix_is_byte_identical_across_processes(tmp_path):
    path = tmp_path / "results.jsonl"
    write_jsonl([synnovis_result(), bare_result()], path)
    code = (
        "import sys\n"
        "from nhs_nlp.export.jsonl import read_results\n"
        "from nhs_nlp.export.stix import bundle_for_results, serialize\n"
        "sys.stdout.write(serialize(bundle_for_results(read_results(sys.argv[1]))))\n"
    )
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run([sys.executable, "-c", code, str(path)], check=False, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(proc.stdout)
    assert outs[0] == outs[1] and '"Synnovis ransomware incident"' in outs[0]


def test_stix_timestamps():
    created = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    by_type = objects_by_type(bundle_for_result(synnovis_result(), created=created))
    assert by_type["incident"][0]["created"] == "2025-01-02T03:04:05.000Z"
    assert all(r["created"] == "2025-01-02T03:04:05.000Z" for r in by_type["relationship"])
    assert all(o["created"] == "1970-01-01T00:00:00.000Z" for o in by_type["identity"] + by_type["intrusion-set"])
    undated = synnovis_result()
    del undated["date"]
    assert objects_by_type(bundle_for_result(undated))["incident"][0]["created"] == EPOCH.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with pytest.raises(ValueError, match="result 'synnovis-2024': date '4th June' is not an ISO 8601 date"):
        bundle_for_result(synnovis_result(date="4th June"))


def test_record_without_groups_or_victims_still_exports(tmp_path):
    bundle = bundle_for_result(bare_result())
    assert validate_bundle(bundle) == []
    by_type = objects_by_type(bundle)
    assert by_type["incident"][0]["name"] == "Cyber incident (council-note#1)"
    assert set(by_type) == {"identity", "extension-definition", "incident"}  # the producer identity, no organisations
    (row,) = rows_for_result(bare_result())
    assert row["affected_services"] == "online payments" and row["victims"] == "" and row["attack_groups"] == ""
    assert row["evidence"] == "affected_services 10-25"  # computed from mentions when evidence is empty
    empty = {"id": "nothing", "entities": {}, "records": []}
    assert "objects" not in json.loads(serialize(bundle_for_result(empty)))
    assert rows_for_result(empty) == [] and rows_for_result({"id": "old-style", "entities": {}}) == []


def test_organisation_merges_roles_and_apostrophes_across_records():
    first = synnovis_record()
    second = IncidentRecord(incident_id="synnovis-2024#2", victims=[Organisation(name="Guy’s and St Thomas’ NHS Foundation Trust", role="victim")],
                            other_organisations=[Organisation(name="Synnovis", role="other")])
    bundle = bundle_for_results([{"id": "a", "records": [first]}, {"id": "b", "records": [second.model_dump(mode="json")]}])
    assert validate_bundle(bundle) == []
    orgs = {o["name"]: o["roles"] for o in objects_by_type(bundle)["identity"] if o["identity_class"] == "organization"}
    assert orgs == {"Synnovis": ["victim", "other"], KCH: ["affected"], GSTT: ["victim", "affected"]}
    rels = relationships(bundle)
    assert ("Guy’s and St Thomas’ NHS Foundation Trust cyber incident", "targets", GSTT) in rels
    assert ("Guy’s and St Thomas’ NHS Foundation Trust cyber incident", "related-to", "Synnovis") in rels


def test_repeated_incident_ids():
    same = bundle_for_results([synnovis_result(), synnovis_result()])
    assert [o["type"] for o in json.loads(serialize(same))["objects"]].count("incident") == 1
    changed = synnovis_result()
    changed["records"][0]["victims"] = []
    with pytest.raises(ValueError, match="incident_id 'synnovis-2024#1' occurs twice"):
        bundle_for_results([synnovis_result(), changed])


def test_validate_bundle_reports_errors_and_unexpected_warnings():
    data = json.loads(serialize(bundle_for_result(synnovis_result())))
    org = next(o for o in data["objects"] if o.get("name") == "Synnovis")
    wrong = dict(next(o for o in data["objects"] if o["type"] == "relationship"), relationship_type="uses", target_ref=org["id"])
    assert any("'uses'" in w for w in validate_bundle({**data, "objects": data["objects"] + [wrong]}))
    del org["identity_class"]
    org["created"] = "yesterday"
    with pytest.raises(ValueError, match="invalid STIX 2.1 bundle"):
        validate_bundle(data)


# --- CSV ------------------------------------------------------------------------------------------


def test_csv_row_content():
    (row,) = rows_for_result(synnovis_result())
    assert list(row) == list(COLUMNS)
    assert row == {
        "doc_id": "synnovis-2024",
        "title": "Blood tests halted after attack on pathology firm",
        "date": "2024-06-04",
        "incident_id": "synnovis-2024#1",
        "schema_version": SCHEMA_VERSION,
        "attack_type": "ransomware",
        "attribution": "",
        "attack_groups": "Qilin",
        "malware": "",
        "attack_ids": "S1242",
        "victims": "Synnovis",
        "affected_organisations": f"{KCH}; {GSTT}",
        "other_organisations": "",
        "affected_services": "blood tests; blood transfusions",
        "quantities": "about 2 million people = 2000000 (approximate)",
        "dates": "",
        "evidence": "attack_groups 0-5; victims 21-29; affected_organisations 99-143 +1; affected_services 61-72 +1; quantities 191-213; attack_type 6-16",
    }
    assert TEXT[99:143] == KCH and TEXT[191:213] == "about 2 million people"


def test_write_csv_reads_back_and_guards_formulas(tmp_path):
    hostile = synnovis_result(id="hostile", title='=HYPERLINK("http://example.invalid","click")')
    hostile["records"][0]["victims"][0]["name"] = "@SUM(1+1)"
    path = tmp_path / "records.csv"
    assert write_csv([synnovis_result(), bare_result(), hostile], path) == 3
    with path.open(encoding="utf8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["incident_id"] for r in rows] == ["synnovis-2024#1", "council-note#1", "synnovis-2024#1"]
    assert rows[0] == rows_for_result(synnovis_result())[0]
    assert rows[2]["title"].startswith("'=HYPERLINK") and rows[2]["victims"] == "'@SUM(1+1)"
    assert path.read_bytes().count(b"\r\n") == 4


# --- CLI ------------------------------------------------------------------------------------------


@pytest.fixture()
def results_file(tmp_path) -> Path:
    path = tmp_path / "tagged.jsonl"
    write_jsonl([synnovis_result(), bare_result()], path)
    return path


def test_cli_schema(tmp_path):
    runner = CliRunner()
    printed = runner.invoke(app, ["schema"])
    assert printed.exit_code == 0 and printed.stdout == schema_path().read_text(encoding="utf8")
    out = tmp_path / "schema.json"
    assert runner.invoke(app, ["schema", "-o", str(out)]).exit_code == 0
    assert out.read_text(encoding="utf8") == schema_text()
    refused = runner.invoke(app, ["schema", "-o", str(out)])
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert runner.invoke(app, ["schema", "-o", str(out), "--force"]).exit_code == 0


def test_cli_export_all_formats(results_file, tmp_path):
    runner = CliRunner()
    for fmt in ("jsonl", "csv", "stix"):
        out = tmp_path / f"out.{fmt}"
        res = runner.invoke(app, ["export", str(results_file), "--format", fmt, "-o", str(out)])
        assert res.exit_code == 0, res.output
        assert "exported 2 record(s)" in res.stderr
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf8").splitlines()]
    assert [r["incident_id"] for r in records] == ["synnovis-2024#1", "council-note#1"]
    for rec in records:
        validate_record(rec)
    with (tmp_path / "out.csv").open(encoding="utf8", newline="") as f:
        assert [r["victims"] for r in csv.DictReader(f)] == ["Synnovis", ""]
    bundle = json.loads((tmp_path / "out.stix").read_text(encoding="utf8"))
    assert validate_bundle(bundle) == []
    assert sorted(o["name"] for o in bundle["objects"] if o["type"] == "incident") == ["Cyber incident (council-note#1)", "Synnovis ransomware incident"]
    assert bundle == json.loads(serialize(bundle_for_results(read_results(results_file))))
    to_stdout = runner.invoke(app, ["export", str(results_file), "-f", "csv", "-o", "-"])
    assert to_stdout.exit_code == 0 and to_stdout.stdout.splitlines()[0] == ",".join(COLUMNS)
    stamped = runner.invoke(app, ["export", str(results_file), "-f", "stix", "-o", "-", "--created", "2025-02-03"])
    assert stamped.exit_code == 0 and '"created": "2025-02-03T00:00:00.000Z"' in stamped.stdout


def test_cli_export_refuses_bad_input(results_file, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out.csv"
    out.write_text("keep me", encoding="utf8")
    res = runner.invoke(app, ["export", str(results_file), "-f", "csv", "-o", str(out)])
    assert res.exit_code == 2 and "--force" in res.stderr and out.read_text(encoding="utf8") == "keep me"
    res = runner.invoke(app, ["export", str(results_file), "-f", "xml", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2
    res = runner.invoke(app, ["export", str(tmp_path / "missing.jsonl"), "-f", "csv", "-o", str(tmp_path / "y.csv")])
    assert res.exit_code == 2 and "no such file" in res.stderr
    bad = tmp_path / "bad.jsonl"
    broken = synnovis_result()
    broken["records"][0]["quantities"][0]["value"] = "lots"
    bad.write_text(dumps_line(bare_result()) + "\n" + dumps_line(broken) + "\n", encoding="utf8")
    target = tmp_path / "never.stix"
    res = runner.invoke(app, ["export", str(bad), "-f", "stix", "-o", str(target)])
    assert res.exit_code == 1 and f"{bad}:2: result 'synnovis-2024', record 0: quantities/0/value" in res.stderr
    assert not target.exists() and not list(tmp_path.glob(".never.stix*"))


def test_export_results_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'xml'"), (tmp_path / "x").open("w", encoding="utf8") as f:
        export_results([synnovis_result()], "xml", f)  # type: ignore[arg-type]
