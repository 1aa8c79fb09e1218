"""Issue 18 items 1-3: GSM8K built in (`gsm8k-test`, `gsm8k-train`, sha256 checked), the sampling
protocols (`--sample first|random|stratified`, `--sample-seed`: recorded in the config, restored by
--resume), and the up-front context-length check over them."""

from __future__ import annotations

import json
import shutil

import pytest
from faults_helpers import cli, fetch, user_error
from test_run_flags import interrupted_run

import ingest.datasets as datasets
from engine.model.checkpoints import load_model
from engine.runs.config import RunConfig
from engine.runs.plan import sampled_problems, select_problems
from engine.runs.validate import question_lengths, too_long_count
from ingest.datasets import BUILTIN, load_problems, stratum_counts
from ingest.gsm8k import DatasetError
from warehouse.vocab import STRATA, stratum_of


@pytest.fixture(scope="module")
def tiny():
    return load_model("gpt2-tiny", device="cpu")


def fixture_file(tmp_path, n: int = 24, long_first: bool = False):
    """The first problems of each stratum of the test split (n / 4 each), optionally after a question far
    too long for gpt2-tiny's 256 positions."""
    lines = (datasets.BUILTIN_DIR / "test.jsonl").read_text().splitlines()
    by_stratum: dict[str, list[str]] = {s: [] for s in STRATA}
    for line in lines:
        steps = json.loads(line)["answer"].count("<<")
        bucket = by_stratum[stratum_of(steps)]
        if len(bucket) < n // 4:
            bucket.append(line)
    chosen = [line for s in STRATA for line in by_stratum[s]]
    if long_first:
        long_question = "Tom has 3 apples and " + "then he counts them again and " * 120 + "how many?"
        chosen.insert(0, json.dumps({"question": long_question, "answer": "3 apples <<3=3>>\n#### 3"}))
    path = tmp_path / "small.jsonl"
    path.write_text("\n".join(chosen) + "\n")
    return path


# --- 1. built-in names ----------------------------------------------------------------------------
def test_builtin_names_resolve_in_the_api_and_ingest(tmp_path):
    test = load_problems("gsm8k-test")
    assert len(test) == 1319 and len(load_problems("gsm8k-train")) == 7473
    assert load_problems("gsm8k-test", 5) == test[:5]
    assert select_problems(RunConfig(dataset="gsm8k-test", problems=5)) == test[:5]
    out = cli("ingest", "gsm8k", "gsm8k-test", "--db", tmp_path / "w", "--json")
    assert out.exit_code == 0, out.stderr
    assert json.loads(out.stdout)["added"] == 1319


def test_builtin_name_beats_a_file_of_that_name_here(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gsm8k-test").write_text('{"question": "q?", "answer": "#### 1"}\n')
    assert len(load_problems("gsm8k-test")) == 1319
    assert "./gsm8k-test" in capsys.readouterr().err
    assert len(load_problems("./gsm8k-test")) == 1


def test_a_modified_builtin_file_is_refused_in_one_line(tmp_path, monkeypatch):
    copy = tmp_path / "gsm8k"
    shutil.copytree(datasets.BUILTIN_DIR, copy)
    with (copy / "test.jsonl").open("a") as f:
        f.write('{"question": "An extra one?", "answer": "#### 2"}\n')
    monkeypatch.setattr(datasets, "BUILTIN_DIR", copy)
    monkeypatch.setattr(datasets, "_verified", {})
    with pytest.raises(DatasetError, match="modified") as info:
        load_problems("gsm8k-test")
    assert "\n" not in str(info.value)
    assert len(load_problems("gsm8k-train")) == 7473  # the untouched copy loads
    user_error(cli("ingest", "gsm8k", "gsm8k-test", "--db", tmp_path / "w"), "sha256", "modified")


def test_eval_takes_a_builtin_name():
    out = cli("eval", "--dataset", "gsm8k-test", "--problems", 2, "--no-teacher", "--json")
    assert out.exit_code == 0, out.stderr
    assert json.loads(out.stdout)["n"] == 2


# --- 2. sampling protocols ------------------------------------------------------------------------
def ids(problems) -> list[str]:
    return [p.problem_id for p in problems]


def test_random_sample_is_seeded_and_distinct():
    a, _ = sampled_problems(None, "gsm8k-test", 20, "random", 1)
    b, _ = sampled_problems(None, "gsm8k-test", 20, "random", 1)
    c, _ = sampled_problems(None, "gsm8k-test", 20, "random", 2)
    assert ids(a) == ids(b) and ids(a) != ids(c)
    assert len(set(ids(a))) == 20
    assert ids(a) != ids(load_problems("gsm8k-test", 20))


def test_stratified_sample_splits_the_total_evenly_over_the_strata():
    chosen, _ = sampled_problems(None, "gsm8k-test", 10, "stratified", 7)
    assert stratum_counts(chosen) == {"<=2": 3, "3": 3, "4": 2, "5+": 2}
    assert [stratum_of(p.n_steps) for p in chosen[:4]] == list(STRATA)  # interleaved
    again, _ = sampled_problems(None, "gsm8k-test", 10, "stratified", 7)
    other, _ = sampled_problems(None, "gsm8k-test", 10, "stratified", 8)
    assert ids(chosen) == ids(again) and set(ids(chosen)) != set(ids(other))
    default, _ = sampled_problems(None, "gsm8k-test", None, "stratified", 0)
    assert stratum_counts(default) == dict.fromkeys(STRATA, 25)


def test_sample_flags_are_refused_where_they_mean_nothing(tmp_path):
    user_error(cli("run", "--sample", "random", "--db", tmp_path / "w"), "--sample", "synthetic")
    user_error(
        cli("run", "--dataset", "gsm8k-test", "--sample-seed", 3, "--db", tmp_path / "w"), "--sample-seed"
    )
    small = fixture_file(tmp_path, 8, long_first=True)  # 2 per stratum, and a too-long one in <=2
    flags = ["--dataset", small, "--sample", "stratified", "--problems", 9, "--skip-invalid"]
    user_error(cli("run", *flags, "--db", tmp_path / "w"), "stratum <=2: 2 of 3")


def test_sample_is_recorded_in_the_config_and_restored_by_resume(tmp_path, monkeypatch, tiny):
    small = fixture_file(tmp_path, 12)
    db = tmp_path / "w"
    run_id = interrupted_run(
        db, monkeypatch, dataset=str(small), sample="random", sample_seed=3, skip_invalid=True
    )
    (config,) = fetch(db, "SELECT config_json FROM runs")[0]
    config = json.loads(config)
    assert (config["sample"], config["sample_seed"]) == ("random", 3)
    user_error(cli("run", "--resume", run_id, "--sample-seed", 4, "--db", db), "--sample-seed 4", "3")
    assert cli("run", "--resume", run_id, "--db", db).exit_code == 0
    ran = {r[0] for r in fetch(db, "SELECT problem_id FROM results")}
    want, _ = sampled_problems(tiny, str(small), 4, "random", 3, skip_invalid=True)
    assert ran == set(ids(want))
    (status,) = fetch(db, "SELECT status FROM runs")[0]
    assert status == "complete"


def test_first_sample_leaves_the_config_as_before():
    from engine.runs.plan import NOT_CONFIG, SAMPLE_FIELDS

    assert not set(SAMPLE_FIELDS) & set(NOT_CONFIG)  # recorded, but only when not `first`


# --- 3. context length ----------------------------------------------------------------------------
def test_too_long_question_is_refused_up_front_or_skipped(tmp_path, tiny):
    small = fixture_file(tmp_path, 8, long_first=True)
    with pytest.raises(ValueError, match="too long for gpt2-tiny's context") as info:
        sampled_problems(tiny, str(small), 3)
    assert "\n" not in str(info.value)
    kept, skipped = sampled_problems(tiny, str(small), 3, skip_invalid=True)
    assert len(kept) == 3 and len(skipped) == 1
    assert kept == load_problems(str(small))[1:4]  # the next in order takes its place
    user_error(cli("run", "--dataset", small, "--problems", 3, "--db", tmp_path / "w"), "too long")
    user_error(cli("eval", "--dataset", small, "--problems", 3), "too long")


@pytest.mark.slow
def test_real_test_split_too_long_for_gpt2_tiny(tiny):
    test = load_problems("gsm8k-test")
    assert sum(n > 240 for n in question_lengths(tiny, [p.question for p in test])) == 130
    assert too_long_count(tiny, test, 24) == 191  # run's default max_new_tokens
    assert too_long_count(tiny, test, 32) == 212  # eval's
    assert set(BUILTIN) == {"gsm8k-test", "gsm8k-train"}
