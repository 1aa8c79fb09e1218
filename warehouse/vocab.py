"""The shared vocabulary, stated once: every layer (engine, ingest, analysis, the SQL views) derives from it.

Position codes (SPEC 2.3, as stored in the warehouse): -2 question (all its tokens summed), -1 BOT,
0..5 the continuous thoughts T0..T5, 6 EOT. Methods are the corruption families a condition can name
(`baseline` is the uncorrupted run every condition is compared with). Strata group problems by
their number of reasoning steps (SPEC 7). The answer format is the one CODI models are trained to
produce, "The answer is: N".
"""

from __future__ import annotations

N_THOUGHTS = 6

QUESTION, BOT, EOT = -2, -1, N_THOUGHTS
THOUGHTS = tuple(range(N_THOUGHTS))
CODES = (QUESTION, BOT, *THOUGHTS, EOT)
NAMES = {QUESTION: "Q", BOT: "BOT", **{k: f"T{k}" for k in THOUGHTS}, EOT: "EOT"}

BASELINE = "baseline"
DEFAULT_METHODS = ("zero", "gauss", "random", "shuffle")  # the seeds' four corruptions
EXTRA_METHODS = ("clean", "mean")  # `clean` re-writes the clean value (a control that must change nothing)
ALL_METHODS = DEFAULT_METHODS + EXTRA_METHODS
METHODS = (BASELINE, *ALL_METHODS, "knockout")  # every value of results.method, in display order
# charts and tables
METHOD_ORDER = (BASELINE, "zero", "gauss", "random", "shuffle", "mean", "clean", "knockout")
DEFAULT_SIGMAS = (0.1, 0.5, 1.0, 2.0)
KNOCKOUT = "knockout"  # the edges family's method: the attention edges into a thought are removed

# Intervention families (results.family): what a condition intervenes on. `thoughts` is the classic one (one
# thought's block output at one layer); the others extend it (docs/DESIGN.md, "Intervention families").
FAMILIES = ("thoughts", "pairs", "triplets", "heads", "edges", "components")
DEFAULT_FAMILIES = ("thoughts",)
COMBO_METHODS = ("zero", "mean")  # pairs, triplets and heads: the methods they run by default
# Sites (results.site): block = a decoder block's output; attn / mlp = its attention or MLP output; head = one
# head's slice of the input to the attention output projection; edge = attention from later positions to a key
SITES = ("block", "attn", "mlp", "head", "edge")

STRATA = ("<=2", "3", "4", "5+")

# What a run keeps of attention (`run --attention`): all = every condition's, baseline = the baseline's,
# none, tokens = all, plus the baseline's attention of T0..T5 and EOT to each question token (token_attention)
ATTENTION_MODES = ("all", "baseline", "none", "tokens")


ANSWER_MARKER = "The answer is"
ANSWER_PREFIX = " The answer is:"  # what a CODI model writes after EOT, before the number


def name(code: int) -> str:
    """The display name of a position code: Q, BOT, T0..T5, EOT."""
    return NAMES[code]


def stratum_of(n_steps: int) -> str:
    """The difficulty stratum of a problem with `n_steps` reasoning steps."""
    if n_steps <= 2:
        return "<=2"
    if n_steps >= 5:
        return "5+"
    return str(n_steps)
