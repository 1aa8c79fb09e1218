"""`--resume RUN`: a run goes on under the config it was started with (its stored runs.config_json).

`resumed_config` fills a RunConfig from the run's stored config, before any model loads: `run --resume RUN`
alone is enough. Whatever the request itself sets (the CLI: flags given on the command line; Python: fields
away from their defaults) must agree with the stored values, else one error names each difference with
both values. After planning, `check_resumable` compares the planned config with the stored one: what a
flag cannot change (the weights, the dataset's problems, the measures' definitions) must be unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import fields, replace
from typing import Any

from engine.runs.config import RunConfig

# RunConfig field -> the `run` flag that sets it (max_new_tokens has no flag).
FLAGS = {
    "model": "--model",
    "checkpoint": "--checkpoint",
    "dataset": "--dataset",
    "problems": "--problems",
    "seed": "--seed",
    "problem_seed": "--problem-seed",
    "sample": "--sample",
    "sample_seed": "--sample-seed",
    "layers": "--layers",
    "methods": "--methods",
    "sigmas": "--sigmas",
    "attention": "--attention",
    "noise_scale": "--noise-scale",
    "skip_invalid": "--skip-invalid",
    "dtype": "--dtype",
    "max_new_tokens": "max_new_tokens",
    "families": "--family",
    "combo_methods": "--combo-methods",
    "head_steps": "--head-steps",
    "top_heads": "--top-heads",
    "states": "--states",
    "decode_top": "--decode-top",
}
_LAYER_FIELDS = ("layers", "layer", "all_layers")  # three ways of asking for layers: one setting


class ResumeConflict(ValueError):
    """Settings given beside --resume that differ from the run's stored config."""


def explicit_fields(req: RunConfig) -> set[str]:
    """The config fields a RunConfig sets away from their defaults (what Python callers "gave")."""
    defaults = RunConfig()
    given = {
        f.name
        for f in fields(RunConfig)
        if f.name in FLAGS and getattr(req, f.name) != getattr(defaults, f.name)
    }
    if any(getattr(req, name) != getattr(defaults, name) for name in _LAYER_FIELDS):
        given.add("layers")
    return given


def resumed_config(req: RunConfig, db: str | os.PathLike, given: Iterable[str] | None = None) -> RunConfig:
    """`req` with every config field taken from the stored config of the run `req.resume` names.

    `given`: the fields the caller set on purpose (the CLI passes the flags given on its command line, as
    field names); None: those away from their defaults. Each must agree with the stored value, else
    ResumeConflict names every difference. A run with no stored run config (an ingested one) keeps `req`.
    """
    from warehouse.store import open_warehouse

    assert req.resume
    with open_warehouse(db) as store:
        shown = store.show_run(req.resume)
    stored = shown.get("config_json")
    if (
        not stored or not {"methods", "layers", "seed"} <= stored.keys()
    ):  # not a run's config (an ingested run)
        return req
    given = explicit_fields(req) if given is None else set(given)
    layers = list(stored.get("layers") or [])
    values: dict[str, Any] = {
        "model": stored.get("model", req.model),
        "checkpoint": stored.get("checkpoint"),
        "dataset": stored.get("dataset", req.dataset),
        "problems": stored.get("problems"),
        "seed": stored.get("seed", 0),
        # runs begun before problem_seed drew their problems with the seed
        "problem_seed": stored.get("problem_seed", stored.get("seed", 0)),
        "sample": stored.get("sample", "first"),  # not stored: first (runs before --sample, and first)
        "sample_seed": stored.get("sample_seed", 0),
        "layers": tuple(layers),
        "methods": ",".join(stored.get("methods") or []) or None,
        "sigmas": ",".join(str(s) for s in stored.get("sigmas") or []) or None,
        "attention": stored.get("attention", req.attention),
        "noise_scale": stored.get("noise_scale", req.noise_scale),
        "skip_invalid": bool(stored.get("skip_invalid", False)),
        "dtype": stored.get("dtype", "float32"),  # not stored: float32, on any device
        "max_new_tokens": stored.get("max_new_tokens", req.max_new_tokens),
        # intervention families: stored only when given (runs before them, and classic runs, have none)
        **{name: stored.get(name) for name in ("families", "combo_methods", "head_steps", "top_heads")},
        # readouts: runs begun before them recorded none
        "states": bool(stored.get("states", False)),
        "decode_top": int(stored.get("decode_top", 0)),
    }
    computed_in = shown.get("dtype")
    if "dtype" not in stored and computed_in not in (None, "float32"):
        # begun before the precision was part of a config (CUDA runs were bfloat16 then): resuming in
        # float32 would mix precisions, and in its own precision would change its config
        raise ResumeConflict(
            f"--resume {req.resume}: the run was computed in {computed_in} before a run's config recorded "
            f"its precision, so it cannot be resumed without mixing precisions; start a new run "
            f"(--dtype {_SHORT.get(computed_in, computed_in)} computes in {computed_in})"
        )
    differences = []
    for name in FLAGS:
        if name not in given:
            continue
        difference = _difference(req, name, values[name], stored, shown.get("n_layers"))
        if difference:
            differences.append(difference)
    if differences:
        raise ResumeConflict(f"--resume {req.resume}: {'; '.join(differences)}; drop them or start a new run")
    return replace(req, **values, layer=None, all_layers=False)


def _difference(req: RunConfig, name: str, value: Any, stored: dict, n_layers: int | None) -> str | None:
    """'--seed 1 differs from the run's 0', or None when the given setting agrees with the run."""
    from engine.interventions.conditions import parse_methods, parse_sigmas
    from engine.runs.plan import requested_layers

    flag = FLAGS[name]
    if name == "layers":
        asked = requested_layers(req)
        run_layers = list(value)
        if asked == "all":
            mine, shown_mine = list(range(n_layers)) if n_layers else None, "all"
            flag = "--layers"
        else:
            assert asked is not None and not isinstance(asked, str)
            mine = list(asked)
            flag = "--layer" if req.layer is not None else "--layers"
            shown_mine = ",".join(map(str, asked))
        if mine == run_layers:
            return None
        return f"{flag} {shown_mine} differs from the run's {','.join(map(str, run_layers))}"
    mine = getattr(req, name)
    if name == "dtype":
        from engine.runs.plan import dtype_name, resolve_dtype

        same = dtype_name(resolve_dtype(mine)) == value
    elif name == "methods":
        same = list(parse_methods(mine)) == list(stored.get("methods") or [])
    elif name == "sigmas":
        same = [float(s) for s in parse_sigmas(mine)] == [float(s) for s in stored.get("sigmas") or []]
    else:
        same = mine == value
    if same:
        return None
    return f"{flag} {_show(mine)} differs from the run's {_show(value)}"


_SHORT = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}  # --dtype's names of the precisions


def _show(value: Any) -> str:
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


# Keys of configs stored before problem_seed (when layer and all_layers were part of the config).
_LATER_KEYS = ("problem_seed",)
_EARLIER_KEYS = ("layer", "all_layers")


def check_resumable(run_id: str, stored: dict | None, stored_hash: str | None, config: dict) -> None:
    """The planned config of a resumed run must be the one it was started with: its hash, or for a run
    begun before problem_seed existed, the same config in that earlier form."""
    from warehouse import lineage

    if not stored_hash or stored_hash == lineage.config_hash(config):
        return
    if stored is not None and not any(key in stored for key in _LATER_KEYS):
        earlier = {k: v for k, v in config.items() if k not in _LATER_KEYS}
        earlier.update({k: stored[k] for k in _EARLIER_KEYS if k in stored})
        if lineage.config_hash(earlier) == stored_hash:
            return
        config = earlier
    differing = ""
    if stored is not None:
        now = json.loads(lineage.canonical_json(config))
        keys = sorted(k for k in stored.keys() | now.keys() if stored.get(k) != now.get(k))
        differing = (
            " (" + "; ".join(f"{k}: the run's {stored.get(k)!r}, now {now.get(k)!r}" for k in keys[:4]) + ")"
        )
    raise ValueError(
        f"run {run_id} was started with a different configuration{differing}; it cannot be resumed: "
        "start a new run"
    )
