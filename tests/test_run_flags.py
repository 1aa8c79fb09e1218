"""`run` flags of issue 16, through the CLI and the API: `--resume RUN` alone resumes under the run's stored
config (flags given beside it must agree), `--seed` draws the corruptions only (`--problem-seed` picks the
problems), and `--layers 3,6,9` patches a list of layers."""

from __future__ import annotations

import json

import pytest
from faults_helpers import cli, fetch, user_error

import engine.runs.local as run_module
import engine.runs.plan as plan_module
from engine.runs.config import RunConfig
from engine.runs.local import execute_run
from engine.runs.plan import select_problems, stratified
from engine.runs.resume import ResumeConflict
from ingest.datasets import distinct, synthetic_problems

FAST = ["--problems", 4, "--methods", "zero,gauss", "--sigmas", "1.0", "--attention", "none"]


def interrupted_run(db, monkeypatch, **kw) -> str:
    """A run stopped after its first chunk of 2 problems (of 4): the rest is left to --resume."""
    real_chunk = run_module.run_chunk
    calls = {"n": 0}

    def failing_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return real_chunk(*args, **kwargs)

    monkeypatch.setattr(run_module, "run_chunk", failing_second_chunk)
    request = RunConfig(problems=4, methods="zero,gauss", sigmas="1.0", attention="none", batch_size=2, **kw)
    with pytest.raises(RuntimeError, match="simulated crash"):
        execute_run(request, str(db), progress=False)
    monkeypatch.setattr(run_module, "run_chunk", real_chunk)
    (run_id,) = fetch(db, "SELECT run_id FROM runs")[0]
    assert fetch(db, "SELECT count(*) FROM run_problems")[0][0] == 2
    return run_id


def complete(db, run_id: str, layers: int = 1) -> None:
    rows = fetch(
        db,
        "SELECT r.status, count(DISTINCT s.problem_id), count(*) FROM runs r JOIN results s USING (run_id) "
        "WHERE run_id = ? GROUP BY r.status",
        [run_id],
    )
    assert rows == [("complete", 4, 4 * (1 + 6 * 2 * layers))]  # baseline + 6 thoughts x (zero, gauss)


def no_model(monkeypatch):
    """Make loading a model fail loudly: what is refused must be refused before it."""

    def refuse(*_a, **_k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(plan_module, "load_model", refuse)


# --- 1. --resume RUN alone --------------------------------------------------------------------------
def test_cli_resume_alone_takes_the_stored_config(tmp_path, monkeypatch):
    db = tmp_path / "w"
    run_id = interrupted_run(db, monkeypatch, seed=3, layers="1,2")
    out = cli("run", "--resume", run_id[:8], "--db", db, "--json")
    assert out.exit_code == 0, out.stderr
    assert json.loads(out.stdout)["run_id"] == run_id
    complete(db, run_id, layers=2)
    config = json.loads(fetch(db, "SELECT config_json FROM runs")[0][0])
    assert (config["seed"], config["problem_seed"], config["layers"]) == (3, 0, [1, 2])


def test_cli_resume_alone_keeps_the_runs_intervention_families(tmp_path, monkeypatch):
    """A run with --family resumes under its families (and the other family flags) from its stored config;
    a different --family is refused by name."""
    db = tmp_path / "w"
    run_id = interrupted_run(db, monkeypatch, families="edges,pairs", combo_methods="zero")
    refused = cli("run", "--resume", run_id, "--family", "pairs", "--db", db)
    assert refused.exit_code != 0 and "--family pairs differs from the run's edges,pairs" in refused.stderr
    out = cli("run", "--resume", run_id, "--db", db, "--json")
    assert out.exit_code == 0, out.stderr
    per_problem = fetch(db, "SELECT family, count(*) // 4 FROM results GROUP BY family ORDER BY family")
    # baseline; edges (every layer and the patch layer, 6 keys); pairs (15 under zero); thoughts: only the
    # pairs' singles under zero (the thoughts family itself was not asked for)
    assert per_problem == [("baseline", 1), ("edges", 12), ("pairs", 15), ("thoughts", 6)]


def test_cli_resume_alone_keeps_the_runs_readouts(tmp_path, monkeypatch):
    """A run with --states --decode-top 3 resumes recording both for the rest of its problems; another
    --decode-top is refused by name, and the finished run holds the readouts of all four problems."""
    db = tmp_path / "w"
    run_id = interrupted_run(db, monkeypatch, states=True, decode_top=3)
    refused = cli("run", "--resume", run_id, "--decode-top", "5", "--db", db)
    assert refused.exit_code != 0 and "--decode-top 5 differs from the run's 3" in refused.stderr
    out = cli("run", "--resume", run_id, "--db", db, "--json")
    assert out.exit_code == 0, out.stderr
    complete(db, run_id)
    per_problem = fetch(
        db,
        "SELECT (SELECT count(DISTINCT problem_id) FROM states), (SELECT count(*) FROM decoding) // 4, "
        "(SELECT max(rank) FROM decoding)",
    )
    assert per_problem == [(4, 7 * 7 * 3, 3)]  # (6 layers + the input) x (T0..T5, EOT) x top 3


def test_cli_resume_accepts_flags_that_agree(tmp_path, monkeypatch):
    db = tmp_path / "w"
    run_id = interrupted_run(db, monkeypatch, seed=3, layers="1,2")
    flags = ["--seed", 3, "--layers", "2,1", "--methods", "zero,gauss", "--problems", 4, "--sigmas", "1"]
    out = cli("run", "--resume", run_id, *flags, "--batch-size", 1, "--db", db)
    assert out.exit_code == 0, out.stderr
    complete(db, run_id, layers=2)


def test_cli_resume_refuses_each_differing_flag_before_loading_the_model(tmp_path, monkeypatch):
    db = tmp_path / "w"
    run_id = interrupted_run(db, monkeypatch, seed=3, layers="1,2")
    no_model(monkeypatch)
    line = user_error(
        cli("run", "--resume", run_id[:6], "--seed", 1, "--methods", "zero", "--layer", 1, "--db", db),
        f"--resume {run_id[:6]}: ",
        "--seed 1 differs from the run's 3",
        "--methods zero differs from the run's zero,gauss",
        "--layer 1 differs from the run's 1,2",
        "drop them or start a new run",
    )
    assert "--attention" not in line and "--problems" not in line  # left at their defaults: not given
    user_error(
        cli("run", "--resume", run_id, "--problem-seed", 2, "--layers", "all", "--db", db),
        "--problem-seed 2 differs from the run's 0",
        "--layers all differs from the run's 1,2",
    )
    assert fetch(db, "SELECT status FROM runs") == [("failed",)]  # untouched


def test_api_resume_takes_the_stored_config_and_refuses_other_fields(tmp_path, monkeypatch):
    db = tmp_path / "w"
    run_id = interrupted_run(db, monkeypatch, seed=3)
    with monkeypatch.context() as m:
        no_model(m)
        with pytest.raises(ResumeConflict, match=r"--seed 1 differs from the run's 3; drop them"):
            execute_run(RunConfig(resume=run_id, seed=1), str(db), progress=False)
    summary = execute_run(RunConfig(resume=run_id), str(db), progress=False)
    assert summary["run_id"] == run_id and summary["problems"] == 4
    complete(db, run_id)


def test_resume_of_a_changed_definition_names_what_changed(tmp_path, monkeypatch):
    db = tmp_path / "w"
    run_id = interrupted_run(db, monkeypatch)
    monkeypatch.setattr(plan_module, "MEASURES_VERSION", plan_module.MEASURES_VERSION + 1)
    user_error(
        cli("run", "--resume", run_id, "--db", db),
        "different configuration",
        f"measures_version: the run's {plan_module.MEASURES_VERSION - 1}, now {plan_module.MEASURES_VERSION}",
    )


# --- 2. --seed draws corruptions, --problem-seed picks problems --------------------------------------
def test_default_problems_are_todays_and_independent_of_the_seed():
    todays = stratified(distinct(synthetic_problems(25 * 6, seed=0)), 25)[:100]  # what seed 0 chose before
    ids = [p.problem_id for p in todays]
    assert [p.problem_id for p in select_problems(RunConfig())] == ids
    assert [p.problem_id for p in select_problems(RunConfig(seed=7))] == ids
    other = {p.problem_id for p in select_problems(RunConfig(problem_seed=1))}
    assert len(other) == 100 and other != set(ids)


def test_runs_with_other_seeds_share_their_problems_and_differ_in_gauss(tmp_path):
    db = tmp_path / "w"
    for seed in (0, 1):
        assert cli("run", *FAST, "--seed", seed, "--db", db).exit_code == 0
    (a, b) = [r[0] for r in fetch(db, "SELECT run_id FROM runs ORDER BY run_seq")]
    ids = {
        run: {r[0] for r in fetch(db, "SELECT problem_id FROM results WHERE run_id = ?", [run])}
        for run in (a, b)
    }
    assert ids[a] == ids[b] and len(ids[a]) == 4
    assert fetch(db, "SELECT shared_problems FROM run_pairs WHERE run_a = ? AND run_b = ?", [a, b]) == [(4,)]

    def values(run, method):
        return fetch(
            db,
            "SELECT problem_id, condition_id, kl_answer, answer_text FROM results "
            "WHERE run_id = ? AND method = ? ORDER BY ALL",
            [run, method],
        )

    assert values(a, "zero") == values(b, "zero")  # no draw in zero
    assert values(a, "gauss") != values(b, "gauss")  # other noise
    seeds = [
        json.loads(c)["problem_seed"] for (c,) in fetch(db, "SELECT config_json FROM runs ORDER BY run_seq")
    ]
    assert seeds == [0, 0]


def test_problem_seed_picks_other_problems_and_resume_keeps_it(tmp_path, monkeypatch):
    db = tmp_path / "w"
    run_id = interrupted_run(db, monkeypatch, problem_seed=5)
    assert cli("run", "--resume", run_id, "--db", db).exit_code == 0
    complete(db, run_id)
    ran = {r[0] for r in fetch(db, "SELECT problem_id FROM results")}
    assert ran == {p.problem_id for p in select_problems(RunConfig(problems=4, problem_seed=5))}
    assert ran != {p.problem_id for p in select_problems(RunConfig(problems=4))}


# --- 3. --layers as a list -----------------------------------------------------------------------
def test_cli_layers_list_patches_each_and_is_recorded(tmp_path):
    db = tmp_path / "w"
    out = cli("run", *FAST, "--layers", "4,1", "--db", db, "--json")
    assert out.exit_code == 0, out.stderr
    assert fetch(db, "SELECT DISTINCT layer FROM results WHERE layer IS NOT NULL ORDER BY 1") == [(1,), (4,)]
    config = json.loads(fetch(db, "SELECT config_json FROM runs")[0][0])
    assert config["layers"] == [1, 4] and "layer" not in config and "all_layers" not in config
    assert json.loads(out.stdout)["conditions"] == 1 + 2 * 6 * 2


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--layer", 1, "--layer", 2], ["--layer was given 2 times (1, 2)", "--layers 1,2"]),
        (["--layer", 1, "--layers", "2,3"], ["give either --layer L or --layers"]),
        (["--layers", "1,x"], ["--layers must be all or comma-separated layer numbers", "'1,x'"]),
        (["--layers", "2,2"], ["--layers names layer(s) 2 more than once"]),
        (["--layers", "1,6,9"], ["--layers 6, 9 are outside 0..5 for gpt2-tiny"]),
        (["--layer", 6], ["--layer 6 is outside 0..5"]),
    ],
)
def test_bad_layer_flags_are_one_line(tmp_path, flags, fragments):
    db = tmp_path / "w"
    user_error(cli("run", *FAST, *flags, "--db", db), *fragments)
    assert not db.exists() or fetch(db, "SELECT count(*) FROM runs") == [(0,)]


def test_api_layers_forms():
    from engine.model.checkpoints import load_model
    from engine.runs.plan import select_layers

    model = load_model("gpt2-tiny", device="cpu")
    assert select_layers(model, RunConfig(layers=[4, 1])) == (1, 4)
    assert select_layers(model, RunConfig(layers="all")) == tuple(range(6))
    assert select_layers(model, RunConfig(layer=2)) == (2,)
    assert select_layers(model, RunConfig()) == (3,)
    with pytest.raises(ValueError, match="give either"):
        select_layers(model, RunConfig(layer=2, layers=[3]))
    with pytest.raises(ValueError, match="outside 0..5"):
        select_layers(model, RunConfig(layers=(0, 7)))


def test_a_run_stored_before_problem_seed_still_resumes():
    """Configs stored before problem_seed held layer and all_layers and no problem_seed (their problems
    came from the seed): the same config in that form is resumable, another one is not."""
    from engine.runs.resume import check_resumable
    from warehouse import lineage

    now = {"seed": 2, "problem_seed": 2, "layers": [3], "measures_version": 2}
    earlier = {"seed": 2, "layer": None, "all_layers": False, "layers": [3], "measures_version": 2}
    check_resumable("r", earlier, lineage.config_hash(earlier), now)
    with pytest.raises(ValueError, match=r"different configuration \(measures_version: the run's 2, now 3\)"):
        check_resumable("r", earlier, lineage.config_hash(earlier), {**now, "measures_version": 3})
