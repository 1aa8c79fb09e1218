"""`ingest legacy`: the five research-script formats of SPEC 10 become legacy runs, once, never remapped."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import warehouse as wh
from cli import cli
from ingest.datasets import load_problems
from ingest.gsm8k import DatasetError, problem_id
from ingest.legacy import ingest_legacy, sources
from ingest.research_dataset import read_research_dataset

QUERIES = Path(__file__).resolve().parent.parent / "queries"
METHODS = ["zero", "gauss_0.1", "gauss_0.5", "gauss_1.0", "gauss_2.0", "random", "shuffle"]
DATASET = [
    {
        "gsm8k_id": "train_1",
        "question": "Ann has 1,200 dollars and spends half. How much is left?",
        "answer": "600",
        "full_solution": "1200/2=<<1200/2=600>>600\n1200-600=<<1200-600=600>>600\n#### 600",
        "difficulty": "2-step",
    },
    {
        "gsm8k_id": "test_2",
        "question": "Ben reads 4 pages, then 6, then twice that. Pages?",
        "answer": 22,
        "full_solution": "4+6=<<4+6=10>>10\n2*6=<<2*6=12>>12\n10+12=<<10+12=22>>22\n#### 22",
        "difficulty": "3-step",
    },
    {
        "gsm8k_id": "test_3",
        "question": "It is 3 degrees and drops 10. Temperature?",
        "answer": -7,
        "full_solution": "3-10=<<3-10=-7>>-7\n#### -7",
        "difficulty": "2-step",
    },
    {
        "gsm8k_id": "train_4",
        "question": "A rope of 5 m is cut in two. Length of one piece?",
        "answer": 2.5,
        "reasoning_steps": 4,
        "difficulty": "4-step",
    },
    {
        "gsm8k_id": "test_5",
        "question": "Cara has 7 coins and finds 9. Coins?",
        "answer": "16",
        "full_solution": "7+9=<<7+9=16>>16\n#### 16",
        "difficulty": "2-step",
    },
    {
        "gsm8k_id": "test_6",
        "question": "Dan bakes 3 trays of 12 cookies. Cookies?",
        "answer": "36",
        "full_solution": "3*12=<<3*12=36>>36\n#### 36",
        "difficulty": "2-step",
    },
]
GOLD = {r["gsm8k_id"]: float(r["answer"]) for r in DATASET}
PID = {r["gsm8k_id"]: problem_id(r["question"]) for r in DATASET}


def ccta_records(rng: random.Random) -> list[dict]:
    records = []
    for gid, base_correct in (("train_1", True), ("test_2", True), ("test_3", False), ("train_4", True)):
        corruptions = {}
        for k in range(6):
            corruptions[f"token_{k}"] = {}
            for m in METHODS:
                still = rng.random() < 0.6
                corruptions[f"token_{k}"][m] = {
                    "still_correct": still,
                    "importance": int(base_correct and not still),
                    "kl_divergence": rng.random() * 1e-6,
                    "attention_disruption": round(rng.random() / 10, 6),
                }
        records.append(
            {
                "problem_id": gid,
                "difficulty": "x",
                "expected_answer": GOLD[gid],
                "baseline": {
                    "output": f"The answer is: {GOLD[gid]}",
                    "predicted_answer": GOLD[gid],
                    "correct": base_correct,
                },
                "corruptions": corruptions,
                "summary": {},
            }
        )
    records.append(
        {
            "problem_id": "test_5",
            "difficulty": "2-step",
            "expected_answer": 16,
            "baseline": {},
            "corruptions": {},
            "error": "CUDA out of memory",
        }
    )
    return records


def ablation_records(rng: random.Random) -> list[dict]:
    records = []
    for gid, base_correct in (("train_1", True), ("test_2", False), ("test_3", True)):
        ablations = []
        for k in range(6):
            still = rng.random() < 0.5
            ablations.append(
                {
                    "token_pos": k,
                    "ablated_output": f"out {k}",
                    "predicted_answer": k,
                    "still_correct": still,
                    "importance": int(base_correct and not still),
                }
            )
        records.append(
            {
                "problem_id": gid,
                "difficulty": "x",
                "expected_answer": str(GOLD[gid]),
                "baseline": {"output": "o", "predicted_answer": GOLD[gid], "correct": base_correct},
                "token_ablations": ablations,
                "importance_scores": [a["importance"] for a in ablations],
            }
        )
    records.append({"problem_id": "test_6", "error": "boom"})
    return records


def attention_weight_records(rng: random.Random) -> list[dict]:
    records = [
        {
            "problem_id": gid,
            "difficulty": "x",
            "expected_answer": GOLD[gid],
            "attention_by_layer": {
                f"layer_{layer}": {
                    "continuous_token_attention": [rng.random() for _ in range(6)],
                    "total_attention_to_continuous": 0.0,
                }
                for layer in (4, 8, 14)
            },
        }
        for gid in ("train_1", "test_2")
    ]
    return [*records, {"problem_id": "test_3", "difficulty": "x", "error": "boom"}]


@pytest.fixture()
def files(tmp_path):
    return write_legacy_files(tmp_path)


def write_legacy_files(tmp_path: Path) -> dict:
    """A research dataset and one file of each legacy format, in tmp_path."""
    rng = random.Random(7)
    out = {"dir": tmp_path}
    for name, data in (
        ("dataset", DATASET),
        ("ccta", ccta_records(rng)),
        ("ablation", ablation_records(rng)),
        ("weights", attention_weight_records(rng)),
        (
            "summary",
            {
                "overall_correlation": {"layer_8": {"r": 0.23, "p": 5e-9}},
                "per_token": {"token_5": {"importance_mean": 0.26}},
                "by_difficulty": {},
            },
        ),
    ):
        out[name] = (
            tmp_path
            / {
                "dataset": "full_dataset_100.json",
                "ccta": "ccta_full_results_100.json",
                "ablation": "token_ablation_results_100.json",
                "weights": "attention_weights_100.json",
                "summary": "summary_statistics.json",
            }[name]
        )
        out[name].write_text(json.dumps(data, indent=2))
    flow = tmp_path / "gpt2"
    flow.mkdir()
    patterns = np.zeros((3, 2, 3, 6, 6), dtype=np.float16)
    i, j = np.tril_indices(6, -1)
    patterns[..., i, j] = np.random.default_rng(0).random((3, 2, 3, 15)).astype(np.float16)
    np.save(flow / "attention_patterns_raw.npy", patterns)
    meta = {
        "model_name": "gpt2_gsm8k",
        "model_path": "/home/x/codi_ckpt/gpt2_gsm8k",
        "n_problems": 3,
        "n_layers": 2,
        "n_heads": 3,
        "problems": [
            {"index": 0, "gsm8k_id": "train_1", "success": True},
            {"index": 1, "gsm8k_id": "test_6", "success": True},
            {"index": 2, "gsm8k_id": "test_2", "success": False, "error": "Extraction failed"},
        ],
    }
    (flow / "attention_metadata.json").write_text(json.dumps(meta))
    out["npy"], out["meta"], out["patterns"] = (
        flow / "attention_patterns_raw.npy",
        flow / "attention_metadata.json",
        patterns,
    )
    return out


def fetch(db, sql, params=None):
    with reading(db) as query:
        return query(sql, params)


@contextlib.contextmanager
def reading(db):
    """One read-only connection for several queries: query(sql, params) -> rows."""
    with wh.open_warehouse(db, read_only=True).reader() as con:
        yield lambda sql, params=None: con.execute(sql, params or []).fetchall()


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def only_run(result: dict) -> str:
    (run,) = result["runs"]
    return run["run_id"]


def file_failure_rates(records: list[dict]) -> dict[int, float]:
    """Failure rate per token straight from a ccta file, as the research analysis computed it."""
    good = [r for r in records if "error" not in r and r["baseline"]["correct"]]
    return {
        k: float(np.mean([r["corruptions"][f"token_{k}"][m]["importance"] for r in good for m in METHODS]))
        for k in range(6)
    }


def test_ccta_becomes_a_complete_legacy_run(files, tmp_path):
    db = tmp_path / "w"
    run = only_run(ingest_legacy(db, [files["ccta"]], dataset=files["dataset"]))
    status, convention, model, layers, methods, sigmas, config = fetch(
        db, "SELECT status, convention, model_name, patch_layers, methods, sigmas, config_json FROM runs"
    )[0]
    assert (status, convention, model, layers) == ("complete", "legacy", "llama", [8])
    assert methods == ["zero", "gauss", "random", "shuffle"] and sigmas == [0.1, 0.5, 1.0, 2.0]
    config = json.loads(config)
    assert config["source_files"][0]["sha256"] == hashlib.sha256(files["ccta"].read_bytes()).hexdigest()
    assert config["dataset_file"]["sha256"] == hashlib.sha256(files["dataset"].read_bytes()).hexdigest()
    assert (
        config["records"] == 5
        and config["records_skipped"] == 1
        and config["skipped"][0]["problem"] == "test_5"
    )
    with reading(db) as q:
        assert q("SELECT count(*), count(DISTINCT problem_id), count(kl_first) FROM results")[0] == (
            4 * 43,
            4,
            0,
        )
        ids = {r[0] for r in q("SELECT problem_id FROM run_problems WHERE run_id = ?", [run])}
        assert ids == {PID[g] for g in ("train_1", "test_2", "test_3", "train_4")}
        steps = dict(q("SELECT source_id, n_steps FROM problems"))
        assert steps == {
            "train_1": 2,
            "test_2": 3,
            "test_3": 1,
            "train_4": 4,
        }  # annotations, else reasoning_steps
        assert q("SELECT method, sigma, count(*) FROM results GROUP BY ALL ORDER BY ALL") == [
            ("baseline", None, 4),
            ("gauss", 0.1, 24),
            ("gauss", 0.5, 24),
            ("gauss", 1.0, 24),
            ("gauss", 2.0, 24),
            ("random", None, 24),
            ("shuffle", None, 24),
            ("zero", None, 24),
        ]
        assert q("SELECT DISTINCT layer, thought FROM results WHERE method <> 'baseline' ORDER BY ALL") == [
            (8, k) for k in range(6)
        ]  # their token index, not remapped
        record = json.loads(files["ccta"].read_text())[1]  # test_2, token_3, gauss_1.0
        entry = record["corruptions"]["token_3"]["gauss_1.0"]
        assert q(
            "SELECT correct, flipped, disruption FROM results WHERE problem_id = ? AND thought = 3 "
            "AND sigma = 1.0",
            [PID["test_2"]],
        )[0] == (entry["still_correct"], bool(entry["importance"]), entry["attention_disruption"])
        assert q("SELECT count(*) FROM results WHERE fixed")[0][0] == sum(
            c["still_correct"]
            for c in (
                json.loads(files["ccta"].read_text())[2]["corruptions"][f"token_{k}"][m]
                for k in range(6)
                for m in METHODS
            )
        )  # test_3: baseline wrong


def test_failure_rates_per_thought_equal_the_file(files, tmp_path):
    db = tmp_path / "w"
    run = only_run(ingest_legacy(db, [files["ccta"]], dataset=files["dataset"]))
    rows = fetch(
        db,
        """
        WITH base AS (SELECT problem_id, correct AS ok FROM results WHERE run_id = ? AND method = 'baseline')
        SELECT thought, avg(flipped::INT) FROM results JOIN base USING (problem_id)
        WHERE run_id = ? AND method <> 'baseline' AND ok GROUP BY thought ORDER BY thought""",
        [run, run],
    )
    want = file_failure_rates(json.loads(files["ccta"].read_text()))
    assert [t for t, _ in rows] == list(range(6))
    assert [rate for _, rate in rows] == pytest.approx([want[k] for k in range(6)])


def test_token_ablation_is_method_zero_with_answers(files, tmp_path):
    db = tmp_path / "w"
    result = ingest_legacy(db, [files["ablation"]], dataset=files["dataset"])
    assert result["runs"][0]["records_skipped"] == 1
    with reading(db) as q:
        assert q("SELECT method, count(*) FROM results GROUP BY ALL ORDER BY ALL") == [
            ("baseline", 3),
            ("zero", 18),
        ]
        assert q(
            "SELECT answer_text, answer_value, count(disruption) FROM results WHERE thought = 4 "
            "AND problem_id = ? GROUP BY ALL",
            [PID["test_3"]],
        ) == [("out 4", 4.0, 0)]
        records = json.loads(files["ablation"].read_text())
        want = sum(a["importance"] for r in records if "error" not in r for a in r["token_ablations"])
        assert q("SELECT count(*) FILTER (flipped) FROM results")[0][0] == want
        assert q("SELECT methods, sigmas FROM runs")[0] == (["zero"], [])


def test_attention_weights_become_head_mean_rows_of_the_answer_query(files, tmp_path):
    db = tmp_path / "w"
    ingest_legacy(db, [files["weights"]], dataset=files["dataset"])
    with reading(db) as q:
        rows = q(
            "SELECT layer, head, dst, src, weight, condition_id FROM attention WHERE problem_id = ? "
            "ORDER BY layer, src",
            [PID["test_2"]],
        )
        record = json.loads(files["weights"].read_text())[1]
        assert [(r[0], r[1], r[2], r[3], r[5]) for r in rows] == [
            (layer, -1, 6, k, 0) for layer in (4, 8, 14) for k in range(6)
        ]
        want = [
            w
            for layer in (4, 8, 14)
            for w in record["attention_by_layer"][f"layer_{layer}"]["continuous_token_attention"]
        ]
        assert [r[4] for r in rows] == pytest.approx(want, rel=1e-6)
        assert q("SELECT method, condition_id, count(*), count(correct) FROM results GROUP BY ALL") == [
            ("baseline", 0, 2, 0)
        ]  # one unevaluated baseline per problem: the condition its attention belongs to
        assert q("SELECT count(*) FROM run_problems")[0][0] == 2


def test_6x6_patterns_become_attention_rows_of_the_cells_written(files, tmp_path):
    db = tmp_path / "w"
    result = ingest_legacy(db, [files["npy"]], dataset=files["dataset"])
    assert result["runs"][0]["records_skipped"] == 1  # problems[2] failed extraction
    assert fetch(db, "SELECT model_name, n_layers, n_heads, convention FROM runs")[0] == (
        "gpt2",
        2,
        3,
        "legacy",
    )
    assert fetch(db, "SELECT count(*), count(*) FILTER (src >= dst), min(dst), max(dst) FROM attention")[
        0
    ] == (2 * 2 * 3 * 15, 0, 1, 5)
    got = fetch(
        db,
        "SELECT weight FROM attention WHERE problem_id = ? AND layer = 1 AND head = 2 AND dst = 4 "
        "AND src = 3",
        [PID["test_6"]],
    )[0][0]
    assert got == float(files["patterns"][1, 1, 2, 4, 3])
    again = ingest_legacy(db, [files["meta"]], dataset=files["dataset"])  # the metadata names the same run
    assert again["runs"][0]["status"] == "already imported"


def test_summary_statistics_go_into_the_config(files, tmp_path):
    db = tmp_path / "w"
    run = only_run(ingest_legacy(db, [files["summary"]]))  # no problems: no dataset needed
    config = json.loads(fetch(db, "SELECT config_json FROM runs WHERE run_id = ?", [run])[0][0])
    assert config["aggregates"] == json.loads(files["summary"].read_text())
    assert config["legacy_format"] == "summary_statistics"
    assert fetch(db, "SELECT status, convention FROM runs")[0] == ("complete", "legacy")


def test_importing_again_is_a_no_op_never_a_second_copy(files, tmp_path):
    db = tmp_path / "w"
    everything = [files[k] for k in ("ccta", "ablation", "weights", "npy", "summary")]
    first = invoke("ingest", "legacy", *everything, "--dataset", files["dataset"], "--db", db, "--json")
    assert first.exit_code == 0, first.output
    assert [r["status"] for r in json.loads(first.stdout)["runs"]] == ["imported"] * 5
    counts = fetch(
        db,
        "SELECT (SELECT count(*) FROM results), (SELECT count(*) FROM attention), "
        "(SELECT count(*) FROM runs)",
    )
    copy = tmp_path / "copy_of_ccta.json"
    shutil.copy(files["ccta"], copy)
    again = invoke("ingest", "legacy", *everything, copy, "--db", db)  # no --dataset needed for a no-op
    assert again.exit_code == 0, again.output
    assert again.stdout.count("already imported") == 5
    assert (
        fetch(
            db,
            "SELECT (SELECT count(*) FROM results), (SELECT count(*) FROM attention), "
            "(SELECT count(*) FROM runs)",
        )
        == counts
    )
    assert counts[0][2] == 5


def test_an_interrupted_import_is_redone(files, tmp_path):
    db = tmp_path / "w"
    ((_, run_id),) = sources([files["ccta"]])
    store = wh.open_warehouse(db)
    store.begin_run({"half": "written"}, run_id=run_id, convention="legacy")  # killed before finishing
    result = ingest_legacy(db, [files["ccta"]], dataset=files["dataset"])
    assert result["runs"][0]["status"] == "imported"
    assert fetch(db, "SELECT status, count(*) OVER () FROM runs")[0] == ("complete", 1)


def test_errors_name_file_and_record_and_leave_nothing(files, tmp_path):
    db = tmp_path / "w"
    no_dataset = invoke("ingest", "legacy", files["ccta"], "--db", db)
    assert no_dataset.exit_code != 0 and "give --dataset FILE" in no_dataset.output
    assert len(no_dataset.output.strip().splitlines()) == 1
    records = json.loads(files["ccta"].read_text())
    records[2]["problem_id"] = "test_999"
    bad = tmp_path / "ccta_full_results_bad.json"
    bad.write_text(json.dumps(records))
    out = invoke("ingest", "legacy", files["summary"], bad, "--dataset", files["dataset"], "--db", db)
    assert (
        out.exit_code != 0
        and f"{bad}: record 2 (problem test_999): problem 'test_999' is not in dataset" in out.output
    )
    assert not db.exists()  # the good file listed first was not imported either
    records = json.loads(files["ccta"].read_text())
    records[1]["expected_answer"] = 23
    bad.write_text(json.dumps(records))
    out = invoke("ingest", "legacy", bad, "--dataset", files["dataset"], "--db", db)
    assert "record 1 (problem test_2): expected_answer 23 differs" in out.output
    records = json.loads(files["ccta"].read_text())
    records[0]["corruptions"]["token_2"]["zero"]["importance"] = (
        1 - records[0]["corruptions"]["token_2"]["zero"]["importance"]
    )
    bad.write_text(json.dumps(records))
    out = invoke("ingest", "legacy", bad, "--dataset", files["dataset"], "--db", db)
    assert "record 0 (problem train_1): token_2 zero: importance" in out.output
    records = json.loads(files["ccta"].read_text())
    del records[3]["baseline"]
    bad.write_text(json.dumps(records))
    out = invoke("ingest", "legacy", bad, "--dataset", files["dataset"], "--db", db)
    assert "record 3 (problem train_4): missing key 'baseline'" in out.output
    unknown = tmp_path / "other.json"
    unknown.write_text(json.dumps([{"x": 1}]))
    assert "not one of the legacy formats" in invoke("ingest", "legacy", unknown, "--db", db).output
    assert not db.exists()


def test_research_dataset_reader_and_run_dataset(files, tmp_path):
    dataset = read_research_dataset(files["dataset"])
    assert dataset.by_id["test_3"].gold == -7.0 and dataset.by_id["test_3"].source_id == "test_3"
    problems = load_problems(str(files["dataset"]))  # `run --dataset full_dataset_100.json`
    assert [p.problem_id for p in problems] == [PID[r["gsm8k_id"]] for r in DATASET]
    assert [p.n_steps for p in problems] == [2, 3, 1, 4, 1, 1]
    unknown = tmp_path / "no_steps.json"
    unknown.write_text(json.dumps([{"gsm8k_id": "z", "question": "How many?", "answer": 3}]))
    assert read_research_dataset(unknown).by_id["z"].n_steps is None  # stored as NULL by legacy imports
    with pytest.raises(DatasetError, match="n_steps is unknown: z"):
        load_problems(str(unknown))  # a run needs step counts
    bad = tmp_path / "bad_dataset.json"
    bad.write_text(
        json.dumps(
            [
                DATASET[0],
                {"gsm8k_id": "x"},
                {"question": "q?", "answer": 1},
                {"gsm8k_id": "y", "question": "q?", "answer": "many"},
                {**DATASET[1], "answer": 21},
            ]
        )
    )
    with pytest.raises(DatasetError) as err:
        read_research_dataset(bad)
    assert "4 malformed record(s)" in str(err.value)
    for n in (1, 2, 3, 4):
        assert f"record {n}:" in str(err.value)
    assert "answer 21 disagrees with full_solution's #### 22" in str(err.value)


def _view_exists(name: str) -> bool:
    return any(name in p.name for p in QUERIES.rglob("*.sql"))


def _fake_codi_run(db, problem_ids: list[str], flipped_thought: int) -> str:
    """A new-convention run over some of the same problems (rows as the engine writes them)."""
    store = wh.open_warehouse(db)
    run = store.begin_run({"fake": "codi"}, model_name="gpt2-tiny")
    problems = [{"problem_id": p, "question": f"q {p}", "gold_answer": 1.0} for p in problem_ids]
    results = [
        {
            "problem_id": p,
            "condition_id": 0,
            "layer": None,
            "thought": None,
            "method": "baseline",
            "correct": True,
            "flipped": False,
        }
        for p in problem_ids
    ]
    results += [
        {
            "problem_id": p,
            "condition_id": 1 + k,
            "layer": 3,
            "thought": k,
            "method": "zero",
            "correct": k != flipped_thought,
            "flipped": k == flipped_thought,
        }
        for p in problem_ids
        for k in range(6)
    ]
    store.append_problems(run, problems, results)
    store.finish_run(run)
    return run


@pytest.mark.skipif(
    not _view_exists("token_importance"), reason="queries/*token_importance*.sql not written yet"
)
def test_token_importance_view_of_a_legacy_run_equals_the_file(files, tmp_path):
    db = tmp_path / "w"
    run = only_run(ingest_legacy(db, [files["ccta"]], dataset=files["dataset"]))
    rows = fetch(
        db,
        "SELECT thought, n, failures, failure_rate FROM token_importance WHERE run_id = ? ORDER BY thought",
        [run],
    )
    want = file_failure_rates(json.loads(files["ccta"].read_text()))
    assert [r[0] for r in rows] == list(range(6))
    assert [r[1] for r in rows] == [3 * 7] * 6  # 3 baseline-correct problems x 7 methods
    assert [r[3] for r in rows] == pytest.approx([want[k] for k in range(6)])
    assert [r[2] for r in rows] == [round(want[k] * 21) for k in range(6)]


@pytest.mark.skipif(not _view_exists("run_comparison"), reason="queries/*run_comparison*.sql not written yet")
def test_run_comparison_joins_a_legacy_run_and_a_new_run_on_shared_problems(files, tmp_path):
    db = tmp_path / "w"
    legacy = only_run(ingest_legacy(db, [files["ccta"]], dataset=files["dataset"]))
    shared = {PID["train_1"], PID["test_2"]}
    new = _fake_codi_run(db, [*shared, PID["test_6"]], flipped_thought=5)
    rows = fetch(
        db,
        "SELECT problem_id, method, thought, same_convention, convention_a, convention_b, failed_a, failed_b "
        "FROM run_comparison WHERE run_a = ? AND run_b = ?",
        [legacy, new],
    )
    assert {r[0] for r in rows} == shared  # test_3, train_4 (legacy only) and test_6 (new only) drop out
    assert sorted((r[1], r[2]) for r in rows if r[0] == PID["test_2"]) == [("baseline", None)] + [
        ("zero", k) for k in range(6)
    ]
    assert {r[3:6] for r in rows} == {(False, "legacy", "codi")}  # the view says thought k differs in meaning
    record = json.loads(files["ccta"].read_text())[1]  # test_2
    by_thought = {r[2]: (r[6], r[7]) for r in rows if r[0] == PID["test_2"] and r[1] == "zero"}
    assert by_thought == {
        k: (bool(record["corruptions"][f"token_{k}"]["zero"]["importance"]), k == 5) for k in range(6)
    }


def _compare_module():
    try:
        from analysis import compare
    except ImportError:
        return None
    return compare


@pytest.mark.skipif(_compare_module() is None, reason="analysis/compare.py not written yet")
def test_compare_joins_a_legacy_run_and_a_new_run_on_shared_problems(files, tmp_path):
    db = tmp_path / "w"
    legacy = only_run(ingest_legacy(db, [files["ccta"]], dataset=files["dataset"]))
    new = _fake_codi_run(db, [PID["train_1"], PID["test_2"], PID["test_6"]], flipped_thought=5)
    compare = _compare_module()
    with wh.open_warehouse(db, read_only=True) as store:
        result = compare.compare_runs(store.run(legacy), store.run(new), n_boot=50)
    payload, text = result.to_dict(), compare.format_comparison(result)
    assert payload["problems"] == {"a": 4, "b": 3, "shared": 2}  # train_1 and test_2
    assert payload["same_convention"] is False and "different position conventions" in text
    by_thought = {r["thought"]: r for r in payload["by_thought"]}
    assert by_thought[5]["failure_rate_b"] == pytest.approx(1 / 1)  # new run: only zero, fails at T5
    records = [r for r in json.loads(files["ccta"].read_text())[:2] if r["baseline"]["correct"]]
    want = np.mean([r["corruptions"]["token_0"]["zero"]["importance"] for r in records])
    assert by_thought[0]["failure_rate_a"] == pytest.approx(
        want
    )  # joined on (problem, thought, method, sigma)
    if "compare" in cli.commands:
        out = invoke("compare", legacy, new, "--db", db, "--json")
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout)["problems"]["shared"] == 2
