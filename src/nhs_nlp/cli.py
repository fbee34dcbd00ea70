"""The ``nhs-nlp`` command line: thin commands over the library modules."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

app = typer.Typer(help="nhs_nlp: structured incident records from cyber-attack news.", no_args_is_help=True)
corpus_app = typer.Typer(help="Validate, build and describe the annotated corpus.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")

DEFAULT_SOURCES = Path("corpus/articles")
console = Console()
err_console = Console(stderr=True)


def _sources(paths: Optional[List[Path]]) -> List[Path]:
    paths = paths or [DEFAULT_SOURCES]
    for p in paths:
        if not p.exists():
            err_console.print(f"[red]error:[/red] {p}: no such file or directory")
            raise typer.Exit(2)
    return paths


@corpus_app.command("validate")
def validate_cli(
    paths: Optional[List[Path]] = typer.Argument(None, help="Article files, directories or compiled .jsonl files [default: corpus/articles]"),
    no_tokens: bool = typer.Option(False, "--no-tokens", help="Skip the spaCy token-boundary check."),
    warnings: bool = typer.Option(True, "--warnings/--no-warnings", help="Also print audit hints (likely missed mentions and quantities)."),
) -> None:
    """Check articles against the annotation scheme; print FILE:LINE: REASON per problem.

    Errors make the command fail. Warnings are hints for the reviewer: a name
    annotated elsewhere in the article but not at this mention, or a number
    expression that looks like an unannotated QUANTITY. Fix them or leave them
    when the guidelines say so.
    """
    from .corpus import audit_article, load_sources

    loaded = load_sources(_sources(paths), check_tokens=not no_tokens)
    for problem in loaded.problems:
        typer.echo(str(problem))
    hints = [w for art in loaded.articles for w in audit_article(art)] if warnings else []
    for hint in hints:
        typer.echo(str(hint))
    n = len(loaded.articles)
    if loaded.problems:
        err_console.print(f"[red]{len(loaded.problems)} problem(s)[/red], {len(hints)} warning(s) in {n} article(s)")
        raise typer.Exit(1)
    err_console.print(f"[green]ok[/green]: {n} article(s), no problems, {len(hints)} warning(s)")


@corpus_app.command("assign-splits")
def assign_splits_cli(
    paths: Optional[List[Path]] = typer.Argument(None, help="Article files or directories [default: corpus/articles]"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the splits without writing them."),
    reset: bool = typer.Option(False, "--reset", help="Reassign every article, ignoring existing splits."),
) -> None:
    """Give every article without a split one, by incident (articles of one incident share a split)."""
    from collections import Counter

    from .corpus import assign_splits, load_sources, write_split_headers

    loaded = load_sources(_sources(paths), check_tokens=False)
    splits = assign_splits(loaded.articles, keep_existing=not reset)
    if dry_run:
        for aid, split in sorted(splits.items()):
            typer.echo(f"{aid}\t{split}")
    else:
        changed = write_split_headers(loaded.articles, splits)
        err_console.print(f"wrote the split of {changed} article(s)")
    err_console.print(dict(Counter(splits.values())))


@corpus_app.command("build")
def build_cli(
    out: Path = typer.Option(Path("corpus/build"), "--out", "-o", help="Output directory."),
    paths: Optional[List[Path]] = typer.Argument(None, help="Article files or directories [default: corpus/articles]"),
) -> None:
    """Compile the articles into OUT/{train,dev,test}.jsonl and .spacy (DocBin)."""
    from .corpus import CorpusError, build

    try:
        counts = build(_sources(paths), out)
    except CorpusError as err:
        for problem in err.problems:
            typer.echo(str(problem))
        err_console.print(f"[red]build failed: {len(err.problems)} problem(s)[/red]")
        raise typer.Exit(1)
    err_console.print(f"built {out}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


@corpus_app.command("stats")
def stats_cli(
    paths: Optional[List[Path]] = typer.Argument(None, help="Article files, directories or .jsonl [default: corpus/articles]"),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Articles, words, spans per label and distinct attack groups, per split."""
    from .corpus import load_sources, statistics
    from .labels import LABELS

    loaded = load_sources(_sources(paths), check_tokens=False)
    stats = statistics(loaded.articles)
    if loaded.problems:
        err_console.print(f"[yellow]warning:[/yellow] {len(loaded.problems)} validation problem(s); run `nhs-nlp corpus validate`")
    if as_json:
        typer.echo(json.dumps(stats, indent=2, sort_keys=True))
        return
    table = Table(title="nhs_nlp corpus")
    columns = list(stats)
    table.add_column("")
    for c in columns:
        table.add_column(c, justify="right")
    rows = ["articles", "words", "min_words", "max_words"]
    rows += [f"spans:{lab}" for lab in LABELS]
    rows += ["distinct_attack_groups", "records", "negatives", "multi_incident", "health_incident_articles", "sectors", "countries"]
    for row in rows:
        if row.startswith("spans:"):
            vals = [stats[c]["spans"][row[6:]] for c in columns]
        else:
            vals = [stats[c][row] for c in columns]
        table.add_row(row, *(f"{v:,}" for v in vals))
    console.print(table)


@corpus_app.command("agreement")
def agreement_cli(
    first: Path = typer.Argument(..., help="Folder (or .jsonl) of the first annotation pass."),
    second: Path = typer.Argument(..., help="Folder (or .jsonl) of the second, blind pass over the same articles."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Span agreement (strict F1 per label) between two annotation passes, matched by id."""
    from .corpus import agreement, load_sources

    a = load_sources(_sources([first]), check_tokens=False)
    b = load_sources(_sources([second]), check_tokens=False)
    ids = {x.id for x in b.articles}
    result = agreement([x for x in a.articles if x.id in ids], b.articles)
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    table = Table(title=f"Span agreement over {result['articles']} article(s), {result['characters']:,} characters")
    for col in ("label", "F1", "both", "only first", "only second"):
        table.add_column(col, justify="right")
    for lab, m in list(result["per_label"].items()) + [("micro", result["micro"])]:
        table.add_row(lab, f"{m['f1']:.3f}", str(m["both"]), str(m["only_first"]), str(m["only_second"]))
    console.print(table)
    if result["edited_since_copy"]:
        err_console.print(f"compared on the text both passes saw (edited since the blind copy): {', '.join(result['edited_since_copy'])}")
    if result["skipped"]:
        err_console.print(f"[yellow]not compared (no such id in the first pass):[/yellow] {', '.join(result['skipped'])}")


@corpus_app.command("blind-copy")
def blind_copy_cli(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the unannotated copies."),
    fraction: float = typer.Option(0.1, "--fraction", help="Share of articles to sample (stratified by id prefix)."),
    paths: Optional[List[Path]] = typer.Argument(None, help="Article files or folders [default: corpus/articles]"),
) -> None:
    """Write unannotated copies of a deterministic sample, for a blind second annotation pass."""
    from .corpus import blind_sample, load_sources, write_blind_copy

    loaded = load_sources(_sources(paths), check_tokens=False)
    out.mkdir(parents=True, exist_ok=True)
    sample = blind_sample(loaded.articles, fraction)
    for art in sample:
        write_blind_copy(art, out)
    err_console.print(f"wrote {len(sample)} unannotated article(s) to {out}")


@app.command("extract")
def extract_cli(
    files: List[Path] = typer.Argument(..., help="Text files, one article each; '-' reads one article from stdin."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Pipeline folder [default: the shipped model]."),
) -> None:
    """Print one JSON line of entities per article file (the Python API's extract())."""
    import sys

    from .api import extract, load

    for f in files:
        if str(f) != "-" and not f.is_file():
            err_console.print(f"[red]error:[/red] {f}: no such file")
            raise typer.Exit(2)
    nlp = load(model)

    def read(f: Path) -> str:
        if str(f) == "-":
            return sys.stdin.read()
        return f.read_bytes().decode("utf8", errors="replace")

    texts = (read(f) for f in files)
    for f, result in zip(files, extract(texts, model=nlp)):
        typer.echo(json.dumps({"id": str(f), **result}, ensure_ascii=False))


@app.command("train")
def train_cli(
    output: Path = typer.Option(Path("training/output"), "--output", "-o", help="Where spaCy writes model-best/model-last."),
    config: Path = typer.Option(Path("training/config.cfg"), "--config", "-c", help="spaCy training config."),
    corpus: List[Path] = typer.Option([Path("corpus/articles")], "--corpus", help="Corpus article files or folders."),
    annoctr: Optional[Path] = typer.Option(None, "--annoctr", help="AnnoCTR folder [default: $NHS_NLP_ANNOCTR or ../shared/data/corpora/annoctr]."),
    no_annoctr: bool = typer.Option(False, "--no-annoctr", help="Train on our corpus alone."),
    data: Optional[Path] = typer.Option(None, "--data", help="Reuse prepared DocBins (a previous run's OUTPUT/data) instead of rebuilding."),
    seed: int = typer.Option(0, "--seed", help="Random seed (data shuffling and model initialisation)."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU id, -1 for CPU."),
    override: List[str] = typer.Option([], "--set", help="Config override section.key=value (repeatable), e.g. training.max_steps=200."),
) -> None:
    """Train the NER pipeline: compile the corpus (+ AnnoCTR), then spaCy training with our config."""
    from .training import parse_overrides, train

    if not config.exists():
        err_console.print(f"[red]error:[/red] config {config} does not exist")
        raise typer.Exit(2)
    try:
        overrides = parse_overrides(override)
    except ValueError as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2)
    best = train(output, config, data_dir=data, seed=seed, overrides=overrides, use_gpu=gpu_id, corpus_sources=corpus, annoctr=annoctr, use_annoctr=not no_annoctr)
    err_console.print(f"best pipeline: {best}")


if __name__ == "__main__":  # pragma: no cover
    app()
