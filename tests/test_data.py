"""Readers shared by training and evaluation: BIO files and AnnoCTR partial annotation."""
from fixtures import write_annoctr

from nhs_nlp.data import annoctr_docs, bio_spans, chunk_doc, read_bio
from nhs_nlp.tokenizer import blank_english


def test_bio_spans_handles_stray_inside_tags():
    assert bio_spans(["B-ORG", "I-ORG", "O", "I-GROUP", "B-GROUP", "O"]) == [(0, 2, "ORG"), (3, 4, "GROUP"), (4, 5, "GROUP")]


def test_read_bio_documents_and_sentences(tmp_path):
    folder = write_annoctr(tmp_path / "annoctr")
    docs = list(read_bio(folder / "train.bio"))
    assert len(docs) == 1 and len(docs[0]) == 3
    assert docs[0][0].words[:3] == ["APT29", "used", "Mimikatz"]
    assert docs[0][0].line == 3


def test_annoctr_mapping_and_unannotated_tokens(tmp_path):
    folder = write_annoctr(tmp_path / "annoctr")
    nlp = blank_english()
    (doc,) = annoctr_docs(nlp, "train", folder)
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("APT29", "ATTACK_GROUP"),
        ("Microsoft", "ORG"),
        ("Emotet", "MALWARE"),
        ("Lazarus Group", "ATTACK_GROUP"),
    ]
    iob = {t.text: t.ent_iob_ for t in doc}
    assert iob["Mimikatz"] == ""  # TOOL: neither MALWARE nor O
    assert iob["500"] == "" and iob["hosts"] == ""  # could be a QUANTITY
    assert iob["offline"] == "" and iob["Systems"] == ""  # disruption sentence: could hold a SERVICE
    assert iob["against"] == "O" and iob["used"] == "O" and iob["Emotet"] == "B"  # known negatives stay negative
    assert iob["2024"] == ""  # numbers are never taught as plain O


def test_chunk_doc_never_cuts_entities():
    nlp = blank_english()
    from spacy.tokens import Span

    doc = nlp.make_doc("word " * 10 + "Lazarus Group struck . " + "word " * 10)
    doc.ents = [Span(doc, 10, 12, "ATTACK_GROUP")]
    pieces = chunk_doc(doc, max_tokens=11)
    assert sum(len(p) for p in pieces) == len(doc)
    assert [e.text for p in pieces for e in p.ents] == ["Lazarus Group"]
