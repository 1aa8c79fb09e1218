"""The text forms of what the ingest functions return (what `ingest ...` prints without --json)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def format_gsm8k(result: Mapping[str, Any]) -> str:
    """`ingest gsm8k` (ingest.gsm8k.ingest_gsm8k): problems read and added by step count, lines skipped."""
    steps = ", ".join(f"{k}: {n}" for k, n in result["by_steps"].items())
    lines = [
        (
            f"{result['file']}: {result['problems']} problems read, {result['added']} added, "
            f"{result['already_present']} already present (n_steps {steps or '-'})"
        )
    ]
    lines += [f"skipped line {b['line']}: {b['reason']}" for b in result["skipped_lines"]]
    return "\n".join(lines) + "\n"


def format_legacy(result: Mapping[str, Any]) -> str:
    """`ingest legacy` (ingest.legacy.ingest_legacy): one line per run the files made."""
    lines = []
    for run in result["runs"]:
        files = ", ".join(run["files"])
        if run["status"] != "imported":
            lines.append(f"{files}: {run['status']} as run {run['run_id']} (nothing done)")
            continue
        lines.append(
            f"{files}: run {run['run_id']} ({run['format']}): {run['problems']} problems, "
            f"{run['results']:,} result rows, {run['attention']:,} attention rows, "
            f"{run['records_skipped']} of {run['records']} records skipped (error)"
        )
    return "\n".join(lines) + "\n"


def format_shards(result: Mapping[str, Any]) -> str:
    """`ingest shards` (ingest.shards.ingest_shards): one line per run merged, and the shards ignored."""
    lines = [
        (
            f"run {r['run_id']}: {r['status']}, {r['shards']} of {r['shard_count']} shards here, "
            f"{r['parts_added']} parts added ({r['problems_added']} problems), {r['parts_already_present']} "
            f"already present; {r['problems_committed']}/{r['problems_planned']} problems"
        )
        for r in result["runs"]
    ] or [f"{result['directory']}: no finished shards"]
    if result["ignored"]:
        lines.append(f"ignored (unfinished): {', '.join(result['ignored'])}")
    return "\n".join(lines) + "\n"
