"""Training: compile the data into DocBins and run spaCy training with our config."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from spacy.tokens import DocBin

from .corpus import build as build_corpus
from .data import annoctr_docs, chunk_doc, jsonl_docs
from .tokenizer import blank_english

DEFAULT_CONFIG = Path("training/config.cfg")


def prepare_data(
    out_dir: Path,
    corpus_sources: Sequence[Path] = (Path("corpus/articles"),),
    annoctr: Optional[Path] = None,
    use_annoctr: bool = True,
    chunk_tokens: int = 256,
    seed: int = 0,
) -> Dict[str, Any]:
    """Write the training and dev DocBins.

    - ``corpus/``: our corpus compiled (JSONL + DocBin per split);
    - ``train.spacy``: corpus train + AnnoCTR train, chunked to ``chunk_tokens``;
    - ``dev.spacy``: corpus dev + AnnoCTR dev, whole documents;
    - ``annoctr-dev.spacy``: AnnoCTR dev alone (for the benchmark).

    RETURNS (Dict[str, Any]): paths and document counts (also written to data.json).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus_dir = out_dir / "corpus"
    counts = build_corpus(list(corpus_sources), corpus_dir)
    nlp = blank_english()
    train_docs = [d for _, doc in jsonl_docs(nlp, corpus_dir / "train.jsonl") for d in chunk_doc(doc, chunk_tokens)]
    dev_docs = [doc for _, doc in jsonl_docs(nlp, corpus_dir / "dev.jsonl")]
    info: Dict[str, Any] = {"corpus_articles": counts, "chunk_tokens": chunk_tokens, "seed": seed}
    if use_annoctr:
        a_train = [d for doc in annoctr_docs(nlp, "train", annoctr) for d in chunk_doc(doc, chunk_tokens)]
        a_dev = annoctr_docs(nlp, "dev", annoctr)
        info["annoctr_train_chunks"] = len(a_train)
        info["annoctr_dev_docs"] = len(a_dev)
        DocBin(docs=a_dev, store_user_data=False).to_disk(out_dir / "annoctr-dev.spacy")
        train_docs += a_train
        dev_docs += a_dev
    random.Random(seed).shuffle(train_docs)
    DocBin(docs=train_docs, store_user_data=False).to_disk(out_dir / "train.spacy")
    DocBin(docs=dev_docs, store_user_data=False).to_disk(out_dir / "dev.spacy")
    info.update(
        train=str(out_dir / "train.spacy"),
        dev=str(out_dir / "dev.spacy"),
        train_docs=len(train_docs),
        train_tokens=sum(len(d) for d in train_docs),
        dev_docs=len(dev_docs),
    )
    (out_dir / "data.json").write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf8")
    return info


def train(
    output_dir: Path,
    config_path: Path = DEFAULT_CONFIG,
    data_dir: Optional[Path] = None,
    seed: int = 0,
    overrides: Optional[Dict[str, Any]] = None,
    use_gpu: int = -1,
    **prepare_kwargs: Any,
) -> Path:
    """Prepare the data (unless ``data_dir`` already holds it) and train.

    RETURNS (Path): the best pipeline, ``output_dir/model-best``.
    """
    from spacy.cli.train import train as spacy_train

    data_dir = data_dir or output_dir / "data"
    if not (data_dir / "train.spacy").exists():
        prepare_data(data_dir, seed=seed, **prepare_kwargs)
    all_overrides: Dict[str, Any] = {
        "paths.train": str(data_dir / "train.spacy"),
        "paths.dev": str(data_dir / "dev.spacy"),
        "system.seed": seed,
    }
    all_overrides.update(overrides or {})
    spacy_train(config_path, output_dir, use_gpu=use_gpu, overrides=all_overrides)
    from .packaging import scrub_local_paths

    for saved in ("model-best", "model-last"):
        if (output_dir / saved / "transformer" / "model").exists():
            scrub_local_paths(output_dir / saved)  # no machine-specific encoder folder in the outputs
    return output_dir / "model-best"


def parse_overrides(items: List[str]) -> Dict[str, Any]:
    """``section.key=value`` strings to a dict, values parsed as JSON when they can be."""
    result: Dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        try:
            result[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            result[key.strip()] = value
    return result
