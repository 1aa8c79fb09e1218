"""Intervention families beyond one thought's block output (issue 20): thought pairs and triplets, head
ablation, attention-edge knockout, component patching. Each: the clean control reproduces the baseline,
the batched engine equals the one-at-a-time reference, and the intervention lands where it says."""

from __future__ import annotations

import copy
import json

import polars as pl
import pytest
import torch

from engine.interventions.chunk import run_chunk
from engine.interventions.conditions import (
    Part,
    build_conditions,
    draw_seed,
    parse_families,
    select_donor_pool,
)
from engine.interventions.loop import run_rows, start_questions
from engine.interventions.options import EngineOptions
from engine.interventions.patching import PatchPlan, decoder_blocks, output_projection
from engine.interventions.reference import run_reference
from engine.model.checkpoints import load_model
from engine.model.positions import N_THOUGHTS
from ingest.datasets import synthetic_problems

LAYER = 2
N_LAYERS, N_HEADS = 4, 4  # the random_codi fixture
KEYS = ["problem_id", "condition_id"]
MEASURES = ("kl_first", "kl_answer", "kl_max", "js_first", "entropy_first", "logp_gold", "disruption")


def options(families, methods=("zero", "clean"), combo=("zero", "mean", "clean"), attention="all", **kw):
    conditions = build_conditions(
        [LAYER],
        methods,
        (0.5,),
        families,
        combo,
        N_LAYERS,
        N_HEADS,
        kw.pop("head_steps", ((0, 1, 2, 3, 4, 5),)),
    )
    return EngineOptions((LAYER,), tuple(conditions), 0, attention, max_new_tokens=8, n_heads=N_HEADS, **kw)


@pytest.fixture(scope="module")
def problems():
    return synthetic_problems(5, seed=2)


def pool_for(model, problems, opts):
    ids = set(select_donor_pool(problems, seed=0, size=3))
    base = EngineOptions(opts.layers, opts.conditions[:1], 0, "none", max_new_tokens=8, n_heads=N_HEADS,
                         extra_sites=opts.recorded)  # fmt: skip
    return run_chunk(model, [p for p in problems if p.problem_id in ids], base).sites


ALL = ("thoughts", "pairs", "triplets", "heads", "edges", "components")


@pytest.fixture(scope="module")
def every_family(random_codi, problems):
    opts = options(ALL)
    pool = pool_for(random_codi, problems, opts)
    return opts, pool, run_chunk(random_codi, problems[:3], opts, pool)


def _with_baseline(results: pl.DataFrame) -> pl.DataFrame:
    base = results.filter(pl.col("method") == "baseline").select(
        "problem_id", pl.col("answer_text").alias("base_text"), pl.col("logp_gold").alias("base_logp")
    )
    return results.join(base, on="problem_id")


def test_row_columns_describe_each_family(every_family):
    opts, _, out = every_family
    r = out.results
    per_problem = r.filter(pl.col("problem_id") == r["problem_id"][0])
    counts = dict(per_problem.group_by("family").len().iter_rows())
    # thoughts: 6 x (zero, clean) + singles under mean (the pairs' method not among --methods)
    assert counts == {
        "baseline": 1,
        "thoughts": 6 * 3,
        "pairs": 15 * 3,
        "triplets": 20 * 3,
        "heads": N_LAYERS * N_HEADS * 3,
        "edges": 2 * 6 * 2,  # every layer and the patch layer, knockout and clean
        "components": 6 * 2 * 2,
    }
    pairs = per_problem.filter(pl.col("family") == "pairs")
    assert sorted(tuple(t) for t in pairs["thoughts"].to_list()) == sorted(
        [(a, b) for a in range(6) for b in range(a + 1, 6)] * 3
    )
    assert pairs["thought"].null_count() == pairs.height and (pairs["layer"] == LAYER).all()
    head = per_problem.filter((pl.col("family") == "heads") & (pl.col("layer") == 1) & (pl.col("head") == 3))
    assert head["thoughts"].to_list() == [list(range(6))] * 3 and set(head["site"]) == {"head"}
    assert json.loads(head["parts"][0]) == [
        {"site": "head", "layer": 1, "steps": list(range(6)), "method": head["method"][0], "head": 3}
    ]
    edges = per_problem.filter(pl.col("family") == "edges")
    assert set(edges["method"]) == {"knockout", "clean"} and set(edges["layer"].to_list()) == {None, LAYER}
    assert (edges["thoughts"].list.first() == edges["thought"]).all()
    assert json.loads(edges.filter(pl.col("thought") == 3)["parts"][0])[0]["steps"] == [4, 5, 6]
    comps = per_problem.filter(pl.col("family") == "components")
    assert set(comps["site"]) == {"attn", "mlp"} and (comps["thought"] >= 0).all()


def test_clean_control_reproduces_the_baseline_at_every_site(every_family):
    _, _, out = every_family
    clean = _with_baseline(out.results).filter(pl.col("method") == "clean")
    assert set(clean["family"]) == {"thoughts", "pairs", "triplets", "heads", "edges", "components"}
    assert (clean["answer_text"] == clean["base_text"]).all()
    assert ((clean["logp_gold"] - clean["base_logp"]).abs() < 1e-5).all()
    for col in ("kl_first", "kl_answer", "kl_max", "js_first", "disruption"):
        assert (clean[col].drop_nulls().abs() < 1e-6).all(), col
    att = pl.from_arrow(out.attention).with_columns(pl.col("problem_id").cast(pl.Utf8))
    cond = out.results.select(*KEYS, "method", "family")
    att = att.join(cond, on=KEYS)
    keys = ["problem_id", "layer", "head", "dst", "src"]
    base = att.filter(pl.col("method") == "baseline").select(*keys, pl.col("weight").alias("w0"))
    joined = att.filter(pl.col("method") == "clean").join(base, on=keys)
    assert (joined["weight"] - joined["w0"]).abs().max() < 1e-5


@pytest.fixture(scope="module")
def reference(random_codi, problems, every_family):
    opts, pool, _ = every_family
    picked = [c for c in opts.conditions if c.is_baseline or c.method != "clean"]
    # a sample of every family (the reference runs one condition at a time)
    by_family: dict[str, list] = {}
    for c in picked[1:]:
        by_family.setdefault(c.family, []).append(c)
    chosen = [picked[0]] + [c for group in by_family.values() for c in group[:: max(1, len(group) // 5)]]
    small = EngineOptions(opts.layers, tuple(chosen), 0, "all", max_new_tokens=8, n_heads=N_HEADS,
                          extra_sites=opts.recorded)  # fmt: skip
    return small, run_reference(random_codi, problems[1:2], small, pool)


def test_batched_matches_the_one_at_a_time_reference(problems, every_family, reference):
    _, _, out = every_family
    small, ref = reference
    ids = [c.condition_id for c in small.conditions]
    a = out.results.filter(
        (pl.col("problem_id") == problems[1].problem_id) & pl.col("condition_id").is_in(ids)
    )
    a, b = a.sort(KEYS), ref.results.sort(KEYS)
    assert a.height == b.height == len(ids) and set(a["family"]) == set(ALL) | {"baseline"}
    assert a["answer_text"].to_list() == b["answer_text"].to_list()
    assert a["donor_problem_id"].to_list() == b["donor_problem_id"].to_list()
    for col in MEASURES:
        diff = (a[col] - b[col]).abs().max()
        assert diff is None or diff < 1e-4, (col, diff)
    wa = pl.from_arrow(out.attention).with_columns(pl.col("problem_id").cast(pl.Utf8))
    wa = wa.filter((pl.col("problem_id") == problems[1].problem_id) & pl.col("condition_id").is_in(ids))
    wb = pl.from_arrow(ref.attention).with_columns(pl.col("problem_id").cast(pl.Utf8))
    keys = [*KEYS, "layer", "head", "dst", "src"]
    wa, wb = wa.sort(keys), wb.sort(keys)
    assert wa.select(keys).equals(wb.select(keys))
    assert (wa["weight"] - wb["weight"]).abs().max() < 1e-4


def test_rows_do_not_depend_on_batch_composition(random_codi, problems, every_family):
    opts, pool, out = every_family
    alone = run_chunk(random_codi, problems[1:2], opts, pool).results
    together = out.results.filter(pl.col("problem_id") == problems[1].problem_id)
    assert alone["answer_text"].to_list() == together["answer_text"].to_list()
    assert (alone["kl_max"] - together["kl_max"]).abs().max() < 1e-4


def test_edge_knockout_removes_exactly_the_named_attention(every_family):
    """Knocking out the edges into Tj: the captured weight from every later query (T(j+1)..T5, EOT) to Tj
    is 0 at the named layer (or at every layer), and nothing else is 0 that was not."""
    _, _, out = every_family
    att = pl.from_arrow(out.attention).with_columns(pl.col("problem_id").cast(pl.Utf8))
    att = att.join(out.results.select(*KEYS, "family", "method", pl.col("layer").alias("scope"),
                                      pl.col("thought").alias("key")), on=KEYS)  # fmt: skip
    knocked = att.filter((pl.col("family") == "edges") & (pl.col("method") == "knockout"))
    hit = (pl.col("src") == pl.col("key")) & (pl.col("dst") > pl.col("key"))
    at_layer = pl.col("scope").is_null() | (pl.col("layer") == pl.col("scope"))
    assert knocked.filter(hit & at_layer)["weight"].abs().max() == 0.0
    assert knocked.filter(hit & at_layer).height == 3 * N_HEADS * (N_LAYERS + 1) * sum(
        6 - j for j in range(6)
    )
    assert knocked.filter(~(hit & at_layer))["weight"].min() > 0.0  # softmax weights elsewhere stay positive
    # queries up to Tj are computed before the knockout: their weights equal the baseline's
    base = att.filter(pl.col("method") == "baseline").select("problem_id", "layer", "head", "dst", "src",
                                                               pl.col("weight").alias("w0"))  # fmt: skip
    early = knocked.filter(pl.col("dst") <= pl.col("key")).join(
        base, on=["problem_id", "layer", "head", "dst", "src"]
    )
    assert early.height > 0 and (early["weight"] - early["w0"]).abs().max() < 1e-5


@pytest.fixture(scope="module")
def tiny():
    """The bundled trained model: its answers move under interventions (a random model's barely move)."""
    return load_model("gpt2-tiny")


def _sole_head_model(model, layer: int, head: int):
    """A copy whose attention at `layer` is head `head` alone: the other heads' rows of the output projection
    and its bias are zero, so the attention output IS that head's contribution."""
    planted = copy.deepcopy(model)
    proj = output_projection(decoder_blocks(planted.codi)[layer])
    width = proj.weight.shape[0] // model.n_heads  # Conv1D: weight [in, out], input rows = heads side by side
    with torch.no_grad():
        keep = torch.zeros(proj.weight.shape[0], dtype=torch.bool)
        keep[head * width : (head + 1) * width] = True
        proj.weight[~keep] = 0
        proj.bias.zero_()
    return planted


def test_head_ablation_writes_the_named_heads_slice(tiny, problems):
    """Planted: at block 1 only head 2 reaches the residual. Zeroing head 2 at thought k is then the same as
    zeroing the block's attention output at k (components), and zeroing any other head of that block
    changes nothing: the slice is the right head's, at the right step."""
    planted = _sole_head_model(tiny, 1, 2)
    steps = tuple((k,) for k in range(N_THOUGHTS))
    conditions = build_conditions(
        [1], ("zero",), (), ("heads", "components"), ("zero",), 2, tiny.n_heads, steps
    )
    opts = EngineOptions((1,), tuple(conditions), 0, "none", n_heads=tiny.n_heads)
    r = _with_baseline(run_chunk(planted, problems[:3], opts).results)
    heads = r.filter((pl.col("family") == "heads") & (pl.col("layer") == 1))
    attn = r.filter((pl.col("family") == "components") & (pl.col("site") == "attn"))
    sole = heads.filter(pl.col("head") == 2).join(
        attn.select("problem_id", "thought", pl.col("answer_text").alias("a"), pl.col("kl_max").alias("k")),
        on=["problem_id", "thought"],
    )
    assert sole.height == 3 * N_THOUGHTS
    assert sole["answer_text"].to_list() == sole["a"].to_list()
    assert (sole["kl_max"] - sole["k"]).abs().max() < 1e-5
    assert sole["kl_max"].max() > 1e-3  # and it does something
    others = heads.filter(pl.col("head") != 2)
    assert (others["answer_text"] == others["base_text"]).all() and others["kl_max"].abs().max() < 1e-5


def test_head_mean_is_the_pools_mean_of_that_heads_slice(random_codi, problems):
    """`mean` at a head: the plan writes the donor pool's mean of that head's slice (the target left out)
    into that head's columns only, at the named step (the planted test shows where the columns land)."""
    opts = options(("heads",), combo=("mean",), attention="none", head_steps=((3,),))
    pool = pool_for(random_codi, problems, opts)
    from engine.interventions.chunk import build_plan

    target = problems[0]
    cond = next(c for c in opts.conditions if c.family == "heads" and c.layer == 2 and c.head == 1)
    _, state, z = start_questions(random_codi, [target.question])
    base = run_rows(random_codi, state, z, PatchPlan(), None, torch.zeros((1, 1), dtype=torch.long), False,
                    (LAYER,), 8, record=opts.recorded)  # fmt: skip
    plan, _ = build_plan([target], [cond], {"head": base.others["head"], "block": base.sites}, pool, opts)
    others = [pid for pid in sorted(k[1] for k in pool if isinstance(k, tuple)) if pid != target.problem_id]
    expected = torch.stack([pool[("head", pid)][2, 3, 16:32] for pid in others]).mean(0)
    rows, columns, values = plan.sites[("head", 2, 3)]
    assert rows.tolist() == [0] and columns.tolist() == [list(range(16, 32))]
    assert torch.allclose(values[0], expected)
    seen = []
    proj = output_projection(decoder_blocks(random_codi.codi)[2])
    handle = proj.register_forward_pre_hook(lambda m, a: seen.append(a[0][:, -1].clone()))  # returns None
    try:
        _, state, z = start_questions(random_codi, [target.question])
        run_rows(random_codi, state, z, plan, None, torch.zeros((1, 1), dtype=torch.long), False, None, 1)
    finally:
        handle.remove()
    # pre-hooks run in order of registration, the plan's first: this sees what the projection takes
    written = seen[3 + 1]  # the question pass is call 0; thought k is call k + 1
    assert torch.allclose(written[0, 16:32], expected, atol=1e-6)
    assert torch.allclose(written[0, :16], base.others["head"][0, 2, 3, :16], atol=1e-5)  # other heads kept
    assert torch.allclose(seen[3][0], base.others["head"][0, 2, 2], atol=1e-5)  # the step before: clean


def test_pairs_equal_the_plan_of_both_thoughts(random_codi, problems):
    """A pair (a, b) under zero is exactly zeroing the block output at Ta and at Tb in one run."""
    opts = options(("pairs",), combo=("zero",), attention="none")
    out = run_chunk(random_codi, problems[:2], opts).results
    pair = out.filter((pl.col("family") == "pairs") & (pl.col("thoughts") == [1, 4]))
    d = random_codi.codi.config.hidden_size
    for problem in problems[:2]:
        plan = PatchPlan()
        for k in (1, 4):
            plan.add(LAYER, k, torch.tensor([0]), torch.zeros(1, d))
        _, state, z = start_questions(random_codi, [problem.question])
        text = run_rows(random_codi, state, z, plan, None, torch.zeros((1, 1), dtype=torch.long), False, None,
                        8).texts[0]  # fmt: skip
        assert pair.filter(pl.col("problem_id") == problem.problem_id)["answer_text"][0] == text


def test_component_site_is_the_attention_output_not_the_block(random_codi, problems):
    """Zeroing block L's attention output at Tk: the block's output there becomes its input plus the MLP of
    that input (GPT-2: h + mlp(ln_2(h))), computed here by hand from the recorded input."""
    opts = options(("components",), methods=("zero",), attention="none")
    cond = next(c for c in opts.conditions if c.site == "attn" and c.thought == 2)
    from engine.interventions.chunk import build_plan

    block = decoder_blocks(random_codi.codi)[LAYER]
    seen = {}

    def keep(kind, value):  # a hook that returns a value would replace the module's input / output
        seen[(kind, len(seen))] = value[:, -1].clone()

    h1 = block.register_forward_pre_hook(lambda m, a: keep("in", a[0]))
    h2 = block.register_forward_hook(lambda m, a, o: keep("out", o[0] if isinstance(o, tuple) else o))
    try:
        _, state, z = start_questions(random_codi, [problems[0].question])
        no_gold = torch.zeros((1, 1), dtype=torch.long)
        base = run_rows(
            random_codi, state, z, PatchPlan(), None, no_gold, False, (LAYER,), 1, record=opts.recorded
        )
        plan, _ = build_plan(problems[:1], [cond], {"block": base.sites, **base.others}, {}, opts)
        seen.clear()
        _, state, z = start_questions(random_codi, [problems[0].question])
        run_rows(random_codi, state, z, plan, None, torch.zeros((1, 1), dtype=torch.long), False, None, 1)
    finally:
        h1.remove()
        h2.remove()
    calls = sorted(seen.items(), key=lambda kv: kv[0][1])
    ins = [v for (kind, _), v in calls if kind == "in"]
    outs = [v for (kind, _), v in calls if kind == "out"]
    h = ins[1 + 2]  # question pass, then thoughts 0, 1, 2
    with torch.no_grad():
        expected = h + block.mlp(block.ln_2(h))
    assert torch.allclose(outs[1 + 2], expected, atol=1e-5)
    assert not torch.allclose(outs[1 + 1], ins[1 + 1] + block.mlp(block.ln_2(ins[1 + 1])), atol=1e-3)


def test_seeds_follow_the_whole_condition(problems):
    """A classic condition keeps the seed it always had; a family condition's seed depends on its parts."""
    classic = build_conditions([LAYER], ("gauss",), (0.5,))[1]
    pairs = [c for c in build_conditions([LAYER], (), (0.5,), ("pairs",), ("gauss",)) if c.family == "pairs"]
    key = f"7|{problems[0].problem_id}|{LAYER}|0|gauss|0.5"
    import hashlib

    assert draw_seed(7, problems[0].problem_id, classic) == int.from_bytes(
        hashlib.sha256(key.encode()).digest()[:8], "little") >> 1  # fmt: skip
    seeds = {draw_seed(7, problems[0].problem_id, c) for c in pairs}
    assert len(seeds) == len(pairs) == 15


def test_default_family_keeps_the_classic_conditions():
    assert build_conditions([3], ("zero", "gauss"), (0.5, 1.0), ("thoughts",)) == build_conditions(
        [3], ("zero", "gauss"), (0.5, 1.0)
    )
    assert [c.condition_id for c in build_conditions([3])] == list(range(43))
    assert build_conditions([3])[1].parts == (Part("block", 3, (0,), "zero"),)
    with pytest.raises(ValueError, match="unknown"):
        parse_families("thoughts,pears")


def test_classic_views_read_only_the_classic_rows(tmp_path, tiny):
    """A run with every family: stg_results (and so every classic view) holds the baseline and the
    `thoughts` rows only; stg_interventions holds them all, with their family."""
    from engine import Execution, RunConfig, execute
    from warehouse import open_warehouse

    req = RunConfig(problems=2, methods="zero", families=",".join(ALL), attention="none", device="cpu")
    run = execute(req, str(tmp_path / "w"), Execution())["run_id"]
    store = open_warehouse(tmp_path / "w", read_only=True)
    classic = store.sql(f"SELECT method, count(*) n FROM stg_results WHERE run_id = '{run}' GROUP BY ALL")
    # baseline + 6 thoughts x zero + the pairs' singles under mean, per problem
    assert dict(classic.iter_rows()) == {"baseline": 2, "zero": 12, "mean": 12}
    every = store.sql(f"SELECT family, count(*) n FROM stg_interventions WHERE run_id = '{run}' GROUP BY ALL")
    assert set(dict(every.iter_rows())) == {"baseline", *ALL}
    stored = store.sql(f"SELECT count(*) n FROM results WHERE run_id = '{run}'")["n"][0]
    assert every["n"].sum() == stored
    importance = store.sql(f"SELECT * FROM importance_matrix WHERE run_id = '{run}'")
    assert importance.height > 0


def test_bench_engine_times_each_family_beside_thoughts():
    from engine import bench_engine, bench_engine_lines

    report = bench_engine(problems=2, seed_problems=1, rounds=3, attention="none", families="edges,pairs")
    families = report["families"]
    assert list(families) == ["thoughts", "edges", "pairs"]
    assert [f["conditions_per_problem"] for f in families.values()] == [42, 12, 30]
    for f in families.values():  # conditions per second = conditions x problems / the median time
        assert f["conditions_per_s"] == pytest.approx(
            f["conditions_per_problem"] / f["wall_s_per_problem"], rel=1e-3
        )
    text = "\n".join(bench_engine_lines(report))
    assert "engine per intervention family" in text and "edges" in text
    from engine.runs.bench import _family_options

    assert _family_options(None, (2,), "none", None) == {}  # without --family: the classic report alone


def test_top_heads_from_a_runs_descriptive_ranking(tmp_path):
    """--top-heads K@RUN names the K heads of RUN's head_metrics ranking (the view computes the composite),
    written out as layer.head so the config records the heads themselves."""
    from engine import Execution, RunConfig, execute
    from engine.runs.plan import resolve_top_heads
    from warehouse import open_warehouse

    db = str(tmp_path / "w")
    run = execute(RunConfig(problems=2, methods="zero", attention="baseline"), db, Execution())["run_id"]
    store = open_warehouse(db, read_only=True)
    ranked = store.sql(f"SELECT layer, head FROM head_metrics WHERE run_id = '{run}' ORDER BY rank LIMIT 3")
    expected = ",".join(f"{layer}.{head}" for layer, head in ranked.iter_rows())
    assert resolve_top_heads(RunConfig(top_heads="3@latest"), db).top_heads == expected
    assert resolve_top_heads(RunConfig(top_heads="1.2,0.0"), db).top_heads == "1.2,0.0"  # given: kept
    with pytest.raises(ValueError, match="ranked head"):
        resolve_top_heads(RunConfig(top_heads="99@latest"), db)
    with pytest.raises(ValueError, match="K@RUN"):
        resolve_top_heads(RunConfig(top_heads="x@latest"), db)
