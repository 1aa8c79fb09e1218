"""The research questions' answers in words, with their uncertainty, from a run's `stats` (RunStats).

`findings_rq(stats)` returns a list of plain sentences (no markup), one or more per research question and
patch layer, each starting with its question's tag ("RQ1", "RQ2", "RQ3"):

- RQ1, which thought matters most: the thought with the highest failure rate and its bootstrap interval
  over problems; it "stands out" only when that interval lies wholly above the next thought's (a
  conservative, non-overlap criterion), otherwise "no thought clearly stands out".
- RQ2, do the corruption methods rank thoughts alike: Kendall's W over the methods with its permutation p
  (agreement beyond chance when p < alpha).
- RQ3, does attention track importance: the pooled attention-importance r at the layer with the largest
  |r|, its bootstrap interval and its Holm-adjusted p (over every layer of the run: picking the best layer
  is what Holm pays for); then whether r differs between difficulty strata at that layer (permutation p).

Every number is read from the RunStats frames (one source); nothing is recomputed here. The report's
findings section combines these sentences with the hub and head findings of `analysis.hubs`.
"""

from __future__ import annotations

from typing import Any, Protocol

import polars as pl

ALPHA = 0.05


class RunStats(Protocol):
    """What the findings read of analysis.stats.RunStats (a Protocol: this module imports no stats)."""

    @property
    def importance(self) -> pl.DataFrame: ...
    @property
    def method_agreement(self) -> pl.DataFrame: ...
    @property
    def correlation(self) -> pl.DataFrame: ...
    @property
    def strata_test(self) -> pl.DataFrame: ...


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _p(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3g}"


def _layers(frame: pl.DataFrame) -> list[Any]:
    if "patch_layer" not in frame.columns:
        return [None]
    return frame["patch_layer"].unique(maintain_order=True).to_list()


def _at(frame: pl.DataFrame, patch_layer: Any, several: bool) -> tuple[pl.DataFrame, str]:
    """The rows of one patch layer and the sentence prefix naming it (none when the run has one)."""
    if patch_layer is None or "patch_layer" not in frame.columns:
        return frame, ""
    return frame.filter(pl.col("patch_layer") == patch_layer), (
        f" (patch layer {patch_layer})" if several else ""
    )


def _usable(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    if column not in frame.columns:
        return frame.clear()
    if "note" in frame.columns:  # a legacy run's placeholder rows carry no numbers
        frame = frame.filter(~pl.col("note").fill_null("").str.starts_with("not meaningful"))
    return frame.filter(pl.col(column).is_not_null() & pl.col(column).is_not_nan())


def rq1(stats: RunStats) -> list[str]:
    frame = _usable(stats.importance, "failure_rate")
    if frame.is_empty():
        return ["RQ1: no answer: the run has no corrupted trials on baseline-correct problems."]
    out = []
    layers = _layers(frame)
    for patch_layer in layers:
        rows, where = _at(frame, patch_layer, len(layers) > 1)
        ranked = rows.sort("failure_rate", descending=True).to_dicts()
        top = ranked[0]
        first = (
            f"{top['thought_name']} fails most often when corrupted: {_pct(top['failure_rate'])} of "
            f"{top['n']} trials (95% bootstrap interval over problems {_pct(top.get('boot_low'))} to "
            f"{_pct(top.get('boot_high'))})"
        )
        if (top.get("problems") or 0) < 2:
            out.append(f"RQ1{where}: {first}; one baseline-correct problem is too few to judge.")
            continue
        if len(ranked) < 2:
            out.append(f"RQ1{where}: {first}; it is the only thought measured.")
            continue
        nxt = ranked[1]
        second = (
            f"the next, {nxt['thought_name']}, fails {_pct(nxt['failure_rate'])} "
            f"({_pct(nxt.get('boot_low'))} to {_pct(nxt.get('boot_high'))})"
        )
        low, high = top.get("boot_low"), nxt.get("boot_high")
        if low is not None and high is not None and low > high:
            out.append(f"RQ1{where}: {first}; its interval lies above that of {second}, so it stands out.")
        else:
            out.append(
                f"RQ1{where}: no thought clearly stands out: {first} overlaps {second}."
                if top["failure_rate"] > 0
                else f"RQ1{where}: no thought clearly stands out: no corruption flipped an answer."
            )
    return out


def rq2(stats: RunStats) -> list[str]:
    frame = stats.method_agreement
    if frame.is_empty():
        return ["RQ2: no answer: the run has no corrupted conditions."]
    out = []
    layers = _layers(frame)
    for patch_layer in layers:
        rows, where = _at(frame, patch_layer, len(layers) > 1)
        row = rows.to_dicts()[0]
        left = f" ({row['left_out']} left out: every thought failed alike)" if row.get("left_out") else ""
        if row.get("w") is None:
            out.append(
                f"RQ2{where}: no answer: {row['n_methods']} method(s) with a varying thought profile over "
                f"{row['thoughts']} thoughts; agreement needs two methods and three thoughts{left}."
            )
            continue
        p = row.get("p_holm") if row.get("p_holm") is not None else row.get("p_perm")
        verdict = (
            "the corruption methods rank the thoughts alike beyond chance"
            if p is not None and p < ALPHA
            else "the corruption methods' thought rankings do not agree beyond chance"
        )
        out.append(
            f"RQ2{where}: {verdict}: Kendall's W = {row['w']:.2f} over {row['n_methods']} methods "
            f"({row['methods']}) and {row['thoughts']} thoughts, permutation {_p(p)}; mean pairwise "
            f"Spearman rho {row['mean_rho']:.2f}{left}."
            if row.get("mean_rho") is not None
            else f"RQ2{where}: {verdict}: Kendall's W = {row['w']:.2f}, permutation {_p(p)}{left}."
        )
    return out


def rq3(stats: RunStats) -> list[str]:
    frame = _usable(stats.correlation, "r")
    if frame.is_empty():
        return [
            "RQ3: no answer: no attention-importance correlation (no baseline attention, or a legacy run)."
        ]
    out = []
    layers = _layers(frame)
    tests = stats.strata_test
    for patch_layer in layers:
        rows, where = _at(frame, patch_layer, len(layers) > 1)
        best = rows.sort(pl.col("r").abs(), descending=True).to_dicts()[0]
        p = best.get("p_holm") if best.get("p_holm") is not None else best.get("p")
        sign = "more" if best["r"] > 0 else "less"
        verdict = (
            f"the EOT position attends {sign} to the thoughts whose corruption breaks the answer"
            if p is not None and p < ALPHA
            else "attention does not detectably track importance"
        )
        out.append(
            f"RQ3{where}: {verdict}: at layer {best['layer']}, the layer with the largest |r|, "
            f"r = {best['r']:.2f} (95% bootstrap interval {best.get('r_low', float('nan')):.2f} to "
            f"{best.get('r_high', float('nan')):.2f}, n = {best['n']} pairs), Holm-adjusted {_p(p)} "
            f"over the run's {frame.height} layer tests"
            + (
                " (the interval is this layer's alone, not widened for picking it as the largest of "
                f"{frame.height}: the adjusted p is the verdict)."
                if frame.height > 1
                else "."
            )
        )
        test, _ = _at(tests, patch_layer, len(layers) > 1)
        test = (
            _usable(test.filter(pl.col("layer") == best["layer"]), "p_perm") if not test.is_empty() else test
        )
        if test.is_empty():
            out.append(f"RQ3{where}: whether strata differ: not testable (fewer than two strata with an r).")
            continue
        t = test.to_dicts()[0]
        differ = t["p_perm"] < ALPHA
        out.append(
            f"RQ3{where}: at layer {best['layer']} the difficulty strata "
            + ("differ in r" if differ else "do not detectably differ in r")
            + f" ({t['strata']} strata, {t['problems']} problems; permutation {_p(t['p_perm'])})."
        )
    return out


def findings_rq(stats: RunStats) -> list[str]:
    """The answers to RQ1, RQ2 and RQ3 for one run, as plain sentences (see the module docstring)."""
    return [*rq1(stats), *rq2(stats), *rq3(stats)]
