"""The corruption methods (SPEC 3) as data: a registry of small functions with one signature.

Each method turns one `Site` (a condition of one problem at the patch site: the output of block L at
thought Tk) into its `Replacement`: the value h' that overwrites the clean value h there, and the
donor problem / thought it was taken from, if any. `replacement` looks the condition's method up in
METHODS. Adding a method is adding one function here and registering it (and its name to
warehouse/vocab.py, which says which names a run accepts and how the warehouse and the charts show them).

Every random draw comes from `Site.seed` (run seed, problem id, layer, thought, method, sigma), so a
value never depends on batch composition, on the device or on resuming.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

import torch

from engine.interventions.conditions import (
    Condition,
    Part,
    choose_donor_problem,
    choose_donor_thought,
    draw_seed,
    gaussian_noise,
)

if TYPE_CHECKING:
    from engine.interventions.options import EngineOptions


@dataclass(frozen=True)
class Site:
    """What a method may use for one condition of one problem."""

    condition: Condition
    problem_id: str
    layer_index: int  # the condition's layer as an index into the run's patch layers (axis 0 of `sites`)
    sites: torch.Tensor  # the problem's clean values [n_layers_selected, 6, d]
    pool: dict[str, torch.Tensor]  # donor problem id -> its clean values (for methods that use the pool)
    seed: int  # the condition's own seed (conditions.draw_seed)
    noise_scale: str  # absolute | rms

    @property
    def clean(self) -> torch.Tensor:
        """h: the problem's clean value at the condition's layer and thought."""
        return self.sites[self.layer_index, self.condition.thought]


class Replacement(NamedTuple):
    value: torch.Tensor  # h'
    donor_problem_id: str | None = None
    donor_thought: int | None = None


@dataclass(frozen=True)
class Method:
    name: str
    compute: Callable[[Site], Replacement]
    uses_pool: bool  # takes values from other problems: needs the donor pool, and a run of 2+ problems


METHODS: dict[str, Method] = {}  # name -> method, filled by `register` below


def zero(site: Site) -> Replacement:
    """0."""
    return Replacement(torch.zeros_like(site.clean))


def gauss(site: Site) -> Replacement:
    """h + sigma * s * e, e ~ N(0, I) seeded by the condition; s = 1 (absolute) or the RMS of h
    (`--noise-scale rms`). The noise is drawn on the CPU in float32 and added in the site's dtype: float32
    in the engine, which records every clean site as float32 whatever the model's dtype (loop.py); the
    sum is cast to the model's dtype once, where the patch hook writes it (patching._hook_for;
    docs/DESIGN.md, "Precision")."""
    h = site.clean
    sigma = site.condition.sigma
    assert sigma is not None  # build_conditions gives every gauss condition a sigma
    scale = sigma * (h.float().pow(2).mean().sqrt().item() if site.noise_scale == "rms" else 1.0)
    return Replacement(h + scale * gaussian_noise(site.seed, h.shape[-1]).to(h))


def random_donor(site: Site) -> Replacement:
    """A drawn donor problem's clean value at the same layer and thought."""
    thought = site.condition.thought
    donor = choose_donor_problem(site.seed, sorted(site.pool), site.problem_id)
    return Replacement(site.pool[donor][site.layer_index, thought].clone(), donor, thought)


def shuffle(site: Site) -> Replacement:
    """The same problem's clean value at a drawn thought j != k."""
    thought = site.condition.thought
    assert thought is not None  # only the baseline has no thought, and it has no method in METHODS
    j = choose_donor_thought(site.seed, thought)
    return Replacement(site.sites[site.layer_index, j].clone(), site.problem_id, j)


def clean(site: Site) -> Replacement:
    """h itself: the control that must change nothing."""
    return Replacement(site.clean.clone())


def mean(site: Site) -> Replacement:
    """The mean clean value at Tk over the pool's OTHER problems (the target's own value is left out)."""
    pool, problem_id = site.pool, site.problem_id
    others = [pid for pid in sorted(pool) if pid != problem_id]
    if not others:
        raise ValueError(
            f"`mean` needs a donor pool with a problem other than {problem_id} itself "
            f"(pool: {', '.join(sorted(pool)) or 'empty'})"
        )
    return Replacement(
        torch.stack([pool[pid][site.layer_index, site.condition.thought] for pid in others]).mean(0)
    )


def register(name: str, compute: Callable[[Site], Replacement], *, uses_pool: bool = False) -> Method:
    """Add `compute(site) -> Replacement` to METHODS as the method `name` (a run accepts the names in
    warehouse/vocab.py, so a new method needs its name there too)."""
    if name in METHODS:
        raise ValueError(f"method {name!r} is registered twice")
    METHODS[name] = Method(name, compute, uses_pool)
    return METHODS[name]


# Plain functions registered here, not with a decorator: mutmut does not mutate decorated functions, and
# these are under mutation testing (tests/mutate_engine.py).
register("zero", zero)
register("gauss", gauss)
register("random", random_donor, uses_pool=True)
register("shuffle", shuffle)
register("clean", clean)
register("mean", mean, uses_pool=True)


def pool_methods(methods: Iterable[str]) -> list[str]:
    """The methods among `methods` that take values from other problems, sorted."""
    return sorted(m for m in set(methods) if m in METHODS and METHODS[m].uses_pool)


def replacement(
    cond: Condition,
    problem_id: str,
    layer_index: int,
    sites: torch.Tensor,
    pool: dict[str, torch.Tensor],
    opts: EngineOptions,
    seed: int | None = None,
) -> Replacement:
    """h' for one condition, with the donor problem / thought it used: the condition's method applied to its
    site (`sites`: the problem's clean values; `pool`: the donor problems' clean values). `seed`: the draw's
    seed (default: the condition's own, conditions.draw_seed; a part of a larger condition: `part_seed`)."""
    found = METHODS.get(cond.method)
    if found is None:
        raise ValueError(f"unknown method {cond.method!r}; known: {', '.join(METHODS)}")
    seed = draw_seed(opts.seed, problem_id, cond) if seed is None else seed
    return found.compute(Site(cond, problem_id, layer_index, sites, pool, seed, opts.noise_scale))


def part_condition(cond: Condition, part: Part, step: int) -> Condition:
    """What a method sees for one step of one part of `cond`: the part's layer, method and sigma, and the
    step as its thought (a classic condition is its own single part)."""
    if cond.family == "thoughts":
        return cond
    return replace(cond, method=part.method, layer=part.layer, thought=step, sigma=part.sigma)


def part_seed(run_seed: int, problem_id: str, cond: Condition, index: int, step: int) -> int:
    """The seed of one step of one part: the condition's own seed for a classic condition (one part, one
    step), else drawn from it and (part, step), so parts and steps never share a draw."""
    seed = draw_seed(run_seed, problem_id, cond)
    if cond.family == "thoughts":
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}|{index}|{step}".encode()).digest()[:8], "little") >> 1
