"""The shipped model in models/: loads offline, tags obvious entities, awkward inputs."""
import subprocess
import sys
from pathlib import Path

import pytest

import nhs_nlp
from nhs_nlp.api import default_model_path

ROOT = Path(__file__).resolve().parents[1]
MODEL = default_model_path()

TEXT = (
    "The LockBit ransomware gang attacked Advanced, a software supplier to the NHS, "
    "and NHS 111 services were disrupted for three weeks. Microsoft and the National "
    "Cyber Security Centre said more than 2,000 patients were affected."
)


@pytest.fixture(scope="module")
def nlp(shipped_nlp):
    return shipped_nlp


def ents(doc):
    return {(e.text, e.label_) for e in doc.ents}


def test_tags_obvious_entities(nlp):
    found = ents(nlp(TEXT))
    assert ("LockBit", "ATTACK_GROUP") in found
    assert ("Advanced", "ORG") in found
    assert ("Microsoft", "ORG") in found
    assert any(label == "QUANTITY" and "2,000" in text for text, label in found), found


def test_loads_offline_in_fresh_process_with_network_blocked():
    code = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise OSError('network access attempted')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "import spacy\n"
        f"nlp = spacy.load({str(MODEL)!r})\n"
        "doc = nlp('Hackers linked to the Qilin group hit Synnovis, a pathology supplier.')\n"
        "print(sorted((e.text, e.label_) for e in doc.ents))\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "", "HOME": "/nonexistent"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "('Qilin', 'ATTACK_GROUP')" in proc.stdout and "('Synnovis', 'ORG')" in proc.stdout, proc.stdout


@pytest.mark.parametrize("text", ["", "   \n\t ", "🔒💻🏥🔥", "£ $ 2024 ..."])
def test_awkward_inputs(nlp, text):
    doc = nlp(text)
    assert doc.text == text
    result = nhs_nlp.extract(text)
    assert set(result["entities"]) == {"ORG", "ATTACK_GROUP", "MALWARE", "SERVICE", "QUANTITY"}


def test_extract_streams_in_order_and_loads_once():
    from nhs_nlp import api

    texts = ["LockBit attacked Boeing.", "", "Qilin attacked Synnovis."]
    results = list(nhs_nlp.extract(iter(texts)))
    assert len(results) == 3 and results[1]["entities"]["ORG"] == []
    loaded = dict(api._cache)
    nhs_nlp.extract("Conti attacked the HSE.")
    assert dict(api._cache) == loaded and len(loaded) == 1
    for r, t in zip(results, texts):
        for items in r["entities"].values():
            for item in items:
                assert t[item["start"] : item["end"]] == item["text"]


def test_non_string_input_is_a_type_error():
    with pytest.raises(TypeError, match="got int"):
        nhs_nlp.extract(42)
    with pytest.raises(TypeError, match=r"got bytes \(item 1\)"):
        list(nhs_nlp.extract(["fine", b"bytes"]))


def test_n_process_2_matches_single_process():
    import torch

    texts = [TEXT, "Scattered Spider hit Marks & Spencer.", "", "Clop exploited MOVEit at Zellis."]
    single = list(nhs_nlp.extract(texts))
    threads = torch.get_num_threads()
    multi = list(nhs_nlp.extract(texts, n_process=2, batch_size=2))
    assert single == multi
    assert torch.get_num_threads() == threads


@pytest.mark.slow
def test_long_document_is_processed_whole(nlp):
    sentence = "The Qilin gang attacked Synnovis and blood tests were cancelled at six NHS trusts. "
    text = sentence * 7200  # about 100,000 words
    doc = nlp(text)
    assert len(text.split()) >= 100_000
    tail = [e for e in doc.ents if e.start_char > len(text) - 2 * len(sentence)]
    assert any(e.label_ == "ATTACK_GROUP" for e in tail), "entities at the end of a long text must be found"
