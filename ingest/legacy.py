"""`ingest legacy`: result files of the older research scripts as historical runs (SPEC 10).

Each legacy file (the .npy with its attention_metadata.json counts as one) becomes one run with
`convention = 'legacy'`, status complete, and a config that records the source files with their sha256,
the dataset file that mapped `gsm8k_id` to our content-hash problem ids, the records skipped (those
holding `error`), and notes on what the columns mean. The run id is derived from the files' content
(`legacy-<kind>-<sha256 prefix>`), so importing the same file again is a no-op, never a second copy;
a run left half-written by a killed import is removed and redone. All files of a command are read and
checked before anything is written.

What the legacy indices mean (kept as they are, never remapped; SPEC 10, 11). The scripts fed BOT as
the first of six latent steps, so step s ran at position Q+s (Q = question length): step 0 is our BOT,
step s >= 1 is our thought T(s-1), and our T5 was never fed.
- Results (`ccta`, `token-ablation`): `thought` = their `token_k` = latent step k (token_0 = our BOT).
  `layer` = 8, their LAYER_CONFIG["middle"]; the hook replaced block 8's output by a corrupted copy of
  block 8's input (hidden_states[8]) at all six steps, so every corrupted row also skipped block 8.
  Methods: zero -> zero; gauss_S -> (gauss, sigma S, absolute, unseeded); random -> random (donor:
  dataset problem (i+1) mod 20, not recorded); shuffle -> shuffle (a permutation of all six steps,
  whatever the target token; donor_thought NULL). `token_ablation_results` zeroed one step: method zero.
  correct = still_correct; flipped = baseline correct and not still_correct (checked against their
  `importance`); `disruption` = their attention_disruption (L2 of the head-mean last-layer attention
  of the answer step over all keys: the research definition). `kl_*` stay NULL: their KL used
  `batchmean` on a 1-D vector (divided by the vocabulary size, SPEC 11) and is not comparable.
- Attention formats also get one baseline result row per problem (condition 0, answer and correct NULL:
  the scripts stopped at EOT), so views find their baseline attention through `results` as for our runs.
- `attention-weights`: condition 0 (baseline), `layer` = their layer_N, `head` = -1 (HEAD_MEAN: the
  mean over heads, the only value they kept), `dst` = 6 (the step that fed EOT), `src` = k of their
  continuous_token_attention[k], which was position Q+1+k: our T0..T4 for k < 5, EOT itself for k = 5.
- `attention-patterns`: condition 0, per layer and head, `dst` = i and `src` = j of their matrix
  [i, j], for the 15 cells j < i they wrote: attention from position Q+i (step i) to position Q+1+j,
  so j = i-1 is self-attention, not the previous thought.
- `summary`: aggregates only; stored whole in the run's config under "aggregates", no rows.
Views that line thoughts up across runs must therefore keep legacy runs apart (runs.convention).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.files import require_regular
from ingest.legacy_formats import (
    LegacyFormatError,
    Parsed,
    parse_attention_patterns,
    parse_attention_weights,
    parse_ccta,
    parse_summary,
    parse_token_ablation,
)
from ingest.problems import problems_hash, problems_table
from ingest.research_dataset import ResearchDataset, file_sha256, read_research_dataset

METADATA_NAME = "attention_metadata.json"
PATTERNS_NAME = "attention_patterns_raw.npy"
FORMAT_NAMES = {
    "ccta": "ccta_full_results",
    "token-ablation": "token_ablation_results",
    "attention-weights": "attention_weights",
    "attention-patterns": "attention_patterns_raw",
    "summary": "summary_statistics",
}
# The script that wrote each format (recorded as the run's code_version) and the model it loaded.
SCRIPTS = {
    "ccta": "src/experiments/codi_attention_interp/scripts/1_run_token_ablation_FULL.py",
    "token-ablation": "src/experiments/codi_attention_interp/scripts/1_run_token_ablation.py",
    "attention-weights": "src/experiments/codi_attention_interp/scripts/2_extract_attention.py",
    "attention-patterns": "src/experiments/codi_attention_flow/scripts/2_extract_attention_6x6.py",
    "summary": "src/experiments/codi_attention_interp/scripts/3_analyze_and_visualize.py",
}
CHECKPOINT_NAMES = {"llama_gsm8k": "llama", "gpt2_gsm8k": "gpt2"}  # ~/codi_ckpt/<dir> -> our model names


@dataclass(frozen=True, eq=False)
class Source:
    """One legacy run's input: its format and its files (the .npy first, then its metadata)."""

    kind: str
    files: tuple[Path, ...]
    data: object = None  # the parsed JSON of a .json source

    @property
    def run_id(self) -> str:
        """Derived from the files' content only: the same files always make the same run."""
        digest = hashlib.sha256("\n".join(sorted(file_sha256(f) for f in self.files)).encode()).hexdigest()
        return f"legacy-{self.kind}-{digest[:16]}"


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise LegacyFormatError(f"{path}: not valid JSON ({exc})") from exc
    except RecursionError:
        raise LegacyFormatError(f"{path}: JSON nested too deeply to read; not a legacy result file") from None


def detect(path: Path) -> Source:
    """Which of the five formats a file holds, by its content (file names only break ties)."""
    require_regular(
        path, "legacy file", LegacyFormatError
    )  # before opening: a pipe would block or be consumed
    if not path.is_file():
        raise FileNotFoundError(f"legacy file not found: {path}")
    if path.suffix == ".npy":
        return Source("attention-patterns", (path, _companion(path, METADATA_NAME)))
    data = _load_json(path)
    if isinstance(data, dict):
        if {"overall_correlation", "per_token", "by_difficulty"} & set(data):
            return Source("summary", (path,), data)
        if isinstance(data.get("problems"), list):  # attention_metadata.json: import it with its array
            return Source("attention-patterns", (_companion(path, PATTERNS_NAME), path))
    if isinstance(data, list):
        for record in data:
            if isinstance(record, dict) and "error" not in record:
                for key, kind in (
                    ("corruptions", "ccta"),
                    ("token_ablations", "token-ablation"),
                    ("attention_by_layer", "attention-weights"),
                ):
                    if key in record:
                        return Source(kind, (path,), data)
                break
        for kind, prefix in FORMAT_NAMES.items():  # every record failed: fall back on the file name
            if path.name.startswith(prefix):
                return Source(kind, (path,), data)
    raise LegacyFormatError(
        f"{path}: not one of the legacy formats of SPEC 10 (ccta_full_results, "
        "token_ablation_results, attention_weights, attention_patterns_raw.npy, summary_statistics)"
    )


def _companion(path: Path, name: str) -> Path:
    other = path.with_name(name)
    require_regular(other, f"{path}: its companion", LegacyFormatError)
    if not other.is_file():
        raise FileNotFoundError(f"{path}: its companion {name} is not next to it ({other})")
    return other


def parse(source: Source, dataset: ResearchDataset | None) -> Parsed:
    if source.kind == "attention-patterns":
        return parse_attention_patterns(source.files[0], source.files[1], dataset)
    reader = {
        "ccta": parse_ccta,
        "token-ablation": parse_token_ablation,
        "attention-weights": parse_attention_weights,
    }.get(source.kind)
    if reader is None:
        return parse_summary(source.files[0], source.data)
    return reader(source.files[0], source.data, dataset)


def _model(parsed: Parsed, model_name: str | None) -> tuple[str | None, str]:
    """The model name and where it came from: --model-name, the metadata, or the script's checkpoint."""
    if model_name:
        return model_name, "--model-name"
    if parsed.kind == "attention-patterns":
        meta = parsed.notes.get("metadata", {})
        found = meta.get("model_name") or Path(str(meta.get("model_path") or "")).name or None
        return (CHECKPOINT_NAMES.get(found, found) if found else None), "attention_metadata.json model_name"
    return "llama", f"{SCRIPTS[parsed.kind]} loads ~/codi_ckpt/llama_gsm8k (CODI LLaMA-3.2-1B)"


def run_config(parsed: Parsed, dataset: ResearchDataset | None, model_source: str) -> dict[str, Any]:
    def describe(path: Path, sha: str | None = None) -> dict:
        stat = path.stat()
        modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).isoformat(timespec="seconds")
        return {
            "name": path.name,
            "path": str(path.resolve()),
            "sha256": sha or file_sha256(path),
            "bytes": stat.st_size,
            "modified_at": modified,
        }

    config = {
        "legacy_format": FORMAT_NAMES[parsed.kind],
        "source_files": [describe(f) for f in parsed.files],
        "dataset_file": describe(dataset.path, dataset.sha256) if dataset and parsed.problems else None,
        "model_name_source": model_source,
        "records": parsed.records,
        "problems_imported": len(parsed.problems),
        "records_skipped": len(parsed.skipped),
        "skipped": parsed.skipped,
        "legacy_indices": "thought/dst/src are the research scripts' token indices, not our T0..T5; "
        "see ingest/legacy.py",
        **parsed.notes,
    }
    if parsed.kind in ("ccta", "token-ablation"):
        config["not_imported"] = {
            "kl_divergence": "batchmean on a 1-D vector: divided by the vocabulary size "
            "(SPEC 11); kl_* are NULL"
        }
    return config


def _import(store, run_id: str, parsed: Parsed, dataset, model_name: str | None) -> dict:
    """One run: begin, one atomic batch of all its rows, finish; removed again if anything fails."""
    name, model_source = _model(parsed, model_name)
    fields = {
        "model_name": name,
        "convention": "legacy",
        "seed": None,
        "code_version": f"legacy: {SCRIPTS[parsed.kind]}",
        "library_versions": {},
        "n_problems_planned": len(parsed.problems),
        **parsed.fields,
    }
    if parsed.problems:
        fields.update(dataset_name=dataset.path.name, dataset_hash=problems_hash(parsed.problems))
    store.begin_run(run_config(parsed, dataset, model_source), run_id=run_id, **fields)
    try:
        if parsed.problems:
            store.append_problems(run_id, problems_table(parsed.problems), parsed.results, parsed.attention)
        store.finish_run(run_id)
    except BaseException:
        with contextlib.suppress(Exception):
            store.delete_run(run_id)  # nothing partial stays behind
        raise
    return {"run_id": run_id, "status": "imported", **summary(parsed)}


def summary(parsed: Parsed) -> dict[str, Any]:
    return {
        "format": FORMAT_NAMES[parsed.kind],
        "files": [str(f) for f in parsed.files],
        "problems": len(parsed.problems),
        "records": parsed.records,
        "records_skipped": len(parsed.skipped),
        "results": parsed.results.num_rows if parsed.results is not None else 0,
        "attention": parsed.attention.num_rows if parsed.attention is not None else 0,
    }


def _existing_runs(db) -> dict[str, str]:
    from warehouse.store import open_warehouse

    if not Path(db).exists():
        return {}
    return {r["run_id"]: r["status"] for r in open_warehouse(db, read_only=True).list_runs()}


def sources(files: Iterable[str | os.PathLike]) -> list[tuple[Source, str]]:
    """(source, run id) per run the files make: a .npy and its metadata, or two copies of a file, count
    once."""
    found: dict[str, Source] = {}
    for f in files:
        source = detect(Path(f))
        found.setdefault(source.run_id, source)
    return [(source, run_id) for run_id, source in found.items()]


def ingest_legacy(
    db: str | os.PathLike,
    files: Iterable[str | os.PathLike],
    dataset: str | Path | None = None,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Import legacy result files as complete runs (convention legacy); returns what each file became:
    `{"runs": [...]}`, one dict per run (run_id, status, files, and for a run imported now its counts)."""
    from warehouse.store import open_warehouse

    if not files:
        raise ValueError("give at least one legacy result file")
    todo = sources(files)
    existing = _existing_runs(db)
    fresh = [(s, run_id) for s, run_id in todo if existing.get(run_id) != "complete"]
    research = read_research_dataset(dataset) if dataset is not None else None
    parsed = [parse(s, research) for s, _ in fresh]  # every file checked before anything is written
    report = [
        {"run_id": run_id, "status": "already imported", "files": [str(f) for f in s.files]}
        for s, run_id in todo
        if existing.get(run_id) == "complete"
    ]
    if parsed:
        store = open_warehouse(db)
        for (_source, run_id), p in zip(fresh, parsed, strict=True):
            if run_id in existing:  # a run left behind by an interrupted import of these files
                store.delete_run(run_id)
            report.append(_import(store, run_id, p, research, model_name))
    return {"runs": report}
