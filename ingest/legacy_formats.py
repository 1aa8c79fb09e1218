"""Readers for the five legacy result formats of SPEC 10: each file becomes problems and warehouse rows.

Nothing here remaps a legacy index: `thought`, `dst` and `src` hold the research scripts' own token
indices, and the run is marked `convention = legacy` (ingest/legacy.py documents what those indices
meant). Every check that fails names the file and the record (0-based index in the file's JSON array).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ingest.problems import Problem
from ingest.research_dataset import ResearchDataset, number
from warehouse.schema import arrow_schema

LEGACY_LAYER = 8  # LAYER_CONFIG["middle"] of the scripts: their label for the patch site (LLaMA, 16 layers)
HEAD_MEAN = -1  # `head` of an attention row that holds the mean over all heads
ANSWER_QUERY = 6  # `dst` of attention_weights rows: the step that fed EOT and predicts the first answer token
N_TOKENS = 6
# The CCTA scripts' method keys, in their order -> (our method, sigma).
METHOD_KEYS = {
    "zero": ("zero", None),
    "gauss_0.1": ("gauss", 0.1),
    "gauss_0.5": ("gauss", 0.5),
    "gauss_1.0": ("gauss", 1.0),
    "gauss_2.0": ("gauss", 2.0),
    "random": ("random", None),
    "shuffle": ("shuffle", None),
}
_KEY_ORDER = tuple(METHOD_KEYS)


class LegacyFormatError(ValueError):
    """A legacy file that cannot be imported as it stands; the message names the file and record."""


@dataclass
class Parsed:
    """One legacy run's worth of data, validated, before anything is written."""

    kind: str
    files: list[Path]
    problems: list[Problem] = field(default_factory=list)
    results: pa.Table | None = None
    attention: pa.Table | None = None
    records: int = 0
    skipped: list[dict] = field(default_factory=list)  # {"record", "problem", "reason"}
    fields: dict = field(default_factory=dict)  # runs columns known from the file (n_layers, methods, ...)
    notes: dict = field(default_factory=dict)  # extra entries for the run's config


def condition_id(thought: int, key: str) -> int:
    """Baseline 0, then thought x method key in the scripts' order (the engine's ids for the 7 defaults)."""
    return 1 + thought * len(_KEY_ORDER) + _KEY_ORDER.index(key)


def _fail(path: Path, where: str, reason: str) -> LegacyFormatError:
    return LegacyFormatError(f"{path}: {where}: {reason}")


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing key {exc.args[0]!r}"
    return str(exc)


def _flag(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{what} {value!r} is not true/false")


def _maybe_number(value: object) -> float | None:
    try:
        return None if value is None else number(value)
    except ValueError:
        return None


def _index(key: str, prefix: str, limit: int | None = None) -> int:
    """'token_3' -> 3, 'layer_14' -> 14."""
    head, _, tail = str(key).rpartition("_")
    if head != prefix or not tail.isdigit() or (limit is not None and int(tail) >= limit):
        raise ValueError(f"unexpected key {key!r} (expected {prefix}_N)")
    return int(tail)


class _Rows:
    """Column lists for one shard table, turned into Arrow with the warehouse's column types."""

    def __init__(self, table: str):
        self.table = table
        self.schema = arrow_schema(table)
        self.columns: dict[str, list] = {}

    def add(self, **row) -> None:
        if self.columns and row.keys() != self.columns.keys():
            raise RuntimeError(f"row columns {sorted(row)} differ from earlier rows'")  # a bug, not bad input
        for name, value in row.items():
            self.columns.setdefault(name, []).append(value)

    def arrow(self) -> pa.Table | None:
        if not self.columns:
            return None
        arrays = {}
        for name, values in self.columns.items():
            kind = self.schema.field(name).type
            arrays[name] = pa.array(values, pa.string() if pa.types.is_dictionary(kind) else kind)
        return pa.table(arrays)


class _ProblemMap:
    """gsm8k_id -> our problem, through the research dataset; each problem at most once per file."""

    def __init__(self, path: Path, dataset: ResearchDataset | None):
        if dataset is None:
            raise LegacyFormatError(
                f"{path}: legacy records name problems by gsm8k_id only; give --dataset FILE "
                "(the research script's dataset, records with gsm8k_id and question)"
            )
        self.path, self.dataset = path, dataset
        self.problems: list[Problem] = []
        self.first: dict[str, str] = {}

    def get(self, where: str, gsm8k_id: object, expected: object = None) -> Problem:
        problem = self.dataset.by_id.get(str(gsm8k_id).strip())
        if problem is None:
            raise _fail(
                self.path,
                where,
                f"problem {gsm8k_id!r} is not in dataset {self.dataset.path.name} "
                "(give the dataset file the research script read)",
            )
        if expected is not None and not math.isclose(
            number(expected, "expected_answer"), problem.gold, rel_tol=1e-6, abs_tol=1e-6
        ):
            raise _fail(
                self.path,
                where,
                f"expected_answer {expected!r} differs from the dataset's answer "
                f"{problem.gold:g} for {gsm8k_id} (is --dataset the file the script read?)",
            )
        if problem.problem_id in self.first:
            raise _fail(
                self.path,
                where,
                f"problem {gsm8k_id} (our id {problem.problem_id}) already appears at "
                f"{self.first[problem.problem_id]}",
            )
        self.first[problem.problem_id] = where
        self.problems.append(problem)
        return problem


def _records(path: Path, data: object) -> list:
    if not isinstance(data, list):
        raise LegacyFormatError(f"{path}: expected a JSON array of per-problem records")
    return data


def _each(path: Path, data: object, parsed: Parsed, handle) -> None:
    """Call handle(where, record) per record; records holding `error` are skipped and counted."""
    records = _records(path, data)
    parsed.records = len(records)
    for i, record in enumerate(records):
        where = f"record {i}"
        if not isinstance(record, dict):
            raise _fail(path, where, f"expected a JSON object, got {type(record).__name__}")
        if "error" in record:
            parsed.skipped.append(
                {"record": i, "problem": record.get("problem_id"), "reason": str(record["error"])}
            )
            continue
        where = f"record {i} (problem {record.get('problem_id')})"
        try:
            handle(where, record)
        except LegacyFormatError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise _fail(path, where, _describe(exc)) from exc


def _baseline_row(rows: _Rows, problem: Problem, baseline: dict, disruption: float | None) -> bool:
    """The uncorrupted row (condition 0); disruption is 0 where the format measured it, as in our runs."""
    correct = _flag(baseline["correct"], "baseline.correct")
    rows.add(
        problem_id=problem.problem_id,
        condition_id=0,
        layer=None,
        thought=None,
        method="baseline",
        sigma=None,
        answer_text=baseline.get("output"),
        answer_value=_maybe_number(baseline.get("predicted_answer")),
        correct=correct,
        flipped=False,
        fixed=False,
        disruption=disruption,
    )
    return correct


def _unevaluated_baselines(problems: list[Problem]) -> pa.Table | None:
    """Condition-0 result rows for attention-only formats: the attention rows' condition is the baseline,
    which views find through `results`; the scripts decoded no answer, so answer and correctness are NULL."""
    rows = _Rows("results")
    for problem in problems:
        rows.add(
            problem_id=problem.problem_id,
            condition_id=0,
            method="baseline",
            correct=None,
            flipped=None,
            fixed=None,
        )
    return rows.arrow()


def _corrupted_row(
    rows: _Rows,
    problem: Problem,
    thought: int,
    key: str,
    base_correct: bool,
    entry: dict,
    answer_text=None,
    answer_value=None,
) -> None:
    method, sigma = METHOD_KEYS[key]
    correct = _flag(entry["still_correct"], "still_correct")
    flipped = base_correct and not correct
    if "importance" in entry and _flag(entry["importance"], "importance") != flipped:
        raise ValueError(
            f"token_{thought} {key}: importance {entry['importance']!r} disagrees with baseline "
            f"correct={base_correct} and still_correct={correct}"
        )
    disruption = entry.get("attention_disruption")
    rows.add(
        problem_id=problem.problem_id,
        condition_id=condition_id(thought, key),
        layer=LEGACY_LAYER,
        thought=thought,
        method=method,
        sigma=sigma,
        answer_text=answer_text,
        answer_value=_maybe_number(answer_value),
        correct=correct,
        flipped=flipped,
        fixed=(not base_correct) and correct,
        disruption=float(disruption) if disruption is not None and math.isfinite(disruption) else None,
    )


def parse_ccta(path: Path, data: object, dataset: ResearchDataset | None) -> Parsed:
    """`ccta_full_results_*.json`: baseline plus token_k x 7 methods -> 43 result rows per problem."""
    parsed, problems, rows = Parsed("ccta", [path]), _ProblemMap(path, dataset), _Rows("results")

    def handle(where: str, record: dict) -> None:
        problem = problems.get(where, record["problem_id"], record.get("expected_answer"))
        base_correct = _baseline_row(rows, problem, record["baseline"], 0.0)
        for token_key, methods in record["corruptions"].items():
            thought = _index(token_key, "token", N_TOKENS)
            for key, entry in methods.items():
                if key not in METHOD_KEYS:
                    raise ValueError(f"{token_key}: unknown corruption method {key!r}")
                _corrupted_row(rows, problem, thought, key, base_correct, entry)

    _each(path, data, parsed, handle)
    parsed.problems, parsed.results = problems.problems, rows.arrow()
    parsed.fields = {
        "patch_layers": [LEGACY_LAYER],
        "methods": ["zero", "gauss", "random", "shuffle"],
        "sigmas": [0.1, 0.5, 1.0, 2.0],
    }
    return parsed


def parse_token_ablation(path: Path, data: object, dataset: ResearchDataset | None) -> Parsed:
    """`token_ablation_results_*.json`: baseline plus one zero ablation per token (method `zero`)."""
    parsed, problems, rows = Parsed("token-ablation", [path]), _ProblemMap(path, dataset), _Rows("results")

    def handle(where: str, record: dict) -> None:
        problem = problems.get(where, record["problem_id"], record.get("expected_answer"))
        base_correct = _baseline_row(rows, problem, record["baseline"], None)
        seen = set()
        for entry in record["token_ablations"]:
            thought = entry["token_pos"]
            if not isinstance(thought, int) or not 0 <= thought < N_TOKENS or thought in seen:
                raise ValueError(f"token_pos {thought!r} is not a new token index 0..5")
            seen.add(thought)
            _corrupted_row(
                rows,
                problem,
                thought,
                "zero",
                base_correct,
                entry,
                answer_text=entry.get("ablated_output"),
                answer_value=entry.get("predicted_answer"),
            )

    _each(path, data, parsed, handle)
    parsed.problems, parsed.results = problems.problems, rows.arrow()
    parsed.fields = {"patch_layers": [LEGACY_LAYER], "methods": ["zero"], "sigmas": []}
    return parsed


def parse_attention_weights(path: Path, data: object, dataset: ResearchDataset | None) -> Parsed:
    """`attention_weights_*.json`: per layer, the head-mean attention of the answer step to 6 tokens."""
    parsed, problems, rows = (
        Parsed("attention-weights", [path]),
        _ProblemMap(path, dataset),
        _Rows("attention"),
    )

    def handle(where: str, record: dict) -> None:
        problem = problems.get(where, record["problem_id"], record.get("expected_answer"))
        for layer_key, entry in record["attention_by_layer"].items():
            layer = _index(layer_key, "layer")
            weights = entry["continuous_token_attention"]
            if not isinstance(weights, list) or len(weights) != N_TOKENS:
                raise ValueError(f"{layer_key}: continuous_token_attention must hold {N_TOKENS} numbers")
            for k, w in enumerate(weights):
                rows.add(
                    problem_id=problem.problem_id,
                    condition_id=0,
                    layer=layer,
                    head=HEAD_MEAN,
                    dst=ANSWER_QUERY,
                    src=k,
                    weight=number(w, f"{layer_key} weight {k}"),
                )

    _each(path, data, parsed, handle)
    parsed.problems, parsed.attention = problems.problems, rows.arrow()
    parsed.results = _unevaluated_baselines(parsed.problems)
    return parsed


def parse_attention_patterns(npy: Path, metadata_path: Path, dataset: ResearchDataset | None) -> Parsed:
    """`attention_patterns_raw.npy` [N, L, H, 6, 6] with `attention_metadata.json`: per-head 6x6 matrices.

    The script wrote only cells [i, j] with j < i (15 per head; row 0 stays zero), so exactly those
    become rows; a non-zero value anywhere else means a layout this reader does not know, and is refused.
    """
    parsed = Parsed("attention-patterns", [npy, metadata_path])
    try:
        meta = json.loads(metadata_path.read_text())
        entries = meta["problems"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LegacyFormatError(
            f"{metadata_path}: not an attention_metadata.json ({_describe(exc)})"
        ) from exc
    except RecursionError:
        raise LegacyFormatError(
            f"{metadata_path}: JSON nested too deeply to read; not an attention_metadata.json"
        ) from None
    if not isinstance(entries, list):
        raise LegacyFormatError(f"{metadata_path}: problems is not a list of per-problem entries")
    shape = _npy_shape(npy)  # the header checked against the file's size before the array is read
    if len(shape) != 5 or shape[-2:] != (N_TOKENS, N_TOKENS):
        raise LegacyFormatError(f"{npy}: expected shape [N, L, H, 6, 6], got {list(shape)}")
    try:
        patterns = np.load(npy, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise LegacyFormatError(f"{npy}: not a readable .npy array ({exc})") from exc
    n, n_layers, n_heads = patterns.shape[:3]
    for key, size in (("n_layers", n_layers), ("n_heads", n_heads), ("n_problems", n)):
        if meta.get(key) is not None and meta[key] != size:
            raise LegacyFormatError(f"{metadata_path}: {key} = {meta[key]} but {npy.name} has {size}")
    problems = _ProblemMap(metadata_path, dataset)
    parsed.records = len(entries)
    chosen: list[int] = []
    owner: dict[int, str] = {}  # array index -> the entry that claims it
    for i, entry in enumerate(entries):
        where = f"problems[{i}]"
        if not isinstance(entry, dict) or "gsm8k_id" not in entry:
            raise _fail(metadata_path, where, "expected an object with gsm8k_id")
        index = entry.get("index", i)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise _fail(metadata_path, where, f"index {index!r} outside the array's {n} problems")
        if index in owner:  # two problems cannot both own one slice of the array: which one is it?
            raise _fail(
                metadata_path,
                f"{where} (problem {entry['gsm8k_id']})",
                f"array index {index} is already "
                f"used by {owner[index]}; each problem needs its own index into {npy.name}",
            )
        owner[index] = f"problems[{i}] (problem {entry['gsm8k_id']})"
        if not entry.get("success", True):
            parsed.skipped.append(
                {
                    "record": i,
                    "problem": entry["gsm8k_id"],
                    "reason": str(entry.get("error", "extraction failed")),
                }
            )
            continue
        problems.get(f"{where} (problem {entry['gsm8k_id']})", entry["gsm8k_id"])
        chosen.append(index)
    dst, src = np.tril_indices(N_TOKENS, -1)
    outside = np.ones((N_TOKENS, N_TOKENS), dtype=bool)
    outside[dst, src] = False
    selected = patterns[np.array(chosen, dtype=np.int64)].astype(np.float32)  # [n, L, H, 6, 6]
    bad = ~np.isfinite(selected)
    if bad.any():
        p, layer, head, i, j = (int(x) for x in np.argwhere(bad)[0])
        raise LegacyFormatError(
            f"{npy}: {int(bad.sum())} non-finite attention weight(s) (NaN or inf), first for "
            f"problem {problems.problems[p].source_id} (array index {chosen[p]}) layer {layer} "
            f"head {head} cell [{i}, {j}] = {selected[p, layer, head, i, j]}; the array is "
            "corrupted: nothing imported"
        )
    if np.any(selected[..., outside] != 0):
        raise LegacyFormatError(
            f"{npy}: non-zero values outside the cells [i, j < i] the research script wrote; "
            "this layout is not one the importer knows"
        )
    parsed.problems = problems.problems
    parsed.results = _unevaluated_baselines(parsed.problems)
    parsed.attention = _pattern_rows(
        [p.problem_id for p in parsed.problems], selected[..., dst, src], dst, src
    )
    parsed.fields = {"n_layers": int(n_layers), "n_heads": int(n_heads)}
    parsed.notes = {"metadata": {k: v for k, v in meta.items() if k != "problems"}}
    return parsed


def _npy_shape(npy: Path) -> tuple[int, ...]:
    """The array shape a .npy header declares, once the header is known to describe this file: a numeric
    dtype (never Python objects) and exactly as many data bytes as the file holds, so a header claiming
    40 GiB is refused before anything is allocated."""
    try:
        with npy.open("rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(
                    f".npy format version {version[0]}.{version[1]} (this reader takes 1.0 and 2.0)"
                )
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _fortran, dtype = read(f)
            offset = f.tell()
        size = npy.stat().st_size
    except (OSError, ValueError, SyntaxError, TypeError) as exc:
        raise LegacyFormatError(f"{npy}: not a readable .npy array ({_describe(exc)})") from exc
    if dtype.hasobject or dtype.kind not in "fiu":
        raise LegacyFormatError(f"{npy}: dtype {dtype} is not a numeric array of attention weights")
    declared = math.prod(shape) * dtype.itemsize
    if declared != size - offset:
        raise LegacyFormatError(
            f"{npy}: its header declares shape {list(shape)} of {dtype} ({_bytes(declared)}), but "
            f"the file holds {_bytes(size - offset)} of data: truncated or damaged; copy it again"
        )
    return tuple(shape)


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _pattern_rows(problem_ids: list[str], weights: np.ndarray, dst: np.ndarray, src: np.ndarray) -> pa.Table:
    """Long rows from [n, L, H, cells] weights, built column-wise (no Python loop over rows)."""
    n, n_layers, n_heads, cells = weights.shape
    per_problem = n_layers * n_heads * cells
    return pa.table(
        {
            "problem_id": pa.DictionaryArray.from_arrays(
                np.repeat(np.arange(n, dtype=np.int32), per_problem), pa.array(problem_ids, pa.string())
            ),
            "condition_id": np.zeros(n * per_problem, dtype=np.int16),
            "layer": np.tile(np.repeat(np.arange(n_layers, dtype=np.int16), n_heads * cells), n),
            "head": np.tile(np.repeat(np.arange(n_heads, dtype=np.int16), cells), n * n_layers),
            "dst": np.tile(dst.astype(np.int16), n * n_layers * n_heads),
            "src": np.tile(src.astype(np.int16), n * n_layers * n_heads),
            "weight": weights.reshape(-1),
        }
    )


def parse_summary(path: Path, data: object) -> Parsed:
    """`summary_statistics.json`: aggregates only; they go into the run's config, no rows."""
    if not isinstance(data, dict):
        raise LegacyFormatError(f"{path}: expected a JSON object of aggregates")
    note = (
        "written by 3_analyze_and_visualize.py from token_ablation_results and attention_weights; its "
        "correlations pair ablation token k (latent step k, BOT = step 0) with attention token k (position "
        "BOT+1+k): different positions (SPEC 11)"
    )
    return Parsed("summary", [path], notes={"aggregates": data, "aggregates_note": note})
