"""AnnoCTR as partially annotated training data, and chunking Docs for training.

The generic readers (our JSONL, CoNLL/BIO, DocBin, ``datasets`` files) live in
``readers.py``, shared by training and evaluation; they are re-exported here.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from spacy.language import Language
from spacy.tokens import Doc, Span

from .labels import ATTACK_GROUP, MALWARE, ORG, QUANTITY, SERVICE
from .readers import BioSentence, bio_doc, bio_spans, jsonl_docs, read_bio

__all__ = ["BioSentence", "read_bio", "bio_spans", "jsonl_docs", "partial_doc", "annoctr_docs", "annoctr_dir", "chunk_doc"]

#: AnnoCTR label -> ours. Labels not listed are dropped (tokens become "O").
ANNOCTR_LABEL_MAP: Dict[str, str] = {"ORG": ORG, "GROUP": ATTACK_GROUP, "MALWARE": MALWARE}
#: AnnoCTR labels whose tokens are left unannotated: TOOL mixes attack tools our
#: guidelines call MALWARE (Mimikatz, Cobalt Strike) with legitimate software.
ANNOCTR_MISSING_LABELS: Tuple[str, ...] = ("TOOL",)
#: Our labels AnnoCTR never annotates: tokens that might carry them are left unannotated.
ANNOCTR_UNANNOTATED: Tuple[str, ...] = (SERVICE, QUANTITY)

DEFAULT_SHARED = Path("../shared/data")
ANNOCTR_ENV = "NHS_NLP_ANNOCTR"

NUMBER_WORDS = {
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "dozen", "dozens", "hundred", "hundreds", "thousand", "thousands", "million", "millions", "billion",
    "billions", "half", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
}
# "400GB", "4.5m", "10k", "1,700", "40%": numbers, not names with digits ("APT29").
NUMBERISH = re.compile(r"^[\d][\d.,]*[A-Za-z%]{0,3}$")
DISRUPTION_CUES = re.compile(
    r"\b(disrupt\w*|outage\w*|offline|down(?:time)?|halt\w*|suspend\w*|postpon\w*|cancel\w*|unavailable|"
    r"restor\w*|shut\w*|divert\w*|delay\w*|impact\w*|affect\w*|encrypt\w*|inaccessible|paralys\w*|paralyz\w*)\b",
    re.IGNORECASE,
)


def annoctr_dir(path: Optional[Path] = None) -> Path:
    """The AnnoCTR folder: the argument, $NHS_NLP_ANNOCTR, or ../shared/data/corpora/annoctr."""
    import os

    if path is not None:
        return Path(path)
    if os.environ.get(ANNOCTR_ENV):
        return Path(os.environ[ANNOCTR_ENV])
    return DEFAULT_SHARED / "corpora" / "annoctr"


def _quantity_candidates(doc: Doc) -> Set[int]:
    """Tokens that might belong to a QUANTITY: numbers, and a few tokens around them."""
    out: Set[int] = set()
    for tok in doc:
        if tok.like_num or NUMBERISH.match(tok.text) or tok.is_currency or tok.lower_ in NUMBER_WORDS:
            lo = max(tok.i - 2, tok.sent.start if doc.has_annotation("SENT_START") else 0)
            hi = tok.i + 1
            while hi < len(doc) and hi <= tok.i + 4 and not doc[hi].is_punct:
                hi += 1
            out.update(range(lo, hi))
    return out


def partial_doc(
    nlp: Language,
    sentences: Sequence[BioSentence],
    label_map: Dict[str, str],
    missing_labels: Iterable[str] = (),
    unannotated: Iterable[str] = (),
) -> Doc:
    """A Doc from BIO sentences, with entities mapped and some tokens left unannotated.

    label_map (Dict[str, str]): source label -> our label; others become "O".
    missing_labels (Iterable[str]): source labels whose tokens become missing.
    unannotated (Iterable[str]): our labels the source never annotates. Tokens that
        could carry them are set missing instead of "O", so the model is not taught
        that such entities are absent: near numbers for QUANTITY, whole sentences
        with a disruption cue for SERVICE.
    """
    tags = [t for s in sentences for t in s.tags]
    doc = bio_doc(nlp, sentences)
    ents: List[Span] = []
    missing: Set[int] = set()
    missing_set = set(missing_labels)
    for start, end, label in bio_spans(tags):
        if label in label_map:
            ents.append(Span(doc, start, end, label=label_map[label]))
        elif label in missing_set:
            missing.update(range(start, end))
    unannotated = set(unannotated)
    if QUANTITY in unannotated:
        missing |= _quantity_candidates(doc)
    if SERVICE in unannotated:
        for sent in doc.sents:
            if DISRUPTION_CUES.search(sent.text):
                missing.update(range(sent.start, sent.end))
    in_ent = {i for e in ents for i in range(e.start, e.end)}
    missing -= in_ent
    missing_spans = [Span(doc, i, i + 1) for i in sorted(missing)]
    doc.set_ents(ents, missing=missing_spans, default="outside")
    return doc


def annoctr_docs(nlp: Language, split: str, path: Optional[Path] = None) -> List[Doc]:
    """AnnoCTR documents of one split ("train" or "dev") as partially annotated Docs."""
    folder = annoctr_dir(path)
    file = folder / f"{split}.bio"
    if not file.exists():
        raise FileNotFoundError(
            f"AnnoCTR {split} split not found at {file}. Point --annoctr or ${ANNOCTR_ENV} at the folder holding train.bio and dev.bio."
        )
    return [
        partial_doc(nlp, sents, ANNOCTR_LABEL_MAP, ANNOCTR_MISSING_LABELS, ANNOCTR_UNANNOTATED)
        for sents in read_bio(file)
    ]


def chunk_doc(doc: Doc, max_tokens: int = 256) -> List[Doc]:
    """Split a Doc into pieces of at most ``max_tokens`` at paragraph or sentence breaks.

    Training batches are then even and shuffling mixes articles; entities are never cut
    (a break inside an entity moves to its start). Prediction still sees whole documents.
    """
    if len(doc) <= max_tokens:
        return [doc]
    breaks: List[int] = []
    has_sents = doc.has_annotation("SENT_START")
    for tok in doc[1:]:
        if (has_sents and tok.is_sent_start) or "\n" in doc[tok.i - 1].text_with_ws:
            breaks.append(tok.i)
    pieces: List[Doc] = []
    start = 0
    while start < len(doc):
        if len(doc) - start <= max_tokens:
            end = len(doc)
        else:
            candidates = [b for b in breaks if start < b <= start + max_tokens]
            end = candidates[-1] if candidates else start + max_tokens
            ent_at = doc[end].ent_iob_ == "I"
            if ent_at:
                while end > start + 1 and doc[end].ent_iob_ == "I":
                    end -= 1
        pieces.append(doc[start:end].as_doc())
        start = end
    return pieces
