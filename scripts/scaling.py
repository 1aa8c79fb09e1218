"""How a run scales with its problems: `python cli.py run` at several sizes, each in a fresh process and a
fresh warehouse, then how long the main views take at the largest size (docs/BENCHMARKS.md).

    python scripts/scaling.py                       # 25, 100, 400, 1,000 problems, and 100 with --layers all
    python scripts/scaling.py --sizes 25,100 --all-layers 0 --threads 1 --out results/scaling

Per run: wall and CPU time, the rows written (results, attention), the warehouse folder's size on disk,
the child's peak resident memory (os.wait4: the child's own rusage, not the largest of all children)
and the run's own memory estimate (`run --json`, engine/runs/memory.py). Then, on the largest one-layer
warehouse: `python cli.py stats` (wall, a fresh process) and `SELECT * FROM <view>` for the main views
(one fresh process that opens the warehouse, then times each view's first query). Writes scaling.json
and scaling.md to --out and prints the markdown.

On a machine that other jobs share, give `--threads 1`: torch's default (one OpenMP thread per core) is a
little faster on a quiet machine but degrades far more under load (docs/BENCHMARKS.md, Scaling).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "cli.py"
VIEWS = (
    "token_importance",
    "importance_matrix",
    "method_comparison",
    "attention_importance",
    "layer_correlation",
    "flow_matrix",
    "head_metrics",
    "hub_scores",
)


def sizes_arg(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes must be comma-separated problem counts, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--sizes must be positive problem counts, got {text!r}")
    return sizes


def threads_arg(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--threads must be a positive number, got {text!r}")
    return int(text)


def disk_bytes(folder: Path) -> int:
    """Bytes the folder takes on disk (allocated blocks, as `du`)."""
    return sum(
        os.lstat(os.path.join(top, name)).st_blocks * 512
        for top, _, names in os.walk(folder)
        for name in names
    )


def run_child(command: list[str], log: Path, threads: int | None = None) -> dict:
    """Run `command` to its end; its wall time, CPU time and peak RSS from its own rusage (os.wait4).
    `threads`: torch's (OpenMP's) threads in the child (None: torch's default, one per core)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(log.with_suffix(".out"), "wb") as out, open(log.with_suffix(".err"), "wb") as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = log.with_suffix(".err").read_text(errors="replace").strip().splitlines()[-1:]
        raise SystemExit(f"{' '.join(command[1:4])} ... failed ({child.returncode}): {' '.join(tail)}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_bytes": usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024),
        "stdout": log.with_suffix(".out").read_text(),
    }


def run_case(
    label: str, problems: int, all_layers: bool, work: Path, device: str, threads: int | None
) -> dict:
    db = work / label
    command = [sys.executable, str(CLI), "run", "--problems", str(problems), "--db", str(db)]
    command += ["--device", device, "--json"] + (["--layers", "all"] if all_layers else [])
    load_before = os.getloadavg()[0]
    child = run_child(command, work / f"{label}.run", threads)
    summary = json.loads(child.pop("stdout"))
    counts = row_counts(db, summary["run_id"])
    memory = summary.get("memory", {})
    return {
        "case": label,
        "problems": problems,
        "layers": "all" if all_layers else "default",
        "conditions": summary["conditions"],
        "run_id": summary["run_id"],
        **child,
        "run_seconds": summary["seconds"],  # first chunk to last commit, as the run reports it
        **counts,
        "disk_bytes": disk_bytes(db),
        "estimated_peak_bytes": memory.get("peak_bytes"),
        "batch_size": memory.get("batch_size"),
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "db": str(db),
    }


def row_counts(db: Path, run_id: str) -> dict:
    sys.path.insert(0, str(ROOT))
    from warehouse import open_warehouse

    with open_warehouse(db, read_only=True) as wh:
        results = wh.sql(f"SELECT count(*) AS n FROM results WHERE run_id = '{run_id}'")["n"][0]
        attention = wh.sql(f"SELECT count(*) AS n FROM attention WHERE run_id = '{run_id}'")["n"][0]
    return {"results_rows": int(results), "attention_rows": int(attention)}


def time_views(db: str, views: list[str]) -> dict:
    """In this (fresh) process: open the warehouse, then each view's first `SELECT *` (seconds, rows)."""
    sys.path.insert(0, str(ROOT))
    started = time.perf_counter()
    from warehouse import open_warehouse

    wh = open_warehouse(db, read_only=True)
    out: dict = {"open_s": round(time.perf_counter() - started, 3), "views": {}}
    for view in views:
        started = time.perf_counter()
        frame = wh.sql(f"SELECT * FROM {view}")
        out["views"][view] = {"seconds": round(time.perf_counter() - started, 3), "rows": frame.height}
    wh.close()
    return out


def view_latency(case: dict, views: list[str], work: Path, threads: int | None) -> dict:
    stats = run_child(
        [sys.executable, str(CLI), "stats", "--run", case["run_id"], "--db", case["db"]],
        work / "stats",
        threads,
    )
    timed = run_child(
        [sys.executable, __file__, "--time-views", case["db"], "--views", ",".join(views)],
        work / "views",
        threads,
    )
    return {
        "case": case["case"],
        "stats_wall_s": stats["wall_s"],
        "stats_peak_rss_bytes": stats["peak_rss_bytes"],
        **json.loads(timed["stdout"]),
    }


def markdown(report: dict) -> str:
    mb = 10**6
    threads = "torch's default threads" if report.get("threads") is None else f"{report['threads']} thread(s)"
    lines = [
        f"Measured {report['date']} on {report['machine']} ({report['cpus']} CPUs, torch "
        f"{report['torch']}, {threads}); 1-minute load average {report['load_1min'][0]} at the start, "
        f"{report['load_1min'][1]} at the end (per run: the load column, at its start and end).",
        "",
        "| problems | layers | conditions | wall s | CPU s | problems/s | results rows | attention rows "
        "| warehouse MB | peak RSS MB | estimated MB | load |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in report["runs"]:
        estimate = "" if c["estimated_peak_bytes"] is None else f"{c['estimated_peak_bytes'] / mb:,.0f}"
        lines.append(
            f"| {c['problems']:,} | {c['layers']} | {c['conditions']} | {c['wall_s']:.1f} | {c['cpu_s']:.1f} "
            f"| {c['problems'] / c['wall_s']:.2f} | {c['results_rows']:,} | {c['attention_rows']:,} "
            f"| {c['disk_bytes'] / mb:,.1f} | {c['peak_rss_bytes'] / mb:,.0f} | {estimate} "
            f"| {c['load_1min'][0]}-{c['load_1min'][1]} |"
        )
    v = report.get("views")
    if v:
        lines += [
            "",
            f"At {v['problems']:,} problems: `python cli.py stats` {v['stats_wall_s']:.1f} s wall (a fresh "
            f"process, peak RSS {v['stats_peak_rss_bytes'] / mb:,.0f} MB); opening the warehouse "
            f"{v['open_s']:.2f} s, then the first `SELECT *` of each view:",
            "",
            "| view | seconds | rows |",
            "|---|---:|---:|",
            *(f"| {name} | {t['seconds']:.2f} | {t['rows']:,} |" for name, t in v["views"].items()),
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=sizes_arg, default=[25, 100, 400, 1000], help="problem counts")
    parser.add_argument(
        "--all-layers", type=int, default=100, help="problems of the --layers all run (0: none)"
    )
    parser.add_argument("--views", default=",".join(VIEWS), help="views timed at the largest size ('' none)")
    parser.add_argument("--out", default="results/scaling", help="folder for scaling.json and scaling.md")
    parser.add_argument("--work", default=None, help="folder for the warehouses [a temporary one, removed]")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        type=threads_arg,
        default=None,
        help="torch (OpenMP) threads per run [torch's default: one per core]",
    )
    parser.add_argument("--time-views", metavar="DB", help=argparse.SUPPRESS)  # the child of view_latency
    args = parser.parse_args(argv)
    if args.time_views:
        print(json.dumps(time_views(args.time_views, [v for v in args.views.split(",") if v])))
        return
    import torch

    with tempfile.TemporaryDirectory(prefix="codi-scaling-") as scratch:
        work = Path(args.work or scratch)
        work.mkdir(parents=True, exist_ok=True)
        report: dict = {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "load_1min": [round(os.getloadavg()[0], 2)],
            "threads": args.threads,  # None: torch's default
            "runs": [],
        }
        cases = [(f"p{n}", n, False) for n in args.sizes]
        if args.all_layers:
            cases.append((f"p{args.all_layers}-all-layers", args.all_layers, True))
        for label, n, all_layers in cases:
            print(f"run {label} ...", file=sys.stderr, flush=True)
            report["runs"].append(run_case(label, n, all_layers, work, args.device, args.threads))
        views = [v for v in args.views.split(",") if v]
        largest = max((c for c in report["runs"] if c["layers"] == "default"), key=lambda c: c["problems"])
        if views:
            print(f"views at {largest['problems']} problems ...", file=sys.stderr, flush=True)
            report["views"] = {
                "problems": largest["problems"],
                **view_latency(largest, views, work, args.threads),
            }
        report["load_1min"].append(round(os.getloadavg()[0], 2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (out / "scaling.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
