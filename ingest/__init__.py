"""Problems and results from outside the engine, into the warehouse (SPEC 9, 10, 12).

- datasets: `load_problems` (synthetic, the built-in `gsm8k-test` / `gsm8k-train` (`BUILTIN`,
  `resolve_dataset`), a GSM8K JSONL file or a research dataset file),
  `synthetic_problems`, `read_jsonl` (GSM8K, every bad line named), `read_research_dataset`;
  every reader makes `Problem` objects, `problems_table` turns them into warehouse rows;
- the synthetic generator: `generate`, `generate_split`, `write_jsonl`;
- into the warehouse: `ingest_gsm8k` (problems), `ingest_legacy` (the research scripts' result
  files as legacy runs), `ingest_shards` (worker shards written by `write_shard` / `ShardWriter`).

Each returns values (Problem lists, Arrow tables, dicts of counts); the format_* functions are their text.
ingest imports warehouse only (never engine or analysis).
"""

from ingest.datasets import BUILTIN, load_problems, resolve_dataset, synthetic_problems
from ingest.gsm8k import DatasetError, ingest_gsm8k, problem_id, read_jsonl
from ingest.legacy import ingest_legacy
from ingest.legacy_formats import LegacyFormatError
from ingest.output import format_gsm8k, format_legacy, format_shards
from ingest.problems import Problem, problems_hash, problems_table
from ingest.research_dataset import read_research_dataset
from ingest.shards import ShardError, ShardWriter, ingest_shards, write_shard
from ingest.synthetic import generate, generate_split, parse_steps_range, write_jsonl

__all__ = [
    "BUILTIN",
    "DatasetError",
    "LegacyFormatError",
    "Problem",
    "ShardError",
    "ShardWriter",
    "format_gsm8k",
    "format_legacy",
    "format_shards",
    "generate",
    "generate_split",
    "ingest_gsm8k",
    "ingest_legacy",
    "ingest_shards",
    "load_problems",
    "parse_steps_range",
    "problem_id",
    "problems_hash",
    "problems_table",
    "read_jsonl",
    "read_research_dataset",
    "resolve_dataset",
    "synthetic_problems",
    "write_jsonl",
    "write_shard",
]
