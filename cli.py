"""codi-warehouse command line: thin click commands, each calling one library function.

Contract: ../shared/SPEC.md section 13. Progress goes to stderr, results to stdout, errors exit
non-zero with a one-line reason.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys

import click

DEFAULT_DB = os.environ.get("CODI_WAREHOUSE", "results/warehouse.duckdb")


class UserError(click.ClickException):
    """An error caused by input; shown as one line, never as a traceback."""


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@contextlib.contextmanager
def user_errors():
    """Turn the library's input errors into one-line messages with a non-zero exit."""
    try:
        yield
    except (FileNotFoundError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise UserError(str(message)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Find which continuous thoughts of a CODI model matter, and how attention moves between them."""


# --- model, data and training commands (engine/, ingest/) -----------------------------------------
@cli.command()
@click.option("--out", "out_dir", default="models/gpt2-tiny", show_default=True, help="Model directory to write.")
@click.option("--steps", default=None, type=int, help="Optimizer steps (default: the recipe's).")
@click.option("--seed", default=0, show_default=True)
@click.option("--teacher-only-steps", default=None, type=int, help="Curriculum: teacher-only steps first.")
@click.option("--eval-every", default=None, type=int)
@click.option("--eval-problems", default=None, type=int)
@click.option("--init-from", default=None, type=click.Path(exists=True, file_okay=False),
              help="Continue training a saved model directory (e.g. after the teacher-only phase).")
def train(out_dir, steps, seed, teacher_only_steps, eval_every, eval_problems, init_from):
    """Train a small CODI model from scratch on synthetic problems (deterministic given the seed)."""
    from engine.train import TrainConfig, train as run_training

    overrides = {"steps": steps, "teacher_only_steps": teacher_only_steps, "eval_every": eval_every,
                 "eval_problems": eval_problems, "init_from": init_from}
    cfg = TrainConfig(seed=seed, **{k: v for k, v in overrides.items() if v is not None})
    card = run_training(cfg, out_dir)
    emit_json({"out": out_dir, "final_eval": card["final_eval"], "train_wall_seconds": card["train_wall_seconds"]})


@cli.command("eval")
@click.option("--model", "model_name", default="gpt2-tiny", show_default=True, help="gpt2-tiny, gpt2 or llama.")
@click.option("--checkpoint", default=None, help="Directory holding the model's weights (and config/tokenizer).")
@click.option("--dataset", default="synthetic", show_default=True, help="synthetic or a GSM8K-format JSONL file.")
@click.option("--problems", default=400, show_default=True, help="How many problems.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--no-teacher", is_flag=True, help="Skip the explicit-CoT teacher accuracy.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_cmd(model_name, checkpoint, dataset, problems, seed, device, no_teacher, as_json):
    """Student (latent) and teacher (explicit CoT) accuracy on held-out problems, by step count."""
    from engine.evaluate import run_eval

    with user_errors():
        result = run_eval(model_name, checkpoint, dataset, problems, seed, device, teacher=not no_teacher)
    if as_json:
        emit_json(result)
        return
    click.echo(f"{result['model']} on {result['n']} {result['dataset']} problems ({result['seconds']} s)")
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
    from ingest.synthetic import generate, parse_steps_range, write_jsonl

    with user_errors():
        path = write_jsonl(generate(count, seed=seed, steps=parse_steps_range(steps)), out)
    click.echo(f"wrote {count} problems to {path}", err=True)


# --- warehouse commands (warehouse/) ----------------------------------------------------------------


if __name__ == "__main__":
    cli()
