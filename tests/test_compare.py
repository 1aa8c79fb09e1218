"""`compare RUN_A RUN_B`: both failure rates and B - A per thought and condition on shared problems,
and flips."""

from __future__ import annotations

import json

import pytest
import views_data as vd
from click.testing import CliRunner
from views_data import PID, RUN_A, RUN_B, RUN_C

import warehouse as wh
from analysis.compare import RunComparison, compare_runs, format_comparison
from cli import cli


def compared(db, a: str, b: str, n_boot: int) -> tuple[dict, str]:
    """compare_runs on run handles: (its --json payload, its text)."""
    with wh.open_warehouse(db, read_only=True) as store:
        result = compare_runs(store.run(a), store.run(b), n_boot=n_boot)
    assert isinstance(result, RunComparison)
    return result.to_dict(), format_comparison(result)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return vd.build(tmp_path_factory.mktemp("compare") / "w")


@pytest.fixture(scope="module")
def ab(db):
    return compared(db, RUN_A, RUN_B, n_boot=500)


def test_rates_and_differences_on_shared_problems(ab):
    payload, text = ab
    # A (gpt2-tiny, layer 1) has P1..P4, B (another model, layer 0) has P1, P2, P5: they share P1 and P2.
    assert payload["problems"] == {"a": 4, "b": 3, "shared": 2}
    assert payload["same_convention"] and not payload["patch_layers_paired"]
    t0 = {r["thought"]: r for r in payload["by_thought"]}[0]
    # T0, zero + gauss: A fails P1 twice and P2 once of 4 trials; B's only baseline-correct shared problem
    # is P1, failing at zero only: 1 of 2.
    assert (t0["n_a"], t0["failures_a"], t0["n_b"], t0["failures_b"]) == (4, 3, 2, 1)
    assert (t0["failure_rate_a"], t0["failure_rate_b"], t0["difference"]) == pytest.approx((0.75, 0.5, -0.25))
    # resamples: {P1, P1} gives 1/2 - 2/2 = -0.5, {P1, P2} -0.25, {P2, P2} leaves B no trial (undefined)
    assert (t0["diff_low"], t0["diff_high"]) == pytest.approx((-0.5, -0.25))
    cells = {(r["thought"], r["condition"]): r for r in payload["by_condition"]}
    assert len(cells) == 12  # clean exists only in A: not compared
    gauss = cells[0, "gauss_0.5"]
    assert (gauss["failure_rate_a"], gauss["failure_rate_b"], gauss["difference"]) == (0.5, 0.0, -0.5)
    assert (gauss["mean_kl_a"], gauss["mean_kl_b"]) == pytest.approx((0.5, 1.0))
    assert cells[1, "zero"]["difference"] == -0.5 and cells[3, "zero"]["difference"] == 0.0
    assert "shared problems 2" in text and "B - A" in text


def test_flips_between_the_runs(ab):
    payload, text = ab
    assert payload["baseline_flips"] == [{"problem_id": PID["P2"], "correct_a": True, "correct_b": False}]
    flips = payload["condition_flips"]
    assert len(flips) == 12  # P1: T0 gauss, T1 zero; P2: all 12 shared conditions but T0 zero and T2 gauss
    assert {(f["thought"], f["condition"]) for f in flips if f["problem_id"] == PID["P1"]} == {
        (0, "gauss_0.5"),
        (1, "zero"),
    }
    assert "Baseline flips between the runs: 1" in text


def test_legacy_runs_are_compared_but_flagged(db):
    payload, text = compared(db, RUN_A, RUN_C, n_boot=200)
    assert not payload["same_convention"] and "different position conventions" in text
    assert payload["problems"]["shared"] == 1


def test_runs_patched_at_several_layers_pair_equal_layers(tmp_path):
    store = wh.open_warehouse(tmp_path / "w", durable=False)
    for run_id, fails in (("multi-x", {(0, "zero")}), ("multi-y", {(0, "zero"), (1, "zero")})):
        layer0 = vd.results_rows(["P1"], ["zero"], {"P1": True}, {"P1": fails}, {}, vd.KL_B, 0)
        layer1 = vd.results_rows(["P1"], ["zero"], {"P1": True}, {"P1": set()}, {}, vd.KL_B, 1)[1:]
        for row in layer1:
            row["condition_id"] += 6
        run = store.begin_run({}, run_id=run_id, patch_layers=[0, 1])
        store.append_problems(run, vd.problem_rows(["P1"]), layer0 + layer1)
    payload, text = compared(store.path, "multi-x", "multi-y", n_boot=200)
    assert payload["patch_layers_paired"]
    # a row per paired layer (0-0 and 1-1; not the 4 pairings), as the chart's panels
    cells = {
        (r["patch_layer_a"], r["patch_layer_b"], r["thought"], r["condition"]): r
        for r in payload["by_condition"]
    }
    assert {k[:2] for k in cells} == {(0, 0), (1, 1)}
    assert (cells[0, 0, 0, "zero"]["n_a"], cells[0, 0, 0, "zero"]["failures_a"]) == (1, 1)
    assert (cells[1, 1, 0, "zero"]["n_a"], cells[1, 1, 0, "zero"]["failures_a"]) == (1, 0)
    assert (cells[0, 0, 1, "zero"]["failure_rate_a"], cells[0, 0, 1, "zero"]["failure_rate_b"]) == (0.0, 1.0)
    assert (cells[1, 1, 1, "zero"]["failure_rate_a"], cells[1, 1, 1, "zero"]["failure_rate_b"]) == (0.0, 0.0)
    assert "patch_layer_a" in text  # the layers are shown when the runs pair several


def test_compare_cli(db):
    out = CliRunner().invoke(cli, ["compare", RUN_A, "run-b", "--boot", "200", "--db", db, "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["run_b"]["run_id"] == RUN_B and payload["run_b"]["model_name"] == "other"
    text = CliRunner().invoke(cli, ["compare", RUN_A, RUN_B, "--boot", "200", "--db", db])
    assert text.exit_code == 0 and "By thought and condition" in text.stdout
    same = CliRunner().invoke(cli, ["compare", RUN_A, RUN_A, "--db", db])
    assert (
        same.exit_code != 0
        and "two different runs" in same.output
        and len(same.output.strip().splitlines()) == 1
    )
