"""The entity boundary repair component (``nhs_entity_repair``)."""
import json

import pytest
import spacy
from spacy.tokens import Span

from nhs_nlp.components.repair import EntityRepair, defined_abbreviations, long_form_start

TOKENIZER = {"nlp": {"tokenizer": {"@tokenizers": "nhs_nlp.Tokenizer.v1"}}}


@pytest.fixture(scope="module")
def nlp():
    nlp = spacy.blank("en", config=TOKENIZER)
    nlp.add_pipe("nhs_entity_repair")
    return nlp


def repaired(nlp, text, tagged, label="ORG"):
    """Tag ``tagged`` (its first occurrence) by hand, run the pipeline, return the entities."""
    doc = nlp.make_doc(text)
    start = text.index(tagged)
    doc.ents = [doc.char_span(start, start + len(tagged), label=label, alignment_mode="expand")]
    doc = nlp(doc)
    return [(e.text, e.label_) for e in doc.ents]


@pytest.mark.parametrize(
    "text, tagged, label, expected",
    [
        ("On Tuesday Formosa Petrochemical said an attack hit it.", "Formosa Petrochemical said", "ORG", "Formosa Petrochemical"),
        ("The Court of Appeal for England ruled.", "Court of Appeal for", "ORG", "Court of Appeal"),
        ("Royal in Dallas, Play in Oakland.", "Royal in", "ATTACK_GROUP", "Royal"),
        ("The insurer (PhilHealth) was hit.", "PhilHealth)", "ORG", "PhilHealth"),
        ("After the attack SIT disabled its systems.", "SIT disabled", "MALWARE", "SIT"),
        ("the Medusa gang and the NHS", "the Medusa", "ATTACK_GROUP", "Medusa"),
        # names that end in lower-case words that are not stop words or past tenses stay whole
        ("Anhalt-Bitterfeld district administration declared a disaster.", "Anhalt-Bitterfeld district administration", "ORG",
         "Anhalt-Bitterfeld district administration"),
        ("Bergisch Gladbach city council closed.", "Bergisch Gladbach city council", "ORG", "Bergisch Gladbach city council"),
        ("Lapsus$ members were 0ktapus affiliates.", "0ktapus", "ATTACK_GROUP", "0ktapus"),
        ("NoName057(16) claimed it.", "NoName057(16)", "ATTACK_GROUP", "NoName057(16)"),
    ],
)
def test_edges_no_name_has_are_trimmed(nlp, text, tagged, label, expected):
    assert repaired(nlp, text, tagged, label) == [(expected, label)]


@pytest.mark.parametrize(
    "text, tagged, label, expected",
    [
        ("Royal ransomware disrupted dispatch.", "Royal ransomware", "ORG", ("Royal", "ATTACK_GROUP")),
        ("The Emotet botnet returned.", "Emotet botnet", "ORG", ("Emotet", "MALWARE")),
        ("The Medusa gang posted files.", "Medusa gang", "ATTACK_GROUP", ("Medusa", "ATTACK_GROUP")),
        ("A QakBot trojan was found.", "QakBot trojan", "MALWARE", ("QakBot", "MALWARE")),
        ("Evil Corp Hackers Ltd is a made-up firm.", "Evil Corp Hackers Ltd", "ORG", ("Evil Corp Hackers Ltd", "ORG")),
    ],
)
def test_a_word_saying_what_the_name_names_is_not_part_of_it(nlp, text, tagged, label, expected):
    assert repaired(nlp, text, tagged, label) == [expected]

def test_a_bracket_the_name_opened_is_closed(nlp):
    doc = nlp.make_doc("NoName057(16) claimed the attacks.")
    tokens = [t.text for t in doc]
    assert tokens[:2] == ["NoName057(16", ")"]  # the tokenizer splits the closing bracket off
    doc.ents = [Span(doc, 0, 1, label="ATTACK_GROUP")]
    assert [e.text for e in nlp(doc).ents] == ["NoName057(16)"]


def test_operation_names_are_not_gangs(nlp):
    doc = nlp.make_doc("Operation Medusa took down Snake; the Medusa gang was not involved.")
    doc.ents = [Span(doc, 1, 2, label="ATTACK_GROUP"), Span(doc, 4, 5, label="MALWARE"), Span(doc, 7, 8, label="ATTACK_GROUP")]
    assert [(e.text, e.start) for e in nlp(doc).ents] == [("Snake", 4), ("Medusa", 7)]


def test_other_labels_and_one_word_names_are_left_alone(nlp):
    assert repaired(nlp, "It lasted for three weeks in total.", "three weeks in", "QUANTITY") == [("three weeks in", "QUANTITY")]
    assert repaired(nlp, "They said so.", "said", "ORG") == [("said", "ORG")]  # never trimmed to nothing


def test_neighbouring_entities_are_not_swallowed(nlp):
    doc = nlp.make_doc("NoName057(16) hit Acme")
    doc.ents = [Span(doc, 0, 1, label="ATTACK_GROUP"), Span(doc, 1, 2, label="ORG")]
    assert [(e.text, e.label_) for e in nlp(doc).ents] == [("NoName057(16", "ATTACK_GROUP"), (")", "ORG")]


def test_empty_doc_and_config(nlp):
    assert list(nlp("").ents) == []
    custom = spacy.blank("en")
    custom.add_pipe("nhs_entity_repair", config={"labels": ["ORG"], "edge_words": ["commented"], "not_after": []})
    repair = custom.get_pipe("nhs_entity_repair")
    assert isinstance(repair, EntityRepair) and repair.labels == frozenset({"ORG"}) and "commented" in repair.edge_words
    assert not repair.not_after


def test_the_shipped_pipeline_repairs_before_linking(shipped_nlp, root):
    names = shipped_nlp.pipe_names
    assert names.index("ner") + 1 == names.index("entity_repair") < names.index("actor_linker")
    model = root / "models" / "nhs-nlp-ner"
    assert 'factory = "nhs_entity_repair"' in (model / "config.cfg").read_text(encoding="utf8")
    assert "entity_repair" in json.loads((model / "meta.json").read_text(encoding="utf8"))["pipeline"]


def tagged_doc(nlp, text, tags):
    """A doc with each (text, label) of ``tags`` tagged at its first occurrence."""
    doc = nlp.make_doc(text)
    doc.ents = [doc.char_span(text.index(t), text.index(t) + len(t), label=label) for t, label in tags]
    return doc


@pytest.mark.parametrize(
    "short, words, expected",
    [
        ("NCSC", ["the", "UK's", "National", "Cyber", "Security", "Centre"], 2),
        ("DICT", ["the", "Department", "of", "Information", "and", "Communications", "Technology"], 1),
        ("PhilHealth", ["the", "Philippine", "Health", "Insurance", "Corporation"], 1),
        ("SIT", ["provider", "Südwestfalen-IT"], 1),
        ("CSRB", ["the", "Cyber", "Safety", "Review", "Board"], 1),
        ("XYZ", ["the", "National", "Health", "Service"], None),
    ],
)
def test_long_form_start_matches_the_short_forms_letters_in_order(short, words, expected):
    assert long_form_start(short, words) == expected


def test_defined_abbreviations(nlp):
    doc = nlp.make_doc(
        "The Department of Information and Communications Technology (DICT) said remote desktop protocol (RDP) "
        "access was used, and Minneapolis schools (ok) reopened; Qilin (Agenda) claimed it."
    )
    assert [(lf.text, sf.text) for lf, sf in defined_abbreviations(doc)] == [
        ("Department of Information and Communications Technology", "DICT"),
    ]


def test_a_defined_abbreviation_shares_the_org_tag_of_its_long_form(nlp):
    text = ("The Department of Information and Communications Technology (DICT) said the breach was contained. "
            "DICT later published a list of affected systems.")
    doc = nlp(tagged_doc(nlp, text, [("Department of Information and Communications Technology", "ORG")]))
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("Department of Information and Communications Technology", "ORG"), ("DICT", "ORG"), ("DICT", "ORG"),
    ]


def test_the_long_form_replaces_the_org_pieces_it_contains(nlp):
    text = "Singapore Health Services Pte Ltd (SingHealth) runs clinics. SingHealth was fined."
    doc = nlp(tagged_doc(nlp, text, [("Pte Ltd", "ORG"), ("SingHealth", "ORG")]))
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("Singapore Health Services Pte Ltd", "ORG"), ("SingHealth", "ORG"), ("SingHealth", "ORG"),
    ]


def test_abbreviations_without_org_evidence_or_with_other_labels_are_left_alone(nlp):
    text = "Trusts complete the Data Security and Protection Toolkit (DSPT) each year; the DSPT is online."
    doc = nlp(tagged_doc(nlp, text, []))
    assert list(doc.ents) == []
    text = "Black Basta (BB) hit Acme Health, and BB named Acme Health (AH) on its site; AH said so, BB did not."
    doc = nlp(tagged_doc(nlp, text, [("Black Basta", "ATTACK_GROUP"), ("Acme Health", "ORG")]))
    labels = [(e.text, e.label_) for e in doc.ents]
    assert ("BB", "ORG") not in labels and ("Black Basta", "ATTACK_GROUP") in labels
    assert labels.count(("AH", "ORG")) == 2 and labels.count(("Acme Health", "ORG")) == 2
    off = spacy.blank("en", config=TOKENIZER)
    off.add_pipe("nhs_entity_repair", config={"abbreviations": False})
    text = "The Department of Information and Communications Technology (DICT) said so."
    doc = off(tagged_doc(off, text, [("Department of Information and Communications Technology", "ORG")]))
    assert [e.text for e in doc.ents] == ["Department of Information and Communications Technology"]
