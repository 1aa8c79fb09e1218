"""codi-warehouse command line: thin click commands, each calling one library function.

Contract: ../shared/SPEC.md section 13. Progress goes to stderr, results to stdout, errors exit
non-zero with a one-line reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

DEFAULT_DB = os.environ.get("CODI_WAREHOUSE", "results/warehouse")


class UserError(click.ClickException):
    """An error caused by input; shown as one line, never as a traceback."""


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@contextlib.contextmanager
def user_errors():
    """Input and availability errors as one line (no traceback) with a non-zero exit.

    Bugs (any other exception) keep their traceback.
    """
    import duckdb

    from warehouse import SchemaError

    try:
        yield
    except (ValueError, KeyError, OSError, TimeoutError, duckdb.Error, SchemaError) as exc:
        message = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).strip()
        raise UserError(message.splitlines()[0] if message else type(exc).__name__) from exc


class OneLineUsageError(click.UsageError):
    """A usage error (unknown command or option, bad value) as one line with where to look for help."""

    def show(self, file=None) -> None:
        hint = f"; see '{self.ctx.command_path} --help'" if self.ctx is not None else ""
        click.echo(f"Error: {self.format_message().rstrip('.')}{hint}", file=file, err=file is None)


def _one_line(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, (OneLineUsageError, getattr(click.exceptions, "NoArgsIsHelpError", ()))):
        return exc  # a bare group name prints its help, as click does
    return OneLineUsageError(exc.format_message(), exc.ctx)


class Cli(click.Group):
    """The top-level group: click's usage errors (three lines: usage, hint, error) become one line."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc) from None


class _Notes(logging.Handler):
    """The library's notices (the `codi` loggers: e.g. a wait on another process's lock) as `note:` lines
    on stderr, above any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(f"note: {record.getMessage()}", file=sys.stderr)
        except Exception:
            self.handleError(record)


def _route_notes() -> None:
    logger = logging.getLogger("codi")
    if not any(isinstance(h, _Notes) for h in logger.handlers):
        logger.addHandler(_Notes())
        logger.setLevel(logging.INFO)
        logger.propagate = False  # said once, here, not again by a root handler


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Find which continuous thoughts of a CODI model matter, and how attention moves between them."""
    _route_notes()


# --- model, data and training commands (engine/, ingest/) -----------------------------------------
@cli.command()
@click.option(
    "--out", "out_dir", default="models/gpt2-tiny", show_default=True, help="Model directory to write."
)
@click.option(
    "--steps", default=None, type=click.IntRange(min=1), help="Optimizer steps (default: the recipe's)."
)
@click.option("--seed", default=0, show_default=True)
@click.option("--teacher-only-steps", default=None, type=int, help="Curriculum: teacher-only steps first.")
@click.option(
    "--lr", default=None, type=float, help="Peak learning rate (lower it to continue a trained model)."
)
@click.option("--warmup", default=None, type=int, help="Linear warm-up steps before the cosine decay.")
@click.option("--eval-every", default=None, type=int)
@click.option("--eval-problems", default=None, type=int)
@click.option(
    "--init-from",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Continue training a saved model directory (e.g. after the teacher-only phase).",
)
def train(out_dir, steps, seed, teacher_only_steps, lr, warmup, eval_every, eval_problems, init_from):
    """Train a small CODI model from scratch on synthetic problems (deterministic given the seed)."""
    from engine import TrainConfig
    from engine import train as run_training

    overrides = {
        "steps": steps,
        "teacher_only_steps": teacher_only_steps,
        "lr": lr,
        "warmup": warmup,
        "eval_every": eval_every,
        "eval_problems": eval_problems,
        "init_from": init_from,
    }
    cfg = TrainConfig(seed=seed, **{k: v for k, v in overrides.items() if v is not None})
    with user_errors():
        card = run_training(cfg, out_dir)
    emit_json(
        {"out": out_dir, "final_eval": card["final_eval"], "train_wall_seconds": card["train_wall_seconds"]}
    )


def _dtype_option(what: str):
    return click.option(
        "--dtype",
        type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
        default="auto",
        show_default=True,
        help=f"Precision of the model: auto is fp32 on CPU and CUDA alike{what}.",
    )


def _threads_option():
    return click.option(
        "--threads",
        default=None,
        type=click.IntRange(min=1),
        help="torch CPU threads [OMP_NUM_THREADS, else the free cores: those not busy with other processes].",
    )


def _setup_threads(threads) -> None:
    """torch's thread count and OpenMP wait policy (PASSIVE), before anything imports torch: libgomp reads
    them once, when torch loads (engine/runs/threads.py)."""
    from engine import setup_threads

    with user_errors():
        setup_threads(threads)


@cli.command()
@click.option(
    "--model", "model_name", default="gpt2-tiny", show_default=True, help="gpt2-tiny, gpt2 or llama."
)
@click.option(
    "--checkpoint", default=None, help="Directory holding the model's weights (and config/tokenizer)."
)
@click.option(
    "--dataset",
    default="synthetic",
    show_default=True,
    help="synthetic, gsm8k-test or gsm8k-train (built in), or a GSM8K-format JSONL file.",
)
@click.option(
    "--problems",
    default=None,
    type=click.IntRange(min=1),
    help="How many problems in all [synthetic: 100, 25 per difficulty stratum; a file: all; "
    "--sample stratified: 100], split evenly over the strata with --sample stratified.",
)
@click.option(
    "--sample",
    type=click.Choice(["first", "random", "stratified"]),
    default="first",
    show_default=True,
    help="How a file's problems are taken: first (file order), random (seeded), stratified (seeded, "
    "--problems split evenly over steps <=2, 3, 4, 5+). Not for synthetic.",
)
@click.option(
    "--sample-seed",
    default=0,
    show_default=True,
    type=int,
    help="Seeds --sample random / stratified (recorded in the run's config).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    help="Seeds the corruption draws only (Gaussian noise, donors, shuffles), never which problems run.",
)
@click.option(
    "--problem-seed",
    default=0,
    show_default=True,
    help="Which sample of the synthetic problems; default 0, the fixed default set every run shares.",
)
@click.option(
    "--layer", default=None, type=int, multiple=True, help="One patch layer L (default: n_layers // 2)."
)
@click.option(
    "--layers",
    "layers_spec",
    default=None,
    metavar="L1,L2,...|all",
    help="Patch layers: a comma list (3,6,9) or all.",
)
@click.option("--methods", default=None, help="Comma list of zero,gauss,random,shuffle,clean,mean.")
@click.option("--sigmas", default=None, help="Comma list of Gaussian sigmas [0.1,0.5,1.0,2.0].")
@click.option(
    "--family",
    "families",
    default=None,
    metavar="F1,F2,...",
    help="Intervention families: a comma list of thoughts (one thought's block output: the default), pairs, "
    "triplets (thoughts at once), heads (one head's output ablated), edges (attention into a thought "
    "knocked out), components (the attention or MLP output instead of the block's).",
)
@click.option(
    "--combo-methods", default=None, help="Methods of pairs, triplets and heads: a comma list [zero,mean]."
)
@click.option(
    "--head-steps",
    default=None,
    metavar="all|each|K",
    help="Heads: ablate at the six thoughts at once (all, the default), at each alone, or at thought K.",
)
@click.option(
    "--top-heads",
    default=None,
    metavar="L.H,...",
    help="Heads: also ablate these heads together: layer.head pairs (3.1,5.0), or K@RUN, the K heads of RUN "
    "with the highest descriptive composite (head_metrics; the config records the heads).",
)
@click.option("--noise-scale", type=click.Choice(["absolute", "rms"]), default="absolute", show_default=True)
@click.option(
    "--attention",
    type=click.Choice(["all", "baseline", "none", "tokens"]),
    default="all",
    show_default=True,
    help="Attention kept: every condition's, the baseline's, none, or tokens: all, plus the baseline's "
    "attention of T0..T5 and EOT to each question token (token_attention).",
)
@click.option(
    "--states",
    is_flag=True,
    help="Store the baseline's state at every layer (and the input) for T0..T5 and EOT, for `probe`.",
)
@click.option(
    "--decode-top",
    default=5,
    show_default=True,
    type=click.IntRange(min=0),
    help="Logit lens: keep the top K tokens of every state of the baseline (0: no decoding).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@_dtype_option("; part of the run's config (a resume keeps it)")
@_threads_option()
@click.option(
    "--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Problems per batch."
)
@click.option(
    "--max-memory",
    default=None,
    metavar="SIZE",
    help="Memory the run may take at its peak (4GB, 800MB; RAM on CPU, GPU memory on CUDA): the batch size "
    "becomes the largest whose estimate (printed before the run) fits. A local run only.",
)
@click.option(
    "--resume",
    default=None,
    help="Continue a running, failed or interrupted run (id, prefix or latest) under its stored flags; flags "
    "given beside it must agree with them.",
)
@click.option("--skip-invalid", is_flag=True, help="Load the good lines of a dataset with malformed ones.")
@click.option(
    "--shard",
    default=None,
    metavar="I/N",
    help="Only shard I of N (0-based): committed directly with a PostgreSQL catalog, else written "
    "for `ingest shards`.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help='local: this process; ray: the run\'s shards as Ray tasks (pip install -e ".[ray]").',
)
@click.option("--workers", default=None, type=click.IntRange(min=1), help="Ray: shard tasks at a time [1].")
@click.option(
    "--shards",
    default=None,
    type=click.IntRange(min=1),
    help="Ray: shards to cut the run into [4 per worker, at most one per batch].",
)
@click.option("--ray-address", default=None, help="Ray: an existing cluster [start a local one].")
@click.option("--run-id", default=None, help="Shards: run id [sharded-<config hash>].")
@click.option(
    "--shard-dir",
    default=None,
    help="Shards: write portable shards here [<db>.worker-shards/<run id>; none with a PostgreSQL "
    "catalog: workers commit directly].",
)
@click.option("--name", default=None, help="A name for the run (shown by `runs`; usable where a run id is).")
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="KEY=VALUE",
    help="Tag the run (repeat for several); `runs list --tag KEY=VALUE` finds it.",
)
@click.option("--note", default=None, help="A note on the run (free text).")
@click.option("--db", default=DEFAULT_DB, show_default=True, help="Warehouse folder.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def run(
    model_name,
    checkpoint,
    dataset,
    problems,
    seed,
    problem_seed,
    sample,
    sample_seed,
    layer,
    layers_spec,
    methods,
    sigmas,
    families,
    combo_methods,
    head_steps,
    top_heads,
    noise_scale,
    attention,
    states,
    decode_top,
    device,
    dtype,
    threads,
    batch_size,
    max_memory,
    resume,
    skip_invalid,
    shard,
    executor,
    workers,
    shards,
    ray_address,
    run_id,
    shard_dir,
    name,
    tags,
    note,
    db,
    as_json,
):
    """Run every corruption of every continuous thought and stream the rows into the warehouse.

    Beside --resume RUN, --name, --tag and --note label the run (tags are added, name and note replaced).
    """
    _setup_threads(threads)  # first: before anything imports torch
    from analysis import closing_table, format_closing_table
    from engine import Execution, RunConfig, execute, resumed_config
    from warehouse import open_warehouse

    if len(layer) > 1:
        raise click.UsageError(
            f"--layer was given {len(layer)} times ({', '.join(map(str, layer))}); give it once, or "
            f"--layers {','.join(map(str, layer))}"
        )
    if layer and layers_spec is not None:
        raise click.UsageError("give either --layer L or --layers L1,L2,... (or --layers all), not both")
    if max_memory is not None and "batch_size" in _given(
        click.get_current_context(), {"batch_size": "batch_size"}
    ):
        raise click.UsageError(
            "--max-memory chooses the batch size; give --batch-size or --max-memory, not both"
        )
    req = RunConfig(
        model=model_name,
        checkpoint=checkpoint,
        dataset=dataset,
        problems=problems,
        seed=seed,
        problem_seed=problem_seed,
        sample=sample,
        sample_seed=sample_seed,
        layer=layer[0] if layer else None,
        layers=layers_spec,
        methods=methods,
        sigmas=sigmas,
        families=families,
        combo_methods=combo_methods,
        head_steps=head_steps,
        top_heads=top_heads,
        attention=attention,
        states=states,
        decode_top=decode_top,
        noise_scale=noise_scale,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        max_memory=max_memory,
        resume=resume,
        skip_invalid=skip_invalid,
        name=name,
        tags=_tags(tags),
        note=note,
    )
    how = Execution(
        executor=executor,
        shard=shard,
        workers=workers,
        shards=shards,
        ray_address=ray_address,
        run_id=run_id,
        shard_dir=shard_dir,
    )
    with user_errors(), interrupts(db, local=how.executor == "local" and not how.shard):
        if resume and how.executor == "local" and not how.shard:  # the stored flags; given ones must agree
            req = resumed_config(req, db, given=_given(click.get_current_context(), RUN_FIELDS))
        summary = execute(req, db, how)
        if "shard" in summary:
            where = (
                f"merge with: ingest shards {summary['shard_dir']}"
                if summary["shard_dir"]
                else f"run {summary['run_status']} ({summary['problems_committed']} of "
                f"{summary['problems_planned']} problems committed)"
            )
            emit_json(summary) if as_json else click.echo(
                f"shard {summary['shard']} of run {summary['run_id']}: {summary['status']}, "
                f"{summary['problems']} problems -> {summary['path']} ({summary['seconds']} s); {where}"
            )
            return
        with open_warehouse(db, read_only=True) as store:  # the closing table: read from the views
            table = closing_table(store.run(summary["run_id"]))
    summary["baseline_accuracy"] = table.baseline_accuracy
    if as_json:
        emit_json({**summary, "importance": table.to_dict()["importance"]})
        return
    click.echo(format_closing_table(table))
    kept = summary.get("problems_kept", 0)  # committed before this session (a resumed run)
    ran = f"{summary['problems'] - kept} problems" + (f" ({kept} kept from before)" if kept else "")
    took = f"{summary['conditions']} conditions in {summary['seconds']} s"
    click.echo(f"run {summary['run_id']}: {ran} x {took}")
    run_id, on_db = summary["run_id"], _db_flag(db)
    click.echo(f"results: run {run_id} in the warehouse {db}", err=True)
    click.echo(
        f"next: python cli.py stats --run {run_id}{on_db} | python cli.py charts --run {run_id}{on_db} | "
        f"python cli.py query \"SELECT * FROM results WHERE run_id = '{run_id}' LIMIT 10\"{on_db}",
        err=True,
    )


def _tags(texts, hint: str = "--tag") -> dict[str, str]:
    """--tag KEY=VALUE ... as a dict; a malformed one is a usage error."""
    from warehouse import WarehouseError, parse_tags

    try:
        return parse_tags(texts)
    except WarehouseError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None


def _db_flag(db) -> str:
    """` --db DB` when DB is not the default warehouse (what a printed command needs to find it)."""
    import shlex

    return "" if str(db) == DEFAULT_DB else f" --db {shlex.quote(str(db))}"


@contextlib.contextmanager
def interrupts(db, local: bool):
    """SIGINT/SIGTERM (the engine raises both as KeyboardInterrupt): one line, exit 130, no "Aborted!"."""
    from engine import RunInterrupted

    try:
        yield
    except KeyboardInterrupt as exc:
        if isinstance(exc, RunInterrupted):
            line = exc.line(_db_flag(db))
        else:
            line = "interrupted before the run began; nothing was written" if local else "interrupted"
        click.echo(line, err=True)
        raise SystemExit(130) from None


# `run` parameter -> RunConfig field, for the settings a resumed run takes from its stored config.
RUN_FIELDS = {
    "model_name": "model",
    "checkpoint": "checkpoint",
    "dataset": "dataset",
    "problems": "problems",
    "seed": "seed",
    "problem_seed": "problem_seed",
    "sample": "sample",
    "sample_seed": "sample_seed",
    "layer": "layers",
    "layers_spec": "layers",
    "methods": "methods",
    "sigmas": "sigmas",
    "families": "families",
    "combo_methods": "combo_methods",
    "head_steps": "head_steps",
    "top_heads": "top_heads",
    "attention": "attention",
    "states": "states",
    "decode_top": "decode_top",
    "noise_scale": "noise_scale",
    "skip_invalid": "skip_invalid",
    "dtype": "dtype",
}


def _given(ctx: click.Context, names: dict[str, str]) -> set[str]:
    """The fields whose flags were given (command line or environment), not left at their defaults."""
    from click.core import ParameterSource

    explicit = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {field for param, field in names.items() if ctx.get_parameter_source(param) in explicit}


@cli.command("eval")
@click.option(
    "--model", "model_name", default="gpt2-tiny", show_default=True, help="gpt2-tiny, gpt2 or llama."
)
@click.option(
    "--checkpoint", default=None, help="Directory holding the model's weights (and config/tokenizer)."
)
@click.option(
    "--dataset",
    default="synthetic",
    show_default=True,
    help="synthetic, gsm8k-test or gsm8k-train (built in), or a GSM8K-format JSONL file.",
)
@click.option(
    "--problems", default=400, show_default=True, type=click.IntRange(min=1), help="How many problems."
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--sample",
    type=click.Choice(["first", "random", "stratified"]),
    default="first",
    show_default=True,
    help="How a file's problems are taken, as in `run` (stratified: --problems split over the strata).",
)
@click.option("--sample-seed", default=0, show_default=True, type=int, help="Seeds random / stratified.")
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Pass over problems too long for the model's context (and malformed lines) instead of refusing.",
)
@click.option("--device", default="cpu", show_default=True)
@_dtype_option("")
@_threads_option()
@click.option("--no-teacher", is_flag=True, help="Skip the explicit-CoT teacher accuracy.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_cmd(
    model_name,
    checkpoint,
    dataset,
    problems,
    seed,
    sample,
    sample_seed,
    skip_invalid,
    device,
    dtype,
    threads,
    no_teacher,
    as_json,
):
    """Student (latent) and teacher (explicit CoT) accuracy on held-out problems, by step count."""
    _setup_threads(threads)
    from engine import run_eval

    with user_errors():
        result = run_eval(
            model_name,
            checkpoint,
            dataset,
            problems,
            seed,
            device,
            teacher=not no_teacher,
            sample=sample,
            sample_seed=sample_seed,
            skip_invalid=skip_invalid,
            dtype=dtype,
        )
    if as_json:
        emit_json(result)
        return
    click.echo(
        f"{result['model']} on {result['n']} {result['dataset']} problems ({result['seconds']} s; "
        f"{result['dtype']}, {result['threads']} thread{'' if result['threads'] == 1 else 's'})"
    )
    if result.get("skipped_too_long"):
        click.echo(f"skipped {result['skipped_too_long']} problem(s) too long for the model's context")
    if result.get("note"):
        click.echo(f"note: {result['note']}")
    click.echo(f"{'steps':>6} {'student':>8} {'teacher':>8}")
    for k, acc in result["by_steps"].items():
        click.echo(f"{k:>6} {acc:>8.1%} {result.get('teacher_by_steps', {}).get(k, float('nan')):>8.1%}")
    click.echo(f"{'all':>6} {result['accuracy']:>8.1%} {result.get('teacher_accuracy', float('nan')):>8.1%}")


@cli.command()
@click.option("--n", "count", required=True, type=click.IntRange(min=1), help="How many problems.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSONL file to write.")
@click.option("--steps", default="1-6", show_default=True, help="Step range, e.g. 1-6 or 3.")
@click.option("--seed", default=0, show_default=True)
def synth(count, out, steps, seed):
    """Write seeded synthetic GSM8K-style problems (JSONL with <<a+b=c>> annotations and #### N)."""
    from ingest import generate, parse_steps_range, write_jsonl

    with user_errors():
        path = write_jsonl(generate(count, seed=seed, steps=parse_steps_range(steps)), out)
    click.echo(f"wrote {count} problems to {path}", err=True)


# --- warehouse commands (warehouse/) ----------------------------------------------------------------
def _db_option(default=DEFAULT_DB, help="Warehouse folder."):
    return click.option("--db", default=default, show_default=default is not None, help=help)


def _show(value: Any, as_json: bool, text: Callable[[Any], str], key: str | None = None) -> None:
    """A command's value as one JSON object (under `key`, if given) with --json, else its text form
    text(value)."""
    emit_json({key: value} if key else value) if as_json else click.echo(text(value), nl=False)


@cli.group("runs", invoke_without_command=True)
@_db_option()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def runs_group(ctx, db, as_json):
    """List runs (the default), show, label or delete one. RUN: id, unique prefix, name or `latest`."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(runs_list_cmd, db=db, as_json=as_json, tags=())


def _parent_db(db):
    return db or click.get_current_context().parent.params["db"]


@runs_group.command("list")
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only runs carrying this tag (repeat: all of them).",
)
@_db_option(None, "Warehouse folder (default: the group's --db).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (every field of every run).")
def runs_list_cmd(tags, db, as_json):
    """Every run: id, name, status, model, problems done/planned, patch layers, methods, seed, started
    (UTC), took. Methods `default`: zero,gauss,random,shuffle at sigmas 0.1,0.5,1,2."""
    from warehouse import format_runs, runs_list

    wanted = _tags(tags)
    with user_errors():
        _show(runs_list(_parent_db(db), wanted), as_json, lambda r: format_runs(r, wanted), "runs")


@runs_group.command("show")
@click.argument("run")
@_db_option(None, "Warehouse folder (default: the group's --db).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def runs_show_cmd(run, db, as_json):
    """A run's labels, lineage (config, weights, code, libraries) and row counts."""
    from warehouse import format_run, runs_show

    with user_errors():
        _show(runs_show(_parent_db(db), run), as_json, format_run)


@runs_group.command("tag")
@click.argument("run")
@click.argument("tags", nargs=-1, metavar="KEY=VALUE...")
@click.option("--remove", "untag", multiple=True, metavar="KEY", help="Remove this tag (repeat for several).")
@_db_option(None, "Warehouse folder (default: the group's --db).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def runs_tag_cmd(run, tags, untag, db, as_json):
    """Add tags to a run (a key it has already gets the new value), or --remove them."""
    from warehouse import format_labels, runs_label

    if not tags and not untag:
        raise click.UsageError("give KEY=VALUE tags to add, or --remove KEY")
    wanted = _tags(tags, "KEY=VALUE")
    with user_errors():
        _show(runs_label(_parent_db(db), run, tags=wanted, untag=untag), as_json, format_labels)


@runs_group.command("note")
@click.argument("run")
@click.argument("text", required=False)
@click.option("--clear", is_flag=True, help="Remove the run's note.")
@_db_option(None, "Warehouse folder (default: the group's --db).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def runs_note_cmd(run, text, clear, db, as_json):
    """Set a run's note (replacing the old one), or --clear it."""
    _set_label(run, "note", text, clear, "the note's TEXT", db, as_json)


@runs_group.command("rename")
@click.argument("run")
@click.argument("name", required=False)
@click.option("--clear", is_flag=True, help="Remove the run's name.")
@_db_option(None, "Warehouse folder (default: the group's --db).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def runs_rename_cmd(run, name, clear, db, as_json):
    """Give a run a name (replacing the old one), or --clear it."""
    _set_label(run, "name", name, clear, "the run's new NAME", db, as_json)


def _set_label(run, field: str, value, clear: bool, what: str, db, as_json: bool) -> None:
    """`runs note` / `runs rename`: replace the run's `field` with `value`, or clear it."""
    from warehouse import format_labels, runs_label

    if (value is None) == (not clear):
        raise click.UsageError(f"give {what}, or --clear (not both)")
    with user_errors():
        _show(runs_label(_parent_db(db), run, **{field: None if clear else value}), as_json, format_labels)


@runs_group.command("delete")
@click.argument("run")
@click.option("--yes", "-y", is_flag=True, help="Do not ask (required when not run from a terminal).")
@_db_option(None, "Warehouse folder (default: the group's --db).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def runs_delete_cmd(run, yes, db, as_json):
    """Remove a run and every row of it; problems and other runs stay. Asks first on a terminal."""
    from warehouse import format_deleted, runs_delete, runs_show

    where = _parent_db(db)
    with user_errors():
        if not yes:
            shown = runs_show(where, run)  # the run named, before anything is asked or removed
            if not sys.stdin.isatty():
                raise UserError(
                    f"runs delete removes run {shown['run_id']} for good; add --yes to confirm "
                    "(nothing was deleted)"
                )
            named = f" ({shown['name']})" if shown.get("name") else ""
            if not click.confirm(
                f"delete run {shown['run_id']}{named}: {shown['status']}, {shown['problems']} "
                f"problem{'' if shown['problems'] == 1 else 's'}, "
                f"{shown['rows']['results']:,} results, {shown['rows']['attention']:,} attention rows?",
                err=True,
            ):
                click.echo("nothing deleted", err=True)
                return
            run = shown["run_id"]
        _show(runs_delete(where, run), as_json, format_deleted, "deleted")


@runs_group.command("vacuum")
@click.option(
    "--older-than",
    "days",
    default=7.0,
    show_default=True,
    type=float,
    help="Keep the history (time travel) of the last DAYS days.",
)
@_db_option(None, "Warehouse folder (default: the group's --db).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def runs_vacuum_cmd(days, db, as_json):
    """Reclaim disk: expire old snapshots, delete the files only they (and deleted runs) used."""
    from warehouse import format_vacuum, runs_vacuum

    with user_errors():
        _show(runs_vacuum(_parent_db(db), days), as_json, format_vacuum)


@cli.command("init")
@click.option(
    "--catalog",
    default="sqlite",
    show_default=True,
    help="Where the catalog lives: sqlite (a file in the folder) or postgres:<libpq dsn> (many writers).",
)
@_db_option()
def init_cmd(catalog, db):
    """Create an empty warehouse folder (commands that write create one with a SQLite catalog anyway)."""
    from warehouse import format_init, init_warehouse

    with user_errors():
        click.echo(format_init(init_warehouse(db, catalog)), nl=False)


@cli.command("upgrade")
@click.argument("old", type=click.Path(exists=True, dir_okay=False))
@click.option("--to", "target", required=True, help="The new warehouse folder (created; must not exist yet).")
def upgrade_cmd(old, target):
    """Copy a warehouse of the old layout (x.duckdb + x.shards/) into a new warehouse folder."""
    from warehouse import format_upgrade
    from warehouse import upgrade_warehouse as upgrade

    with user_errors():
        click.echo(format_upgrade(upgrade(old, target), target), nl=False)


@cli.command("query")
@click.argument("sql", required=False)
@click.option(
    "--file", "sql_file", type=click.Path(exists=True, dir_okay=False), help="Read the SQL from a file."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "parquet"]),
    default="table",
    show_default=True,
)
@click.option("--out", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop the query after this many seconds [no limit].",
)
@_db_option()
def query_cmd(sql, sql_file, fmt, out, timeout, db):
    """Run read-only SQL on the warehouse; works while a run is writing."""
    from warehouse import query_command

    with user_errors():
        rows = query_command(db, sql, sql_file, fmt, out, timeout)
    if out:
        click.echo(f"wrote {rows} rows to {out}", err=True)


@cli.command("views")
@_db_option()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def views_cmd(db, as_json):
    """Every view of the warehouse with a one-line description (applies the SQL of queries/ first)."""
    from warehouse import format_views, views_list

    with user_errors():
        _show(views_list(db), as_json, format_views, "views")


@cli.command("stats")
@click.option(
    "--run", "run_spec", default="latest", show_default=True, help="Run id, unique prefix or latest."
)
@click.option(
    "--boot",
    "n_boot",
    default=2000,
    show_default=True,
    type=click.IntRange(min=100),
    help="Bootstrap resamples (of problems).",
)
@click.option(
    "--perm",
    "n_perm",
    default=2000,
    show_default=True,
    type=click.IntRange(min=100),
    help="Permutations for the within-problem correlation and the hub test.",
)
@click.option("--seed", default=0, show_default=True)
@_db_option()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats_cmd(run_spec, n_boot, n_perm, seed, db, as_json):
    """The research questions' tables for one run, with p-values and bootstrap / permutation intervals."""
    from analysis import format_stats, run_stats
    from warehouse import open_warehouse

    with user_errors(), open_warehouse(db, read_only=True) as store:
        stats = run_stats(store.run(run_spec), n_boot, n_perm, seed)
    emit_json(stats.to_dict()) if as_json else click.echo(format_stats(stats), nl=False)


@cli.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option(
    "--boot",
    "n_boot",
    default=2000,
    show_default=True,
    type=click.IntRange(min=100),
    help="Bootstrap resamples (of shared problems).",
)
@click.option("--seed", default=0, show_default=True)
@_db_option()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def compare_cmd(run_a, run_b, n_boot, seed, db, as_json):
    """Two runs on their shared problems: failure rates per thought and method, B - A with an interval,
    flips."""
    from analysis import compare_runs, format_comparison
    from warehouse import open_warehouse

    with user_errors(), open_warehouse(db, read_only=True) as store:
        comparison = compare_runs(store.run(run_a), store.run(run_b), n_boot, seed)
    emit_json(comparison.to_dict()) if as_json else click.echo(format_comparison(comparison), nl=False)


def _int_list(text: str | None, what: str) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{what} takes a comma list of integers, got {text!r}") from None


@cli.command("probe")
@click.option(
    "--run", "run_spec", default="latest", show_default=True, help="Run id, unique prefix or latest."
)
@click.option(
    "--targets", default="value,operation,n_steps", show_default=True, help="Comma list of probe targets."
)
@click.option("--layers", default=None, help="Comma list of layers (-1: the vector fed in) [all recorded].")
@click.option("--positions", default=None, help="Comma list of positions (0..5 thoughts, 6 EOT) [all].")
@click.option("--steps", default=None, help="Comma list of reasoning steps for value and operation [1..6].")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(min=2), help="Grouped folds.")
@click.option(
    "--permutations",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    help="Shuffled-label refits per probe (the p-value's floor is 1/(1+N)).",
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--classifier",
    type=click.Choice(["ridge", "logistic"]),
    default="ridge",
    show_default=True,
    help="Operation and n_steps probes: a ridge classifier, or logistic regression (about 100x slower).",
)
@_db_option()
@click.option("--json", "as_json", is_flag=True, help="Print every probe row as JSON.")
def probe_cmd(
    run_spec, targets, layers, positions, steps, folds, permutations, seed, classifier, db, as_json
):
    """Linear probes from a run's hidden states (run --states) to each step's value and operation and the
    number of steps; writes probe_results and prints the best probe per target and step."""
    from analysis import best_probes, format_probes, probe_run

    with user_errors():
        rows = probe_run(
            db,
            run_spec,
            positions=_int_list(positions, "--positions"),
            layers=_int_list(layers, "--layers"),
            targets=[t.strip() for t in targets.split(",") if t.strip()],
            steps=_int_list(steps, "--steps"),
            folds=folds,
            permutations=permutations,
            seed=seed,
            on_skip=lambda line: click.echo(line, err=True),
            classifier=classifier,
        )
        if as_json:
            emit_json(rows.drop("settings").to_dicts())
        else:
            run_id = rows["run_id"][0] if rows.height else run_spec
            best = best_probes(db, run_id) if rows.height else rows
            click.echo(format_probes(best, rows), nl=False)


@cli.command("charts")
@click.option(
    "--run", "run_spec", default="latest", show_default=True, help="Run id, unique prefix or latest."
)
@click.option("--vs", "vs_spec", default=None, help="A second run to show beside it (id, prefix or latest).")
@click.option("--out", "out_dir", default="results/charts", show_default=True, help="Directory to write.")
@click.option(
    "--format", "formats", default="html,png,svg", show_default=True, help="Comma list of html, png, svg."
)
@_db_option()
def charts_cmd(run_spec, vs_spec, out_dir, formats, db):
    """Every chart of a run (or two) from the views, and one offline page DIR/report.html gathering them."""
    from analysis import parse_formats, write_report
    from warehouse import open_warehouse

    with user_errors(), open_warehouse(db, read_only=True) as store, _chart_progress() as progress:
        run, vs = store.run(run_spec), store.run(vs_spec) if vs_spec else None
        written = write_report(run, out_dir, vs, parse_formats(formats), progress=progress)
    # each chart's files share its name (the intervention families' charts included); report.html last
    charts = len({path.stem for path in written[:-1]})
    click.echo(f"{charts} charts, {len(written)} files in {out_dir}", err=True)
    click.echo(written[-1])


@contextlib.contextmanager
def _chart_progress():
    """write_report's progress on stderr: a bar on a terminal, else a line per step
    (`chart 3/13 method_effects ...`)."""
    from tqdm import tqdm

    bar = None

    def show(done: int, total: int, name: str) -> None:
        nonlocal bar
        charts = total - 3  # the steps are: the views, each chart, the statistics, the page
        if sys.stderr.isatty():
            if bar is None:
                bar = tqdm(total=total, desc="charts", unit="step", file=sys.stderr, dynamic_ncols=True)
            bar.update(done - bar.n)
            bar.set_postfix_str(name)
        elif name == "views":
            click.echo("reading the views ...", err=True)
        elif name == "statistics":
            click.echo("computing the statistics (findings, p-values, intervals) ...", err=True)
        elif name == "report.html":
            click.echo(f"writing {name} ...", err=True)
        elif done <= charts:
            click.echo(f"chart {done}/{charts} {name} ...", err=True)

    try:
        yield show
    finally:
        if bar is not None:
            bar.close()


@cli.group("bench")
def bench():
    """Benchmarks that print ratios and rates."""


@bench.command("warehouse")
@_db_option(None, "Where to build the benchmark warehouse (default: a temporary directory).")
@click.option(
    "--problems",
    default=40,
    show_default=True,
    type=click.IntRange(min=1),
    help="Problems of GPT-2 shape (216,720 attention rows each).",
)
@click.option(
    "--durable/--no-durable", default=True, show_default=True, help="fsync the Parquet files of every commit."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_warehouse_cmd(db, problems, durable, as_json):
    """Attention rows per second: problem-sized commits, one run-sized batch, finishing, scanning."""
    from warehouse import bench_warehouse as run_bench
    from warehouse import bench_warehouse_lines as summary_lines

    with user_errors():
        report = run_bench(problems, db, durable)
    emit_json(report) if as_json else click.echo("\n".join(summary_lines(report)))


@bench.command("views")
@_db_option(None, "Where to build the benchmark warehouse (default: a temporary directory).")
@click.option(
    "--rows",
    "attention_rows",
    default=20_000_000,
    show_default=True,
    type=click.IntRange(min=300_000),
    help="Attention rows to generate (GPT-2-shaped problems, two runs).",
)
@click.option(
    "--repeats", default=3, show_default=True, type=click.IntRange(min=1), help="Timings per view (median)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_views_cmd(db, attention_rows, repeats, as_json):
    """Latency of every view over a generated warehouse (20M attention rows by default)."""
    from warehouse import bench_query_views as run_bench
    from warehouse import bench_query_views_lines as summary_lines

    with user_errors():
        report = run_bench(attention_rows, repeats, db)
    emit_json(report) if as_json else click.echo("\n".join(summary_lines(report)))


@bench.command("engine")
@click.option("--model", "model_name", default="gpt2-tiny", show_default=True)
@click.option("--checkpoint", default=None)
@click.option(
    "--problems",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Problems for the engine and the batched peer.",
)
@click.option(
    "--seed-problems",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="The first of them for the (slow) seed loop; times are per problem.",
)
@click.option(
    "--rounds",
    default=3,
    show_default=True,
    type=click.IntRange(min=3),
    help="Rounds of engine, seed loop, batched peer (min and median over them).",
)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Engine chunk.")
@click.option("--device", default="auto", show_default=True)
@_dtype_option("")
@_threads_option()
@click.option("--attention", type=click.Choice(["all", "baseline", "none"]), default="all", show_default=True)
@click.option(
    "--arch",
    type=click.Choice(["gpt2-124m", "llama-1b"]),
    default=None,
    help="Random weights of this real model's exact shape instead of --model (no checkpoint needed).",
)
@click.option(
    "--family",
    "families",
    default=None,
    metavar="F1,F2,...",
    help="Also time the engine on these intervention families (as run --family), beside thoughts.",
)
@click.option(
    "--readouts",
    is_flag=True,
    help="Also time the engine with each readout (--decode-top 5, --states, --attention tokens, all three).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_engine_cmd(
    model_name,
    checkpoint,
    problems,
    seed_problems,
    rounds,
    batch_size,
    device,
    dtype,
    threads,
    attention,
    arch,
    families,
    readouts,
    as_json,
):
    """The batched engine against two peers (the seed loop, a batched plain-transformers peer), interleaved
    in one process: wall and CPU time per problem, speed-ups, load, FLOPs against the matmul peak."""
    _setup_threads(threads)
    from engine import bench_engine, bench_engine_lines

    with user_errors():
        report = bench_engine(
            model_name,
            checkpoint,
            problems,
            seed_problems,
            rounds,
            batch_size,
            device,
            attention,
            arch,
            dtype,
            families,
            readouts,
        )
    emit_json(report) if as_json else click.echo("\n".join(bench_engine_lines(report)))


@cli.command("datasets")
@click.option(
    "--model",
    "models",
    multiple=True,
    default=("gpt2-tiny", "gpt2", "llama"),
    show_default=True,
    help="Models to measure the questions against (repeat; unavailable ones are said so).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def datasets_cmd(models, as_json):
    """The built-in datasets (gsm8k-test, gsm8k-train): problems, per difficulty stratum, and per model how
    many are too long for its context (what `run --skip-invalid` passes over)."""
    from engine import builtin_datasets

    with user_errors():
        rows = builtin_datasets(list(models))
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        strata = ", ".join(f"{k}: {v}" for k, v in row["strata"].items())
        click.echo(
            f"{row['dataset']}: {row['problems']} problems (steps {strata}; "
            f"{row['no_annotation']} with no annotation count as <=2)"
        )
        for model, count in row["too_long"].items():
            shown = f"{count} too long" if isinstance(count, int) else count
            click.echo(f"  {model}: {shown}")


# --- ingest commands (ingest/) ---------------------------------------------------------------------
@cli.group("ingest")
def ingest_group():
    """Bring problems, legacy research results and worker shards into the warehouse."""


@ingest_group.command("gsm8k")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--skip-invalid", is_flag=True, help="Load the good lines of a file with malformed ones.")
@_db_option()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def ingest_gsm8k_cmd(file, skip_invalid, db, as_json):
    """Problems of a GSM8K JSONL file, or of gsm8k-test / gsm8k-train (built in), into the problems table
    (ids: hash of the normalized question)."""
    from ingest import format_gsm8k, ingest_gsm8k, resolve_dataset

    with user_errors():
        _show(ingest_gsm8k(db, resolve_dataset(file), skip_invalid), as_json, format_gsm8k)


@ingest_group.command("legacy")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--dataset",
    type=click.Path(dir_okay=False),
    help="The research script's dataset (records with gsm8k_id and question).",
)
@click.option(
    "--model-name", default=None, help="Model the legacy results came from [from the file or script]."
)
@_db_option()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def ingest_legacy_cmd(files, dataset, model_name, db, as_json):
    """Legacy research result files as complete runs with convention legacy (once per file)."""
    from ingest import format_legacy, ingest_legacy

    with user_errors():
        _show(ingest_legacy(db, files, dataset, model_name), as_json, format_legacy)


@ingest_group.command("shards")
@click.argument("directory", type=click.Path(file_okay=False))
@_db_option()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def ingest_shards_cmd(directory, db, as_json):
    """Merge the finished Parquet shards of workers (`run --shard I/N`) into the warehouse; idempotent."""
    from ingest import format_shards, ingest_shards

    with user_errors():
        _show(ingest_shards(db, directory), as_json, format_shards)


if __name__ == "__main__":
    cli()
