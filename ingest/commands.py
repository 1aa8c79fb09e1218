"""What the `ingest` CLI commands do, each returning a payload (for --json) and its text form."""
from __future__ import annotations

from ingest.legacy import ingest_legacy
from ingest.problems import ingest_gsm8k
from ingest.shards import ingest_shards


def gsm8k_command(db, path, skip_invalid: bool) -> tuple[dict, str]:
    result = ingest_gsm8k(db, path, skip_invalid)
    steps = ", ".join(f"{k}: {n}" for k, n in result["by_steps"].items())
    lines = [(f"{result['file']}: {result['problems']} problems read, {result['added']} added, "
              f"{result['already_present']} already present (n_steps {steps or '-'})")]
    lines += [f"skipped line {b['line']}: {b['reason']}" for b in result["skipped_lines"]]
    return result, "\n".join(lines) + "\n"


def legacy_command(db, files, dataset, model_name) -> tuple[dict, str]:
    result = ingest_legacy(db, files, dataset, model_name)
    lines = []
    for run in result["runs"]:
        files_ = ", ".join(run["files"])
        if run["status"] != "imported":
            lines.append(f"{files_}: {run['status']} as run {run['run_id']} (nothing done)")
            continue
        lines.append(f"{files_}: run {run['run_id']} ({run['format']}): {run['problems']} problems, "
                     f"{run['results']:,} result rows, {run['attention']:,} attention rows, "
                     f"{run['records_skipped']} of {run['records']} records skipped (error)")
    return result, "\n".join(lines) + "\n"


def shards_command(db, directory) -> tuple[dict, str]:
    result = ingest_shards(db, directory)
    lines = [(f"run {r['run_id']}: {r['status']}, {r['shards']} of {r['shard_count']} shards here, "
              f"{r['parts_added']} parts added ({r['problems_added']} problems), {r['parts_already_present']} "
              f"already present; {r['problems_committed']}/{r['problems_planned']} problems")
             for r in result["runs"]] or [f"{directory}: no finished shards"]
    if result["ignored"]:
        lines.append(f"ignored (unfinished): {', '.join(result['ignored'])}")
    return result, "\n".join(lines) + "\n"
