"""Readouts of the baseline rows (schema 7): states, the logit lens, question tokens and their attention.

Each is checked against a computation that does not share the engine's code path: the model's own
`output_hidden_states` and LM head, a plain one-problem loop, the `attention` rows of the same run.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest
import torch

from engine import RunConfig, run_experiment
from engine.interventions.chunk import run_chunk
from engine.interventions.conditions import build_conditions
from engine.interventions.options import EngineOptions
from engine.interventions.readouts import question_numbers
from engine.model.positions import N_THOUGHTS
from ingest.datasets import synthetic_problems
from warehouse import schema

LAYER = 2
TOP = 4


@pytest.fixture(scope="module")
def problems():
    return synthetic_problems(3, seed=5)


@pytest.fixture(scope="module")
def chunk(random_codi, problems):
    opts = EngineOptions(
        (LAYER,),
        tuple(build_conditions([LAYER], ("zero",))),
        0,
        "tokens",
        max_new_tokens=8,
        states=True,
        decode_top=TOP,
        n_heads=random_codi.n_heads,
    )
    return run_chunk(random_codi, problems, opts)


def frame(table) -> pl.DataFrame:
    return pl.from_arrow(table).with_columns(pl.col("problem_id").cast(pl.Utf8))


@torch.no_grad()
def direct_pass(model, question: str):
    """One problem through the CODI loop by hand: per position T0..T5, EOT, the fed vector, HF's own
    hidden states (output_hidden_states) and the logits of the EOT step."""
    batch = model.question_batch([question])
    state, out = model.start(batch)
    z = model.project(out.hidden_states[-1][:, -1:, :])
    fed, hidden = [], []
    for _ in range(N_THOUGHTS):
        out = model.step(state, z, output_hidden_states=True)
        fed.append(z[0, 0])
        hidden.append([h[0, -1] for h in out.hidden_states])
        z = model.project(out.hidden_states[-1][:, -1:, :])
    eot = model.embed(torch.tensor([[model.eot_id]]))
    out = model.step(state, eot, output_hidden_states=True)
    fed.append(eot[0, 0])
    hidden.append([h[0, -1] for h in out.hidden_states])
    return fed, hidden, out.logits[0, -1]


@torch.no_grad()
def test_states_and_decoding_equal_the_models_own_hidden_states_and_head(random_codi, problems, chunk):
    """Layer L's state is block L's output: HF's hidden_states[L + 1] (the last one after the final norm, so
    the lens of the last layer is the model's own next-token distribution); layer -1 is the vector fed."""
    model = random_codi
    n_layers = model.n_layers
    states = frame(chunk.readouts["states"])
    decoding = frame(chunk.readouts["decoding"])
    assert states.height == len(problems) * (n_layers + 1) * (N_THOUGHTS + 1)
    assert decoding.height == states.height * TOP
    head = model.codi.get_output_embeddings()
    norm = model.codi.transformer.ln_f
    for problem in problems:
        fed, hidden, eot_logits = direct_pass(model, problem.question)
        mine = states.filter(pl.col("problem_id") == problem.problem_id)
        for position in range(N_THOUGHTS + 1):
            at = mine.filter(pl.col("position") == position).sort("layer")
            vectors = torch.tensor(np.stack(at["state"].to_list()), dtype=torch.float32)
            assert at["layer"].to_list() == list(range(-1, n_layers))
            torch.testing.assert_close(vectors[0], fed[position], rtol=1e-5, atol=1e-5)
            for layer in range(n_layers - 1):
                torch.testing.assert_close(
                    vectors[layer + 1], hidden[position][layer + 1], rtol=1e-4, atol=1e-4
                )
            # the last block's output, through the final norm, is HF's last hidden state
            torch.testing.assert_close(
                norm(vectors[n_layers]), hidden[position][n_layers], rtol=1e-4, atol=1e-4
            )
            for layer in range(-1, n_layers):
                if layer == n_layers - 1:
                    want = hidden[position][n_layers]  # already normed
                elif layer == -1:
                    want = norm(fed[position])
                else:
                    want = norm(hidden[position][layer + 1])
                probs = torch.softmax(head(want)[: model.base_vocab_size].float(), -1)
                top = probs.topk(TOP)
                got = decoding.filter(
                    (pl.col("problem_id") == problem.problem_id)
                    & (pl.col("position") == position)
                    & (pl.col("layer") == layer)
                ).sort("rank")
                assert got["rank"].to_list() == list(range(1, TOP + 1))
                assert got["token_id"].to_list() == top.indices.tolist(), (position, layer)
                np.testing.assert_allclose(got["prob"].to_numpy(), top.values.numpy(), rtol=1e-4, atol=1e-6)
                assert got["token_text"].to_list() == [
                    model.tokenizer.decode([t]) for t in top.indices.tolist()
                ]
        # EOT at the last layer: the model's own prediction at EOT (its answer's first token)
        eot_probs = torch.softmax(eot_logits[: model.base_vocab_size].float(), -1)
        first = decoding.filter(
            (pl.col("problem_id") == problem.problem_id)
            & (pl.col("position") == N_THOUGHTS)
            & (pl.col("layer") == n_layers - 1)
            & (pl.col("rank") == 1)
        )
        assert first["token_id"].item() == int(eot_probs.argmax())
        assert first["prob"].item() == pytest.approx(float(eot_probs.max()), rel=1e-4)


def test_decoding_never_names_an_extra_token(random_codi, chunk):
    decoding = frame(chunk.readouts["decoding"])
    assert decoding["token_id"].max() < random_codi.base_vocab_size
    assert ((decoding["prob"] > 0) & (decoding["prob"] <= 1)).all()
    ordered = decoding.group_by("problem_id", "layer", "position").agg(pl.col("prob").sort_by("rank"))
    assert all(list(p) == sorted(p, reverse=True) for p in ordered["prob"].to_list())


def test_states_at_the_patch_layer_are_the_clean_values_the_conditions_patch(problems, chunk):
    states = frame(chunk.readouts["states"]).filter(pl.col("layer") == LAYER, pl.col("position") < N_THOUGHTS)
    for problem in problems:
        got = states.filter(pl.col("problem_id") == problem.problem_id).sort("position")
        clean = chunk.sites[problem.problem_id][0]  # [6, d] block LAYER's outputs at T0..T5
        torch.testing.assert_close(
            torch.tensor(np.stack(got["state"].to_list()), dtype=torch.float32), clean, rtol=1e-6, atol=1e-6
        )


def test_token_attention_rows_sum_with_the_other_keys_to_one(chunk):
    """Per (problem, layer, head, query): the question tokens' weights sum to the `attention` row of the
    question (src -2), and with BOT, the thoughts and EOT to 1."""
    tokens = frame(chunk.readouts["token_attention"])
    attention = frame(chunk.attention).filter(pl.col("condition_id") == 0)
    keys = ["problem_id", "layer", "head", "dst"]
    summed = tokens.group_by(keys).agg(pl.col("weight").sum().alias("tokens"))
    rest = attention.group_by(keys).agg(
        pl.col("weight").filter(pl.col("src") == -2).sum().alias("question"),
        pl.col("weight").filter(pl.col("src") != -2).sum().alias("other"),
    )
    joined = summed.join(rest, on=keys, how="inner")
    assert joined.height == summed.height == rest.height == attention.select(keys).unique().height
    np.testing.assert_allclose(joined["tokens"], joined["question"], atol=1e-5)
    np.testing.assert_allclose(joined["tokens"] + joined["other"], 1.0, atol=1e-5)


def test_question_tokens_spell_the_question_and_mark_its_numbers(random_codi, problems, chunk):
    tokens = frame(chunk.readouts["question_tokens"])
    for problem in problems:
        mine = tokens.filter(pl.col("problem_id") == problem.problem_id).sort("token_pos")
        assert mine["token_pos"].to_list() == list(range(mine.height))
        assert (
            mine["token_id"].to_list() == random_codi.encode_question(problem.question)[:-1]
        )  # BOT left out
        assert "".join(mine["token_text"].to_list()) == problem.question
        numbers = {float(n) for n in re.findall(r"\d+", problem.question)}
        marked = mine.filter(pl.col("number").is_not_null())
        assert set(marked["number"].to_list()) == numbers
        # every marked token is made of digits of its number
        for text, number in zip(marked["token_text"], marked["number"], strict=True):
            assert text.strip() and text.strip() in str(int(number))


def test_question_numbers_read_commas_and_decimals(random_codi):
    ids, numbers = question_numbers(random_codi, "Ann pays 1,200 dollars and 2.5 more for 3 eggs.")
    texts = [random_codi.tokenizer.decode([t]) for t in ids]
    by_number: dict[float, str] = {}
    for text, number in zip(texts, numbers, strict=True):
        if number is not None:
            by_number[number] = by_number.get(number, "") + text
    assert {k: v.strip() for k, v in by_number.items()} == {1200.0: "1,200", 2.5: "2.5", 3.0: "3"}


def test_a_run_with_readouts_stores_them_and_a_plain_run_decodes_only(tmp_path):
    """Through the public API on the bundled model: --states --attention tokens writes all four tables; the
    defaults write the logit lens only (top 5); the config records what a run keeps."""
    full = run_experiment(
        RunConfig(problems=3, layer=3, methods="zero", states=True, attention="tokens"), tmp_path / "w"
    )
    plain = run_experiment(RunConfig(problems=3, layer=3, methods="zero"), tmp_path / "w")
    counts = {}
    for run in (full, plain):
        with run.reader() as con:
            counts[run.run_id] = {
                t: con.execute(f"SELECT count(*) FROM {t} WHERE run_id = ?", [run.run_id]).fetchall()[0][0]
                for t in schema.READOUT_TABLES
            }
    n_layers, positions = 6, N_THOUGHTS + 1
    assert counts[full.run_id]["states"] == 3 * (n_layers + 1) * positions
    assert counts[full.run_id]["decoding"] == 3 * (n_layers + 1) * positions * 5
    assert counts[full.run_id]["question_tokens"] > 0 and counts[full.run_id]["token_attention"] > 0
    assert counts[plain.run_id] == {
        "states": 0,
        "decoding": 3 * (n_layers + 1) * positions * 5,
        "question_tokens": 0,
        "token_attention": 0,
    }
    keys, matrix = full.states(layer=3)  # the Python face: keys in run order, one float32 row per key
    assert matrix.shape == (3 * positions, 128) and matrix.dtype == np.float32
    assert keys["ordinal"].to_list() == [o for o in range(3) for _ in range(positions)]
    assert keys["position"].to_list() == list(range(positions)) * 3 and set(keys["layer"]) == {3}
    with full.reader() as con:
        first = con.execute(
            "SELECT state FROM states WHERE run_id = ? AND problem_id = ? AND layer = 3 AND position = 0",
            [full.run_id, keys["problem_id"][0]],
        ).fetchall()[0][0]
    np.testing.assert_array_equal(matrix[0], np.array(first, dtype=np.float32))
    config = full.lineage["config_json"]
    assert (config["states"], config["attention"], config["decode_top"]) == (True, "tokens", 5)
    assert "states" not in plain.lineage["config_json"]  # only when asked: older configs stay as they were


@pytest.mark.slow
def test_bench_engine_times_each_readout_in_the_same_rounds():
    from engine import bench_engine, bench_engine_lines
    from engine.runs.bench import READOUTS

    report = bench_engine(problems=2, seed_problems=1, rounds=3, attention="baseline", readouts=True)
    assert list(report["readouts"]) == list(READOUTS)
    plain = [r["wall_s"] for r in report["paths"]["engine"]["rounds"]]
    for r in report["readouts"].values():
        assert r["wall_s_per_problem"] > 0 and 0.2 < r["vs_plain"] < 20 and len(plain) == 3
    text = "\n".join(bench_engine_lines(report))
    assert "engine with readouts" in text and "all_three" in text
    assert bench_engine(problems=2, seed_problems=1, rounds=3, attention="none")["readouts"] == {}
