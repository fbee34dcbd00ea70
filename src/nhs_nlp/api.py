"""The Python API: ``load()`` and ``extract()``."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Union, overload

from spacy.language import Language
from spacy.tokens import Doc

from .extensions import install_extensions
from .labels import ATTACK_GROUP, LABELS, MALWARE, QUANTITY

MODEL_ENV = "NHS_NLP_MODEL"
MODEL_NAME = "nhs-nlp-ner"

# Rust tokenizers' thread pool deadlocks in forked workers (n_process > 1).
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_lock = threading.Lock()
_cache: Dict[str, Language] = {}


def default_model_path() -> Path:
    """The shipped pipeline: $NHS_NLP_MODEL, else ``models/nhs-nlp-ner`` of this checkout."""
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    return Path(__file__).resolve().parents[2] / "models" / MODEL_NAME


def quantize_transformer(nlp: Language) -> int:
    """Swap the transformer's torch Linear layers for dynamic int8 ones (CPU inference).

    About 2.5x faster on CPU; the benchmark reports the accuracy it gives next to
    float32. For inference only: do not train or save the quantized pipeline.

    Dynamic quantization picks one activation scale per batch of windows, so a
    document's entities can differ slightly with the other documents in its
    ``nlp.pipe`` batch (float32: identical up to ~1e-6). ``nhs-nlp tag`` forms
    batches from the input order alone, so its output is reproducible; load with
    ``quantize=False`` where each document must be tagged independently of its
    neighbours. (Running each window alone makes int8 batch-independent but 4x
    slower than batched int8, slower than float32, so it is not offered.)
    RETURNS (int): the number of torch modules quantized.
    """
    import torch

    done = 0
    for _, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        if model is None or not hasattr(model, "walk"):
            continue
        for node in model.walk():
            for shim in node.shims:
                module = getattr(shim, "_model", None)
                if isinstance(module, torch.nn.Module) and not getattr(module, "_nhs_nlp_quantized", False):
                    quantized = torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
                    quantized._nhs_nlp_quantized = True
                    shim._model = quantized
                    done += 1
    return done


_libc: Any = None


def release_memory() -> bool:
    """Give the memory freed by the last documents back to the system (glibc ``malloc_trim``).

    The transformer's tensors change size with every batch, and glibc keeps the freed
    pieces: without this, a process tagging a long stream grows from 1.6 GB to 2.4 GB
    over 1,200 articles; trimming every batch keeps it near 1.4 GB. A no-op (False)
    where glibc is not the allocator.
    """
    global _libc
    if _libc is None:
        import ctypes
        import ctypes.util

        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim  # noqa: B018 - raises AttributeError off glibc
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    _libc.malloc_trim(0)
    return True


class MemoryReleaser:
    """A pipeline component that gives freed memory back after every batch it sees
    (``release_memory``). The batch tagger adds it for ``nlp.pipe(n_process>1)``, whose
    worker processes it cannot reach otherwise; it changes no document."""

    def __init__(self, name: str = "nhs_release_memory") -> None:
        self.name = name

    def __call__(self, doc: Any) -> Any:
        return doc

    def pipe(self, docs: Iterable[Any], batch_size: int = 1000) -> Iterator[Any]:
        yield from docs
        release_memory()


@Language.factory("nhs_release_memory")
def make_memory_releaser(nlp: Language, name: str) -> MemoryReleaser:
    """Give freed memory back to the system after every batch (batch tagging's worker processes)."""
    return MemoryReleaser(name)


def load(path: Optional[Union[str, Path]] = None, *, quantize: bool = True, **kwargs: Any) -> Language:
    """Load a pipeline (the shipped default when ``path`` is None). Offline only.

    path (Optional[Union[str, Path]]): a pipeline folder.
    quantize (bool): run the transformer with dynamic int8 Linear layers on CPU
        (faster; see ``quantize_transformer``). Ignored when a GPU is in use.
    kwargs: passed to ``spacy.load`` (e.g. ``exclude``).
    RETURNS (Language): the pipeline; ``nlp(text).ents`` carries our labels.
    """
    import spacy

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    model_path = Path(path) if path is not None else default_model_path()
    if not model_path.exists():
        raise FileNotFoundError(
            f"No nhs_nlp pipeline at {model_path}. Pass a folder to load(), set ${MODEL_ENV}, "
            "or train one with `nhs-nlp train`."
        )
    import warnings

    nlp = spacy.load(model_path, **kwargs)
    if quantize:
        from thinc.api import get_current_ops

        if type(get_current_ops()).__name__ in ("NumpyOps", "AppleOps", "BigEndianOps"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's notice that eager quantization moves to torchao
                quantize_transformer(nlp)
    return nlp


def _shared(path: Optional[Union[str, Path]]) -> Language:
    key = str(Path(path).resolve()) if path is not None else str(default_model_path().resolve())
    with _lock:
        if key not in _cache:
            _cache[key] = load(path)
        return _cache[key]


def doc_to_result(doc: Doc, doc_id: Optional[str] = None) -> Dict[str, Any]:
    """A JSON-safe result for one document.

    ``entities``: by label, each ``{"text", "start", "end"}`` plus ``link`` (attack
    groups and malware: the alias-table entry, or None) and ``quantity`` (parsed
    value) where the pipeline sets them. ``records``: the document's incident
    records (``IncidentRecord`` dicts) when the pipeline builds them; their
    ``incident_id`` is prefixed with ``doc_id`` ("<doc_id>#1").
    """
    install_extensions()
    entities: Dict[str, List[Dict[str, Any]]] = {label: [] for label in LABELS}
    for ent in doc.ents:
        item: Dict[str, Any] = {"text": ent.text, "start": ent.start_char, "end": ent.end_char}
        if ent.label_ in (ATTACK_GROUP, MALWARE) and ent._.link is not None:
            item["link"] = ent._.link
        elif ent.label_ == QUANTITY and ent._.quantity is not None:
            item["quantity"] = ent._.quantity
        entities.setdefault(ent.label_, []).append(item)
    result: Dict[str, Any] = {}
    if doc_id is not None:
        result["id"] = doc_id
    result["entities"] = entities
    if doc._.incidents is not None:
        records = []
        for rec in doc._.incidents:
            rec = dict(rec)
            if doc_id is not None:
                rec["incident_id"] = f"{doc_id}#{rec['incident_id']}"
            records.append(rec)
        result["records"] = records
    return result


def _check_text(text: Any, index: Optional[int] = None) -> str:
    if not isinstance(text, str):
        where = f" (item {index})" if index is not None else ""
        raise TypeError(f"extract() takes a str or an iterable of str; got {type(text).__name__}{where}")
    return text


@overload
def extract(texts: str, *, model: Optional[Union[str, Path, Language]] = ..., batch_size: int = ..., n_process: int = ...) -> Dict[str, Any]: ...


@overload
def extract(texts: Iterable[str], *, model: Optional[Union[str, Path, Language]] = ..., batch_size: int = ..., n_process: int = ...) -> Iterator[Dict[str, Any]]: ...


def extract(texts, *, model=None, batch_size: int = 16, n_process: int = 1):
    """Extract entities from one text or stream them from many.

    texts (Union[str, Iterable[str]]): a string (returns one result) or an iterable of
        strings (returns a lazy iterator of results, one per input, in order).
    model: a loaded pipeline, a pipeline folder, or None for the shipped default; the
        pipeline is loaded once per process and reused.
    RETURNS: ``{"entities": {LABEL: [{"text", "start", "end", ...}]}, "records": [...]}``
        per input (see ``doc_to_result``).
    """
    nlp = model if isinstance(model, Language) else _shared(model)
    if isinstance(texts, str):
        return doc_to_result(nlp(texts))
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
        raise TypeError(f"extract() takes a str or an iterable of str; got {type(texts).__name__}")
    checked = (_check_text(t, i) for i, t in enumerate(texts))
    if n_process == 1:
        return (doc_to_result(doc) for doc in nlp.pipe(checked, batch_size=batch_size))
    return _extract_multiprocess(nlp, checked, batch_size, n_process)


def _extract_multiprocess(nlp: Language, texts: Iterator[str], batch_size: int, n_process: int) -> Iterator[Dict[str, Any]]:
    """nlp.pipe over forked workers. Torch's OpenMP pool deadlocks in a forked child
    when the parent runs several threads, so the parent drops to one thread (each
    worker then uses one core) and gets its setting back afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for doc in nlp.pipe(texts, batch_size=batch_size, n_process=n_process):
            yield doc_to_result(doc)
    finally:
        torch.set_num_threads(threads)
