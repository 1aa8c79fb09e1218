"""Result and attention rows of a chunk (SPEC 4, 5): polars for results, Arrow for attention.

Rows are built column-wise from tensors; the only Python loop is one iteration per condition row
(tens per problem), never one per attention weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import torch

from engine.interventions.conditions import BASELINE, Condition
from engine.interventions.loop import DST_CODES, SRC_CODES, VISIBLE, RowOutcome
from engine.interventions.measures import at_position, attention_disruption, compare_distributions, entropy
from engine.interventions.options import EngineOptions
from engine.interventions.readouts import readout_tables
from engine.model.answer_tokens import number_token_index
from engine.model.answers import is_correct, parse_answer
from engine.model.codi import CodiModel
from warehouse import schema


@dataclass
class ChunkOutput:
    results: pl.DataFrame
    attention: pa.Table | None
    # problem id -> clean block outputs [n_layers_selected, 6, d]; (site, problem id) -> the other sites'
    # clean values (attn, mlp, head), when the run records them (chunk.site_pool reads both)
    sites: dict
    # the baseline rows' readouts by table (schema.READOUT_TABLES), those the options ask for
    readouts: dict[str, pa.Table] = field(default_factory=dict)


# --- rows -----------------------------------------------------------------------------------------
def _result_schema() -> dict[str, pl.DataType]:
    """The `results` columns a chunk produces, as polars types, derived from warehouse/schema.py (the one
    statement of them): the key (problem_id, condition_id) first, then the table's order; run_id is left
    out (the store adds it), and dictionary-encoded strings are plain strings here."""
    arrow = schema.arrow_schema("results")
    key = schema.KEYS["results"]
    names = [*key, *(n for n in arrow.names if n not in key and n != "run_id")]
    fields = [arrow.field(n) for n in names]
    plain = pa.schema(
        [(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type) for f in fields]
    )
    return dict(pl.from_arrow(plain.empty_table()).schema)


RESULT_SCHEMA = _result_schema()


def _finite_or_none(values: torch.Tensor) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values.double().cpu().tolist()]


def condition_measures(
    model: CodiModel,
    base: RowOutcome,
    outcome: RowOutcome,
    row_problem: torch.Tensor,
    number_index: list[int | None],
) -> dict[str, list]:
    """KL/JS/entropy/disruption of each condition row against its problem's baseline.

    Along the baseline's answer tokens (teacher-forced): position 0 is the distribution at EOT, whose
    next token is the answer template's first word ("The"), nearly certain under any corruption, so
    the `*_first` measures stay near 0 even when the answer changes; `kl_answer`, `js_answer` and
    `entropy_answer` are taken where the answer number is predicted (NULL when the baseline answer
    has no number); `kl_max` is the largest KL over the baseline answer's own positions (not padding).
    """
    idx = torch.tensor([-1 if i is None else i for i in number_index], device=row_problem.device)[row_problem]
    compared = outcome.divergence
    if compared is None:
        assert outcome.forced_logp is not None and base.forced_logp is not None
        width = outcome.forced_logp.shape[1]
        compared = compare_distributions(base.forced_logp[row_problem, :width], outcome.forced_logp, idx)
    kl = compared["kl"]  # [N, T]
    width = kl.shape[1]
    lengths = torch.tensor([len(t) for t in base.tokens], device=kl.device)[row_problem]
    valid = torch.arange(width, device=kl.device)[None, :] < lengths[:, None]
    kl_max = torch.where(valid, kl, torch.full_like(kl, float("-inf"))).max(-1).values
    idx = idx.to(kl.device)
    kl_answer = torch.where(
        idx >= 0, kl.gather(1, idx.clamp(min=0)[:, None])[:, 0], torch.full_like(kl_max, float("nan"))
    )
    base_row, cond_row = base.eot_row[row_problem], outcome.eot_row
    return {
        "kl_first": _finite_or_none(kl[:, 0]),
        "kl_answer": _finite_or_none(kl_answer),
        "kl_max": _finite_or_none(kl_max),
        "js_first": _finite_or_none(compared["js_first"]),
        "entropy_first": _finite_or_none(compared["entropy_first"]),
        "logp_gold": _finite_or_none(outcome.logp_gold),
        "disruption": _finite_or_none(attention_disruption(base_row, cond_row)),
        "js_answer": _finite_or_none(compared["js_answer"]),
        "entropy_answer": _finite_or_none(compared["entropy_answer"]),
    }


def baseline_measures(model: CodiModel, base: RowOutcome, number_index: list[int | None]) -> dict[str, list]:
    """The baseline rows' own measures: divergences from themselves are 0, unless the baseline's
    distribution is not finite (a broken checkpoint), where every measure is NULL, never 0."""
    assert base.forced_logp is not None and base.eot_logp is not None  # baseline rows keep their log-probs
    n = len(base.tokens)
    idx = torch.tensor([-1 if i is None else i for i in number_index], device=base.forced_logp.device)
    finite = ~torch.isnan(base.eot_logp).any(-1) & (base.eot_logp < float("inf")).all(
        -1
    )  # -inf: masked tokens
    zero = torch.where(
        finite, torch.zeros(n, device=finite.device), torch.full((n,), float("nan"), device=finite.device)
    )
    answer_zero = torch.where(idx >= 0, zero, torch.full_like(zero, float("nan")))
    return {
        "kl_first": _finite_or_none(zero),
        "kl_answer": _finite_or_none(answer_zero),
        "kl_max": _finite_or_none(zero),
        "js_first": _finite_or_none(zero),
        "disruption": _finite_or_none(zero),
        "entropy_first": _finite_or_none(entropy(base.eot_logp)),
        "logp_gold": _finite_or_none(base.logp_gold),
        "js_answer": _finite_or_none(answer_zero),
        "entropy_answer": _finite_or_none(entropy(at_position(base.forced_logp, idx))),
    }


def assemble(
    model: CodiModel,
    problems: list,
    opts: EngineOptions,
    base: RowOutcome,
    outcome: RowOutcome | None,
    corrupt: list[Condition],
    donors: list,
) -> ChunkOutput:
    n_problems, n_corrupt = len(problems), len(corrupt)
    base_values = [parse_answer(t) for t in base.texts]
    base_correct = [is_correct(v, p.gold) for v, p in zip(base_values, problems, strict=True)]
    columns: dict[str, list] = {k: [] for k in RESULT_SCHEMA}
    number_index = [number_token_index(model, t) for t in base.tokens]
    own = baseline_measures(model, base, number_index)
    for p, problem in enumerate(problems):
        _append_row(
            columns,
            problem,
            Condition(0, BASELINE),
            (None, None),
            base.texts[p],
            base_values[p],
            base_correct[p],
            base_correct[p],
            {k: v[p] for k, v in own.items()},
        )
    if outcome is not None:
        row_problem = torch.arange(n_problems, device=outcome.eot_row.device).repeat_interleave(n_corrupt)
        measures = condition_measures(model, base, outcome, row_problem, number_index)
        for row, text in enumerate(outcome.texts):
            p = row // n_corrupt
            value = parse_answer(text)
            _append_row(
                columns,
                problems[p],
                corrupt[row % n_corrupt],
                donors[row],
                text,
                value,
                is_correct(value, problems[p].gold),
                base_correct[p],
                {k: v[row] for k, v in measures.items()},
            )
    results = pl.DataFrame(columns, schema=RESULT_SCHEMA)
    attention = attention_table(problems, base, outcome, corrupt, opts)
    sites: dict = (
        {p.problem_id: base.sites[i] for i, p in enumerate(problems)} if base.sites is not None else {}
    )
    for site, values in (base.others or {}).items():  # the other sites' values, keyed (site, problem id)
        sites.update({(site, p.problem_id): values[i] for i, p in enumerate(problems)})
    return ChunkOutput(results, attention, sites, readout_tables(model, problems, base, opts))


def condition_columns(cond: Condition) -> dict:
    """The result columns that say what a row's condition is (the engine's rows and the peers' alike)."""
    return {
        "condition_id": cond.condition_id,
        "layer": cond.layer,
        "thought": cond.thought,
        "method": cond.method,
        "sigma": cond.sigma,
        "family": BASELINE if cond.is_baseline else cond.family,
        "site": None if cond.is_baseline else cond.site,
        "head": cond.head,
        "thoughts": cond.thoughts,
        "parts": cond.parts_json,
    }


def _append_row(columns, problem, cond: Condition, donor, text, value, correct, base_correct, measures):
    row = {
        "problem_id": problem.problem_id,
        **condition_columns(cond),
        "donor_problem_id": donor[0],
        "donor_thought": donor[1],
        "answer_text": text,
        "answer_value": value if value is None or math.isfinite(value) else None,
        "correct": correct,
        "flipped": base_correct and not correct,
        "fixed": (not base_correct) and correct,
        **measures,
    }
    for key, val in row.items():
        columns[key].append(val)


def attention_table(
    problems: list,
    base: RowOutcome,
    outcome: RowOutcome | None,
    corrupt: list[Condition],
    opts: EngineOptions,
) -> pa.Table | None:
    """Long-format attention rows built with numpy (no Python loop over rows)."""
    if opts.attention == "none" or base.attention is None:
        return None
    blocks = [base.attention]
    problem_index = [np.arange(len(problems))]
    condition_ids = [np.zeros(len(problems), dtype=np.int16)]
    if opts.condition_attention and outcome is not None and outcome.attention is not None:
        blocks.append(outcome.attention)
        problem_index.append(np.repeat(np.arange(len(problems)), len(corrupt)))
        condition_ids.append(
            np.tile(np.array([c.condition_id for c in corrupt], dtype=np.int16), len(problems))
        )
    weights = torch.cat(blocks).cpu().numpy()  # [R, L, H, 7, 9]
    n_rows, n_layers, n_heads = weights.shape[:3]
    weights = weights[:, :, :, VISIBLE]  # [R, L, H, 42]
    per_head = weights.shape[-1]
    dst = np.broadcast_to(DST_CODES[:, None], VISIBLE.shape)[VISIBLE]
    src = np.broadcast_to(SRC_CODES[None, :], VISIBLE.shape)[VISIBLE]
    per_row = n_layers * n_heads * per_head
    indices = np.repeat(np.concatenate(problem_index).astype(np.int32), per_row)
    return pa.table(
        {
            "problem_id": pa.DictionaryArray.from_arrays(indices, pa.array([p.problem_id for p in problems])),
            "condition_id": np.repeat(np.concatenate(condition_ids), per_row),
            "layer": np.tile(np.repeat(np.arange(n_layers, dtype=np.int16), n_heads * per_head), n_rows),
            "head": np.tile(np.repeat(np.arange(n_heads, dtype=np.int16), per_head), n_rows * n_layers),
            "dst": np.tile(dst, n_rows * n_layers * n_heads),
            "src": np.tile(src, n_rows * n_layers * n_heads),
            "weight": weights.reshape(-1).astype(np.float32),
        }
    )
