"""Linear probes (analysis/probes.py): the core on planted and null signals, grouped folds, rare classes,
and `probe_run` / `cli.py probe` end to end on a warehouse whose states encode the step values at one
(position, layer) and noise elsewhere."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

import warehouse as wh
from analysis.probes import (
    NoStates,
    ProbeScore,
    ProbeSkipped,
    best_probes,
    fit_probe,
    group_folds,
    probe_run,
    signed_log,
)
from cli import cli

D = 8


def planted(n=120, d=D, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    w = rng.normal(size=d)
    return X, X @ w, rng


def test_planted_linear_value_reaches_high_r2_with_p_at_its_floor():
    X, signal, rng = planted()
    y = signal + 0.05 * rng.normal(size=len(signal))
    result = fit_probe(X, y, np.arange(len(y)), "regression", folds=5, permutations=9, seed=1)
    assert isinstance(result, ProbeScore)
    assert result.metric == "r2" and result.estimator == "ridge" and result.chance == 0.0
    assert result.score > 0.95 and result.ci_low > 0.9 and result.ci_low <= result.score <= result.ci_high
    assert result.p_value == pytest.approx(1 / 10)  # the floor: no shuffled score reaches it
    # the analytic p (Pearson r of out-of-fold predictions and labels) resolves far below that floor
    assert result.p_analytic is not None and result.p_analytic < 1e-20
    assert result.shuffled is not None and result.shuffled < 0.1 and result.n == 120 and result.folds == 5


def test_planted_linear_boundary_reaches_high_accuracy_with_p_at_its_floor():
    X, signal, _ = planted(seed=2)
    y = np.where(signal > 0, "+", "*")
    result = fit_probe(X, y, np.arange(len(y)), "classification", folds=5, permutations=9, seed=1)
    assert isinstance(result, ProbeScore)
    assert result.metric == "accuracy" and result.n_classes == 2
    assert result.score > 0.85 and result.ci_low > result.chance
    assert result.chance == pytest.approx(max(np.mean(y == "+"), np.mean(y == "*")))
    assert result.p_value == pytest.approx(1 / 10)


def test_the_one_fit_ridge_classifier_equals_sklearns_ridge_classifier_column_by_column():
    """The default classifier fits the labels and every permutation as one multi-target ridge: with one alpha
    its out-of-fold accuracies are sklearn's RidgeClassifier refitted on each label column alone."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, signal, rng = planted(n=90, seed=6)
    y = np.select([signal < -0.5, signal > 0.5], ["-", "+"], "*")
    groups = np.arange(len(y))
    result = fit_probe(X, y, groups, "classification", folds=5, permutations=4, seed=3, alphas=(3.0,))
    assert isinstance(result, ProbeScore) and result.estimator == "ridge-classifier"
    order_rng = np.random.default_rng(3)
    orders = [order_rng.permutation(len(y)) for _ in range(4)]
    scores = []
    for labels in (y, *(y[o] for o in orders)):
        correct = 0
        for train, test in group_folds(groups, 5):
            probe = make_pipeline(StandardScaler(), RidgeClassifier(alpha=3.0)).fit(X[train], labels[train])
            correct += int(np.sum(probe.predict(X[test]) == labels[test]))
        scores.append(correct / len(y))
    assert result.score == pytest.approx(scores[0])
    null = np.array(scores[1:])
    assert result.shuffled == pytest.approx(null.mean())
    assert result.p_value == pytest.approx((1 + np.sum(null >= scores[0])) / 5)
    logistic = fit_probe(X, y, groups, "classification", folds=5, permutations=0, classifier="logistic")
    assert isinstance(logistic, ProbeScore) and logistic.estimator == "logistic" and logistic.score > 0.6


def test_labels_independent_of_the_states_stay_at_chance():
    X, _, rng = planted(seed=3)
    groups = np.arange(len(X))
    value = fit_probe(X, rng.normal(size=len(X)), groups, "regression", permutations=19, seed=4)
    assert isinstance(value, ProbeScore)
    assert value.score < 0.1 and value.ci_high < 0.15 and value.p_value is not None and value.p_value > 0.05
    assert value.p_analytic is not None and value.p_analytic > 0.01
    label = fit_probe(X, rng.choice(["+", "-", "*"], len(X)), groups, "classification", permutations=19)
    assert isinstance(label, ProbeScore)
    assert label.ci_low <= label.chance <= label.ci_high
    assert label.p_value is not None and label.p_value > 0.05
    # the binomial test of the out-of-fold hits against chance agrees
    from scipy.stats import binomtest

    hits = round(label.score * label.n)
    assert label.p_analytic == pytest.approx(
        binomtest(hits, label.n, label.chance, alternative="greater").pvalue
    )
    assert label.p_analytic > 0.01


def test_grouped_folds_never_split_a_problem():
    groups = np.repeat(np.arange(13), 3)  # three rows per problem
    splits = group_folds(groups, 5)
    assert len(splits) == 5
    tested = np.concatenate([test for _, test in splits])
    assert sorted(tested) == list(range(len(groups)))  # every row tested once
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
    assert len(group_folds(np.repeat(np.arange(3), 4), 5)) == 3  # min(folds, groups)


def test_grouped_folds_are_the_ones_fit_probe_scores_with():
    """With several rows per problem and a label that only identifies the problem's rows, a probe that
    could see a problem's other rows in training would score; grouped folds keep it at chance."""
    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(30), 4)
    centers = rng.normal(size=(30, D)) * 3
    X = centers[groups] + 0.01 * rng.normal(size=(len(groups), D))
    y = rng.normal(size=30)[groups]  # each problem's own value, unrelated to its center's direction
    result = fit_probe(X, y, groups, "regression", permutations=0)
    assert isinstance(result, ProbeScore) and result.score < 0.2 and result.p_value is None


def test_rare_classes_are_dropped_and_too_few_are_skipped():
    X, signal, _ = planted(seed=6)
    y = np.where(signal > 0, "+", "-").astype(object)
    y[:3] = "/"  # 3 members < 5 folds
    result = fit_probe(X, y, np.arange(len(y)), "classification", permutations=0)
    assert isinstance(result, ProbeScore)
    assert result.dropped_classes == ("/",) and result.n_classes == 2 and result.n == len(y) - 3
    one = np.array(["+"] * (len(y) - 2) + ["-", "-"])
    skipped = fit_probe(X, one, np.arange(len(y)), "classification")
    assert isinstance(skipped, ProbeSkipped) and "1 class" in skipped.reason
    few = fit_probe(X[:9], signal[:9], np.arange(9), "regression")
    assert isinstance(few, ProbeSkipped) and "9 problems" in few.reason


def test_signed_log():
    assert signed_log(np.array([-9.0, 0.0, np.e - 1])).tolist() == pytest.approx([-np.log(10), 0.0, 1.0])


# --- a run with states --------------------------------------------------------------------------------
N_PROBLEMS = 40
PLANTED = (1, 0)  # (position, layer) whose state encodes the steps
POSITIONS, LAYERS = (0, 1), (-1, 0)


def _write_run(path, with_states=True, run_id="probed"):
    rng = np.random.default_rng(7)
    store = wh.open_warehouse(path, durable=False)
    problems, results, states = [], [], {"problem_id": [], "layer": [], "position": [], "state": []}
    for i in range(N_PROBLEMS):
        a, b = int(rng.integers(1, 400)), int(rng.integers(1, 400))
        op = "*" if i % 2 else "-"
        k = int(rng.integers(2, 9))
        second = a + b - k if op == "-" else (a + b) * k
        solution = (
            f"First <<{a}+{b}={a + b}>>{a + b}. Then <<{a + b}{op}{k}={second}>>{second}.\n#### {second}"
        )
        pid = f"p{i:03d}-0000000000"
        problems.append(
            {"problem_id": pid, "question": f"q{i}", "gold_answer": float(second), "solution": solution,
             "n_steps": 2, "source": "test", "source_id": str(i)}
        )  # fmt: skip
        results.append({"problem_id": pid, "condition_id": 0, "method": "baseline", "correct": True})
        for position in POSITIONS:
            for layer in LAYERS:
                state = rng.normal(size=D)
                if (position, layer) == PLANTED:
                    state[:3] = [signed_log(a + b), signed_log(second), 1.0 if op == "*" else -1.0]
                    state[:3] += 0.01 * rng.normal(size=3)
                states["problem_id"].append(pid)
                states["layer"].append(layer)
                states["position"].append(position)
                states["state"].append(state.astype(np.float32).tolist())
    run = store.begin_run({"probe": "test"}, run_id=run_id, model_name="gpt2-tiny", n_layers=1)
    readouts = {"states": pa.table(states)} if with_states else None
    store.append_problems(run, problems, results, readouts=readouts)
    store.finish_run(run)
    store.close()
    return str(path)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return _write_run(tmp_path_factory.mktemp("probes") / "w")


def test_probe_run_finds_the_planted_state_and_the_noise_at_chance(db):
    skips: list[str] = []
    rows = probe_run(db, "probed", steps=[1, 2], permutations=9, on_skip=skips.append)
    assert rows.height == 4 * (2 + 1 + 0)  # value steps 1, 2; operation step 2; n_steps: one class
    assert any("operation step 1" in s and "1 class" in s for s in skips)
    assert any(s.startswith("skipped n_steps") for s in skips)
    best = {(r["target"], r["step"]): r for r in best_probes(db, "probed").iter_rows(named=True)}
    for key in (("value", 1), ("value", 2), ("operation", 2)):
        assert (best[key]["position"], best[key]["layer"]) == PLANTED
        assert best[key]["p_value"] == pytest.approx(0.1) and best[key]["ci_low"] > best[key]["chance"]
    noise = rows.filter((rows["position"] != PLANTED[0]) | (rows["layer"] != PLANTED[1]))
    for r in noise.iter_rows(named=True):
        assert r["score"] < r["chance"] + 0.25 and r["ci_low"] <= r["chance"] + 0.05
    assert rows["probe_set"].n_unique() == 1 and rows["run_id"].unique().to_list() == ["probed"]


def test_a_rerun_replaces_its_probe_set(db):
    first = probe_run(db, "latest", targets=["value"], steps=[1], positions=[1], permutations=2)
    again = probe_run(db, "latest", targets=["value"], steps=[1], positions=[1], permutations=2)
    assert first["probe_set"][0] == again["probe_set"][0] and again.height == 2
    other = probe_run(db, "latest", targets=["value"], steps=[1], positions=[1], permutations=3)
    assert other["probe_set"][0] != first["probe_set"][0]
    store = wh.open_warehouse(db, read_only=True)
    counts = dict(
        store.sql("SELECT probe_set, count(*) AS n FROM probe_results GROUP BY probe_set").iter_rows()
    )
    store.close()
    assert counts[first["probe_set"][0]] == 2 and counts[other["probe_set"][0]] == 2


def test_a_run_without_states_says_so(tmp_path):
    path = _write_run(tmp_path / "w", with_states=False, run_id="plain")
    with pytest.raises(NoStates, match="run plain recorded no states; run it again with --states"):
        probe_run(path, "plain")
    result = CliRunner().invoke(cli, ["probe", "--db", path])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: run plain recorded no states; run it again with --states"


def test_cli_prints_the_best_probe_per_target(db):
    result = CliRunner().invoke(
        cli, ["probe", "--db", db, "--run", "probed", "--steps", "1", "--layers", "0", "--permutations", "4"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("probe set ") and "4 permutations" in lines[0]
    value = next(line for line in lines if line.startswith("value"))
    assert "T1/L0" in value and "r2" in value
    assert "skipped operation step 1" in result.stderr
