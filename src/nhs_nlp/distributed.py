"""The Dask engine of ``nhs-nlp tag``: the same job on a Dask cluster.

The client reads and screens the input (as the local engine does), cuts the
stream into chunks of documents and submits one task per chunk, keeping a
bounded number in flight, so memory stays flat however large the archive.
Each worker loads the model once (a per-process cache in this module) and tags
its chunks with ``tagging.tag_stream``; the client writes the results in input
order with the same writer, so the output is byte-identical to the local engine.

Workers need nhs_nlp and the model installed; the model is named by folder or
package name and resolved on the worker (None: the worker's shipped model).
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from typing import Any, Deque, Dict, Iterable, Iterator, List, Optional, Tuple

from spacy.language import Language

from .tagging import Document, Tagged, TaggingError, load_model, tag_stream

# Per worker process: model spec -> loaded pipeline, and how many times each was loaded.
_MODELS: Dict[str, Language] = {}
_LOADS: Dict[str, int] = {}
_LOCK = threading.Lock()

Payload = List[Tuple[str, str, str]]
Outcome = Tuple[Optional[Dict[str, Any]], Optional[str]]


def worker_model(model: Optional[str], max_chars: int = 0) -> Language:
    """The pipeline ``model`` in this process, loaded on first use and cached.

    model (Optional[str]): folder or package name; None for the shipped model.
    max_chars (int): longest text the job accepts (raises ``nlp.max_length`` to fit).
    RETURNS (Language): the cached pipeline.
    """
    key = model or ""
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_model(model)
            _LOADS[key] = _LOADS.get(key, 0) + 1
        nlp = _MODELS[key]
        if max_chars and nlp.max_length <= max_chars:
            nlp.max_length = max_chars + 1
        return nlp


def model_loads() -> Dict[str, int]:
    """RETURNS (Dict[str, int]): how often each model was loaded in this process (for tests and checks)."""
    return dict(_LOADS)


def tag_chunk(payload: Payload, model: Optional[str], batch_size: int, max_chars: int = 0) -> List[Outcome]:
    """The Dask task: tag a chunk of documents with this worker's cached model.

    payload (List[Tuple[str, str, str]]): the chunk's documents as ``(id, where, text)``
        (``where`` names the input location in error reasons, as the local engine does).
    model (Optional[str]): folder or package name; None for the shipped model.
    batch_size (int): ``nlp.pipe`` batch size.
    max_chars (int): the job's ``--max-chars``.
    RETURNS (List[Tuple[Optional[dict], Optional[str]]]): per document, its result or the reason it failed.
    """
    nlp = worker_model(model, max_chars)
    docs = [Document(id=doc_id, source={"file": where}, text=text) for doc_id, where, text in payload]
    outcomes: List[Outcome] = []
    # A threaded worker may run several tasks at once; one model, one at a time.
    with _LOCK:
        for doc, result in tag_stream(nlp, docs, batch_size=batch_size, n_process=1):
            outcomes.append((result, None) if doc.error is None else (None, doc.error))
    return outcomes


@contextlib.contextmanager
def dask_client(scheduler: Optional[str] = None, n_workers: int = 2, client: Any = None) -> Iterator[Any]:
    """A ``distributed.Client``: the one given, one connected to ``scheduler``, or a local
    cluster of ``n_workers`` single-threaded worker processes (closed afterwards).

    RETURNS (distributed.Client): the client.
    """
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            remote = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as err:
            raise TaggingError(f"cannot connect to the Dask scheduler at {scheduler}: {err}") from err
        try:
            yield remote
        finally:
            remote.close()
        return
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
    local = Client(cluster)
    try:
        yield local
    finally:
        # A worker holding a loaded model takes a few seconds to exit, and the nanny
        # warns before it kills it; that is the expected end of our own cluster.
        nanny_log = logging.getLogger("distributed.nanny")
        level = nanny_log.level
        nanny_log.setLevel(logging.ERROR)
        try:
            local.close()
            cluster.close()
        finally:
            nanny_log.setLevel(level)


def _chunks(docs: Iterable[Document], size: int) -> Iterator[List[Document]]:
    """Chunks holding ``size`` documents to tag (failed ones ride along, they cost nothing).
    ``size`` is a multiple of the batch size, so chunks start where the local engine's batches do."""
    chunk: List[Document] = []
    live = 0
    for doc in docs:
        chunk.append(doc)
        if doc.error is None:
            live += 1
        if live >= size:
            yield chunk
            chunk, live = [], 0
    if chunk:
        yield chunk


def tag_stream_dask(
    docs: Iterable[Document],
    *,
    model: Optional[str] = None,
    batch_size: int = 16,
    max_chars: int = 0,
    scheduler: Optional[str] = None,
    n_workers: int = 2,
    chunk_size: int = 64,
    max_in_flight: Optional[int] = None,
    client: Any = None,
) -> Iterator[Tagged]:
    """Tag a stream of screened documents on a Dask cluster, yielding in input order.

    docs (Iterable[Document]): from ``tagging.screen``.
    model (Optional[str]): folder or package name the workers load; None for their shipped model.
    batch_size (int): ``nlp.pipe`` batch size on the workers.
    max_chars (int): the job's ``--max-chars``.
    scheduler (Optional[str]): scheduler address (``tcp://host:8786``); None for a local cluster.
    n_workers (int): workers of the local cluster.
    chunk_size (int): documents per task, rounded up to a multiple of ``batch_size`` (the
        workers then form the same batches as the local engine: same output).
    max_in_flight (Optional[int]): tasks submitted and not yet written [default: 2 per worker thread].
    client (Any): an existing ``distributed.Client`` to use.
    YIELDS (Tuple[Document, Optional[dict]]): as ``tagging.tag_stream``.
    """
    with dask_client(scheduler, n_workers, client) as dask:
        threads = sum(dask.nthreads().values()) or 1
        limit = max_in_flight or 2 * threads
        chunk_size = -(-chunk_size // batch_size) * batch_size
        in_flight: Deque[Tuple[List[Document], Any]] = deque()
        try:
            for chunk in _chunks(docs, chunk_size):
                payload = [(d.id, d.where, d.text or "") for d in chunk if d.error is None]
                future = dask.submit(tag_chunk, payload, model, batch_size, max_chars, pure=False) if payload else None
                in_flight.append((chunk, future))
                while len(in_flight) >= limit:
                    yield from _collect(*in_flight.popleft())
            while in_flight:
                yield from _collect(*in_flight.popleft())
        finally:
            for _, future in in_flight:
                if future is not None:
                    future.cancel()


def _collect(chunk: List[Document], future: Any) -> Iterator[Tagged]:
    outcomes: Iterator[Outcome]
    if future is None:
        outcomes = iter(())
    else:
        try:
            outcomes = iter(future.result())
        except Exception as err:  # the task itself failed (a worker died, the model did not load)
            reason = f"Dask task failed ({type(err).__name__}: {str(err).strip()[:300]})"
            for doc in chunk:
                if doc.error is None:
                    doc.fail(f"{doc.where}: {reason}")
            outcomes = iter(())
    for doc in chunk:
        if doc.error is not None:
            yield doc, None
            continue
        result, reason = next(outcomes)
        if reason is not None:
            doc.fail(reason)
            yield doc, None
        else:
            yield doc, result
