"""Attack-group and malware linking on the corpus dev split, with and without the recall ruler.

    python benchmarks/benchmark_linking.py [--model models/nhs-nlp-ner] [--split dev] [--json-out FILE]

Prints, for the shipped pipeline (int8 on CPU, as users get it):
- ATTACK_GROUP and MALWARE precision/recall/F1 (strict spans) of the NER alone and
  of NER + actor ruler (the alias table's patterns, common-word names only with context);
- the share of predicted ATTACK_GROUP/MALWARE spans that the linker links, for both;
- linking accuracy on gold spans: for every mention of an attack group (and of a
  malware) in the gold incident records, whether the linker's canonical name equals
  the gold canonical (``"ALPHV -> BlackCat"``; the mention itself when no ``->``),
  compared after ``normalise()`` (case, spacing, suffixes such as "Group"), and
  whether it is the entry the gold canonical itself resolves to.

Tune on dev only; report test once at the end (``--split test``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from spacy.language import Language  # noqa: E402
from spacy.tokens import Doc  # noqa: E402

from nhs_nlp import load  # noqa: E402
from nhs_nlp.aliases import AliasTable, normalise  # noqa: E402
from nhs_nlp.components.linker import add_actor_pipes  # noqa: E402
from nhs_nlp.corpus import build  # noqa: E402
from nhs_nlp.data import jsonl_docs  # noqa: E402
from nhs_nlp.evaluate import score_spans  # noqa: E402
from nhs_nlp.labels import ATTACK_GROUP, MALWARE  # noqa: E402

LABELS = [ATTACK_GROUP, MALWARE]


def gold_split(corpus: Path, split: str, jsonl: Optional[Path], tok: Language) -> List[Tuple[dict, Doc]]:
    """(row, gold Doc) pairs of one split: from a compiled .jsonl, or compiled now into a tmp dir."""
    if jsonl is not None:
        return list(jsonl_docs(tok, jsonl))
    with tempfile.TemporaryDirectory() as tmp:
        build([corpus], Path(tmp))
        return list(jsonl_docs(tok, Path(tmp) / f"{split}.jsonl"))


def linker_name(nlp: Language) -> str:
    return next(n for n in nlp.pipe_names if nlp.get_pipe_meta(n).factory == "nhs_actor_linker")


def run_actor_pipes(nlp: Language, docs: List[Doc], ruler: bool) -> List[Doc]:
    """The NER output with the ruler (optional) and the linker applied, on copies."""
    out = []
    linker = nlp.get_pipe(linker_name(nlp))
    for doc in docs:
        doc = doc.copy()
        if ruler:
            doc = nlp.get_pipe("actor_ruler")(doc)
        out.append(linker(doc))
    return out


def linked_share(docs: List[Doc]) -> Dict[str, Any]:
    spans = [e for d in docs for e in d.ents if e.label_ in LABELS]
    linked = sum(e._.link is not None for e in spans)
    return {"spans": len(spans), "linked": linked, "share": linked / len(spans) if spans else 0.0}


def linking_accuracy(nlp: Language, table: AliasTable, pairs: List[Tuple[dict, Doc]], field: str) -> Dict[str, Any]:
    """Link gold spans; compare with the gold records' canonical names (see module doc)."""
    linker = nlp.get_pipe(linker_name(nlp))
    n = same_name = same_entry = unlinked = gold_unknown = 0
    errors: Counter = Counter()
    for row, gold in pairs:
        doc = gold.copy()
        linker(doc)
        by_offsets = {(e.start_char, e.end_char): e for e in doc.ents}
        for rec in row.get("records", []):
            for item in rec.get(field, []):
                want = item.get("canonical", item["text"])
                want_entry = table.lookup(want).entry
                for start, end in item["mentions"]:
                    ent = by_offsets.get((start, end))
                    if ent is None:
                        continue
                    n += 1
                    link = ent._.link
                    gold_unknown += want_entry is None
                    if link is None:
                        unlinked += 1
                        if want_entry is not None:
                            errors[f"{ent.text} -> (none), gold {want}"] += 1
                        continue
                    name_ok = normalise(link["canonical"]) == normalise(want)
                    entry_ok = want_entry is not None and table.entries[want_entry]["canonical"] == link["canonical"]
                    same_name += name_ok
                    same_entry += name_ok or entry_ok
                    if not (name_ok or entry_ok):
                        errors[f"{ent.text} -> {link['canonical']}, gold {want}"] += 1
    return {
        "mentions": n,
        "accuracy_canonical": same_name / n if n else 0.0,
        "accuracy_entry": same_entry / n if n else 0.0,
        "unlinked": unlinked,
        "gold_canonical_not_in_table": gold_unknown,
        "accuracy_entry_known": same_entry / (n - gold_unknown) if n - gold_unknown else 0.0,
        "errors": dict(errors.most_common()),
    }


def ruler_additions(golds: List[Doc], base: List[Doc], ruled: List[Doc]) -> Dict[str, Counter]:
    """Spans the ruler added, split into right and wrong ones (by text)."""
    right: Counter = Counter()
    wrong: Counter = Counter()
    for g, b, r in zip(golds, base, ruled):
        gold = {(e.start_char, e.end_char, e.label_) for e in g.ents}
        before = {(e.start_char, e.end_char, e.label_) for e in b.ents}
        for e in r.ents:
            key = (e.start_char, e.end_char, e.label_)
            if e.label_ in LABELS and key not in before:
                (right if key in gold else wrong)[f"{e.text} ({e.label_})"] += 1
    return {"right": right, "wrong": wrong}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="pipeline folder [default: the shipped model]")
    ap.add_argument("--corpus", default="corpus/articles")
    ap.add_argument("--jsonl", default=None, help="a compiled split (.jsonl) instead of compiling --corpus")
    ap.add_argument("--split", default="dev", choices=["dev", "test"])
    ap.add_argument("--table", default=None, help="alias table [default: the packaged one]")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--limit", type=int, default=0, help="only the first N documents (smoke runs)")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    nlp = load(args.model)
    table = AliasTable.from_file(args.table)
    add_actor_pipes(nlp, table=table)
    pairs = gold_split(Path(args.corpus), args.split, Path(args.jsonl) if args.jsonl else None, nlp)
    if args.limit:
        pairs = pairs[: args.limit]
    golds = [g for _, g in pairs]
    texts = [g.text for g in golds]
    start = time.perf_counter()
    # The NER (and a sentencizer, when the pipeline has one) alone; the actor pipes run below.
    with nlp.select_pipes(enable=[p for p in ("transformer", "ner", "sentencizer", "senter", "parser") if p in nlp.pipe_names]):
        ner_docs = list(nlp.pipe(texts, batch_size=8))
    ner_seconds = time.perf_counter() - start
    start = time.perf_counter()
    base = run_actor_pipes(nlp, ner_docs, ruler=False)
    ruled = run_actor_pipes(nlp, ner_docs, ruler=True)
    actor_seconds = time.perf_counter() - start

    systems = {"ner": base, "ner + actor_ruler": ruled}
    report: Dict[str, Any] = {"split": args.split, "docs": len(golds), "table_entries": len(table), "systems": {}}
    print(f"\nCorpus {args.split} split ({len(golds)} articles), strict span match")
    print(f"{'system':<22}{'label':<14}{'P':>7}{'R':>7}{'F1':>7}{'support':>9}{'linked':>9}")
    for system, docs in systems.items():
        scores = score_spans(zip(golds, docs), LABELS)
        share = linked_share(docs)
        report["systems"][system] = {"scores": scores, "linked": share}
        for lab in LABELS + ["micro"]:
            m = scores["micro"] if lab == "micro" else scores["per_label"][lab]
            linked = f"{share['share']:9.3f}" if lab == "micro" else ""
            print(f"{system:<22}{lab:<14}{m['precision']:7.3f}{m['recall']:7.3f}{m['f1']:7.3f}{m['support']:9d}{linked}")
    adds = ruler_additions(golds, base, ruled)
    report["ruler_additions"] = {k: dict(v.most_common()) for k, v in adds.items()}
    print(f"\nruler additions: {sum(adds['right'].values())} right, {sum(adds['wrong'].values())} wrong")
    for k in ("right", "wrong"):
        if adds[k]:
            print(f"  {k}: " + ", ".join(f"{t} x{c}" for t, c in adds[k].most_common(15)))

    print("\nLinking on gold spans named in gold records")
    print(f"{'field':<16}{'mentions':>9}{'canonical':>11}{'entry':>8}{'unlinked':>10}{'gold unknown':>14}")
    report["linking"] = {}
    for field in ("attack_groups", "malware"):
        acc = linking_accuracy(nlp, table, pairs, field)
        report["linking"][field] = acc
        print(f"{field:<16}{acc['mentions']:9d}{acc['accuracy_canonical']:11.3f}{acc['accuracy_entry']:8.3f}{acc['unlinked']:10d}{acc['gold_canonical_not_in_table']:14d}")
        for err, c in list(acc["errors"].items())[:10]:
            print(f"    {err} x{c}")
    words = sum(len(t.split()) for t in texts)
    report["speed"] = {"words": words, "ner_seconds": ner_seconds, "actor_pipes_seconds": actor_seconds}
    print(f"\n{words} words: NER {ner_seconds:.1f} s; ruler + linker (both variants) {actor_seconds:.2f} s")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2, sort_keys=True), encoding="utf8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
