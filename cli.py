"""codi-warehouse command line: thin click commands, each calling one library function.

Contract: ../shared/SPEC.md section 13. Progress goes to stderr, results to stdout, errors exit
non-zero with a one-line reason.
"""
from __future__ import annotations

import json
import os
import sys

import click

DEFAULT_DB = os.environ.get("CODI_WAREHOUSE", "results/warehouse.duckdb")


class UserError(click.ClickException):
    """An error caused by input; shown as one line, never as a traceback."""


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Find which continuous thoughts of a CODI model matter, and how attention moves between them."""


# --- model, data and training commands (engine/, ingest/) -----------------------------------------


# --- warehouse commands (warehouse/) ----------------------------------------------------------------


if __name__ == "__main__":
    cli()
