"""Statistics SQL lacks (SPEC 7): Pearson p-values, problem bootstrap intervals, a within-problem
permutation test.

Problems are the independent units: a problem's conditions and thoughts share one question and one
baseline, so the bootstrap resamples whole problems (a cluster bootstrap) rather than rows, and the
permutation test moves whole attention vectors between problems. All of it is vectorized numpy:
a bootstrap is one matrix product of resampling counts [B, problems] with per-problem sums.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95


def pearson_p(r: float | None, n: int | None) -> float | None:
    """Two-sided p-value of a Pearson r over n pairs, as scipy.stats.pearsonr computes it (t with
    n - 2 df)."""
    if r is None or n is None or n < 3 or not np.isfinite(r):
        return None
    if abs(r) >= 1:
        return 0.0
    from scipy import stats  # here, not at the top: importing scipy takes most of a second

    t = r * np.sqrt((n - 2) / (1 - r * r))
    return float(2 * stats.t.sf(abs(t), n - 2))


def resample_counts(n_problems: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n_problems]: how often each problem is drawn in each bootstrap sample."""
    return rng.multinomial(n_problems, np.full(n_problems, 1 / n_problems), size=n_boot).astype(float)


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0, ignoring samples where the statistic is undefined (NaN)."""
    tail = 100 * (1 - level) / 2
    with np.errstate(all="ignore"):
        if np.isnan(samples).all():
            nan = np.full(samples.shape[1:], np.nan)
            return nan, nan
        low, high = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return low, high


def bootstrap_rates(failures: np.ndarray, trials: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[B, groups] pooled rates sum(failures) / sum(trials) of each resample; inputs are
    [groups, problems]."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ failures.T) / (counts @ trials.T)


def _pearson_from_sums(s: np.ndarray) -> np.ndarray:
    """r from sums [..., 6] = (n, sum a, sum b, sum a^2, sum b^2, sum ab)."""
    n, sa, sb, saa, sbb, sab = np.moveaxis(s, -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sab - sa * sb / n
        r = cov / np.sqrt((saa - sa * sa / n) * (sbb - sb * sb / n))
    return np.where(np.isfinite(r), r, np.nan)


def problem_sums(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-problem sums [problems, 6] of paired values a, b given as [problems, k] (NaN = missing)."""
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
    return np.stack([ok.sum(1), a.sum(1), b.sum(1), (a * a).sum(1), (b * b).sum(1), (a * b).sum(1)], axis=1)


def centred(x: np.ndarray) -> np.ndarray:
    """Each problem's values minus that problem's mean (rows are problems, NaN = missing)."""
    with np.errstate(invalid="ignore"):
        return x - np.nanmean(x, axis=1, keepdims=True)


def bootstrap_r(a: np.ndarray, b: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[B] pooled Pearson r of each resample of problems; a, b are [problems, k]."""
    return _pearson_from_sums(counts @ problem_sums(a, b))


def within_permutation(
    a: np.ndarray, b: np.ndarray, n_perm: int, rng: np.random.Generator, chunk: int = 250
) -> tuple[float | None, float | None, int]:
    """Within-problem r of a and b ([problems, k]) and its permutation p-value.

    Attention vectors (a's rows) are shuffled between problems, positions kept: under the null that
    a problem's attention pattern says nothing about that problem's importance pattern, any problem's
    vector is as likely. Only complete problems (no NaN) take part. Permuting whole rows leaves each
    row's centring and the norms unchanged, so r_perm = sum(a_c[perm] * b_c) / norm. Two-sided p with
    the observed statistic counted: (1 + #{|r_perm| >= |r|}) / (1 + n_perm). Returns (r, p, problems).
    """
    keep = ~(np.isnan(a).any(1) | np.isnan(b).any(1))
    ac, bc = centred(a[keep]), centred(b[keep])
    n = ac.shape[0]
    norm = np.sqrt((ac * ac).sum() * (bc * bc).sum())
    if n < 2 or norm == 0:
        return None, None, n
    r = float((ac * bc).sum() / norm)
    hits = 0
    for start in range(0, n_perm, chunk):
        size = min(chunk, n_perm - start)
        perms = np.argsort(rng.random((size, n)), axis=1)
        r_perm = np.einsum("spk,pk->s", ac[perms], bc) / norm
        hits += int((np.abs(r_perm) >= abs(r) - 1e-12).sum())
    return r, (1 + hits) / (1 + n_perm), n
