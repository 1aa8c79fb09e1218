"""Conditions as data (SPEC 3): the baseline plus (layer, thought, method, sigma) corruptions.

Every random draw (Gaussian noise, donor problem, donor thought) comes from a generator seeded by
(run seed, problem id, layer, thought, method, sigma), so a row never depends on batch composition,
on the device, or on resuming.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from engine.model.positions import N_THOUGHTS
from warehouse.vocab import (
    ALL_METHODS,
    BASELINE,
    COMBO_METHODS,
    DEFAULT_FAMILIES,
    DEFAULT_METHODS,
    DEFAULT_SIGMAS,
    FAMILIES,
    stratum_of,
)

DONOR_POOL_SIZE = 20


@dataclass(frozen=True)
class Part:
    """One intervention of a condition: at `site` of block `layer` (None: every layer), during the thought
    steps `steps` (6 = EOT), `method` with its parameters.

    block / attn / mlp: the block's output, its attention output or its MLP output at the new position is
    replaced by the method's value; head: `head`'s slice of the input to the attention output projection;
    edge: the attention from the query at each step in `steps` to the key thought `key` is removed.
    """

    site: str
    layer: int | None
    steps: tuple[int, ...]
    method: str
    sigma: float | None = None
    head: int | None = None
    key: int | None = None

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "site": self.site,
            "layer": self.layer,
            "steps": list(self.steps),
            "method": self.method,
        }
        out.update(
            {
                k: v
                for k, v in (("sigma", self.sigma), ("head", self.head), ("key", self.key))
                if v is not None
            }
        )
        return out


@dataclass(frozen=True)
class Condition:
    """A condition: the baseline, or a set of interventions (`parts`) run together on every problem.

    `layer`, `thought`, `method`, `sigma`, `family`, `site`, `head` and `thoughts` are the columns the
    warehouse keeps for it (results); `parts` is the whole of it. A `thoughts` condition (the classic one:
    one thought's block output at one layer) needs no parts given: they follow from its columns.
    """

    condition_id: int
    method: str
    layer: int | None = None
    thought: int | None = None
    sigma: float | None = None
    family: str = "thoughts"
    site: str | None = "block"
    head: int | None = None
    given_parts: tuple[Part, ...] = ()

    @property
    def is_baseline(self) -> bool:
        return self.method == BASELINE

    @property
    def parts(self) -> tuple[Part, ...]:
        if self.is_baseline:
            return ()
        if self.given_parts:
            return self.given_parts
        assert self.thought is not None  # a thoughts condition names its layer and thought
        return (Part("block", self.layer, (self.thought,), self.method, self.sigma),)

    @property
    def thoughts(self) -> list[int] | None:
        """The thought steps written (edges: the key thought), sorted; None for the baseline."""
        if self.is_baseline:
            return None
        if self.site == "edge":
            return sorted({p.key for p in self.parts if p.key is not None})
        return sorted({s for p in self.parts for s in p.steps if s < N_THOUGHTS})

    @property
    def first_step(self) -> int:
        """The first step (0..5 a thought, 6 EOT) at which this condition differs from the baseline."""
        return min(s for p in self.parts for s in p.steps)

    @property
    def parts_json(self) -> str | None:
        return None if self.is_baseline else json.dumps([p.to_dict() for p in self.parts])


def _once(values: tuple, flag: str, shown: list[str]) -> tuple:
    """`values` with repeats left out (first occurrence kept), and a note on stderr naming them.

    A repeated condition would be run and stored twice and counted as two trials, which narrows
    every interval; each distinct value runs once.
    """
    unique = tuple(dict.fromkeys(values))
    if len(unique) < len(values):
        repeats = [text for i, (text, v) in enumerate(zip(shown, values, strict=True)) if v in values[:i]]
        print(
            f"note: {flag}: {', '.join(repeats)} repeat(s) an earlier value; each condition runs once "
            f"({', '.join(map(str, unique))})",
            file=sys.stderr,
        )
    return unique


def parse_methods(spec: str | None) -> tuple[str, ...]:
    """'zero,gauss' -> ('zero', 'gauss'); None -> the seven-condition default set; repeats run once."""
    if not spec:
        return DEFAULT_METHODS
    methods = tuple(m.strip() for m in spec.split(",") if m.strip())
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(ALL_METHODS)}")
    if not methods:
        raise ValueError(f"--methods names no method ({spec!r}); choose from {', '.join(ALL_METHODS)}")
    return _once(methods, "--methods", list(methods))


def parse_sigmas(spec: str | None) -> tuple[float, ...]:
    """'0.5,1' -> (0.5, 1.0); values equal as numbers (0.5, 0.50, 5e-1) are one sigma."""
    if not spec:
        return DEFAULT_SIGMAS
    texts = [s.strip() for s in spec.split(",") if s.strip()]
    try:
        sigmas = tuple(float(s) for s in texts)
    except ValueError as exc:
        raise ValueError(f"--sigmas must be comma-separated numbers, got {spec!r}") from exc
    if not sigmas or not all(0 < s < math.inf for s in sigmas):  # also refuses nan
        raise ValueError(f"--sigmas must be positive finite numbers, got {spec!r}")
    return _once(sigmas, "--sigmas", texts)


def parse_families(spec: str | None) -> tuple[str, ...]:
    """'thoughts,pairs' -> ('thoughts', 'pairs'); None -> the default (the classic `thoughts` alone)."""
    if not spec:
        return DEFAULT_FAMILIES
    families = tuple(f.strip() for f in spec.split(",") if f.strip())
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(
            f"--family: unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(FAMILIES)}"
        )
    return _once(families, "--family", list(families))


def parse_head_steps(spec: str | None) -> tuple[tuple[int, ...], ...]:
    """--head-steps: 'all' (the six thoughts at once, the default), 'each' (each thought alone) or one step
    number 0..5."""
    if spec in (None, "", "all"):
        return (tuple(range(N_THOUGHTS)),)
    if spec == "each":
        return tuple((k,) for k in range(N_THOUGHTS))
    if spec.isdigit() and int(spec) < N_THOUGHTS:
        return ((int(spec),),)
    raise ValueError(f"--head-steps must be all, each or a thought 0..{N_THOUGHTS - 1}, got {spec!r}")


def parse_top_heads(spec: str | None, n_layers: int, n_heads: int) -> tuple[tuple[int, int], ...]:
    """--top-heads '3.1,5.0' -> ((3, 1), (5, 0)): heads (layer.head) ablated together, each named once."""
    if not spec:
        return ()
    found = []
    for text in (t.strip() for t in spec.split(",") if t.strip()):
        layer, _, head = text.partition(".")
        if not (layer.isdigit() and head.isdigit()):
            raise ValueError(f"--top-heads takes layer.head pairs such as 3.1,5.0; got {text!r}")
        if int(layer) >= n_layers or int(head) >= n_heads:
            raise ValueError(
                f"--top-heads: head {text} is outside the model ({n_layers} layers of {n_heads} heads)"
            )
        found.append((int(layer), int(head)))
    if len(set(found)) < len(found):
        raise ValueError(f"--top-heads names a head more than once ({spec!r})")
    return tuple(found)


def build_conditions(
    layers: list[int],
    methods: Sequence[str] = DEFAULT_METHODS,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    families: Sequence[str] = DEFAULT_FAMILIES,
    combo_methods: Sequence[str] = COMBO_METHODS,
    n_layers: int | None = None,
    n_heads: int | None = None,
    head_steps: Sequence[tuple[int, ...]] = (tuple(range(N_THOUGHTS)),),
    top_heads: Sequence[tuple[int, int]] = (),
) -> list[Condition]:
    """Baseline first (id 0), then each family's conditions in order (docs/DESIGN.md, "Intervention
    families"); with the default family alone, exactly the classic layer x thought x method (x sigma)
    conditions, in SPEC order and with the ids they always had.

    thoughts: one thought's block output at one patch layer, under `methods` (gauss at every sigma); when
      pairs or triplets are asked for, also each single thought under `combo_methods` (their singles);
    pairs / triplets: every 2 / 3 thoughts at once, at each patch layer, under `combo_methods`;
    components: the attention or the MLP output of block L instead of the whole block, under `methods`;
    heads: each head of every layer (`n_layers` x `n_heads`), under `combo_methods`, at each step set of
      `head_steps` (all six thoughts by default); and the `top_heads` (layer, head) ablated together;
    edges: the attention from later thoughts and EOT to each thought Tj removed, at every layer (layer
      NULL) and at each patch layer; `clean` among `methods` adds the control that removes nothing.
    """
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown famil(y/ies) {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    conditions = [Condition(0, BASELINE)]

    def add(method: str, layer: int | None, thought: int | None, sigma: float | None, **kw: Any) -> None:
        conditions.append(Condition(len(conditions), method, layer, thought, sigma, **kw))

    def with_sigmas(chosen: Sequence[str]) -> list[tuple[str, float | None]]:
        return [(m, s) for m in chosen for s in (sigmas if m == "gauss" else (None,))]

    combos = [k for k in (2, 3) if ("pairs", "triplets")[k - 2] in families]
    single = [m for m in methods] if "thoughts" in families else []
    single += [m for m in combo_methods if combos and m not in single]
    for layer in layers:
        for thought in range(N_THOUGHTS):
            for method, sigma in with_sigmas(single):
                add(method, layer, thought, sigma)
    for size in combos:
        family = "pairs" if size == 2 else "triplets"
        for layer in layers:
            for chosen in itertools.combinations(range(N_THOUGHTS), size):
                for method, sigma in with_sigmas(combo_methods):
                    parts = tuple(Part("block", layer, (k,), method, sigma) for k in chosen)
                    add(method, layer, None, sigma, family=family, given_parts=parts)
    if "components" in families:
        for layer in layers:
            for thought in range(N_THOUGHTS):
                for site in ("attn", "mlp"):
                    for method, sigma in with_sigmas(methods):
                        part = Part(site, layer, (thought,), method, sigma)
                        add(
                            method, layer, thought, sigma, family="components", site=site, given_parts=(part,)
                        )
    if "heads" in families:
        if not n_layers or not n_heads:
            raise ValueError("the heads family needs the model's number of layers and heads")
        for layer in range(n_layers):
            for head in range(n_heads):
                for steps in head_steps:
                    for method, sigma in with_sigmas(combo_methods):
                        part = Part("head", layer, tuple(steps), method, sigma, head=head)
                        one: int | None = steps[0] if len(steps) == 1 else None
                        add(
                            method,
                            layer,
                            one,
                            sigma,
                            family="heads",
                            site="head",
                            head=head,
                            given_parts=(part,),
                        )
        for method, sigma in with_sigmas(combo_methods) if top_heads else ():
            parts = tuple(
                Part("head", layer, tuple(range(N_THOUGHTS)), method, sigma, head=h) for layer, h in top_heads
            )
            add(method, None, None, sigma, family="heads", site="head", given_parts=parts)
    if "edges" in families:
        edge_methods = ["knockout"] + (["clean"] if "clean" in methods else [])
        for scope in (None, *layers):
            for key in range(N_THOUGHTS):
                for method in edge_methods:
                    part = Part("edge", scope, tuple(range(key + 1, N_THOUGHTS + 1)), method, key=key)
                    add(method, scope, key, None, family="edges", site="edge", given_parts=(part,))
    if len(conditions) > 32767:
        raise ValueError(f"{len(conditions)} conditions: more than a run can number (32767); ask for fewer")
    return conditions


def draw_seed(run_seed: int, problem_id: str, condition: Condition) -> int:
    """A 63-bit seed from the condition's identity (never from its position in a batch)."""
    key = (
        f"{run_seed}|{problem_id}|{condition.layer}|{condition.thought}|{condition.method}|{condition.sigma}"
    )
    if condition.family != "thoughts":  # the classic key stays as it was; the others add the whole condition
        key += f"|{condition.family}|{condition.parts_json}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1


def gaussian_noise(seed: int, dim: int) -> torch.Tensor:
    """N(0, I) noise drawn on the CPU in float32, so every device sees the same numbers."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(dim, generator=generator, dtype=torch.float32)


def choose_donor_problem(seed: int, pool: list[str], problem_id: str) -> str:
    candidates = [p for p in pool if p != problem_id]
    if not candidates:
        raise ValueError("the donor pool has no problem other than the target itself")
    return random.Random(seed).choice(candidates)


def choose_donor_thought(seed: int, thought: int) -> int:
    """A thought j != k of the same problem, drawn uniformly."""
    return random.Random(seed).choice([j for j in range(N_THOUGHTS) if j != thought])


def select_donor_pool(problems: list, seed: int, size: int = DONOR_POOL_SIZE) -> list[str]:
    """`size` problem ids spread over difficulty strata (round-robin over strata, seeded)."""
    rng = random.Random(f"donor-pool|{seed}")
    by_stratum: dict[str, list[str]] = {}
    for p in sorted(problems, key=lambda p: p.problem_id):
        by_stratum.setdefault(stratum_of(p.n_steps), []).append(p.problem_id)
    for ids in by_stratum.values():
        rng.shuffle(ids)
    pool: list[str] = []
    strata = sorted(by_stratum)
    while len(pool) < size and any(by_stratum.values()):
        for s in strata:
            if by_stratum[s] and len(pool) < size:
                pool.append(by_stratum[s].pop())
    return pool
