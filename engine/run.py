"""`python cli.py run`: every condition of every problem, streamed into the warehouse.

The model works on chunk n+1 while a writer thread commits chunk n (DuckDB and Parquet writing
release the GIL), so the warehouse never stalls the model. A chunk's problems commit together, so
an interrupted run resumes (`--resume RUN`) with no duplicates and no gaps.
"""
from __future__ import annotations

import contextlib
import math
import queue
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

import torch
from tqdm import tqdm

from engine.checkpoints import load_model
from engine.conditions import build_conditions, parse_methods, parse_sigmas, select_donor_pool
from engine.model import CodiModel
from engine.runner import EngineOptions, run_chunk
from engine.strata import STRATA, stratified
from engine.validate import TooLong, fit_context
from ingest.datasets import SYNTHETIC, distinct, load_problems, synthetic_problems
from ingest.problems import problems_hash as dataset_hash
from ingest.problems import problems_table as problems_frame  # the `problems` rows ingest writes
from warehouse.lake import WarehouseBusy

DEFAULT_PROBLEMS = 100


@dataclass
class RunRequest:
    model: str = "gpt2-tiny"
    checkpoint: str | None = None
    dataset: str = SYNTHETIC
    problems: int | None = None
    seed: int = 0
    layer: int | None = None
    all_layers: bool = False
    methods: str | None = None
    sigmas: str | None = None
    attention: str = "all"
    noise_scale: str = "absolute"
    device: str = "auto"
    batch_size: int = 8
    resume: str | None = None
    skip_invalid: bool = False
    max_new_tokens: int = 24
    extra: dict = field(default_factory=dict)


def pick_device(device: str) -> tuple[str, torch.dtype]:
    """auto: CUDA (bf16) when present, else CPU (float32)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {device!r}")
    return device, (torch.bfloat16 if device.startswith("cuda") else torch.float32)


def select_problems(req: RunRequest) -> list:
    """Default: 100 held-out synthetic problems, 25 per difficulty stratum (steps <=2, 3, 4, 5+)."""
    return fitting_problems(req)[0]


def fitting_problems(req: RunRequest, model: CodiModel | None = None) -> tuple[list, list[TooLong]]:
    """The run's problems, and (with `model`, under --skip-invalid) those left out for not fitting its context.

    Every problem is measured before the first forward pass: one too long for the context stops the
    run here (naming the first few), unless --skip-invalid, which runs the others in its place.
    """
    if req.dataset == SYNTHETIC:
        n = req.problems or DEFAULT_PROBLEMS
        per_stratum = math.ceil(n / len(STRATA))
        for generated in (6, 12):  # the generator repeats a question now and then: distinct ones only
            chosen = stratified(distinct(synthetic_problems(per_stratum * generated, seed=req.seed)), per_stratum)[:n]
            if len(chosen) == n:
                break
        if model is None:
            return chosen, []
        return fit_context(model, chosen, req.max_new_tokens, req.dataset, req.skip_invalid)
    problems = load_problems(req.dataset, None, req.seed, skip_invalid=req.skip_invalid)  # repeats left out
    if not problems:
        raise ValueError(f"dataset {req.dataset} holds no problems; give a JSONL file with one "
                         '{"question", "answer"} object per line')
    if req.problems is not None and req.problems > len(problems):
        raise ValueError(f"--problems {req.problems} is more than the {len(problems)} distinct problems in "
                         f"{req.dataset}; ask for at most {len(problems)}, or leave --problems out to run them all")
    if model is None:
        return problems[:req.problems], []
    problems, skipped = fit_context(model, problems, req.max_new_tokens, req.dataset, req.skip_invalid, req.problems)
    if req.problems is not None and req.problems > len(problems):  # --skip-invalid left too few
        raise ValueError(f"--problems {req.problems} is more than the {len(problems)} problems in {req.dataset} "
                         f"that fit {model.info.name}'s context ({len(skipped)} too long); ask for at most "
                         f"{len(problems)}, or leave --problems out to run them all")
    return problems[:req.problems], skipped


def select_layers(model: CodiModel, req: RunRequest) -> tuple[int, ...]:
    n = model.n_layers
    if req.all_layers and req.layer is not None:
        raise ValueError("give either --layer L or --layers all, not both")
    if req.all_layers:
        return tuple(range(n))
    layer = n // 2 if req.layer is None else req.layer
    if not 0 <= layer < n:
        raise ValueError(f"--layer {layer} is outside 0..{n - 1} for {model.info.name}")
    return (layer,)


class ChunkWriter:
    """Commits chunks on a background thread; errors surface on the next put or on close."""

    def __init__(self, store, run_id: str):
        self.store, self.run_id = store, run_id
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self):
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.store.append_problems(self.run_id, *item)
                except BaseException as exc:  # noqa: BLE001 - surfaced to the caller on the next put/close
                    self.error = exc

    def put(self, problems, results, attention):
        self._raise()
        self.queue.put((problems, results, attention))

    def close(self):
        self.queue.put(None)
        self.thread.join()
        self._raise()

    def _raise(self):
        if self.error is not None:
            raise self.error


# What the stored numbers mean; part of every run's config (and so of its hash), so a run begun under one
# definition cannot be resumed under another. 2: log p(gold) includes EOS, `mean` leaves the target out,
# JS and entropy also at the answer number, the last block's site read from the block itself.
MEASURES_VERSION = 2


@dataclass
class RunPlan:
    """What a run needs before its first chunk; every process that plans the same request gets the same
    config (so workers of a sharded run agree on the run id) and the same problem order."""

    model: CodiModel
    problems: list
    methods: tuple
    conditions: tuple
    opts: EngineOptions
    config: dict
    fields: dict  # the runs row's lineage fields (begin_run keywords)


def plan_run(req: RunRequest, model: CodiModel | None = None) -> RunPlan:
    """Load the model (unless given), select problems and conditions, build the run's config."""
    device, dtype = pick_device(req.device)
    if model is None:
        model = load_model(req.model, checkpoint=req.checkpoint, device=device, dtype=dtype)
    problems, skipped = fitting_problems(req, model)  # every problem checked before the first forward pass
    layers = select_layers(model, req)
    methods, sigmas = parse_methods(req.methods), parse_sigmas(req.sigmas)
    donors = sorted({"random", "mean"} & set(methods))
    if donors and len(problems) < 2:
        raise ValueError(f"--methods {','.join(donors)} take(s) values from other problems, and this run has "
                         f"{len(problems)}; run at least 2 problems, or leave {','.join(donors)} out")
    conditions = tuple(build_conditions(list(layers), methods, sigmas))
    if req.attention not in ("all", "baseline", "none"):
        raise ValueError("--attention must be all, baseline or none")
    opts = EngineOptions(layers, conditions, req.seed, req.attention, req.noise_scale, req.max_new_tokens)
    config = {**{k: v for k, v in asdict(req).items() if k not in ("resume", "device", "batch_size", "extra")},
              "layers": list(layers), "methods": list(methods), "sigmas": list(sigmas),
              "problem_ids_hash": dataset_hash(problems), "weights_sha256": model.info.weights_sha256,
              "measures_version": MEASURES_VERSION}
    if skipped:  # only then: the config (and its hash) of every other run stays as it was
        config["skipped_problems"] = [t.record() for t in skipped]
    fields = {
        "model_name": req.model, "weights_sha256": model.info.weights_sha256, "n_layers": model.n_layers,
        "n_heads": model.n_heads, "d_model": model.codi.config.hidden_size, "patch_layers": list(layers),
        "methods": list(methods), "sigmas": list(sigmas), "seed": req.seed, "dataset_name": req.dataset,
        "dataset_hash": dataset_hash(problems), "device": model.device.type,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "n_problems_planned": len(problems)}
    return RunPlan(model, problems, methods, conditions, opts, config, fields)


def execute_run(req: RunRequest, db: str, progress: bool = True) -> dict:
    """Run (or resume) an experiment into the warehouse at `db`; returns a summary."""
    from warehouse.store import open_warehouse

    plan = plan_run(req)
    model, problems, methods, conditions, opts, config = (plan.model, plan.problems, plan.methods,
                                                          plan.conditions, plan.opts, plan.config)
    store = open_warehouse(db)
    if req.resume:
        run_id = store.resolve_run(req.resume)
        shown = store.show_run(run_id)
        if shown.get("config_hash") and shown["config_hash"] != _config_hash(config):
            raise ValueError(f"run {run_id} was started with a different configuration; resume it with the same flags")
        done = store.resume_run(run_id)
    else:
        run_id = store.begin_run(config, **plan.fields)
        done = set()
    todo = [p for p in problems if p.problem_id not in done]
    started = time.time()
    nonfinite = broken = 0
    try:
        pool = donor_sites(model, problems, opts, methods)
        writer = ChunkWriter(store, run_id)
        bar = tqdm(total=len(problems), initial=len(problems) - len(todo), desc=f"run {run_id}", unit="problem",
                   file=sys.stderr, disable=not progress, dynamic_ncols=True)
        try:
            for i in range(0, len(todo), req.batch_size):
                chunk = todo[i:i + req.batch_size]
                out = run_chunk(model, chunk, opts, pool)
                nonfinite += nonfinite_rows(out.results)
                broken += nonfinite_rows(out.results.filter(out.results["method"] == "baseline"))
                writer.put(problems_frame(chunk), out.results, out.attention)
                bar.update(len(chunk))
        finally:
            bar.close()
            writer.close()
    except BaseException as exc:
        # If even that fails (a full disk), the run stays `running`, which resume accepts too. A catalog
        # that stayed locked would only keep us waiting again: leave the run running and say so.
        if not isinstance(exc, WarehouseBusy):
            with contextlib.suppress(Exception):
                store.finish_run(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        if isinstance(exc, (OSError, ValueError)):  # a cause the user can fix: say how to go on
            raise RunFailed(run_id, exc) from exc
        raise
    store.finish_run(run_id, "complete")
    if broken:
        print(f"note: the baseline itself has non-finite logits on {broken} problem(s): the model (checkpoint or "
              "dtype) is broken there, not a corruption; every measure of those problems is NULL", file=sys.stderr)
    if nonfinite - broken > 0:
        print(f"note: {nonfinite - broken} condition row(s) had non-finite logits (the corruption overflowed the "
              "model); their KL, JS, entropy, log p(gold) and disruption are NULL and they count as failures",
              file=sys.stderr)
    return {"run_id": run_id, "status": "complete", "problems": len(problems),
            "conditions": len(conditions), "seconds": round(time.time() - started, 2), "nonfinite_rows": nonfinite}


class RunFailed(ValueError):
    """A run stopped by a cause outside the engine (full disk, bad input, a catalog locked too long);
    committed problems are kept."""

    def __init__(self, run_id: str, cause: BaseException):
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        state = "it stays running, " if isinstance(cause, WarehouseBusy) else ""
        super().__init__(f"run {run_id} stopped: {reason}; committed problems are kept ({state}nothing is lost): "
                         f"fix the cause, then continue with `python cli.py run --resume {run_id}` and the same "
                         "flags")
        self.run_id = run_id


def nonfinite_rows(results) -> int:
    """Rows whose EOT distribution was not finite (entropy NULL): a corruption that overflowed."""
    return int(results.get_column("entropy_first").is_null().sum())


def _config_hash(config: dict) -> str:
    from warehouse import lineage

    return lineage.config_hash(config)


def donor_sites(model: CodiModel, problems: list, opts: EngineOptions, methods) -> dict[str, torch.Tensor]:
    """Clean site values of the seeded donor pool (only when random or mean is asked for)."""
    if not {"random", "mean"} & set(methods):
        return {}
    ids = set(select_donor_pool(problems, opts.seed))
    pool_problems = [p for p in problems if p.problem_id in ids]
    baseline_only = EngineOptions(opts.layers, opts.conditions[:1], opts.seed, "none", opts.noise_scale,
                                  opts.max_new_tokens)
    return run_chunk(model, pool_problems, baseline_only).sites
