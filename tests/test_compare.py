"""`compare RUN_A RUN_B`: both failure rates and B - A per thought and condition on shared problems,
and flips."""

from __future__ import annotations

import json
import re

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


# --- the settings diff and its warnings, on real runs (issue 16 item 5; slow: the runs take ~20 s) ---------
FAST = ["--problems", "4", "--methods", "zero,gauss", "--sigmas", "1.0", "--attention", "none"]
OTHER_WEIGHTS = "f" * 64


def run_cli(db, *flags: str) -> str:
    out = CliRunner().invoke(cli, ["run", *flags, "--db", db, "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)["run_id"]


def copy_with_weights(db, source: str, run_id: str, weights: str) -> None:
    """Run `source` again as `run_id`, every row and setting the same but weights_sha256."""
    store = wh.open_warehouse(db)
    try:
        with store.reader() as con:
            row = con.execute("SELECT * FROM runs WHERE run_id = ?", [source]).pl().row(0, named=True)
            problems = con.execute(
                "SELECT * FROM problems WHERE problem_id IN "
                "(SELECT problem_id FROM run_problems WHERE run_id = ?)",
                [source],
            ).pl()
            results = con.execute("SELECT * EXCLUDE (run_id) FROM results WHERE run_id = ?", [source]).pl()
        config = {**json.loads(row["config_json"]), "weights_sha256": weights}
        keep = ("model_name", "n_layers", "n_heads", "patch_layers", "methods", "sigmas", "seed")
        run = store.begin_run(
            config,
            run_id=run_id,
            weights_sha256=weights,
            dataset_name=row["dataset_name"],
            dataset_hash=row["dataset_hash"],
            **{k: row[k] for k in keep},
        )
        store.append_problems(run, problems, results)
        store.finish_run(run)
    finally:
        store.close()


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Four gpt2-tiny runs through `run` (4 problems, zero and gauss at sigma 1, no attention) and a copy
    of the first with other weights: {name: run id}, and the warehouse."""
    db = str(tmp_path_factory.mktemp("compare_real") / "w")
    ids = {
        "base": run_cli(db, *FAST),
        "seed1": run_cli(db, *FAST, "--seed", "1"),
        "rms": run_cli(db, *FAST, "--noise-scale", "rms"),
        "zero": run_cli(db, "--problems", "4", "--methods", "zero", "--attention", "none"),
    }
    copy_with_weights(db, ids["base"], "other-weights", OTHER_WEIGHTS)
    ids["weights"] = "other-weights"
    return db, ids


def compare_cli(db, a: str, b: str) -> tuple[dict, str]:
    """`compare A B --json` and `compare A B` through the CLI: (payload, text)."""
    outs = [
        CliRunner().invoke(cli, ["compare", a, b, "--boot", "100", "--db", db, *j]) for j in (["--json"], [])
    ]
    for out in outs:
        assert out.exit_code == 0, out.output
    return json.loads(outs[0].stdout), outs[1].stdout


def differing(payload: dict) -> dict:
    return {name: (v["a"], v["b"]) for name, v in payload["config"].items() if not v["same"]}


def block(text: str) -> list[str]:
    """The settings block of the text: from `same:` up to the `shared problems` line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("same:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("shared problems"))
    return lines[start:end]


@pytest.mark.slow  # the `real` runs: 4 gpt2-tiny runs through `run` (about 20 s)
def test_compare_diff_shows_a_seed_difference_and_nothing_else(real):
    db, ids = real
    payload, text = compare_cli(db, ids["base"], ids["seed1"])
    weights = vd.rows(db, "SELECT weights_sha256, dataset_hash FROM runs WHERE run_id = ?", [ids["base"]])[0]
    assert list(payload["config"]) == [
        "model",
        "weights_sha256",
        "dataset",
        "dataset_hash",
        "patch_layers",
        "methods",
        "sigmas",
        "noise_scale",
        "seed",
        "problem_seed",
        "attention",
    ]
    assert differing(payload) == {"seed": (0, 1)}
    same = {name: v["a"] for name, v in payload["config"].items() if v["same"]}
    assert same == {
        "model": "gpt2-tiny",
        "weights_sha256": weights["weights_sha256"],
        "dataset": "synthetic",
        "dataset_hash": weights["dataset_hash"],
        "patch_layers": [3],  # gpt2-tiny has 6 layers: the middle one
        "methods": ["gauss", "zero"],
        "sigmas": [1.0],
        "noise_scale": "absolute",
        "problem_seed": 0,
        "attention": "none",
    }
    assert payload["warnings"] == [] and "warning" not in text  # another seed is the ordinary comparison
    assert block(text) == [
        f"same: model gpt2-tiny; weights sha256 {weights['weights_sha256'][:12]}; dataset synthetic; "
        f"dataset hash {weights['dataset_hash'][:12]};",
        "  patch layers 3; methods gauss,zero; sigmas 1.0; noise scale absolute; problem seed 0; "
        "attention none",
        "differs:",
        "  seed  A 0  B 1",
    ]


NOISE_WARNING = (
    "noise scale differs (A absolute, B rms): the same gauss sigma is different noise in the two runs "
    "(rms: sigma x RMS of h)"
)


@pytest.mark.slow  # the `real` runs: 4 gpt2-tiny runs through `run` (about 20 s)
def test_absolute_against_rms_noise_is_a_warning(real):
    db, ids = real
    payload, text = compare_cli(db, ids["base"], ids["rms"])
    assert differing(payload) == {"noise_scale": ("absolute", "rms")}
    assert payload["warnings"] == [{"setting": "noise_scale", "message": NOISE_WARNING}]
    assert block(text)[-3:] == ["differs:", "  noise scale  A absolute  B rms", f"warning: {NOISE_WARNING}"]
    assert text.count("warning:") == 1


@pytest.mark.slow  # the `real` runs: 4 gpt2-tiny runs through `run` (about 20 s)
def test_other_weights_are_a_warning(real):
    db, ids = real
    payload, text = compare_cli(db, ids["weights"], ids["base"])
    base = vd.rows(db, "SELECT weights_sha256 FROM runs WHERE run_id = ?", [ids["base"]])[0]["weights_sha256"]
    assert differing(payload) == {"weights_sha256": (OTHER_WEIGHTS, base)}
    message = (
        f"different weights (weights_sha256 A {'f' * 12}, B {base[:12]}): another model or checkpoint; "
        "each paired condition corrupts another network"
    )
    assert payload["warnings"] == [{"setting": "weights_sha256", "message": message}]
    assert block(text)[-3:] == [
        "differs:",
        f"  weights sha256  A {'f' * 12}  B {base[:12]}",
        f"warning: {message}",
    ]


@pytest.mark.slow  # the `real` runs: 4 gpt2-tiny runs through `run` (about 20 s)
def test_gauss_settings_of_a_run_without_gauss_are_blank_and_warn_of_nothing(real):
    db, ids = real
    payload, text = compare_cli(db, ids["base"], ids["zero"])
    assert differing(payload) == {
        "methods": (["gauss", "zero"], ["zero"]),
        "sigmas": ([1.0], None),  # the engine stored its default sigmas: not a setting of a zero-only run
        "noise_scale": ("absolute", None),
    }
    assert payload["warnings"] == [] and "warning:" not in text
    assert block(text)[-4:] == [
        "differs:",
        "  methods      A gauss,zero  B zero",
        "  sigmas       A 1.0         B -",
        "  noise scale  A absolute    B -",
    ]


@pytest.mark.slow  # the `real` runs: 4 gpt2-tiny runs through `run` (about 20 s)
def test_report_lineage_shows_noise_scale_and_sigmas_of_gauss_runs_only(real, tmp_path):
    db, ids = real
    out = tmp_path / "report"
    args = ["charts", "--run", ids["rms"], "--vs", ids["zero"], "--out", str(out), "--format", "html"]
    result = CliRunner().invoke(cli, [*args, "--db", db])
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    meta = page[page.index('<table class="meta">') :]
    meta = meta[: meta.index("</table>")]

    def row(label: str) -> str:
        found = re.search(rf'<tr><th scope="row">{re.escape(label)}</th>(.*?)</tr>', meta)
        assert found, label
        return found.group(1)

    blank = '<td class="null">–</td>'
    assert row("noise scale (gauss)") == f"<td>rms</td>{blank}"
    assert row("sigmas (gauss)") == f"<td>1.0</td>{blank}"
    assert row("methods") == "<td>zero, gauss</td><td>zero</td>"
    assert row("seed") == '<td class="num">0</td><td class="num">0</td>'
    assert row("problem seed") == '<td class="num">0</td><td class="num">0</td>'
    assert row("attention capture") == "<td>none</td><td>none</td>"


def test_hand_written_runs_diff_what_they_store_and_warn_of_nothing_unknown(ab):
    payload, text = ab
    # views_data's runs store no weights, dataset or config settings: only the model and patch layers differ
    assert differing(payload) == {"model": ("gpt2-tiny", "other"), "patch_layers": ([1], [0])}
    assert payload["config"]["weights_sha256"] == {"a": None, "b": None, "same": True}
    assert payload["warnings"] == [] and "warning:" not in text
    assert block(text)[-3:] == [
        "differs:",
        "  model         A gpt2-tiny  B other",
        "  patch layers  A 1          B 0",
    ]
