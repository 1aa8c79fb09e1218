"""Inference `stats` adds to the views' estimates: multiple-comparison adjustments, method agreement (RQ2)
and the difficulty-strata tests (RQ3).

- `adjust`: Holm (family-wise error) or Benjamini-Hochberg (false discovery rate) adjusted p-values, as
  statsmodels.stats.multitest.multipletests computes them, over the non-null p's of one family.
- `kendall_w`, `agreement`, `spearman_pairs`: do corruption methods rank the thoughts alike? Methods are
  the raters, thoughts the items, each method's profile the failure rate per thought (the view
  method_thought_profile). Kendall's W (ties corrected) with a permutation p-value (each method's profile
  shuffled over the thoughts independently, scipy.stats.permutation_test); Spearman's rho of every pair of
  methods with an exact permutation p (all n! orderings of one profile: 720 for six thoughts).
- `strata_intervals`, `strata_heterogeneity`: per stratum a bootstrap interval of r over the stratum's
  problems, and a permutation test of whether r differs between strata (stratum labels permuted across
  problems; statistic: Cochran's Q of the Fisher-z transformed r's, weights n - 3).

Everything takes and returns polars frames or plain numbers; scipy is imported inside the functions (it
takes most of a second to import).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from analysis.frames import problem_matrix
from analysis.resampling import bootstrap_r, interval, problem_sums, resample_counts

ALPHA = 0.05
METHODS = {"holm": "Holm", "fdr_bh": "Benjamini-Hochberg"}
SUFFIX = {"holm": "holm", "fdr_bh": "bh"}


# --- multiple comparisons -----------------------------------------------------------------------------
def adjusted(p: Sequence[float | None], method: str) -> list[float | None]:
    """`p` adjusted by multipletests(method) over its non-null, finite entries (the family); None stays."""
    from statsmodels.stats.multitest import multipletests

    values = np.array([np.nan if v is None else float(v) for v in p], dtype=float)
    ok = np.isfinite(values)
    out: list[float | None] = [None] * len(values)
    if ok.any():
        corrected = multipletests(values[ok], method=method)[1]
        for i, v in zip(np.flatnonzero(ok), corrected, strict=True):
            out[int(i)] = float(v)
    return out


def adjust(frame: pl.DataFrame, p: str, method: str, out: str | None = None) -> tuple[pl.DataFrame, int]:
    """`frame` with the column `p` adjusted over all its rows (one family) as `out` (default `p_holm` or
    `p_bh` for p = 'p'). Returns the frame and the family's size (the rows with a p-value)."""
    name = out or f"{p}_{SUFFIX[method]}"
    if p not in frame.columns:
        return frame, 0
    values = frame[p].cast(pl.Float64).to_list()
    column = adjusted(values, method)
    size = sum(v is not None for v in column)
    return frame.with_columns(pl.Series(name, column, pl.Float64)), size


def family(method: str, size: int, what: str) -> str:
    """A family's description, e.g. 'Holm over the 24 pooled-r tests of this run (one per patch layer x
    layer)'; a family of one test says that its adjusted p is the raw one."""
    if size == 1:
        return f"{METHODS[method]} over the {what}: a single test, adjusted p = raw p"
    return f"{METHODS[method]} over the {size} {what}"


# --- method agreement (RQ2) ------------------------------------------------------------------------------
def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def _w_from_ranks(ranks: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """Kendall's W of ranks [..., m raters, n items]; `ties`: sum(t^3 - t) over every rater's tie groups."""
    m, n = ranks.shape[-2:]
    totals = ranks.sum(axis=-2)
    s = ((totals - totals.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 12 * s / (m * m * (n**3 - n) - m * ties)


def _tie_term(profiles: np.ndarray) -> float:
    total = 0.0
    for row in profiles:
        _, counts = np.unique(row, return_counts=True)
        total += float((counts**3 - counts).sum())
    return total


def kendall_w(profiles: np.ndarray) -> float:
    """Kendall's W of agreement of m raters (rows) ranking n items (columns), ties corrected:
    W = 12 S / (m^2 (n^3 - n) - m sum T), S the squared deviations of the items' rank sums from their
    mean, T = sum(t^3 - t) over each rater's tie groups. 1: every rater ranks alike; 0: no agreement."""
    profiles = np.asarray(profiles, dtype=float)
    return float(_w_from_ranks(_ranks(profiles), np.asarray(_tie_term(profiles))))


def w_permutation(profiles: np.ndarray, n_perm: int, seed: int) -> tuple[float, float]:
    """(W, permutation p): each rater's profile shuffled over the items independently (scipy's
    permutation_test, 'pairings'); p = (1 + #{W_perm >= W}) / (1 + n_perm), one-sided (agreement)."""
    from scipy.stats import permutation_test

    profiles = np.asarray(profiles, dtype=float)
    ties = np.asarray(_tie_term(profiles))  # shuffling a profile keeps its tie groups

    def statistic(*raters: np.ndarray, axis: int = -1) -> np.ndarray:
        ranks = np.stack([_ranks(np.moveaxis(r, axis, -1)) for r in raters], axis=-2)
        return _w_from_ranks(ranks, ties)

    result = permutation_test(
        tuple(profiles),
        statistic,
        permutation_type="pairings",
        vectorized=True,
        n_resamples=n_perm,
        alternative="greater",
        rng=np.random.default_rng(seed),
    )
    return float(result.statistic), float(result.pvalue)


def _spearman(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    rx, ry = _ranks(np.moveaxis(x, axis, -1)), _ranks(np.moveaxis(y, axis, -1))
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(-1) / np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))


def spearman_exact(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Spearman's rho of x and y and its two-sided permutation p over every ordering of x (y kept):
    exact for up to 8 items (8! = 40,320 orderings), as scipy.stats.permutation_test computes it."""
    from scipy.stats import permutation_test

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    result = permutation_test(
        (x,),
        lambda a, axis=-1: _spearman(a, np.broadcast_to(y, a.shape), axis),
        permutation_type="pairings",
        vectorized=True,
        n_resamples=np.inf,
    )
    return float(result.statistic), float(result.pvalue)


def profiles_of(frame: pl.DataFrame) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """(methods, thoughts, profiles [methods, thoughts], left out) from method_thought_profile rows of one
    patch layer. Thoughts every method has a failure rate for are kept; a method whose profile is
    constant (every thought fails alike, e.g. never) ranks nothing and is left out."""
    usable = frame.filter(pl.col("failure_rate").is_not_null())
    methods = sorted(usable["method"].unique().to_list(), key=_method_key)
    if not methods:
        return [], [], np.empty((0, 0)), []
    thoughts = (
        usable.group_by("thought")
        .agg(pl.col("method").n_unique().alias("k"), pl.col("thought_name").first())
        .filter(pl.col("k") == len(methods))
        .sort("thought")
    )
    wide = usable.filter(pl.col("thought").is_in(thoughts["thought"].implode()))
    matrix = np.array(
        [
            wide.filter(pl.col("method") == m).sort("thought")["failure_rate"].to_numpy().astype(float)
            for m in methods
        ]
    )
    constant = [m for m, row in zip(methods, matrix, strict=True) if len(row) and np.ptp(row) == 0]
    keep = [i for i, m in enumerate(methods) if m not in constant]
    return [methods[i] for i in keep], thoughts["thought_name"].to_list(), matrix[keep], constant


def _method_key(method: str) -> tuple[int, str]:
    from warehouse.vocab import METHOD_ORDER

    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def agreement(profile: pl.DataFrame, n_perm: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Method agreement per patch layer from method_thought_profile rows: (W frame, pairs frame).

    W frame: patch_layer, n_methods, methods, thoughts, w, p_perm, n_perm, mean_rho, left_out.
    Pairs frame: patch_layer, method_a, method_b, thoughts, rho, p_exact (two-sided, every ordering).
    W needs at least two methods with a varying profile and three thoughts.
    """
    agree: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    for (patch_layer,), group in profile.group_by(["patch_layer"], maintain_order=True):
        methods, thoughts, matrix, constant = profiles_of(group)
        w = p = mean_rho = None
        if len(methods) >= 2 and len(thoughts) >= 3:
            w, p = w_permutation(matrix, n_perm, seed)
        rhos = []
        for (i, a), (j, b) in itertools.combinations(enumerate(methods), 2):
            rho, p_pair = spearman_exact(matrix[i], matrix[j]) if len(thoughts) >= 3 else (None, None)
            rhos.append(rho)
            pairs.append(
                {
                    "patch_layer": patch_layer,
                    "method_a": a,
                    "method_b": b,
                    "thoughts": len(thoughts),
                    "rho": rho,
                    "p_exact": p_pair,
                }
            )
        finite = [r for r in rhos if r is not None and np.isfinite(r)]
        mean_rho = float(np.mean(finite)) if finite else None
        agree.append(
            {
                "patch_layer": patch_layer,
                "n_methods": len(methods),
                "methods": ", ".join(methods),
                "thoughts": len(thoughts),
                "w": w,
                "p_perm": p,
                "n_perm": n_perm if w is not None else None,
                "mean_rho": mean_rho,
                "left_out": ", ".join(constant) or None,
            }
        )
    schema_a = {
        "patch_layer": pl.Int64,
        "n_methods": pl.Int64,
        "methods": pl.String,
        "thoughts": pl.Int64,
        "w": pl.Float64,
        "p_perm": pl.Float64,
        "n_perm": pl.Int64,
        "mean_rho": pl.Float64,
        "left_out": pl.String,
    }
    schema_p = {
        "patch_layer": pl.Int64,
        "method_a": pl.String,
        "method_b": pl.String,
        "thoughts": pl.Int64,
        "rho": pl.Float64,
        "p_exact": pl.Float64,
    }
    return pl.DataFrame(agree, schema=schema_a), pl.DataFrame(pairs, schema=schema_p)


# --- difficulty strata (RQ3) -----------------------------------------------------------------------------
def stratum_key(stratum: str | None) -> int:
    """Display order of a stratum: <=2, 3, 4, 5+, then anything else (None last)."""
    from warehouse.vocab import STRATA

    return STRATA.index(stratum) if stratum in STRATA else len(STRATA)


def _fisher_q(sums: np.ndarray) -> np.ndarray:
    """Cochran's Q of per-stratum r's from pair sums [..., strata, 6]: sum w (z - z_bar)^2, z = atanh r,
    w = n - 3 (strata with fewer than 4 pairs or an undefined r take no part)."""
    n, sa, sb, saa, sbb, sab = np.moveaxis(sums, -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (sab - sa * sb / n) / np.sqrt((saa - sa * sa / n) * (sbb - sb * sb / n))
        z = np.arctanh(np.clip(r, -0.999999, 0.999999))
    w = np.where(np.isfinite(z) & (n > 3), n - 3, 0.0)
    z = np.where(w > 0, z, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z_bar = (w * z).sum(-1, keepdims=True) / w.sum(-1, keepdims=True)
    return (w * (z - z_bar) ** 2).sum(-1)


def strata_heterogeneity(
    sums: np.ndarray, labels: np.ndarray, n_perm: int, seed: int, chunk: int = 250
) -> tuple[float | None, float | None]:
    """(Q, permutation p) of whether r differs between strata.

    `sums` [problems, 6] are each problem's pair sums (resampling.problem_sums), `labels` each problem's
    stratum index. Stratum labels are permuted across problems (strata sizes kept), whole problems moving
    together; p = (1 + #{Q_perm >= Q}) / (1 + n_perm). Vectorized numpy (scipy's permutation_test refuses
    strata of one problem; tests check the two agree where both apply). None when fewer than two strata
    have an r over more than three pairs.
    """
    strata = np.unique(labels)
    onehot = (labels[None, :] == strata[:, None]).astype(float)  # [strata, problems]
    observed = float(_fisher_q(onehot @ sums))
    if len(strata) < 2 or ((onehot @ sums)[:, 0] > 3).sum() < 2 or not np.isfinite(observed):
        return None, None
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_perm, chunk):
        size = min(chunk, n_perm - start)
        shuffled = labels[np.argsort(rng.random((size, len(labels))), axis=1)]  # [size, problems]
        masks = (shuffled[:, None, :] == strata[None, :, None]).astype(float)  # [size, strata, problems]
        q = _fisher_q(masks @ sums)
        hits += int((q >= observed - 1e-12).sum())
    return observed, (1 + hits) / (1 + n_perm)


def strata_inference(
    pairs: pl.DataFrame, n_boot: int, n_perm: int, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """From int_attention_importance rows (patch_layer, layer, stratum, problem_id, thought, attention,
    importance): (per stratum and layer: r_low, r_high, a bootstrap over the stratum's problems; per
    patch layer and layer: strata, problems, q, p_perm, the test of whether r differs between strata)."""
    intervals: list[dict[str, Any]] = []
    tests: list[dict[str, Any]] = []
    pairs = pairs.filter(pl.col("stratum").is_not_null())
    for (patch_layer, layer), group in pairs.group_by(["patch_layer", "layer"], maintain_order=True):
        strata = sorted(group["stratum"].unique().to_list(), key=stratum_key)
        sums, labels = [], []
        for k, stratum in enumerate(strata):
            part = group.filter(pl.col("stratum") == stratum)
            a, b = problem_matrix(part, "attention"), problem_matrix(part, "importance")
            counts = resample_counts(a.shape[0], n_boot, np.random.default_rng(seed))
            low, high = interval(bootstrap_r(a, b, counts))
            intervals.append(
                {
                    "patch_layer": patch_layer,
                    "layer": layer,
                    "stratum": stratum,
                    "r_low": float(low),
                    "r_high": float(high),
                }
            )
            sums.append(problem_sums(a, b))
            labels += [k] * a.shape[0]
        q, p = strata_heterogeneity(np.concatenate(sums), np.array(labels), n_perm, seed)
        tests.append(
            {
                "patch_layer": patch_layer,
                "layer": layer,
                "strata": len(strata),
                "problems": len(labels),
                "q": q,
                "p_perm": p,
            }
        )
    schema_i = {
        "patch_layer": pl.Int64,
        "layer": pl.Int64,
        "stratum": pl.String,
        "r_low": pl.Float64,
        "r_high": pl.Float64,
    }
    schema_t = {
        "patch_layer": pl.Int64,
        "layer": pl.Int64,
        "strata": pl.Int64,
        "problems": pl.Int64,
        "q": pl.Float64,
        "p_perm": pl.Float64,
    }
    return pl.DataFrame(intervals, schema=schema_i), pl.DataFrame(tests, schema=schema_t)
