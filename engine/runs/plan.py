"""A run's plan, before its first chunk: device, problems, layers, conditions and the run's config.

Every executor plans the same way (local.py, sharded.py, ray.py, and `bench engine`), so every process
that plans the same RunConfig gets the same config (workers of a sharded run agree on the run id) and
the same problem order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch

from engine.interventions.conditions import (
    build_conditions,
    parse_families,
    parse_head_steps,
    parse_methods,
    parse_sigmas,
    parse_top_heads,
)
from engine.interventions.methods import pool_methods
from engine.interventions.options import EngineOptions
from engine.model.checkpoints import load_model
from engine.model.codi import CodiModel
from engine.runs import threads
from engine.runs.config import RunConfig
from engine.runs.validate import TooLong, fit_context
from ingest.datasets import SYNTHETIC, check_sample, distinct, load_problems, sample_order, synthetic_problems
from ingest.problems import problems_hash as dataset_hash
from warehouse import labels
from warehouse.vocab import ATTENTION_MODES, COMBO_METHODS, STRATA, stratum_of

DEFAULT_PROBLEMS = 100


# --dtype: the precision a model runs in. auto is float32 on every device (docs/DESIGN.md, "Precision": on
# gpt2-tiny bf16 changes 3.4% of the answers float32 gives, half as many as sigma-0.1 noise flips); the
# long names are what a run's config and the runs table record.
DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
DTYPE_CHOICES = ("auto", "fp32", "bf16", "fp16")


def resolve_dtype(dtype: str) -> torch.dtype:
    """`--dtype` as a torch dtype: auto is float32 (on CPU and CUDA alike); fp32, bf16, fp16 or their long
    names (float32, bfloat16, float16: what a config records)."""
    if dtype == "auto":
        return torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be auto, fp32, bf16 or fp16, got {dtype!r}")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    """float32, bfloat16 or float16: a dtype as configs, the runs table and reports name it."""
    return str(dtype).removeprefix("torch.")


def pick_device(device: str, dtype: str = "auto") -> tuple[str, torch.dtype]:
    """auto: CUDA when present, else CPU; the dtype `dtype` asks for (resolve_dtype: auto is float32)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {device!r}")
    return device, resolve_dtype(dtype)


def stratified(problems: list, per_stratum: int) -> list:
    """The first `per_stratum` problems of each stratum, in input order, strata interleaved."""
    buckets = {s: [p for p in problems if stratum_of(p.n_steps) == s][:per_stratum] for s in STRATA}
    out = []
    for i in range(per_stratum):
        out.extend(buckets[s][i] for s in STRATA if i < len(buckets[s]))
    return out


def select_problems(req: RunConfig) -> list:
    """Default: 100 held-out synthetic problems, 25 per difficulty stratum (steps <=2, 3, 4, 5+)."""
    return fitting_problems(req)[0]


def fitting_problems(req: RunConfig, model: CodiModel | None = None) -> tuple[list, list[TooLong]]:
    """The run's problems, and (with `model`, under --skip-invalid) those left out for not fitting its
    context.

    Every problem is measured before the first forward pass: one too long for the context stops the
    run here (naming the first few), unless --skip-invalid, which runs the others in its place.
    """
    if req.dataset == SYNTHETIC:
        check_sample(req.sample, req.sample_seed, req.dataset)
        n = req.problems or DEFAULT_PROBLEMS
        per_stratum = math.ceil(n / len(STRATA))
        for generated in (6, 12):  # the generator repeats a question now and then: distinct ones only
            chosen = stratified(
                distinct(synthetic_problems(per_stratum * generated, seed=req.problem_seed)), per_stratum
            )[:n]
            if len(chosen) == n:
                break
        if model is None:
            return chosen, []
        return fit_context(model, chosen, req.max_new_tokens, req.dataset, req.skip_invalid)
    return sampled_problems(
        model,
        req.dataset,
        req.problems,
        req.sample,
        req.sample_seed,
        req.skip_invalid,
        req.max_new_tokens,
    )


def sampled_problems(
    model: CodiModel | None,
    dataset: str,
    n: int | None,
    sample: str = "first",
    sample_seed: int = 0,
    skip_invalid: bool = False,
    max_new_tokens: int = 24,
    cap: bool = False,
) -> tuple[list, list[TooLong]]:
    """The problems of a dataset file or built-in split under a sampling protocol (ingest.datasets.
    sample_order), each checked against `model`'s context (when given) before anything runs.

    first / random: the first `n` of the order (all when n is None). stratified: `n` in all (default 100),
    split evenly over the strata <=2, 3, 4, 5+ (the first `n % 4` strata one more), strata interleaved.
    A too-long problem stops here unless `skip_invalid`: then it is passed over and the next problem of
    the same order (the same stratum) takes its place, so the sample stays reproducible. `cap` (eval):
    `n` beyond the file's problems means all of them, not an error.
    """
    check_sample(sample, sample_seed, dataset)
    problems = load_problems(dataset, None, skip_invalid=skip_invalid)  # repeats left out
    if not problems:
        raise ValueError(
            f"dataset {dataset} holds no problems; give a JSONL file with one "
            '{"question", "answer"} object per line'
        )
    if sample == "stratified" and n is None:
        n = DEFAULT_PROBLEMS
    if cap and n is not None:
        n = min(n, len(problems))
    if n is not None and n > len(problems):
        raise ValueError(
            f"--problems {n} is more than the {len(problems)} distinct problems in "
            f"{dataset}; ask for at most {len(problems)}, or leave --problems out to run them all"
        )
    orders = sample_order(problems, sample, sample_seed)
    if sample == "stratified":
        assert n is not None
        wanted: list[int | None] = [n // len(STRATA) + (i < n % len(STRATA)) for i in range(len(STRATA))]
    else:
        wanted = [n]
    kept: list[list] = []
    skipped: list[TooLong] = []
    for order, count in zip(orders, wanted, strict=True):
        if model is None:
            kept.append(order[:count])
            continue
        fit, passed = fit_context(model, order, max_new_tokens, dataset, skip_invalid, count)
        kept.append(fit)
        skipped.extend(passed)
    fits = "" if model is None else f" that fit {model.info.name}'s context ({len(skipped)} too long)"
    if sample == "stratified":
        short = [
            f"{s}: {len(got)} of {count}"
            for s, got, count in zip(STRATA, kept, wanted, strict=True)
            if count is not None and len(got) < count
        ]
        if short:
            raise ValueError(
                f"--sample stratified --problems {n}: {dataset} has too few problems{fits} in stratum "
                f"{'; '.join(short)}; ask for fewer problems"
            )
        chosen = [bucket[i] for i in range(max(map(len, kept))) for bucket in kept if i < len(bucket)]
        return chosen, skipped
    if n is not None and n > len(kept[0]):  # --skip-invalid left too few
        raise ValueError(
            f"--problems {n} is more than the {len(kept[0])} problems in {dataset}{fits}; ask for at most "
            f"{len(kept[0])}, or leave --problems out to run them all"
        )
    return kept[0], skipped


def requested_layers(req: RunConfig) -> tuple[int, ...] | str | None:
    """The patch layers `req` asks for, before the model is known: sorted layer numbers, "all", or None
    (the middle layer). One way of asking only: `layers`, `layer` or `all_layers`."""
    given = [
        name
        for name, present in (
            ("--layers", req.layers is not None),
            ("--layer", req.layer is not None),
            ("--layers all", req.all_layers),
        )
        if present
    ]
    if len(given) > 1:
        raise ValueError("give either --layer L or --layers L1,L2,... (or --layers all), not both")
    if req.all_layers:
        return "all"
    if req.layer is not None:
        return (req.layer,)
    if req.layers is None:
        return None
    return parse_layers(req.layers)


def parse_layers(spec: Sequence[int] | str) -> tuple[int, ...] | str:
    """`--layers`: "all", or layer numbers ("3,6,9" or a list), sorted; a layer named twice is refused."""
    if isinstance(spec, str):
        if spec.strip().lower() == "all":
            return "all"
        try:
            numbers = [int(part) for part in spec.split(",")]
        except ValueError:
            raise ValueError(
                f"--layers must be all or comma-separated layer numbers (3,6,9), got {spec!r}"
            ) from None
    else:
        numbers = [int(layer) for layer in spec]
    if not numbers:
        raise ValueError("--layers names no layer; give layer numbers (3,6,9) or all")
    twice = sorted({layer for layer in numbers if numbers.count(layer) > 1})
    if twice:
        raise ValueError(f"--layers names layer(s) {', '.join(map(str, twice))} more than once")
    return tuple(sorted(numbers))


def select_layers(model: CodiModel, req: RunConfig) -> tuple[int, ...]:
    n = model.n_layers
    asked = requested_layers(req)
    if asked == "all":
        return tuple(range(n))
    if asked is None:
        return (n // 2,)
    assert not isinstance(asked, str)
    outside = [layer for layer in asked if not 0 <= layer < n]
    if outside:
        flag = "--layer" if req.layer is not None else "--layers"
        shown = ", ".join(map(str, outside))
        raise ValueError(
            f"{flag} {shown} {'is' if len(outside) == 1 else 'are'} outside 0..{n - 1} for {model.info.name} "
            f"(it has {n} layers)"
        )
    return asked


# What the stored numbers mean; part of every run's config (and so of its hash), so a run begun under one
# definition cannot be resumed under another. 2: log p(gold) includes EOS, `mean` leaves the target out,
# JS and entropy also at the answer number, the last block's site read from the block itself.
MEASURES_VERSION = 2


# RunConfig fields left out of a run's config: how it executes, the ways of asking for layers (the config
# records the layers themselves), and the labels a person gives the run (stored beside the config).
# `dtype` is left out as asked (auto, bf16, ...): the config records the resolved precision, see below.
NOT_CONFIG = (
    "resume",
    "device",
    "dtype",
    "batch_size",
    "max_memory",
    "extra",
    "layer",
    "all_layers",
    "name",
    "tags",
    "note",
)
# Sampling fields go into the config only when a run samples other than `first`: the config (and hash) of
# every run that takes a file's first problems, or the synthetic set, stays as it was before --sample.
SAMPLE_FIELDS = ("sample", "sample_seed")
# Family fields go into the config only when given: every run before families keeps its config and hash.
FAMILY_FIELDS = ("families", "combo_methods", "head_steps", "top_heads")
# readouts: part of the config only when asked for (states) or on (decode_top > 0), so that a run begun before
# them (which recorded none) resumes under the config it has
READOUT_FIELDS = ("states", "decode_top")


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


def check_labels(req: RunConfig) -> None:
    """A bad name, tag or note is refused before the model loads (WarehouseError, one line)."""
    if req.name is not None:
        labels.check_name(req.name)
    if req.note is not None:
        labels.check_note(req.note)
    labels.check_tags(req.tags)


def resolve_top_heads(req: RunConfig, db: str) -> RunConfig:
    """`--top-heads K@RUN`: the K heads of RUN (in the warehouse at `db`) with the highest descriptive
    composite (the head_metrics view: the one place it is computed), written out as layer.head pairs so the
    run's config names the heads themselves. Any other value is returned as given."""
    spec = req.top_heads
    if not spec or "@" not in spec:
        return req
    count, _, run = spec.partition("@")
    if not count.isdigit() or int(count) < 1 or not run:
        raise ValueError(f"--top-heads K@RUN takes a count and a run (5@latest), got {spec!r}")
    from warehouse.store import open_warehouse

    store = open_warehouse(db, read_only=True)
    try:
        run_id = store.resolve_run(run)
        with store.cursor() as con:
            ranked = con.execute(
                "SELECT layer, head FROM head_metrics WHERE run_id = ? AND rank IS NOT NULL "
                "ORDER BY rank, layer, head LIMIT ?",
                [run_id, int(count)],
            ).fetchall()
    finally:
        store.close()
    if len(ranked) < int(count):
        raise ValueError(
            f"--top-heads {spec}: run {run_id} has {len(ranked)} ranked head(s) in head_metrics (it needs "
            "baseline attention: run it with --attention baseline or all)"
        )
    heads = ",".join(f"{layer}.{head}" for layer, head in ranked)
    return replace(req, top_heads=heads)


def plan_run(req: RunConfig, model: CodiModel | None = None) -> RunPlan:
    """Load the model (unless given), select problems and conditions, build the run's config."""
    device, dtype = pick_device(req.device, req.dtype)
    requested_layers(req)  # a malformed --layers is refused before the model loads
    check_labels(req)
    if model is None:
        model = load_model(req.model, checkpoint=req.checkpoint, device=device, dtype=dtype)
    problems, skipped = fitting_problems(req, model)  # every problem checked before the first forward pass
    layers = select_layers(model, req)
    methods, sigmas = parse_methods(req.methods), parse_sigmas(req.sigmas)
    families = parse_families(req.families)
    combo = parse_methods(req.combo_methods) if req.combo_methods else COMBO_METHODS
    top_heads = parse_top_heads(req.top_heads, model.n_layers, model.n_heads)
    conditions = tuple(
        build_conditions(
            list(layers),
            methods,
            sigmas,
            families,
            combo,
            model.n_layers,
            model.n_heads,
            parse_head_steps(req.head_steps),
            top_heads,
        )
    )
    # every method a condition uses (the combinations' and the heads' too): the donor pool follows from them
    used = tuple(dict.fromkeys(part.method for c in conditions for part in c.parts)) or methods
    donors = pool_methods(used)
    if donors and len(problems) < 2:
        raise ValueError(
            f"--methods {','.join(donors)} take(s) values from other problems, and this run has "
            f"{len(problems)}; run at least 2 problems, or leave {','.join(donors)} out"
        )
    if req.attention not in ATTENTION_MODES:
        raise ValueError(f"--attention must be one of {', '.join(ATTENTION_MODES)}")
    if req.decode_top < 0:
        raise ValueError(f"--decode-top must be 0 (no decoding) or more, got {req.decode_top}")
    opts = EngineOptions(
        layers,
        conditions,
        req.seed,
        req.attention,
        req.noise_scale,
        req.max_new_tokens,
        n_heads=model.n_heads,
        states=req.states,
        decode_top=min(req.decode_top, model.base_vocab_size),
    )
    config = {
        **{
            k: v
            for k, v in asdict(req).items()
            if k not in NOT_CONFIG
            and (k not in SAMPLE_FIELDS or req.sample != "first")
            and (k not in FAMILY_FIELDS or v is not None)
            and (k not in READOUT_FIELDS or v)
        },
        "layers": list(layers),
        "methods": list(methods),
        "sigmas": list(sigmas),
        "problem_ids_hash": dataset_hash(problems),
        "weights_sha256": model.info.weights_sha256,
        "measures_version": MEASURES_VERSION,
    }
    if skipped:  # only then: the config (and its hash) of every other run stays as it was
        config["skipped_problems"] = [t.record() for t in skipped]
    # The precision the rows are computed in: part of the config (and hash), so a resume cannot mix
    # precisions; only when not float32, so the config of every float32 run stays as it was before --dtype
    # (a config without dtype means float32). The model's own dtype: a model passed in is what runs.
    model_dtype = next(model.parameters()).dtype
    if model_dtype != torch.float32:
        config["dtype"] = dtype_name(model_dtype)
    fields = {
        "model_name": req.model,
        "weights_sha256": model.info.weights_sha256,
        "n_layers": model.n_layers,
        "n_heads": model.n_heads,
        "d_model": model.codi.config.hidden_size,
        "patch_layers": list(layers),
        "methods": list(methods),
        "sigmas": list(sigmas),
        "seed": req.seed,
        "dataset_name": req.dataset,
        "dataset_hash": dataset_hash(problems),
        "device": model.device.type,
        "dtype": dtype_name(model_dtype),
        **threads.in_effect(),  # threads, wait_policy: how it ran, never what it computed (not config)
        "n_problems_planned": len(problems),
        "name": req.name,
        "tags": dict(req.tags),
        "note": req.note,
    }
    return RunPlan(model, problems, used, conditions, opts, config, fields)
