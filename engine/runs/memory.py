"""How much memory a run's chunk takes, before it runs: an inventory of what the engine allocates.

`estimate_chunk_memory` counts, term by term, the tensors and rows that are alive together while one
chunk of `n_problems` problems runs (engine/interventions/chunk.py, staged.py, loop.py, rows.py) and
while the writer thread commits earlier chunks (engine/runs/local.py). Every term is one line of
`_terms` below: a name, its bytes, and how they are counted, so a change in the engine changes one line.

The terms are grouped by when they are alive:

    throughout            the Python runtime, the weights, the baseline rows, the writer's chunks
    forced pass (layers)  the staged pass of the condition rows (staged.py): their KV cache, the copy of it
                          that rows decoded again or teacher-forced on the gold answer take, the kept
                          log-probs, and one layer's activations of a teacher-forced pass
    forced pass (logits)  the same, with that pass's logits instead of its layers' activations
    measures              after it (rows.py): the rows' log-probs beside their baselines' and the KL's
                          temporaries, the chunk's result and attention rows being built

and the peak is `throughout` plus the largest step. The estimate is an upper bound under the
engine's worst case, and no closer than that: every condition row may need its own decode and gold
pass (a model that gets every baseline wrong, or corruptions that change every answer), and every answer
is taken as `max_new_tokens` long unless `answer_length` says otherwise. Measured against real runs of
gpt2-tiny (tests/test_memory.py), less the runtime and the weights, it was 1.07-1.08 times the growth in
resident memory in that worst case (GSM8K, which gpt2-tiny never answers right), and 1.5-2.1 times on
synthetic problems, whose baselines are mostly right and whose answers are 8 tokens long. A chunk of a
random-weight GPT-2-124M (engine/model/arch.py; every answer wrong and 24 tokens long), where the
[rows, positions, vocabulary] tensors dominate, took 1/1.10 (1 problem) and 1/1.06 (2) of its estimate.
Those figures are from the engine before its row blocks; after them (`estimate_run_memory` passes the
engine's `row_block`) the bound is looser: 1.30-1.32 on the GSM8K worst case, 2.76 on synthetic problems
with --layers all (tests/test_memory.py).

`row_block`: rows whose teacher-forced log-probs exist at once. The engine (staged.answer_phase) applies
the head in blocks of `row_block_rows` rows and keeps per-position scalars: `estimate_run_memory` uses that.
None in `estimate_chunk_memory` is the engine before the row blocks (every row at once, the whole
[rows, positions, vocabulary] log-probs kept), the worst case the measurements above were taken against.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.model.positions import N_THOUGHTS

if TYPE_CHECKING:
    from engine.model.codi import CodiModel
    from engine.runs.plan import RunPlan

# What the process holds before its first chunk, beside the weights: Python with torch, transformers,
# polars, pyarrow and DuckDB imported, the tokenizer and the warehouse open. Measured 575 MB on the
# 2-core CPU machine (torch 2.13 CPU build); a CUDA build holds more host memory.
RUNTIME_BYTES = 575 * 10**6
# A CUDA context and torch's kernels on the GPU (typical; not measured here).
CUDA_CONTEXT_BYTES = 500 * 10**6
LOADED = ("runtime", "cuda_context", "weights")  # held before the first chunk
RESULT_ROW_BYTES = 150  # one `results` row in Arrow/polars (measured ~140: ids, answer text, 9 measures)
# one `attention` row: problem index 4 B, condition, layer, head, dst, src 2 B each, weight 4 B
ATTENTION_ROW_BYTES = 18
VISIBLE_PAIRS = 42  # (query, key) pairs stored per layer and head: Tk sees Q, BOT, T0..Tk; EOT sees all
COMMIT_FACTOR = 1.7  # DuckDB's working memory while it commits a chunk, per byte of its rows (measured)
# The teacher-forced log-probs of the condition rows and of their baselines side by side, and the KL's
# exp, product, mask, zeros and result: about 6.25 [rows, positions, vocabulary] float32 tensors at once.
MEASURE_COPIES = 6.25
# loop.py forced_log_probs: the pass's logits, their concatenation with EOT's, the masked copy (then its
# log-softmax in place of the concatenation): three [rows, positions, vocabulary] float32 at once
FORCED_LOGIT_COPIES = 3
# A margin for what no term names (token ids, masks, decode steps) and for blocks glibc keeps after they
# are freed, as a share of the chunk's tensors: on gpt2-tiny, live tensors (torch's profiler) were up to 5%
# above the terms before the forced pass's masks and hidden states were listed, resident memory 1-2% above
# live tensors
UNLISTED_SHARE = 0.05
EXTRA_TOKENS = 3  # CODI's pad, bot, eot: in the logits, never in the log-probs
SCALARS_PER_POSITION = 8  # with row blocks: what a row keeps per forced position instead of the vocabulary


@dataclass(frozen=True)
class ModelShape:
    """The sizes the estimate needs, read from a CodiModel (`ModelShape.of(model)`) or given directly."""

    layers: int
    heads: int
    kv_heads: int  # LLaMA's grouped-query attention keeps fewer key/value heads than query heads
    head_dim: int
    hidden: int  # d_model
    intermediate: int  # the MLP's hidden width
    vocab: int  # the logits' width: the base vocabulary and CODI's three extra tokens
    dtype_bytes: int  # 4 (float32, CPU) or 2 (bfloat16, CUDA)
    weights_bytes: int
    device: str = "cpu"  # "cpu" or "cuda"

    @classmethod
    def of(cls, model: CodiModel) -> ModelShape:
        config = model.codi.config
        hidden = config.hidden_size
        heads = config.num_attention_heads
        parameters = {id(p): p for p in model.parameters()}.values()  # tied weights once
        weights = sum(p.numel() * p.element_size() for p in parameters)
        weights += sum(b.numel() * b.element_size() for b in model.buffers())
        dtype = next(model.parameters())
        return cls(
            layers=config.num_hidden_layers,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or hidden // heads,
            hidden=hidden,
            intermediate=getattr(config, "intermediate_size", None)
            or getattr(config, "n_inner", None)
            or 4 * hidden,
            vocab=config.vocab_size,
            dtype_bytes=dtype.element_size(),
            weights_bytes=weights,
            device="cuda" if model.device.type == "cuda" else "cpu",
        )


@dataclass(frozen=True)
class Term:
    """One line of the inventory: `nbytes` of what `name` holds, counted as `counted`."""

    name: str
    nbytes: int
    counted: str
    on_device: bool = True  # on the model's device (the GPU under CUDA); False: host memory

    def to_dict(self) -> dict:
        return {"bytes": self.nbytes, "counted": self.counted, "on_device": self.on_device}


@dataclass(frozen=True)
class MemoryEstimate:
    """A chunk's memory, term by term. `peak`: the bound `--max-memory` is held to (RAM on CPU; the
    GPU's memory under CUDA, where `host_peak` is the RAM)."""

    n_problems: int  # problems per chunk
    rows: int  # condition rows the staged pass runs at once (problems x corrupted conditions)
    device: str
    throughout: tuple[Term, ...]
    steps: dict[str, tuple[Term, ...]] = field(default_factory=dict)

    def _sum(self, terms: tuple[Term, ...], device: bool | None) -> int:
        return sum(t.nbytes for t in terms if device is None or t.on_device == device)

    def _peak(self, device: bool | None) -> tuple[int, str]:
        step, most = max(
            ((name, self._sum(terms, device)) for name, terms in self.steps.items()), key=lambda s: s[1]
        )
        return self._sum(self.throughout, device) + most, step

    @property
    def peak(self) -> int:
        return self._peak(None if self.device == "cpu" else True)[0]

    @property
    def host_peak(self) -> int:
        """RAM: the same as `peak` on CPU."""
        return self._peak(None if self.device == "cpu" else False)[0]

    @property
    def peak_step(self) -> str:
        return self._peak(None if self.device == "cpu" else True)[1]

    def at_peak(self) -> tuple[Term, ...]:
        """The terms alive together at the peak, biggest first (on the device under CUDA)."""
        terms = self.throughout + self.steps[self.peak_step]
        if self.device != "cpu":
            terms = tuple(t for t in terms if t.on_device)
        return tuple(sorted(terms, key=lambda t: -t.nbytes))

    @property
    def engine_peak(self) -> int:
        """The peak less the runtime and the weights: what the run adds to a process that has loaded
        the model (what tests/test_memory.py compares with a real run's growth in resident memory)."""
        return self.peak - sum(t.nbytes for t in self.at_peak() if t.name in LOADED)

    def line(self) -> str:
        """One line for stderr: rows per chunk, the peak, the biggest terms."""
        where = "RAM" if self.device == "cpu" else "GPU memory"
        biggest = _biggest(self)
        host = "" if self.device == "cpu" else f"; {size_text(self.host_peak)} RAM"
        return (
            f"{self.n_problems} problem{'s' if self.n_problems != 1 else ''} per chunk "
            f"({self.rows:,} condition rows), estimated peak {size_text(self.peak)} of {where}{host} "
            f"({biggest})"
        )

    def to_dict(self) -> dict:
        """Plain values (`run --json`): each term once under "terms", the steps as lists of term names."""
        terms = {t.name: t for t in self.throughout + tuple(t for ts in self.steps.values() for t in ts)}
        return {
            "batch_size": self.n_problems,
            "rows_per_chunk": self.rows,
            "device": self.device,
            "peak_bytes": self.peak,
            "host_peak_bytes": self.host_peak,
            "peak_step": self.peak_step,
            "terms": {name: t.to_dict() for name, t in terms.items()},
            "throughout": [t.name for t in self.throughout],
            "steps": {name: [t.name for t in ts] for name, ts in self.steps.items()},
        }


def estimate_chunk_memory(
    model: CodiModel | ModelShape,
    n_problems: int,
    n_conditions: int,
    question_length: int,
    *,
    max_new_tokens: int = 24,
    attention: str = "all",
    answer_length: int | None = None,
    row_block: int | None = None,
) -> MemoryEstimate:
    """The memory of a chunk of `n_problems` problems, each run under `n_conditions` conditions (the
    baseline among them), questions up to `question_length` tokens (BOT included).

    `answer_length`: the longest answer teacher-forced, a baseline's or a gold one's, in tokens (None:
    `max_new_tokens`, the most a baseline answer has; a gold answer in the baseline's format can be a few
    tokens longer: `estimate_run_memory` counts them). `row_block`: see the module's docstring.
    """
    if n_problems < 1 or n_conditions < 1 or question_length < 1 or max_new_tokens < 1:
        raise ValueError("a chunk needs at least one problem, condition, question token and answer token")
    if attention not in ("all", "baseline", "none", "tokens"):
        raise ValueError("attention must be all, baseline, none or tokens")
    # tokens keeps what all keeps, plus the baseline rows' readouts: per problem layers x heads x 7 x question
    # floats and, with states, 7 x (layers + 1) x d floats (< 1 MB for GPT-2 shapes), left out of the estimate
    attention = "all" if attention == "tokens" else attention
    if row_block is not None and row_block < 1:
        raise ValueError("row_block must be a positive number of rows (or None: all rows at once)")
    if answer_length is not None and answer_length < 1:
        raise ValueError("answer_length must be a positive number of tokens (or None: max_new_tokens)")
    shape = model if isinstance(model, ModelShape) else ModelShape.of(model)
    throughout, steps = _terms(
        shape, n_problems, n_conditions, question_length, max_new_tokens, attention, answer_length, row_block
    )
    return MemoryEstimate(
        n_problems=n_problems,
        rows=n_problems * (n_conditions - 1),
        device=shape.device,
        throughout=throughout,
        steps=steps,
    )


def _terms(
    s: ModelShape,
    n: int,
    n_conditions: int,
    question_length: int,
    max_new_tokens: int,
    attention: str,
    answer_length: int | None,
    row_block: int | None,
) -> tuple[tuple[Term, ...], dict[str, tuple[Term, ...]]]:
    """The inventory: one term per line, the engine code it counts named beside it."""
    f32, d = 4, s.dtype_bytes
    rows = n * (n_conditions - 1)  # the staged batch: every corrupted condition of every problem
    block = rows if row_block is None else min(rows, row_block)  # rows whose log-probs exist at once
    longest = max_new_tokens if answer_length is None else answer_length
    forced = min(longest, max_new_tokens)  # T: the baseline answers (greedy, at most max_new_tokens)
    gold = longest  # G: the gold answers, in the baseline's format
    # the pass itself: with row blocks (staged.answer_phase) one pass feeds every row both answers as two
    # branches; without, a pass per answer over `block` rows (the widest: the gold answer)
    pass_rows, pass_width = (rows, forced + gold) if row_block is not None else (block, gold)
    # staged.py: the capacity; with row blocks the cache takes both answer branches (forced, then gold)
    after = forced + gold if row_block is not None else max(longest, max_new_tokens)
    positions = question_length + N_THOUGHTS + 1 + after
    kv_row = s.layers * 2 * s.kv_heads * positions * s.head_dim * d  # keys and values of one row
    captured = N_THOUGHTS + 1, N_THOUGHTS + 3  # loop.py: queries T0..T5, EOT x keys Q, BOT, T0..T5, EOT
    captured_bytes = (
        (rows if attention == "all" else 0) * s.layers * s.heads * captured[0] * captured[1] * f32
    )
    stored = {"all": n * n_conditions, "baseline": n, "none": 0}[attention]  # rows whose attention is kept
    chunk_rows = (
        n * n_conditions * RESULT_ROW_BYTES
        + stored * s.layers * s.heads * VISIBLE_PAIRS * ATTENTION_ROW_BYTES
    )
    log_vocab = s.vocab - EXTRA_TOKENS  # log-probs cover the base vocabulary only (CodiModel.head)
    kept = forced * (log_vocab if row_block is None else SCALARS_PER_POSITION) * f32  # per row
    # one layer of a teacher-forced pass over `block` rows and G positions (the gold pass, the widest):
    # eager attention (scores, scaled / masked / softmaxed one at a time: 2 alive, the float mask, q/k/v)
    # or the MLP (fc and activation, or LLaMA's gate, up and product), beside the block's hidden states
    scores = (
        pass_rows
        * pass_width
        * (2 * s.heads * positions * f32 + positions * f32 + (s.heads + 2 * s.kv_heads) * s.head_dim * d)
    )
    mlp = 3 * pass_rows * pass_width * s.intermediate * d
    hidden = 4 * pass_rows * pass_width * s.hidden * d
    host = s.device != "cpu"

    runtime = Term(
        "runtime", RUNTIME_BYTES, "Python, torch, transformers, polars, pyarrow, DuckDB (measured)", False
    )
    cuda = Term("cuda_context", CUDA_CONTEXT_BYTES, "the CUDA context (typical)")
    weights = Term("weights", s.weights_bytes, "the model's parameters and buffers")
    # chunk.py run_rows: the baseline's DynamicCache (grown by torch.cat: 2 copies at once), its log-probs
    baseline = Term(
        "baseline_rows",
        n * (2 * kv_row + FORCED_LOGIT_COPIES * gold * log_vocab * f32),
        f"{n} baseline rows: KV cache x2 (torch.cat), {FORCED_LOGIT_COPIES} [G, vocab] float32 log-probs",
    )
    writer = Term(  # local.py ChunkWriter: a queue of 2 chunks and the one being committed, as Arrow/polars
        "writer_queue",
        3 * chunk_rows,
        f"3 chunks' result and attention rows (2 queued, 1 committing) x {size_text(chunk_rows)}",
        False,
    )
    commit = Term(  # warehouse/store.py append_problems: conform, then DuckDB writing Parquet
        "commit",
        int(COMMIT_FACTOR * chunk_rows),
        f"DuckDB committing a chunk: {COMMIT_FACTOR} x its rows",
        False,
    )
    kv_cache = Term(  # kvcache.py StagedCache.allocate
        "staged_kv_cache",
        rows * kv_row,
        f"rows {rows} x layers {s.layers} x 2 x kv heads {s.kv_heads} x positions {positions} "
        f"x head dim {s.head_dim} x {d} B",
    )
    kv_copy = Term(  # staged.py _select -> StagedCache.select: rows decoded again / forced on another gold
        "kv_cache_copy",
        rows * kv_row,
        "the same again for the rows decoded again or teacher-forced on a gold answer (worst case: all)",
    )
    attention_kept = Term(  # staged.py: `attention` [rows, layers, heads, 7, 9] float32
        "captured_attention",
        captured_bytes,
        f"rows x layers x heads x {captured[0]} x {captured[1]} float32 (attention=all)",
    )
    eot_step = Term(  # staged.py: the EOT step's output: logits [rows, 1, V], attention [rows, heads, 1, kv]
        "eot_step",
        rows * (s.vocab + s.layers * s.heads * (question_length + N_THOUGHTS + 1)) * d,
        "the EOT step's logits and every layer's attention weights, kept through the forced pass",
    )
    log_probs = Term(  # loop.py forced_log_probs' result: kept for the answers, the gold pass, the measures
        "forced_log_probs",
        rows * kept,
        f"rows x T {forced} x "
        + (f"vocab {log_vocab}" if row_block is None else f"{SCALARS_PER_POSITION} scalars")
        + " float32",
    )
    # loop.py forced_log_probs: logits [B, G-1, V], torch.cat with EOT's, the masked clone, log_softmax
    logits = Term(
        "forced_logits",
        FORCED_LOGIT_COPIES * block * gold * log_vocab * f32,
        f"{FORCED_LOGIT_COPIES} x rows {block} x G {gold} x vocab {log_vocab} float32",
    )
    activations = Term(  # a forced pass, one layer at a time
        "forced_activations",
        max(scores, mlp) + hidden,
        f"one layer over rows {pass_rows} x {pass_width} positions: attention scores, mask and q/k/v, or "
        "the MLP; "
        "hidden states",
    )
    measures = Term(  # rows.py condition_measures: base_logp gathered per row, kl_divergence's temporaries
        "measure_copies",
        int(MEASURE_COPIES * block * kept),
        f"{MEASURE_COPIES} x rows x T x vocab float32 (the rows' and their baselines' log-probs, the KL's)",
    )
    attention_copies = Term(  # chunk.py take(): the outcome reordered (a copy of the attention)
        "captured_attention_copies", 2 * captured_bytes, "the captured attention and its reordered copy"
    )
    rows_built = Term(
        "chunk_rows", 2 * chunk_rows, "the chunk's result and attention rows being built (x2)", False
    )

    # The staged pass at its worst: the gold pass over every row, beside the copy of the cache it takes and
    # the log-probs the forced pass kept; a forced pass's layers and its logits are never alive together.
    staged = (kv_cache, kv_copy, attention_kept, eot_step, log_probs)
    steps = {
        "forced pass (layers)": (*staged, activations),
        "forced pass (logits)": (*staged, logits),
        "measures": (measures, attention_copies, rows_built),
    }
    largest = max(sum(t.nbytes for t in terms) for terms in steps.values())
    unlisted = Term(  # what no line above names
        "unlisted",
        int(UNLISTED_SHARE * (largest + baseline.nbytes)),
        f"{UNLISTED_SHARE:.0%} of the chunk's tensors: small ones not listed (ids, masks, decode steps) and "
        "freed blocks the allocator keeps",
    )
    throughout = (runtime, *((cuda,) if host else ()), weights, baseline, writer, commit, unlisted)
    return throughout, steps


def row_block_rows(width: int, vocab: int) -> int:
    """Rows per block of the engine's answer phase (engine/interventions/staged.py row_blocks)."""
    from engine.interventions.staged import ROW_BLOCK_FLOATS

    return max(1, ROW_BLOCK_FLOATS // max(1, width * vocab))


def estimate_run_memory(plan: RunPlan, batch_size: int, *, row_block: int | None = None) -> MemoryEstimate:
    """The estimate for `plan`'s chunks of `batch_size` problems: its longest question, and its longest
    answer teacher-forced (a gold answer in the baseline's format can outgrow max_new_tokens)."""
    return _estimate(plan, batch_size, len(plan.conditions), plan.opts.attention, row_block)


def _estimate(
    plan: RunPlan, batch_size: int, n_conditions: int, attention: str, row_block: int | None = None
) -> MemoryEstimate:
    from engine.runs.validate import answer_lengths

    model, problems, max_new = plan.model, plan.problems, plan.opts.max_new_tokens
    longest = max((len(model.encode_question(p.question)) for p in problems), default=1)
    # answer_lengths: the positions fed after EOT; the gold answer's last token is never fed
    answer = max([max_new, *(a + 1 for a in answer_lengths(model, [p.gold for p in problems], max_new))])
    if row_block is None:  # the engine's own blocks (staged.row_blocks): rows of T x vocab log-probs
        row_block = row_block_rows(max_new, model.base_vocab_size)
    return estimate_chunk_memory(
        model,
        max(1, min(batch_size, len(problems))),
        n_conditions,
        longest,
        max_new_tokens=max_new,
        attention=attention,
        answer_length=answer,
        row_block=row_block,
    )


def fit_batch_size(plan: RunPlan, max_bytes: int, limit: str = "") -> MemoryEstimate:
    """The estimate at the largest batch size (problems per chunk) whose peak fits `max_bytes`; a
    ValueError saying what would fit when even one problem does not. `limit`: the flag as given, for it."""
    one = estimate_run_memory(plan, 1)
    shown = limit or size_text(max_bytes)
    loaded = one.peak - one.engine_peak  # the runtime and the weights, before any chunk
    if loaded > max_bytes:
        raise ValueError(
            f"--max-memory {shown} is less than the ~{size_text(loaded)} that the runtime and "
            f"{plan.model.info.name}'s weights take before any chunk; give --max-memory "
            f"{size_text(one.peak, up=True)} or more"
        )
    if one.peak > max_bytes:
        raise ValueError(_too_small(plan, one, max_bytes, shown))
    low, high = 1, max(1, len(plan.problems))  # the peak grows with the batch: the largest that fits
    while low < high:
        mid = (low + high + 1) // 2
        if estimate_run_memory(plan, mid).peak <= max_bytes:
            low = mid
        else:
            high = mid - 1
    return estimate_run_memory(plan, low)


def _too_small(plan: RunPlan, one: MemoryEstimate, max_bytes: int, limit: str) -> str:
    """What would fit instead: one patch layer, attention=baseline, both."""
    per_layer = 1 + (len(plan.conditions) - 1) // max(1, len(plan.opts.layers))
    options = []
    for text, conditions, attention in (
        ("one patch layer (--layer L)", per_layer, plan.opts.attention),
        ("--attention baseline", len(plan.conditions), "baseline"),
        ("one patch layer and --attention baseline", per_layer, "baseline"),
    ):
        if (conditions, attention) == (len(plan.conditions), plan.opts.attention):
            continue
        peak = _estimate(plan, 1, conditions, attention).peak
        if peak <= max_bytes:
            options.append(f"{text} (~{size_text(peak)})")
    instead = f"; it would fit with {options[0]}" if options else ""
    return (
        f"--max-memory {limit}: even 1 problem per chunk needs ~{size_text(one.peak)} ({_biggest(one)})"
        f"{instead}; give --max-memory {size_text(one.peak, up=True)} or more"
        + ("" if options else ", fewer layers, methods or sigmas, or --attention baseline")
    )


_UNITS = {
    "b": 1,
    "kb": 10**3,
    "k": 10**3,
    "mb": 10**6,
    "m": 10**6,
    "gb": 10**9,
    "g": 10**9,
    "tb": 10**12,
    "t": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(text: str | int) -> int:
    """'4GB', '800MB', '1.5G', '512MiB' -> bytes (KB, MB, GB: powers of 1000; KiB, MiB, GiB: of 1024)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 1:
            raise ValueError(f"--max-memory must be a positive size, got {text}")
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match and _UNITS.get(match.group(2).lower())
    if not match or not unit or (unit == 1 and not match.group(2)):
        raise ValueError(
            f"--max-memory must be a size with a unit, such as 4GB, 800MB or 1.5GiB; got {text!r}"
        )
    value = float(match.group(1)) * unit
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"--max-memory must be a positive size, got {text!r}")
    return int(value)


def size_text(nbytes: int, up: bool = False) -> str:
    """1.36 GB, 255 MB, 12 kB (powers of 1000); `up`: rounded up, as a --max-memory value (1.4GB)."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if nbytes >= scale:
            value = nbytes / scale
            if up:
                digits = 1 if value < 100 else 0
                return f"{math.ceil(value * 10**digits) / 10**digits:g}{unit}"
            return f"{value:.3g} {unit}"
    return f"{nbytes} B"


def _biggest(estimate: MemoryEstimate, count: int = 3) -> str:
    return ", ".join(f"{t.name.replace('_', ' ')} {size_text(t.nbytes)}" for t in estimate.at_peak()[:count])


# --- what a process holds (Linux: /proc; elsewhere the peak from getrusage, the current size unknown) ----
def current_rss() -> int | None:
    """This process's resident memory now, in bytes (None where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Start a new peak for `peak_rss` (Linux: writing 5 to /proc/self/clear_refs resets VmHWM); False
    where that is not possible, and `peak_rss` then stays the process's lifetime peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _hwm() is not None


def _hwm() -> int | None:
    """VmHWM from /proc/self/status (the peak since the last `reset_peak_rss`), in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss() -> int | None:
    """This process's peak resident memory, in bytes: since the last `reset_peak_rss` where /proc has it
    (VmHWM), else over its whole life (ru_maxrss: KiB on Linux, bytes on macOS)."""
    hwm = _hwm()
    if hwm is not None:
        return hwm
    try:
        import resource
    except ImportError:  # Windows
        return None
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
