"""Checks on a run's problems against the model, made before the first forward pass.

A problem whose sequence does not fit the model's context (GPT-2: `n_positions`, LLaMA:
`max_position_embeddings`) would fail mid-run with an IndexError, after earlier batches were committed,
and again on every resume. Its length is known before anything runs (SPEC 2.3):

    [BOS] question tokens | BOT | T0..T5 | EOT | answer tokens

where the answer part is what the engine feeds after EOT: up to `max_new_tokens` greedy tokens, and the
gold answer teacher-forced in the model's own answer format (`answer_lengths`).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.model.answer_tokens import format_number, gold_tokens
from engine.model.codi import CodiModel
from engine.model.positions import N_THOUGHTS

LOOP_POSITIONS = 1 + N_THOUGHTS + 1  # BOT, T0..T5, EOT
SHOWN = 3  # problems named in a message


@dataclass(frozen=True)
class TooLong:
    """A problem that does not fit: positions it needs (question, loop, answer) against the context."""

    problem: object
    question: int
    answer: int
    limit: int

    @property
    def positions(self) -> int:
        return self.question + LOOP_POSITIONS + self.answer

    def label(self) -> str:
        source = f"entry {self.problem.source_id} " if getattr(self.problem, "source_id", "") else ""
        return f"{source}(id {self.problem.problem_id}, {self.positions} positions)"

    def record(self) -> dict:
        """What a run's config keeps about a problem it left out."""
        return {
            "problem_id": self.problem.problem_id,
            "source_id": self.problem.source_id,
            "positions": self.positions,
            "reason": f"needs {self.positions} positions ({self.question} question, {LOOP_POSITIONS} BOT, "
            f"thoughts and EOT, {self.answer} answer), more than the model's context of {self.limit}",
        }


def context_limit(model: CodiModel) -> tuple[int, str] | None:
    """The model's context length and the config field it comes from (None: the config sets none)."""
    config = model.codi.config
    for field in ("n_positions", "max_position_embeddings"):
        value = getattr(config, field, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, field
    return None


def question_lengths(model: CodiModel, questions: list[str]) -> list[int]:
    """Positions of each question's tokens as the model encodes them ([BOS] and the question, BOT not
    counted)."""
    if not questions:
        return []
    ids = model.tokenizer(questions, add_special_tokens=False)["input_ids"]
    bos = 1 if model.prepend_bos and model.tokenizer.bos_token_id is not None else 0
    return [len(q) + bos for q in ids]


def answer_lengths(model: CodiModel, golds: list[float], max_new_tokens: int) -> list[int]:
    """Positions fed after EOT per problem: the greedy answer, or the gold answer forced, whichever is longer.

    The gold answer (engine/model/answer_tokens.gold_tokens) is the baseline's text up to its number (at most
    max_new_tokens - 1 tokens) followed by the gold number, or " The answer is: N" when the baseline has
    no number; its last token is never fed.
    """
    if not golds:
        return []
    tokenize, eos = model.tokenizer, model.tokenizer.eos_token_id
    numbers = [format_number(g) for g in golds]
    bare = tokenize(numbers, add_special_tokens=False)["input_ids"]
    spaced = tokenize([f" {n}" for n in numbers], add_special_tokens=False)["input_ids"]
    space = tokenize(" ", add_special_tokens=False)["input_ids"]
    fallback = [len(gold_tokens(model, [], g)) for g in golds]
    ends_with_eos = int(eos is not None and gold_tokens(model, [], 0.0)[-1] == eos)
    out = []
    for b, s, f in zip(bare, spaced, fallback, strict=True):
        # a tokenizer that splits the space off never starts a number token with it: the number is `b`
        number = len(b) if len(space) == 1 and s == space + b else max(len(b), len(s))
        out.append(max(max_new_tokens, f - 1, max_new_tokens - 2 + number + ends_with_eos))
    return out


def too_long(model: CodiModel, problems: list, max_new_tokens: int) -> list[TooLong | None]:
    """Per problem, None when it fits the model's context, else what it needs."""
    found = context_limit(model)
    if found is None:
        return [None] * len(problems)
    limit = found[0]
    questions = question_lengths(model, [p.question for p in problems])
    answers = answer_lengths(model, [p.gold for p in problems], max_new_tokens)
    out: list[TooLong | None] = []
    for p, q, a in zip(problems, questions, answers, strict=True):
        item = TooLong(p, q, a, limit)
        out.append(item if item.positions > limit else None)
    return out


def fit_context(
    model: CodiModel,
    problems: list,
    max_new_tokens: int,
    dataset: str,
    skip_invalid: bool,
    wanted: int | None = None,
) -> tuple[list, list[TooLong]]:
    """The problems to run (the first `wanted`, or all) and those left out for being too long.

    Without `skip_invalid`, a too-long problem among the first `wanted` is an error naming the first few;
    with it, problems are taken in order, the too-long ones passed over, until `wanted` fit.
    """
    if not skip_invalid:
        bad = [t for t in too_long(model, problems[:wanted], max_new_tokens) if t is not None]
        if bad:
            raise ValueError(too_long_message(model, bad, dataset, max_new_tokens))
        return problems[:wanted], []
    kept: list = []
    skipped: list[TooLong] = []
    start, step = 0, max(wanted or len(problems), 1)
    while start < len(problems) and (wanted is None or len(kept) < wanted):
        chunk = problems[start : start + step]  # measured a chunk at a time: a sample of a large file
        start += step
        for p, t in zip(chunk, too_long(model, chunk, max_new_tokens), strict=True):
            if wanted is not None and len(kept) == wanted:
                break
            if t is None:
                kept.append(p)
            else:
                skipped.append(t)
    if skipped and not kept:
        raise ValueError(too_long_message(model, skipped, dataset, max_new_tokens, every=True))
    return kept, skipped


def too_long_count(model: CodiModel, problems: list, max_new_tokens: int = 24) -> int:
    """How many of `problems` do not fit `model`'s context (what --skip-invalid would pass over)."""
    return sum(t is not None for t in too_long(model, problems, max_new_tokens))


def too_long_message(
    model: CodiModel, bad: list[TooLong], dataset: str, max_new_tokens: int, every: bool = False
) -> str:
    limit, field = context_limit(model)
    shown = ", ".join(t.label() for t in bad[:SHOWN]) + (
        f", ... {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    )
    todo = (
        "give shorter problems"
        if every
        else "run the others with --skip-invalid, or give fewer or shorter problems"
    )
    return (
        f"{dataset}: {'all ' if every else ''}{len(bad)} problem(s) too long for {model.info.name}'s context "
        f"of {limit} positions ({field}; a problem needs question + BOT + {N_THOUGHTS} thoughts + EOT + "
        f"{max_new_tokens} answer tokens, or its gold answer's if longer): {shown}; {todo}"
    )


def builtin_datasets(models: list[str], max_new_tokens: int = 24) -> list[dict]:
    """Each built-in dataset (gsm8k-test, gsm8k-train): problems, problems per difficulty stratum, and per
    model how many are too long for its context (what --skip-invalid passes over at `max_new_tokens`,
    the run default). A model that cannot be loaded here (no weights or tokenizer on this machine, nothing
    is downloaded) is reported as unavailable, with why."""
    from engine.model.checkpoints import load_model
    from ingest.datasets import BUILTIN, load_problems, stratum_counts

    loaded: dict[str, CodiModel | str] = {}
    for name in models:
        try:
            loaded[name] = load_model(name, device="cpu")
        except Exception as exc:  # noqa: BLE001 - reported per model: an unavailable model is a row, not a stop
            loaded[name] = (str(exc).splitlines() or [type(exc).__name__])[0].split(";")[0]
    out = []
    for dataset in BUILTIN:
        problems = load_problems(dataset)
        too_long_by_model: dict[str, int | str] = {}
        for name, model in loaded.items():
            if isinstance(model, str):
                too_long_by_model[name] = f"unavailable: {model}"
            else:
                too_long_by_model[name] = too_long_count(model, problems, max_new_tokens)
        out.append(
            {
                "dataset": dataset,
                "problems": len(problems),
                "strata": stratum_counts(problems),
                "no_annotation": sum(p.n_steps == 0 for p in problems),
                "too_long": too_long_by_model,
            }
        )
    return out
