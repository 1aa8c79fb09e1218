"""Every bad input stopped before the expensive part (issue 14, part 4): one line on stderr that says what is
wrong, where and what to do, a non-zero exit, no traceback, nothing written and nothing consumed.

1. problems too long for the model's context, found before the first forward pass (not an IndexError
   mid-run); --skip-invalid runs the others and records the skipped ones in the run's config;
2. config.json sizes checked against the weight file's tensor shapes before anything is allocated; LoRA
   pairs of different ranks and a projection of the wrong shape;
3. weights holding NaN or inf;
4. deeply nested JSON, a .npy header claiming 40 GiB, malformed shard manifests;
5. values that were stored silently wrong: a 400-digit gold answer (inf), `#### 1,2,3` (123), NaN attention
   weights in a legacy .npy, two metadata entries sharing one array index;
6. a FIFO or a /dev/fd pipe as --dataset.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from faults_helpers import cli, fetch, user_error
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

from engine.model.answers import parse_answer
from engine.model.bundled import BUNDLED_DIR, sha256_file
from engine.model.checkpoints import load_model
from engine.model.codi import make_projection
from ingest.shards import write_shard
from warehouse.bench import sample_batch

QUICK = ["--methods", "zero", "--attention", "none"]
A = {
    "question": "Ann has 3 apples. She buys 4 more. How many apples does she have?",
    "answer": "3+4=<<3+4=7>>7\n#### 7",
}
B = {
    "question": "Ben has 12 coins. He gives away 5. How many coins are left?",
    "answer": "12-5=<<12-5=7>>7\n#### 7",
}
CONTEXT = 256  # the bundled gpt2-tiny's n_positions
QUESTION = "How many apples does she have?"


def jsonl(path: Path, *records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def no_runs(db: Path) -> bool:
    return not db.exists() or fetch(db, "SELECT count(*) FROM runs") == [(0,)]


@pytest.fixture(scope="module")
def tiny():
    return load_model("gpt2-tiny")


def question_of(tiny, tokens: int) -> str:
    """A question the bundled tokenizer encodes in exactly `tokens` tokens."""
    for k in range(tokens):
        for extra in ("", "1", "x", ",", "1 ", "12 "):
            text = extra + "x " * k + QUESTION
            if len(tiny.tokenizer(text, add_special_tokens=False)["input_ids"]) == tokens:
                return text
    raise AssertionError(f"no question of {tokens} tokens")


# --- 1. problems longer than the model's context ---------------------------------------------------------
def test_a_too_long_problem_is_refused_before_the_first_forward_pass(tmp_path, tiny, monkeypatch):
    long = {"question": "Ann has 3 apples. " * 60 + "How many?", "answer": "#### 7"}
    path = jsonl(tmp_path / "long.jsonl", A, long, B)
    db = tmp_path / "w"
    from engine.interventions import chunk as runner

    def no_forward_pass(*args, **kwargs):
        raise AssertionError("a forward pass ran")

    with monkeypatch.context() as patch:
        patch.setattr(runner, "start_questions", no_forward_pass)
        # before: IndexError (index out of range in self) in the embedding, after earlier batches committed
        message = user_error(
            cli("run", "--dataset", path, *QUICK, "--batch-size", 1, "--db", db),
            f"{path}: 1 problem(s) too long for gpt2-tiny's context of {CONTEXT} positions",
            "question + BOT + 6 thoughts + EOT + 24 answer tokens",
            "entry 2 (id ",
            "run the others with --skip-invalid, or give fewer or shorter problems",
        )
    assert " 395 positions)" in message
    assert no_runs(db)
    out = cli("run", "--dataset", path, *QUICK, "--skip-invalid", "--db", db)  # the others run
    assert out.exit_code == 0, out.stderr
    ((config, planned),) = fetch(db, "SELECT config_json, n_problems_planned FROM runs")
    config = json.loads(config) if isinstance(config, str) else config
    assert planned == 2 and fetch(db, "SELECT count(DISTINCT problem_id) FROM results") == [(2,)]
    (skipped,) = config["skipped_problems"]
    assert skipped["source_id"] == "2" and skipped["positions"] == 395
    assert skipped["reason"] == (
        "needs 395 positions (363 question, 8 BOT, thoughts and EOT, 24 answer), more than "
        f"the model's context of {CONTEXT}"
    )


def test_eval_checks_the_context_before_answering(tmp_path):
    long = {"question": "Ann has 3 apples. " * 60 + "How many?", "answer": "#### 7"}
    path = jsonl(tmp_path / "long.jsonl", A, long)
    user_error(
        cli("eval", "--dataset", path, "--problems", 2, "--no-teacher"),
        "1 problem(s) too long",
        "entry 2 (id ",
    )


def test_the_context_check_is_exact_and_counts_the_gold_answer(tmp_path, tiny):
    """question + 8 + 24 = 256 positions runs; one token more is refused (unchecked it raised IndexError);
    a short question with a 250-digit gold answer is refused too (the gold answer is teacher-forced)."""
    db = tmp_path / "w"
    fits = jsonl(tmp_path / "fits.jsonl", {"question": question_of(tiny, CONTEXT - 32), "answer": "#### 7"})
    out = cli("run", "--dataset", fits, *QUICK, "--db", db)
    assert out.exit_code == 0, out.stderr
    over = jsonl(tmp_path / "over.jsonl", {"question": question_of(tiny, CONTEXT - 31), "answer": "#### 7"})
    user_error(cli("run", "--dataset", over, *QUICK, "--db", db), "1 problem(s) too long", "257 positions")
    huge_gold = jsonl(tmp_path / "gold.jsonl", A, {**B, "answer": "#### " + "9" * 250})
    user_error(
        cli("run", "--dataset", huge_gold, *QUICK, "--db", db),
        "1 problem(s) too long",
        "entry 2",
        "or its gold answer's if longer",
    )
    out = cli("run", "--dataset", huge_gold, "--problems", 2, "--skip-invalid", *QUICK, "--db", db)
    user_error(out, "--problems 2 is more than the 1 problems", "that fit gpt2-tiny's context (1 too long)")
    assert fetch(db, "SELECT count(*) FROM runs") == [(1,)]


# --- 2. config.json against the weights ------------------------------------------------------------------
@pytest.fixture()
def tiny_copy(tmp_path):
    target = tmp_path / "tiny"
    shutil.copytree(BUNDLED_DIR, target)
    return target


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(
    "changes, fragments",
    [
        (
            {"n_layer": 10000},
            [
                "n_layer = 10000 disagrees with the weights",
                "holds 6 blocks",
                "codi.transformer.h.0 to codi.transformer.h.5",
            ],
        ),  # before: a minute allocating
        (
            {"n_positions": 50_000_000},
            [
                "n_positions = 50000000 disagrees with the weights",
                "codi.transformer.wpe.weight in",
                "is [256, 128]",
            ],
        ),  # before: 25 GB at once
        (
            {"n_head": 3},
            ["n_head = 3 does not divide n_embd = 128"],
        ),  # before: "corrupted or truncated weight file"
        ({"vocab_size": 600}, ["vocab_size = 600 disagrees", "V + 3 = 527 rows", "so vocab_size = 524"]),
        ({"n_inner": 100}, ["n_inner = 100 disagrees", "codi.transformer.h.0.mlp.c_fc.weight", "[128, 512]"]),
        ({"n_layer": -1}, ["n_layer = -1 is not a positive integer"]),
    ],
)
def test_config_sizes_are_checked_against_the_weights_before_allocating(
    tiny_copy, tmp_path, changes, fragments
):
    edit_json(tiny_copy / "config.json", **changes)
    db = tmp_path / "w"
    started = time.monotonic()
    user_error(
        cli("run", "--checkpoint", tiny_copy, "--problems", 1, *QUICK, "--db", db),
        f"{tiny_copy / 'config.json'}: ",
        *fragments,
    )
    assert time.monotonic() - started < 30
    assert no_runs(db)


def test_projection_of_another_size_than_the_card_says(tiny_copy, tmp_path):
    edit_json(
        tiny_copy / "codi_card.json", prj_dim=128
    )  # before: a RuntimeError traceback from load_state_dict
    user_error(
        cli("run", "--checkpoint", tiny_copy, "--problems", 1, *QUICK, "--db", tmp_path / "w"),
        "model.safetensors: projection tensor prj.1.weight is [256, 128], expected [128, 128]",
        "codi_card.json prj_dim = 128",
    )


@pytest.fixture()
def official_gpt2(tmp_path, small_tokenizer):
    """An official-layout gpt2 checkpoint directory: config, tokenizer, and a plain state dict with LoRA."""
    path = tmp_path / "gpt2"
    config = GPT2Config(
        vocab_size=len(small_tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        eos_token_id=small_tokenizer.eos_token_id,
        bos_token_id=small_tokenizer.eos_token_id,
    )
    config.save_pretrained(path)
    small_tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config.from_dict({**config.to_dict(), "vocab_size": config.vocab_size + 3}))
    state = {f"codi.{k}": v for k, v in lm.state_dict().items() if k != "lm_head.weight"}
    state |= {f"prj.{k}": v for k, v in make_projection(32, 48).state_dict().items()}
    module = "codi.transformer.h.0.attn.c_attn"
    state[f"{module}.lora_A.weight"], state[f"{module}.lora_B.weight"] = (
        torch.randn(4, 32),
        torch.randn(96, 4),
    )
    return path, state


def save_state(path: Path, state: dict) -> None:
    torch.save(state, path / "pytorch_model.bin")


def test_a_good_official_checkpoint_loads(official_gpt2):
    path, state = official_gpt2
    save_state(path, state)
    assert load_model("gpt2", checkpoint=path).info.extra["lora_r"] == [4]


@pytest.mark.parametrize(
    "defect, fragments",
    [
        (
            "rank",
            [
                "LoRA for codi.transformer.h.0.attn.c_attn: lora_A [2, 32] has rank 2 "
                "but lora_B [96, 4] has rank 4"
            ],
        ),
        (
            "adapter_r",
            ["adapter_config.json says r = 8, but the LoRA of codi.transformer.h.0.attn.c_attn has rank 4"],
        ),
        ("prj_0d", ["prj.1.weight is []", "[prj_dim, d_model = 32] matrix"]),  # before: IndexError
        ("prj_out", ["wrong shapes (checkpoint vs model) (1): prj.3.weight (32, 10) vs (32, 48)"]),
        ("n_layer", ["config.json: n_layer = 10000 disagrees with the weights", "holds 2 blocks"]),
        ("n_positions", ["config.json: n_positions = 50000000 disagrees", "is [64, 32]"]),
        (
            "inf",
            [
                "tensor codi.transformer.h.1.mlp.c_proj.weight holds 1 non-finite value(s) "
                "(inf; first at index [2, 3])"
            ],
        ),
    ],
)
def test_official_checkpoint_defects_are_one_line(official_gpt2, tmp_path, defect, fragments):
    path, state = official_gpt2
    if defect == "rank":  # before: RuntimeError "mat1 and mat2 shapes cannot be multiplied"
        state["codi.transformer.h.0.attn.c_attn.lora_A.weight"] = torch.randn(2, 32)
    elif defect == "adapter_r":  # before: merged with the wrong scale alpha / r, silently
        (path / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16}))
    elif defect == "prj_0d":
        state["prj.1.weight"] = torch.tensor(1.0)
    elif defect == "prj_out":
        state["prj.3.weight"] = torch.zeros(32, 10)
    elif defect in ("n_layer", "n_positions"):  # before: 10000 blocks allocated / 50M positions asked for
        edit_json(path / "config.json", **{defect: 10000 if defect == "n_layer" else 50_000_000})
    elif defect == "inf":  # before: ran, every row garbage
        state["codi.transformer.h.1.mlp.c_proj.weight"][2, 3] = float("inf")
    save_state(path, state)
    db = tmp_path / "w"
    user_error(
        cli("run", "--model", "gpt2", "--checkpoint", path, "--problems", 1, *QUICK, "--db", db), *fragments
    )
    assert no_runs(db)


# --- 3. NaN or inf weights -----------------------------------------------------------------------------
@pytest.mark.parametrize("value, kind", [(float("nan"), "NaN"), (float("-inf"), "inf")])
def test_weights_holding_nan_or_inf_are_refused(tiny_copy, tmp_path, value, kind):
    weights = tiny_copy / "model.safetensors"
    state = load_file(str(weights))
    state["codi.transformer.h.2.attn.c_proj.weight"][3, 5] = value
    save_file(state, str(weights))
    edit_json(tiny_copy / "codi_card.json", weights_sha256=sha256_file(weights))  # a consistent, bad model
    db = tmp_path / "w"
    user_error(
        cli("run", "--checkpoint", tiny_copy, "--problems", 1, *QUICK, "--db", db),  # before: it ran
        f"{weights}: tensor codi.transformer.h.2.attn.c_proj.weight holds 1 non-finite value(s) ({kind}; "
        "first at index [3, 5])",
        "restore or retrain them",
    )
    assert no_runs(db)


# --- 4. tracebacks: nested JSON, a lying .npy header, malformed shard manifests -----------------------------
DEEP = "[" * 100_000 + "]" * 100_000


def test_deeply_nested_json(tmp_path):
    db = tmp_path / "w"
    line = jsonl(tmp_path / "deep.jsonl", A)
    line.write_text(line.read_text() + '{"question": ' + DEEP + ', "answer": "#### 1"}\n')
    user_error(
        cli("run", "--dataset", line, *QUICK, "--db", db),  # before: RecursionError
        "1 malformed line(s), nothing loaded",
        "line 2: JSON nested too deeply to read",
        "--skip-invalid",
    )
    array = tmp_path / "deep.json"
    array.write_text(DEEP)
    user_error(cli("run", "--dataset", array, *QUICK, "--db", db), f"{array}: JSON nested too deeply to read")
    user_error(
        cli("ingest", "legacy", array, "--db", db),
        f"{array}: JSON nested too deeply to read",
        "not a legacy result file",
    )
    assert not db.exists()


@pytest.fixture()
def legacy(tmp_path):
    """A research dataset, a 6x6 attention array [2 problems, 1 layer, 2 heads] and its metadata."""
    dataset = [{"gsm8k_id": "t1", **A}, {"gsm8k_id": "t2", **B}]
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    flow = tmp_path / "flow"
    flow.mkdir()
    patterns = np.zeros((2, 1, 2, 6, 6), dtype=np.float32)
    i, j = np.tril_indices(6, -1)
    patterns[..., i, j] = 0.1
    np.save(flow / "attention_patterns_raw.npy", patterns)
    meta = {
        "model_name": "gpt2_gsm8k",
        "n_problems": 2,
        "n_layers": 1,
        "n_heads": 2,
        "problems": [
            {"index": 0, "gsm8k_id": "t1", "success": True},
            {"index": 1, "gsm8k_id": "t2", "success": True},
        ],
    }
    (flow / "attention_metadata.json").write_text(json.dumps(meta))
    return {
        "dataset": tmp_path / "dataset.json",
        "npy": flow / "attention_patterns_raw.npy",
        "meta": flow / "attention_metadata.json",
        "patterns": patterns,
    }


def ingest_legacy(files, db):
    return cli("ingest", "legacy", files["npy"], "--dataset", files["dataset"], "--db", db)


def test_a_npy_header_claiming_40_gib_is_refused_before_allocating(legacy, tmp_path):
    shape = (40 * 2**30 // (4 * 36 * 2), 1, 2, 6, 6)
    with legacy["npy"].open("wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
        f.write(b"\0" * 1000)
    db = tmp_path / "w"
    started = time.monotonic()
    user_error(
        ingest_legacy(legacy, db),  # before: MemoryError (Unable to allocate 40.0 GiB)
        f"{legacy['npy']}: its header declares shape {list(shape)} of float32 (40.0 GiB), but the file holds "
        "1000 bytes of data: truncated or damaged",
    )
    assert time.monotonic() - started < 10 and not db.exists()
    np.save(legacy["npy"], legacy["patterns"].astype(object), allow_pickle=True)
    user_error(ingest_legacy(legacy, db), "dtype object is not a numeric array")
    assert not db.exists()


@pytest.mark.parametrize(
    "defect, fragments",
    [
        (
            lambda m: '{"format": ' + DEEP + "}",
            ["manifest.json is nested too deeply to read"],
        ),  # was RecursionError
        (
            lambda m: {**m, "fields": {**m["fields"], "sigmas": [10**400]}},  # before: OverflowError
            ["fields.sigmas is [10000", "expected a list of finite numbers"],
        ),
        (lambda m: {**m, "parts": "part-000000"}, ["parts is 'part-000000', expected a list"]),
        (lambda m: {**m, "fields": []}, ["fields is [], expected an object"]),
        (lambda m: {**m, "shard_index": "0"}, ["shard_index/shard_count '0'/1: need integers"]),
        (
            lambda m: {
                **m,
                "parts": [{**m["parts"][0], "rows": {"problems": 1, "results": "many", "attention": 0}}],
            },
            ["rows holds", "expected counts"],
        ),
    ],
)
def test_malformed_shard_manifests_are_one_line(tmp_path, defect, fragments):
    fields = {
        "config": {"model": "gpt2-tiny", "seed": 1},
        "n_problems_planned": 1,
        "model_name": "gpt2-tiny",
        "weights_sha256": "0123456789abcdef" * 4,
        "seed": 1,
        "sigmas": [0.5],
    }
    shard = write_shard(
        tmp_path / "shards", fields, *sample_batch([0], n_layers=2, n_heads=2), index=0, count=1
    )
    manifest = json.loads((shard / "manifest.json").read_text())
    changed = defect(copy.deepcopy(manifest))
    (shard / "manifest.json").write_text(changed if isinstance(changed, str) else json.dumps(changed))
    db = tmp_path / "w"
    user_error(
        cli("ingest", "shards", tmp_path / "shards", "--db", db),
        f"{shard}: ",
        *fragments,
        "delete shard-0000-of-0001 and rerun `run --shard 0/1`",
    )
    assert no_runs(db)


# --- 5. values that were stored silently wrong ------------------------------------------------------------
def test_a_400_digit_gold_answer_is_refused_not_stored_as_inf(tmp_path):
    path = jsonl(tmp_path / "big.jsonl", A, {**B, "answer": "#### " + "9" * 400})
    db = tmp_path / "w"
    user_error(
        cli("ingest", "gsm8k", path, "--db", db),  # before: gold_answer inf in the problems table
        "1 malformed line(s), nothing loaded",
        "line 2: final answer '#### 999999999999...999999' "
        "(400 characters) is not a finite number (too large to store)",
        "--skip-invalid",
    )
    assert not db.exists()
    research = tmp_path / "research.json"
    research.write_text('[{"gsm8k_id": "g1", "question": "q?", "answer": ' + "9" * 400 + "}]")
    user_error(
        cli("run", "--dataset", research, *QUICK, "--db", db),  # before: OverflowError
        "record 0: answer 99999999999999...99999999 (400 characters) is not a finite number",
    )
    assert not db.exists()


def test_thousands_commas_only_in_groups_of_three(tmp_path):
    db = tmp_path / "w"
    path = jsonl(tmp_path / "commas.jsonl", {**A, "answer": "3+4=<<3+4=7>>7\n#### 1,2,3"})
    user_error(
        cli("run", "--dataset", path, *QUICK, "--db", db),  # before: gold 123
        "line 1: final answer '#### 1,2,3' is malformed: a comma separates thousands only between groups "
        "of exactly three digits (1,234)",
    )
    research = tmp_path / "research.json"
    research.write_text(json.dumps([{"gsm8k_id": "g1", "question": A["question"], "answer": "1,2,3"}]))
    user_error(
        cli("run", "--dataset", research, *QUICK, "--db", db),
        "record 0: answer '1,2,3' is not a number: a comma separates thousands only",
    )
    assert not db.exists()
    good = jsonl(tmp_path / "good.jsonl", {**A, "answer": "#### 1,234"}, {**B, "answer": "#### -12,345.5"})
    assert cli("ingest", "gsm8k", good, "--db", db).exit_code == 0
    assert sorted(v for (v,) in fetch(db, "SELECT gold_answer FROM problems")) == [-12345.5, 1234.0]
    # model outputs keep their parsing: a malformed number is never glued into 123
    assert parse_answer("The answer is: 1,2,3") == 1.0 and parse_answer("#### 1,2,3") == 1.0
    assert parse_answer("The answer is: 1,234") == 1234.0


def test_nan_or_inf_attention_weights_in_a_legacy_array_are_refused(legacy, tmp_path):
    patterns = legacy["patterns"].copy()
    patterns[1, 0, 1, 4, 2] = np.inf
    np.save(legacy["npy"], patterns)
    db = tmp_path / "w"
    user_error(
        ingest_legacy(legacy, db),  # before: imported
        f"{legacy['npy']}: 1 non-finite attention weight(s) (NaN or inf), first for problem t2 "
        "(array index 1) layer 0 head 1 cell [4, 2] = inf",
        "nothing imported",
    )
    assert not db.exists()


def test_two_metadata_problems_sharing_one_array_index_are_refused(legacy, tmp_path):
    meta = json.loads(legacy["meta"].read_text())
    meta["problems"][1]["index"] = 0
    legacy["meta"].write_text(json.dumps(meta))
    db = tmp_path / "w"
    user_error(
        ingest_legacy(legacy, db),  # before: imported, both problems with the first one's attention
        f"{legacy['meta']}: problems[1] (problem t2): array index 0 is already used by problems[0] "
        "(problem t1); each problem needs its own index into attention_patterns_raw.npy",
    )
    assert not db.exists()
    meta["problems"][1]["index"] = 1
    legacy["meta"].write_text(json.dumps(meta))
    out = ingest_legacy(legacy, db)
    assert out.exit_code == 0, out.stderr


# --- 6. pipes -----------------------------------------------------------------------------------------------
class Unblocker:
    """Opens a FIFO for writing whenever a reader waits on it, so a reader that blocks fails the test (its
    input is empty) instead of hanging it."""

    def __init__(self, fifo: Path):
        self.fifo, self.done = fifo, threading.Event()
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self):
        while not self.done.wait(0.05):
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader waiting
                continue
            os.close(fd)

    def stop(self):
        self.done.set()
        self.thread.join(5)


def test_a_fifo_or_dev_fd_pipe_as_dataset_is_refused_before_opening(tmp_path):
    db = tmp_path / "w"
    fifo = tmp_path / "data.fifo"
    os.mkfifo(fifo)
    unblocker = Unblocker(fifo)
    try:
        user_error(
            cli("run", "--dataset", fifo, *QUICK, "--db", db),  # before: hung forever
            f"dataset file {fifo} is a pipe, not a file; save it to a file first and give that file",
        )
        user_error(cli("ingest", "legacy", fifo, "--db", db), f"legacy file {fifo} is a pipe, not a file")
    finally:
        unblocker.stop()
    content = (json.dumps(A) + "\n").encode()
    read_end, write_end = os.pipe()  # what `--dataset <(cat file)` gives: /dev/fd/N
    try:
        os.write(write_end, content)
        os.close(write_end)
        pipe = f"/dev/fd/{read_end}"
        for args in (["run", "--dataset", pipe, *QUICK], ["ingest", "gsm8k", pipe]):
            user_error(
                cli(*args, "--db", db),  # before: consumed the input, then "dataset file not found"
                f"dataset file {pipe} is a pipe, not a file",
            )
        assert os.read(read_end, 1 << 16) == content  # nothing consumed
    finally:
        os.close(read_end)
    user_error(
        cli("run", "--dataset", tmp_path, *QUICK, "--db", db),  # before: "dataset file not found"
        f"dataset file {tmp_path} is a directory, not a file",
    )
    assert not db.exists()


# --- donor methods on one problem; resuming under other measure definitions -----------------------------
def test_donor_methods_need_another_problem(tmp_path):
    db = tmp_path / "w"
    for methods in ("mean", "zero,random"):
        user_error(
            cli("run", "--problems", 1, "--methods", methods, "--db", db),
            "take(s) values from other problems",
            "at least 2 problems",
        )
    assert not db.exists()  # refused before the warehouse was created


def test_a_run_begun_under_other_measure_definitions_is_not_resumed(tmp_path, monkeypatch):
    import engine.runs.plan

    db = tmp_path / "w"
    flags = ["--problems", 2, "--methods", "zero", "--attention", "none", "--db", db]
    assert cli("run", *flags).exit_code == 0
    run_id = fetch(db, "SELECT run_id FROM runs")[0][0]
    monkeypatch.setattr(engine.runs.plan, "MEASURES_VERSION", engine.runs.plan.MEASURES_VERSION + 1)
    user_error(cli("run", "--resume", run_id, *flags), "different configuration")
