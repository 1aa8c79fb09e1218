"""What a run is asked to do (RunConfig) and how it executes (Execution): the flags of `python cli.py run`.

Both are keyword-only: `RunConfig(model="gpt2", problems=100, methods="zero,gauss")`. A RunConfig's fields
(less resume, device, batch_size, max_memory, extra and the labels name, tags, note) go into the run's config
and its hash (dtype as the precision it resolves to, and only when that is not float32); `resume` takes the
rest from the run's stored config (engine/runs/resume.py). An Execution never changes a row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ingest.datasets import SYNTHETIC

EXECUTORS = ("local", "ray")


@dataclass(kw_only=True)
class RunConfig:
    model: str = "gpt2-tiny"
    checkpoint: str | None = None
    dataset: str = SYNTHETIC  # synthetic, gsm8k-test, gsm8k-train (built in) or a file
    problems: int | None = None  # None: 100 synthetic problems (25 per stratum), or every problem of a file
    seed: int = 0  # the corruption draws (noise, donors, shuffles) only
    problem_seed: int = 0  # which sample of the synthetic problems; 0: the default set every run shares
    # how a file's (or built-in split's) problems are sampled: first (file order), random (seeded
    # permutation), stratified (problems in all, even over steps <=2, 3, 4, 5+, drawn per stratum by seed)
    sample: str = "first"
    sample_seed: int = 0  # the draw of random / stratified
    layers: Sequence[int] | str | None = None  # patch layers: a list, "all" or "3,6,9"; None: n_layers // 2
    layer: int | None = None  # one patch layer (the same as layers=[L]); give layers or layer, not both
    all_layers: bool = False  # the same as layers="all"
    methods: str | None = None  # comma list; None: the default set
    sigmas: str | None = None  # comma list; None: the default sigmas
    attention: str = "all"  # all | baseline | none | tokens (all, plus the baseline's per question token)
    # readouts of the baseline rows (schema 7): every layer's state at T0..T5 and EOT, stored (`--states`);
    # the logit lens's top-k tokens of each state (`--decode-top`, 0: none). Part of the config.
    states: bool = False
    decode_top: int = 5
    noise_scale: str = "absolute"  # absolute | rms
    device: str = "auto"  # auto | cpu | cuda
    # the precision: auto (float32 on every device) | fp32 | bf16 | fp16; the resolved one is part of the
    # run's config when it is not float32 (engine/runs/plan.py), so a resume never mixes precisions
    dtype: str = "auto"
    batch_size: int = 8
    # the most memory a chunk may take ("4GB", "800MB" or bytes): the batch size becomes the largest that the
    # estimate (engine/runs/memory.py) fits in it; a local run only
    max_memory: int | str | None = None
    resume: str | None = None  # a run id, prefix or "latest"
    skip_invalid: bool = False
    max_new_tokens: int = 24
    # intervention families (conditions.build_conditions): a comma list of thoughts, pairs, triplets, heads,
    # edges, components; None: the classic thoughts alone. They are part of the config only when given.
    families: str | None = None
    combo_methods: str | None = None  # pairs, triplets and heads: a comma list; None: zero,mean
    head_steps: str | None = None  # heads: all (the six thoughts at once) | each | a thought 0..5
    top_heads: str | None = None  # heads: layer.head pairs ablated together ("3.1,5.0")
    extra: dict = field(default_factory=dict)
    # labels (warehouse/labels.py): stored with the run, never part of its config; given with resume, they
    # are added to the run (tags merged, name and note replaced)
    name: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    note: str | None = None


@dataclass(kw_only=True)
class Execution:
    """Which way `run` executes: one process (local), one shard (`shard="I/N"`), or Ray tasks
    (SPEC 12, 13)."""

    executor: str = "local"  # local | ray
    shard: str | None = None  # "I/N"
    workers: int | None = None
    shards: int | None = None
    ray_address: str | None = None
    run_id: str | None = None
    shard_dir: str | None = None
