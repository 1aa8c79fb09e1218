"""The CODI model (SPEC 2): the module and its latent loop, positions, answers, loading, training, evaluation.

    codi.py           CodiModel: the CODI module and its batched inference loop
    positions.py      ColumnMap: where question, BOT, thoughts and EOT stand in a left-padded batch
    answers.py        parse_answer / is_correct: the one answer rule
    answer_tokens.py  the answer number in token space; the gold answer in the model's own format
    checkpoints.py    load_model: gpt2-tiny and the official CODI checkpoints, by name
    bundled.py        the project's own model directory (build, save, load)
    arch.py           random-weight models with the official shapes (bench at real size)
    tokenizer.py      the bundled model's tokenizer, trained on synthetic problems
    train.py          the CODI objective; trains the bundled model
    evaluate.py       student and teacher accuracy by step count

The model imports nothing from engine.interventions or engine.runs. Names are imported on first use.
"""

from __future__ import annotations

from warehouse.lazy import exports

_EXPORTS = {
    "CodiModel": "engine.model.codi",
    "ModelInfo": "engine.model.codi",
    "LoopState": "engine.model.codi",
    "ColumnMap": "engine.model.positions",
    "parse_answer": "engine.model.answers",
    "is_correct": "engine.model.answers",
    "answer_span": "engine.model.answers",
    "gold_tokens": "engine.model.answer_tokens",
    "number_token_index": "engine.model.answer_tokens",
    "load_model": "engine.model.checkpoints",
    "CheckpointError": "engine.model.checkpoints",
    "ModelNotFoundError": "engine.model.checkpoints",
    "BUNDLED_DIR": "engine.model.bundled",
    "ARCHS": "engine.model.arch",
    "build_arch_model": "engine.model.arch",
    "TrainConfig": "engine.model.train",
    "evaluate_model": "engine.model.evaluate",
}

__getattr__, __dir__, __all__ = exports(__name__, _EXPORTS)
del exports
