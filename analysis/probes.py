"""`python cli.py probe`: linear probes from a run's hidden states to what each reasoning step computes.

A probe asks whether a quantity can be read off the state at one (position, layer) by a linear map:

- `value` of step j (1..6): the step's result, as int_problem_steps parses it from the solution's
  calculator annotations, regressed on sign(v) * log1p(|v|) (GSM8K values span orders of magnitude; the
  transform keeps a few large ones from deciding the fit). Ridge regression, scored by out-of-fold R^2.
- `operation` of step j: the step's operator (int_problem_steps.op: + - * / mixed none), classified.
- `n_steps`: the problem's number of steps (problems.n_steps, else its annotated steps), classified.
  A ridge classifier (one-vs-rest ridge regression on +-1 targets, argmax: sklearn's RidgeClassifier), scored
  by out-of-fold accuracy; `classifier="logistic"` fits logistic regression instead (about 100 x slower).

Targets come from the view int_problem_steps and problems only (no annotation is parsed here). Features
are the states table's rows of the run: one d_model vector per (problem, position, layer).

Every score is out-of-fold with folds grouped by problem (one problem never in both train and test).
Beside the score: a 95% interval (accuracy: Wilson over the out-of-fold predictions; R^2: percentile
bootstrap over problems of the out-of-fold predictions), chance (the majority-class rate; R^2 0), the
same probe on labels shuffled across problems (`shuffled`: their mean, `shuffled_high`: their 95th
percentile) and the permutation p-value (1 + #shuffled >= score) / (1 + permutations). Classes with fewer
members than folds are dropped; a target left with fewer than 2 classes, or fewer than 2 x folds problems,
is skipped with a reason.

    rows = probe_run("results/warehouse", "latest", layers=[4, 8], permutations=20)
    print(format_probes(rows))                    # the best probe per target and step
    fit_probe(X, y, groups, "regression")         # the core, on arrays
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa

from warehouse.errors import WarehouseError
from warehouse.frames import vector_matrix
from warehouse.store import Warehouse, open_warehouse

Kind = Literal["regression", "classification"]
Split = tuple[np.ndarray, np.ndarray]

TARGETS = ("value", "operation", "n_steps")
KINDS: dict[str, Kind] = {"value": "regression", "operation": "classification", "n_steps": "classification"}
STEPS = (1, 2, 3, 4, 5, 6)
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))
LOGISTIC_CS = (0.1,)  # more than one: chosen per training fold by an inner grouped CV (LogisticRegressionCV)
CLASSIFIERS = ("ridge", "logistic")
N_BOOT = 1000
VALUE_TRANSFORM = "sign(v) * log1p(|v|)"
POSITION_NAMES = {0: "T0", 1: "T1", 2: "T2", 3: "T3", 4: "T4", 5: "T5", 6: "EOT"}
SETTINGS_VERSION = 1


class NoStates(WarehouseError):
    """The run recorded no hidden states (it was run without --states)."""


@dataclass(frozen=True)
class ProbeScore:
    """One probe's out-of-fold score with its interval, chance level and permutation baseline."""

    score: float
    ci_low: float
    ci_high: float
    chance: float
    shuffled: float | None  # mean score on shuffled labels (None without permutations)
    shuffled_high: float | None  # their 95th percentile
    p_value: float | None  # permutation test, floor 1 / (1 + permutations)
    p_analytic: float | None  # one-sided: binomial (accuracy vs chance), Pearson r (predictions vs labels)
    n: int  # rows (problems) scored
    n_classes: int | None  # classification: classes kept
    folds: int
    metric: str  # r2 | accuracy
    estimator: str  # ridge | ridge-classifier | logistic
    dropped_classes: tuple[str, ...] = field(default=())  # classes with fewer members than folds


@dataclass(frozen=True)
class ProbeSkipped:
    """A probe that was not fitted, and why (too few problems, fewer than 2 classes, constant target)."""

    reason: str


def group_folds(groups: np.ndarray, folds: int) -> list[Split]:
    """The (train, test) row indices every probe of `fit_probe` uses: GroupKFold over the groups
    (problems), min(folds, number of groups) splits, so a group's rows are all in train or all in test."""
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(groups)
    n_splits = min(folds, len(np.unique(groups)))
    if n_splits < 2:
        raise ValueError(f"grouped folds need at least 2 groups, got {len(np.unique(groups))}")
    dummy = np.zeros((len(groups), 1))
    return [(train, test) for train, test in GroupKFold(n_splits=n_splits).split(dummy, groups=groups)]


def signed_log(values: np.ndarray) -> np.ndarray:
    """sign(v) * log1p(|v|): what `value` probes regress on."""
    values = np.asarray(values, dtype=np.float64)
    return np.sign(values) * np.log1p(np.abs(values))


def fit_probe(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    kind: Kind,
    folds: int = 5,
    permutations: int = 20,
    seed: int = 0,
    n_boot: int = N_BOOT,
    alphas: Sequence[float] = RIDGE_ALPHAS,
    cs: Sequence[float] = LOGISTIC_CS,
    classifier: str = "ridge",
) -> ProbeScore | ProbeSkipped:
    """Fit and score one linear probe from features X [n, d] to labels y [n], folds grouped by `groups`.

    regression: StandardScaler + RidgeCV(alphas) (alpha chosen by efficient leave-one-out within each
    training fold), out-of-fold R^2, interval by a percentile bootstrap over groups. classification
    (`classifier="ridge"`, the default): StandardScaler + RidgeCV on +-1 one-hot targets, the predicted class
    the largest output (sklearn's RidgeClassifier; alpha per output by leave-one-out within each training
    fold), out-of-fold accuracy, Wilson interval; `classifier="logistic"`: StandardScaler +
    LogisticRegression (C from `cs`; several: LogisticRegressionCV over grouped inner folds), out-of-fold
    accuracy, Wilson interval. The permutation baseline refits the same probe, with
    the same folds, on labels permuted across all rows (so across problems: sklearn's
    permutation_test_score would permute within groups, a no-op with one row per problem).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    groups = np.asarray(groups)
    if not (len(X) == len(y) == len(groups)):
        raise ValueError(f"fit_probe: X has {len(X)} rows, y {len(y)}, groups {len(groups)}")
    dropped: tuple[str, ...] = ()
    if kind == "classification":
        labels, counts = np.unique(y.astype(str), return_counts=True)
        keep_labels = labels[counts >= folds]
        dropped = tuple(str(c) for c in labels[counts < folds])
        keep = np.isin(y.astype(str), keep_labels)
        X, y, groups = X[keep], y.astype(str)[keep], groups[keep]
        if len(keep_labels) < 2:
            return ProbeSkipped(
                f"{len(keep_labels)} class(es) with >= {folds} members"
                + (f" (dropped {', '.join(dropped)})" if dropped else "")
            )
    elif kind == "regression":
        y = y.astype(np.float64)
        finite = np.isfinite(y)
        X, y, groups = X[finite], y[finite], groups[finite]
    else:
        raise ValueError(f"kind must be regression or classification, got {kind!r}")
    n_groups = len(np.unique(groups))
    if n_groups < 2 * folds:
        return ProbeSkipped(f"{n_groups} problems, fewer than 2 x {folds} folds")
    if kind == "regression" and np.ptp(y) == 0:
        return ProbeSkipped("the target is constant")
    splits = group_folds(groups, folds)
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(len(y)) for _ in range(permutations)]
    if kind == "regression":
        scores, low, high, predicted = _ridge_scores(X, y, groups, splits, orders, alphas, n_boot, rng)
        chance, n_classes, metric, estimator = 0.0, None, "r2", "ridge"
        p_analytic = _pearson_p(predicted, y)
    else:
        if classifier == "ridge":
            scores, low, high = _ridge_classifier_scores(X, y, splits, orders, alphas)
        elif classifier == "logistic":
            scores, low, high = _logistic_scores(X, y, groups, splits, orders, cs)
        else:
            raise ValueError(f"classifier must be one of {', '.join(CLASSIFIERS)}, got {classifier!r}")
        chance = float(np.unique(y, return_counts=True)[1].max() / len(y))
        n_classes, metric = len(np.unique(y)), "accuracy"
        estimator = "ridge-classifier" if classifier == "ridge" else "logistic"
        p_analytic = _binomial_p(scores[0], len(y), chance)
    score, null = float(scores[0]), scores[1:]
    return ProbeScore(
        score=score,
        ci_low=low,
        ci_high=high,
        chance=chance,
        shuffled=float(null.mean()) if len(null) else None,
        shuffled_high=float(np.percentile(null, 95)) if len(null) else None,
        p_value=float((1 + np.sum(null >= score)) / (1 + len(null))) if len(null) else None,
        p_analytic=p_analytic,
        n=len(y),
        n_classes=n_classes,
        folds=len(splits),
        metric=metric,
        estimator=estimator,
        dropped_classes=dropped,
    )


def _ridge_scores(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    splits: list[Split],
    orders: list[np.ndarray],
    alphas: Sequence[float],
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float, float, np.ndarray]:
    """Out-of-fold R^2 of the labels and of each permutation (one multi-target fit per fold: RidgeCV
    picks each column's alpha alone), and the bootstrap interval of the first."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Y = np.column_stack([y, *(y[order] for order in orders)])
    predicted = np.zeros_like(Y)
    for train, test in splits:
        probe = make_pipeline(StandardScaler(), RidgeCV(alphas=list(alphas), alpha_per_target=True))
        probe.fit(X[train], Y[train])
        predicted[test] = probe.predict(X[test]).reshape(len(test), -1)
    sse = ((Y - predicted) ** 2).sum(axis=0)
    sst = ((Y - Y.mean(axis=0)) ** 2).sum(axis=0)
    scores = 1 - sse / sst
    low, high = _r2_interval(y, predicted[:, 0], groups, n_boot, rng)
    return scores, low, high, predicted[:, 0]


def _pearson_p(predicted: np.ndarray, y: np.ndarray) -> float | None:
    """One-sided p of a positive Pearson correlation between out-of-fold predictions and labels (scipy)."""
    from scipy.stats import pearsonr

    if np.ptp(predicted) == 0:
        return 1.0  # constant predictions carry nothing
    return float(pearsonr(predicted, y, alternative="greater").pvalue)


def _binomial_p(accuracy: float, n: int, chance: float) -> float:
    """One-sided exact binomial p of `accuracy` x n out-of-fold hits against the chance rate (scipy)."""
    from scipy.stats import binomtest

    return float(binomtest(round(accuracy * n), n, min(chance, 1.0), alternative="greater").pvalue)


def _r2_interval(
    y: np.ndarray, predicted: np.ndarray, groups: np.ndarray, n_boot: int, rng: np.random.Generator
) -> tuple[float, float]:
    """95% percentile bootstrap of the out-of-fold R^2, resampling groups (problems) with replacement.

    R^2 = 1 - SSE / SST is built from per-group sums (SSE, sum y, sum y^2, rows), so each resample is a
    matrix product of resample counts with those sums.
    """
    _, codes = np.unique(groups, return_inverse=True)
    g = codes.max() + 1
    sums = np.column_stack(
        [
            np.bincount(codes, (y - predicted) ** 2, g),
            np.bincount(codes, y, g),
            np.bincount(codes, y * y, g),
            np.bincount(codes, minlength=g).astype(np.float64),
        ]
    )
    draws = rng.integers(0, g, size=(n_boot, g)) + (np.arange(n_boot) * g)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_boot * g).reshape(n_boot, g).astype(np.float64)
    sse, sy, syy, rows = (counts @ sums).T
    sst = syy - sy * sy / rows
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1 - sse / sst, np.nan)
    low, high = np.nanpercentile(r2, [2.5, 97.5])
    return float(low), float(high)


def _ridge_classifier_scores(
    X: np.ndarray,
    y: np.ndarray,
    splits: list[Split],
    orders: list[np.ndarray],
    alphas: Sequence[float],
) -> tuple[np.ndarray, float, float]:
    """Out-of-fold accuracy of the labels and of each permutation, and the Wilson interval of the first.

    Each label column (the labels, then each permutation) becomes C columns of +-1 (one per class); one
    multi-target RidgeCV per fold fits them all (each output its own alpha), and a row's class is the
    argmax of its column block: sklearn's RidgeClassifier for every column at the cost of one fit.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from statsmodels.stats.proportion import proportion_confint

    classes, codes = np.unique(y, return_inverse=True)
    n_classes = len(classes)
    columns = np.column_stack([codes, *(codes[order] for order in orders)])  # [n, 1 + permutations]
    correct = np.zeros(columns.shape[1])
    for train, test in splits:
        onehot = -np.ones((len(train), columns.shape[1], n_classes))
        np.put_along_axis(onehot, columns[train][:, :, None], 1.0, axis=2)
        probe = make_pipeline(StandardScaler(), RidgeCV(alphas=list(alphas), alpha_per_target=True))
        probe.fit(X[train], onehot.reshape(len(train), -1))
        out = probe.predict(X[test]).reshape(len(test), columns.shape[1], n_classes)
        correct += (out.argmax(axis=2) == columns[test]).sum(axis=0)
    scores = correct / len(y)
    low, high = proportion_confint(int(correct[0]), len(y), alpha=0.05, method="wilson")
    return scores, float(low), float(high)


def _logistic_scores(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    splits: list[Split],
    orders: list[np.ndarray],
    cs: Sequence[float],
) -> tuple[np.ndarray, float, float]:
    """Out-of-fold accuracy of the labels and of each permutation, and the Wilson interval of the first."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from statsmodels.stats.proportion import proportion_confint

    columns = [y, *(y[order] for order in orders)]
    correct = np.zeros(len(columns))
    for train, test in splits:
        inner = None
        if len(cs) > 1:
            inner = group_folds(groups[train], 3)
        for c, labels in enumerate(columns):
            train_labels = labels[train]
            if len(np.unique(train_labels)) < 2:  # a shuffled fold may hold one class: predict it
                correct[c] += np.sum(labels[test] == train_labels[0])
                continue
            model: Any = (
                LogisticRegression(C=cs[0], max_iter=1000)
                if inner is None
                else LogisticRegressionCV(Cs=list(cs), cv=inner, max_iter=1000)
            )
            probe = make_pipeline(StandardScaler(), model)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", UserWarning)  # an inner fold without some class
                probe.fit(X[train], train_labels)
            correct[c] += np.sum(probe.predict(X[test]) == labels[test])
    scores = correct / len(y)
    low, high = proportion_confint(int(correct[0]), len(y), alpha=0.05, method="wilson")
    return scores, float(low), float(high)


# --- a run's probes -----------------------------------------------------------------------------------
def probe_settings(
    targets: Sequence[str],
    steps: Sequence[int],
    positions: Sequence[int] | None,
    layers: Sequence[int] | None,
    folds: int,
    permutations: int,
    seed: int,
    n_boot: int = N_BOOT,
    classifier: str = "ridge",
) -> dict[str, Any]:
    """What a probe set was fitted with (stored as probe_results.settings; its hash names the set)."""
    return {
        "version": SETTINGS_VERSION,
        "targets": list(targets),
        "steps": sorted(steps),
        "positions": None if positions is None else sorted(positions),
        "layers": None if layers is None else sorted(layers),
        "folds": folds,
        "folds_grouped_by": "problem",
        "permutations": permutations,
        "permuted": "labels across problems, same folds",
        "seed": seed,
        "n_boot": n_boot,
        "value_transform": VALUE_TRANSFORM,
        "regression": {"estimator": "StandardScaler + RidgeCV", "alphas": list(RIDGE_ALPHAS)},
        "classification": (
            {
                "estimator": "StandardScaler + RidgeCV on +-1 one-hot targets, argmax",
                "alphas": list(RIDGE_ALPHAS),
            }
            if classifier == "ridge"
            else {"estimator": "StandardScaler + LogisticRegression", "cs": list(LOGISTIC_CS)}
        ),
        "intervals": {"r2": "percentile bootstrap over problems", "accuracy": "wilson"},
    }


def probe_set_id(settings: dict[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def probe_run(
    store_or_path: Warehouse | str | os.PathLike,
    run: str = "latest",
    positions: Iterable[int] | None = None,
    layers: Iterable[int] | None = None,
    targets: Iterable[str] = TARGETS,
    steps: Iterable[int] | None = None,
    folds: int = 5,
    permutations: int = 20,
    seed: int = 0,
    on_skip: Callable[[str], None] | None = None,
    classifier: str = "ridge",
) -> pl.DataFrame:
    """Fit every (target, step, position, layer) probe on a run's states; write and return the rows.

    The rows replace the run's probe set of the same settings in probe_results (one transaction), so a
    rerun with the same settings leaves no duplicates. `on_skip` is called once per (target, step) and
    reason with a line saying what was skipped where. Raises NoStates when the run recorded no states.
    `classifier`: ridge (the default) or logistic, for the operation and n_steps probes.
    """
    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {', '.join(CLASSIFIERS)}, got {classifier!r}")
    targets = tuple(targets)
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        raise ValueError(f"unknown probe target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    if permutations < 0:
        raise ValueError(f"permutations must be >= 0, got {permutations}")
    step_list = sorted(set(STEPS if steps is None else steps))
    bad_steps = [s for s in step_list if s < 1]
    if bad_steps:
        raise ValueError(f"steps count from 1, got {bad_steps[0]}")
    pos_list = None if positions is None else sorted(set(positions))
    layer_list = None if layers is None else sorted(set(layers))
    store = store_or_path if isinstance(store_or_path, Warehouse) else open_warehouse(store_or_path)
    try:
        handle = store.run(run)
        with handle.reader() as con:
            states = _read_states(con, handle.run_id, pos_list, layer_list)
            labels = _read_labels(con, handle.run_id)
        settings = probe_settings(
            targets, step_list, pos_list, layer_list, folds, permutations, seed, classifier=classifier
        )
        probe_set = probe_set_id(settings)
        rows, skipped = _fit_all(states, labels, targets, step_list, folds, permutations, seed, classifier)
        frame = _rows_frame(rows, handle.run_id, probe_set, settings, permutations)
        store.replace_probe_results(handle.run_id, probe_set, frame)
    finally:
        if store is not store_or_path:
            store.close()
    if on_skip is not None:
        for (target, step, reason), count in skipped.items():
            what = target if step is None else f"{target} step {step}"
            on_skip(f"skipped {what} at {count} (position, layer): {reason}")
    return frame


@dataclass
class _States:
    problem_ids: np.ndarray  # the distinct problems with states, sorted
    blocks: list[tuple[int, int, np.ndarray, np.ndarray]]  # (position, layer, problem codes, X [n, d])


def _read_states(con: Any, run_id: str, positions: list[int] | None, layers: list[int] | None) -> _States:
    where = "run_id = ?"
    params: list[Any] = [run_id]
    if positions is not None:
        where += f" AND position IN ({', '.join('?' * len(positions))})"
        params += positions
    if layers is not None:
        where += f" AND layer IN ({', '.join('?' * len(layers))})"
        params += layers
    table = con.execute(
        f"SELECT position, layer, problem_id, state FROM states WHERE {where} "
        "ORDER BY position, layer, problem_id",
        params,
    ).to_arrow_table()
    if table.num_rows == 0:
        any_states = con.execute("SELECT count(*) FROM states WHERE run_id = ?", [run_id]).fetchall()[0][0]
        if not any_states:
            raise NoStates(f"run {run_id} recorded no states; run it again with --states")
        raise ValueError(
            f"run {run_id} has no states at the positions and layers asked for; "
            f"it has {_coverage(con, run_id)}"
        )
    X = vector_matrix(table.column("state"), f"run {run_id}: states")
    position = table.column("position").to_numpy()
    layer = table.column("layer").to_numpy()
    ids = np.asarray(table.column("problem_id").cast(pa.string()).to_numpy(zero_copy_only=False))
    problem_ids, codes = np.unique(ids, return_inverse=True)
    key = position.astype(np.int64) * 10_000 + layer
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)]
    blocks = [
        (int(position[a]), int(layer[a]), codes[a:b], X[a:b]) for a, b in zip(starts, ends, strict=True)
    ]
    return _States(problem_ids, blocks)


def _coverage(con: Any, run_id: str) -> str:
    positions, layers = con.execute(
        "SELECT list(DISTINCT position ORDER BY position), list(DISTINCT layer ORDER BY layer) "
        "FROM states WHERE run_id = ?",
        [run_id],
    ).fetchall()[0]
    return f"positions {positions} and layers {layers}"


def _read_labels(con: Any, run_id: str) -> dict[str, pl.DataFrame]:
    """The targets' labels of the run's problems with states, from int_problem_steps and problems."""
    with_states = "SELECT DISTINCT problem_id FROM states WHERE run_id = $run"
    steps = con.execute(
        f"SELECT problem_id, step, value, op FROM int_problem_steps WHERE problem_id IN ({with_states})",
        {"run": run_id},
    ).pl()
    n_steps = con.execute(
        "SELECT p.problem_id, coalesce(p.n_steps, s.n_annotated)::VARCHAR AS n_steps FROM problems p "
        "LEFT JOIN (SELECT problem_id, max(n_annotated) AS n_annotated FROM int_problem_steps "
        "GROUP BY problem_id) s USING (problem_id) "
        f"WHERE p.problem_id IN ({with_states}) AND coalesce(p.n_steps, s.n_annotated) IS NOT NULL",
        {"run": run_id},
    ).pl()
    return {"steps": steps, "n_steps": n_steps}


def _fit_all(
    states: _States,
    labels: dict[str, pl.DataFrame],
    targets: tuple[str, ...],
    steps: list[int],
    folds: int,
    permutations: int,
    seed: int,
    classifier: str = "ridge",
) -> tuple[list[dict[str, Any]], dict[tuple[str, int | None, str], int]]:
    """Every probe: the labels of each (target, step) laid out by problem code once, then one fit per
    (position, layer) block."""
    universe = states.problem_ids
    wanted: list[tuple[str, int | None, np.ndarray, np.ndarray]] = []  # target, step, labels, has label

    def by_code(frame: pl.DataFrame, column: str, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
        index = np.searchsorted(universe, frame["problem_id"].to_numpy())
        out = (
            np.zeros(len(universe), dtype=dtype)
            if dtype is not object
            else np.full(len(universe), "", object)
        )
        present = np.zeros(len(universe), dtype=bool)
        values = frame[column].to_numpy()
        ok = frame[column].is_not_null().to_numpy()
        out[index[ok]] = values[ok]
        present[index[ok]] = True
        return out, present

    for target in targets:
        if target == "n_steps":
            y, present = by_code(labels["n_steps"], "n_steps", object)
            wanted.append((target, None, y, present))
            continue
        for step in steps:
            frame = labels["steps"].filter(pl.col("step") == step)
            if target == "value":
                y, present = by_code(frame, "value", np.float64)
                y = signed_log(y)
            else:
                y, present = by_code(frame, "op", object)
            wanted.append((target, step, y, present))
    rows: list[dict[str, Any]] = []
    skipped: dict[tuple[str, int | None, str], int] = {}
    for position, layer, codes, X in states.blocks:
        for target, target_step, y, present in wanted:
            mask = present[codes]
            result = fit_probe(
                X[mask],
                y[codes][mask],
                codes[mask],
                KINDS[target],
                folds,
                permutations,
                seed,
                classifier=classifier,
            )
            if isinstance(result, ProbeSkipped):
                key = (target, target_step, result.reason)
                skipped[key] = skipped.get(key, 0) + 1
                continue
            rows.append(
                {
                    "target": target,
                    "step": target_step,
                    "position": position,
                    "layer": layer,
                    "estimator": result.estimator,
                    "metric": result.metric,
                    "score": result.score,
                    "ci_low": result.ci_low,
                    "ci_high": result.ci_high,
                    "chance": result.chance,
                    "shuffled": result.shuffled,
                    "shuffled_high": result.shuffled_high,
                    "p_value": result.p_value,
                    "p_analytic": result.p_analytic,
                    "n": result.n,
                    "n_classes": result.n_classes,
                    "folds": result.folds,
                }
            )
    return rows, skipped


_FRAME_SCHEMA: dict[str, Any] = {
    "run_id": pl.String,
    "probe_set": pl.String,
    "target": pl.String,
    "step": pl.Int16,
    "position": pl.Int16,
    "layer": pl.Int16,
    "estimator": pl.String,
    "metric": pl.String,
    "score": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "chance": pl.Float64,
    "shuffled": pl.Float64,
    "shuffled_high": pl.Float64,
    "p_value": pl.Float64,
    "p_analytic": pl.Float64,
    "n": pl.Int32,
    "n_classes": pl.Int16,
    "folds": pl.Int16,
    "permutations": pl.Int32,
    "settings": pl.String,
    "created_at": pl.Datetime("us"),
}


def _rows_frame(
    rows: list[dict[str, Any]], run_id: str, probe_set: str, settings: dict[str, Any], permutations: int
) -> pl.DataFrame:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    text = json.dumps(settings, sort_keys=True)
    full = [
        {
            "run_id": run_id,
            "probe_set": probe_set,
            **row,
            "permutations": permutations,
            "settings": text,
            "created_at": now,
        }
        for row in rows
    ]
    return (
        pl.DataFrame(full, schema=_FRAME_SCHEMA, orient="row") if full else pl.DataFrame(schema=_FRAME_SCHEMA)
    )


# --- text -----------------------------------------------------------------------------------------------
def best_probes(store_or_path: Warehouse | str | os.PathLike, run: str = "latest") -> pl.DataFrame:
    """The view probe_best for a run: the best-scoring probe of each (target, step) of its newest probe set,
    with chance, the shuffled baseline and the Holm-adjusted p over the whole set (the SQL is the one
    statement of which probe is best; ties go to the lower layer, then the lower position)."""
    store = (
        store_or_path
        if isinstance(store_or_path, Warehouse)
        else open_warehouse(store_or_path, read_only=True)
    )
    try:
        best = store.run(run).view("probe_best")
    finally:
        if store is not store_or_path:
            store.close()
    order = {t: i for i, t in enumerate(TARGETS)}
    return (
        best.with_columns(pl.col("target").replace_strict(order, default=len(order)).alias("_order"))
        .sort(["_order", "step"], nulls_last=True)
        .drop("_order")
    )


def format_probes(best: pl.DataFrame, fitted: pl.DataFrame | None = None) -> str:
    """The best probe per target and step (`best_probes`), one line each: where, score [interval], chance,
    shuffled, the permutation p and its Holm adjustment over the set. `fitted`: the rows `probe_run`
    wrote (their count, folds and permutations head the table)."""
    if best.is_empty():
        return "no probes were fitted\n"
    head = f"probe set {best['probe_set'][0]}: best probe per target and step"
    if fitted is not None and not fitted.is_empty():
        head += (
            f" of {fitted.height} probes ({fitted['folds'][0]} grouped folds, "
            f"{fitted['permutations'][0]} permutations)"
        )
    lines = [
        head,
        f"{'target':<10} {'step':>4} {'where':>9} {'metric':<8} {'score':>6} {'95% interval':>16} "
        f"{'chance':>6} {'shuffled':>8} {'p':>7} {'p_holm':>7} {'n':>5}",
    ]

    def num(value: float | None, width: int = 6) -> str:
        return f"{value:>{width}.3f}" if value is not None else f"{'-':>{width}}"

    def pval(value: float | None, width: int = 7) -> str:
        if value is None:
            return f"{'-':>{width}}"
        return f"{value:>{width}.1e}" if value < 0.001 else f"{value:>{width}.3f}"

    for row in best.iter_rows(named=True):
        where = f"{row['position_name']}/L{row['layer']}"
        interval = f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
        lines.append(
            f"{row['target']:<10} {row['step'] if row['step'] is not None else '-':>4} {where:>9} "
            f"{row['metric']:<8} {num(row['score'])} {interval:>16} {num(row['chance'])} "
            f"{num(row['shuffled'], 8)} {pval(row['p_value'])} {pval(row['p_holm'])} {row['n']:>5}"
        )
    lines.append(
        "where: position/layer (L-1: the vector fed in); p: permutation test on labels shuffled across "
        "problems; p_holm: the analytic p (binomial, Pearson) Holm-adjusted over every probe of the set. A "
        "probe shows information linearly present in a state, not that the model uses it."
    )
    return "\n".join(lines) + "\n"


__all__ = [
    "NoStates",
    "ProbeScore",
    "ProbeSkipped",
    "best_probes",
    "fit_probe",
    "format_probes",
    "group_folds",
    "probe_run",
    "signed_log",
]
