"""The warehouse schema (SPEC 6): the single source of truth, as SQLAlchemy Core metadata.

Everything else is derived from `metadata`: the DDL of the warehouse's DuckLake tables, the Arrow
schemas incoming rows are conformed to (and worker shards are written with), and the table objects
BI tools may select from. `info["storage"]` says what a relation is:

- "table": a DuckLake table of run lineage and reference data (runs, problems_base, positions,
  schema_version, warehouse_info);
- "fact": a DuckLake table of measured rows, appended one commit per batch of problems, each commit
  holding the rows of one run (results, attention, run_problems);
- "view": a view defined in SQL over the others (problems = problems_base without the duplicates
  two concurrent writers may add).

DuckLake enforces NOT NULL but not keys; the store enforces them (warehouse/store.py).

Bump SCHEMA_VERSION and add a function to MIGRATIONS in migrate.py whenever this file changes.
"""

from __future__ import annotations

import pyarrow as pa
import sqlalchemy as sa

from warehouse.vocab import METHODS  # noqa: F401  (the schema names every method)

# 7: readouts (states, decoding, question_tokens, token_attention: per problem, when a run asks) and
#    probe_results (linear probes fitted on a run's states by `probe`)
# 6: results.family, site, head, thoughts, parts (interventions beyond one thought's block output: pairs
#    and triplets of thoughts, attention-head ablation, attention-edge knockout, component patching)
# 5: runs.threads, runs.wait_policy (how torch's CPU threads ran: lineage, never part of the config)
# 4: runs.name, runs.tags, runs.note (labels a person gives a run; not part of its config)
# 3: js_answer, entropy_answer, runs.run_seq; 2: DuckLake folder layout (1: DuckDB file + Parquet shards)
SCHEMA_VERSION = 7

# interrupted: stopped by SIGINT or SIGTERM (resumable, as failed is); statuses are checked in Python, not
# by the warehouse (ddl() emits no CHECK), so a new status needs no migration
RUN_STATUSES = ("running", "complete", "failed", "interrupted")
CONVENTIONS = ("codi", "legacy")

metadata = sa.MetaData()


def _text(name: str, **kw) -> sa.Column:
    return sa.Column(name, sa.Text, **kw)


def _problem_columns() -> list[sa.Column]:
    return [
        _text("problem_id", primary_key=True),  # sha256 prefix of the normalized question text
        _text("question"),
        sa.Column("gold_answer", sa.Double),
        _text("solution"),
        sa.Column("n_steps", sa.SmallInteger),
        _text("source"),
        _text("source_id"),
    ]


warehouse_info = sa.Table(
    "warehouse_info",
    metadata,
    _text("warehouse_id", nullable=False),  # also in the folder's identity file; checked on open
    sa.Column("created_at", sa.DateTime),
    _text("views_hash"),  # sha256 of the queries/*.sql applied last
    info={"storage": "table"},
)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("applied_at", sa.DateTime),  # UTC
    _text("note"),
    info={"storage": "table"},
)

runs = sa.Table(
    "runs",
    metadata,
    _text("run_id", primary_key=True),
    _text("status", nullable=False),
    sa.Column("started_at", sa.DateTime),  # UTC, like every timestamp here
    sa.Column("finished_at", sa.DateTime),
    _text("model_name"),
    _text("weights_sha256"),
    sa.Column("n_layers", sa.SmallInteger),
    sa.Column("n_heads", sa.SmallInteger),
    sa.Column("d_model", sa.Integer),
    sa.Column("patch_layers", sa.ARRAY(sa.SmallInteger)),
    sa.Column("methods", sa.ARRAY(sa.Text)),
    sa.Column("sigmas", sa.ARRAY(sa.Double)),
    sa.Column("seed", sa.BigInteger),
    _text("dataset_name"),
    _text("dataset_hash"),
    sa.Column("config_json", sa.JSON),
    _text("config_hash"),
    _text("code_version"),
    sa.Column("library_versions", sa.JSON),
    _text("device"),
    _text("dtype"),
    _text("convention", nullable=False, server_default="codi"),
    _text("parent_run_id"),
    sa.Column("n_problems_planned", sa.Integer),
    _text("error"),
    sa.Column(
        "run_seq", sa.BigInteger
    ),  # schema 3: 1, 2, ... in the order runs began (what `latest` follows)
    _text("name"),  # schema 4: a person's name for the run (need not be unique); `runs rename`
    sa.Column("tags", sa.JSON),  # schema 4: {"key": "value", ...}; `run --tag k=v`, `runs tag`
    _text("note"),  # schema 4: free text; `run --note`, `runs note`
    sa.Column("threads", sa.Integer),  # schema 5: torch.get_num_threads() the run's process ran with
    _text("wait_policy"),  # schema 5: OpenMP wait policy in effect: passive, active, default or unknown
    sa.CheckConstraint(f"status IN {RUN_STATUSES}", name="runs_status"),
    sa.CheckConstraint(f"convention IN {CONVENTIONS}", name="runs_convention"),
    info={"storage": "table"},
)

problems_base = sa.Table("problems_base", metadata, *_problem_columns(), info={"storage": "table"})

positions = sa.Table(
    "positions",
    metadata,
    sa.Column("code", sa.SmallInteger, primary_key=True, autoincrement=False),
    _text("name", nullable=False),
    info={"storage": "table"},
)

problems = sa.Table("problems", metadata, *_problem_columns(), info={"storage": "view"})

run_problems = sa.Table(
    "run_problems",
    metadata,
    _text("run_id", nullable=False),
    _text("problem_id", nullable=False),
    sa.Column("committed_at", sa.DateTime),
    sa.Column("ordinal", sa.Integer, nullable=False),  # position in the run's problem order, 0..n-1
    info={"storage": "fact"},
)

results = sa.Table(
    "results",
    metadata,
    _text("run_id", nullable=False),
    _text("problem_id", nullable=False),
    sa.Column("layer", sa.SmallInteger),  # patch layer; NULL for the baseline
    sa.Column("thought", sa.SmallInteger),  # 0..5; NULL for the baseline
    _text("method", nullable=False),
    sa.Column("sigma", sa.Double),  # NULL unless gauss
    _text("donor_problem_id"),
    sa.Column("donor_thought", sa.SmallInteger),
    _text("answer_text"),
    sa.Column("answer_value", sa.Double),
    sa.Column("correct", sa.Boolean),
    sa.Column("flipped", sa.Boolean),
    sa.Column("fixed", sa.Boolean),
    sa.Column("kl_first", sa.Double),  # *_first: at EOT, predicting the template's first word (extras)
    sa.Column("kl_answer", sa.Double),  # *_answer: where the answer number is predicted
    sa.Column("kl_max", sa.Double),
    sa.Column("js_first", sa.Double),
    sa.Column("entropy_first", sa.Double),
    sa.Column("logp_gold", sa.Double),
    sa.Column("disruption", sa.Double),
    sa.Column("condition_id", sa.SmallInteger, nullable=False),  # joins attention within (run, problem)
    sa.Column("js_answer", sa.Double),  # schema 3
    sa.Column("entropy_answer", sa.Double),  # schema 3
    # schema 6: what the condition intervened on (warehouse/vocab.py FAMILIES, SITES); NULL on older rows,
    # which are all baseline or `thoughts` rows (the views say so with coalesce)
    _text("family"),  # baseline, thoughts, pairs, triplets, heads, edges, components
    _text("site"),  # block, attn, mlp, head, edge; NULL for the baseline
    sa.Column("head", sa.SmallInteger),  # the ablated head (heads family, one head); else NULL
    sa.Column("thoughts", sa.ARRAY(sa.SmallInteger)),  # the thought steps written (edges: the key thought)
    _text("parts"),  # JSON: the condition as its interventions [{site, layer, step(s), head, method, ...}]
    info={"storage": "fact"},
)

attention = sa.Table(
    "attention",
    metadata,
    _text("run_id", nullable=False),
    _text("problem_id", nullable=False),
    sa.Column("condition_id", sa.SmallInteger, nullable=False),
    sa.Column("layer", sa.SmallInteger, nullable=False),
    sa.Column("head", sa.SmallInteger, nullable=False),
    sa.Column("dst", sa.SmallInteger, nullable=False),  # query position code (positions.code)
    sa.Column("src", sa.SmallInteger, nullable=False),  # key position code
    sa.Column("weight", sa.REAL, nullable=False),
    info={"storage": "fact"},
)

# --- schema 7: what the thoughts hold (readouts of the baseline rows; engine/readouts.py) ---------------
# Layer -1 is the input fed at a position (a thought's input is the projection of the previous position's
# last hidden state, EOT's the EOT embedding); layer L >= 0 is the output of block L (before the final norm).
# Positions are warehouse codes: 0..5 thoughts, 6 EOT.
states = sa.Table(
    "states",
    metadata,
    _text("run_id", nullable=False),
    _text("problem_id", nullable=False),
    sa.Column("layer", sa.SmallInteger, nullable=False),
    sa.Column("position", sa.SmallInteger, nullable=False),
    sa.Column("state", sa.ARRAY(sa.REAL), nullable=False),  # d_model float32 values
    info={"storage": "fact"},
)

decoding = sa.Table(
    "decoding",
    metadata,
    _text("run_id", nullable=False),
    _text("problem_id", nullable=False),
    sa.Column("layer", sa.SmallInteger, nullable=False),
    sa.Column("position", sa.SmallInteger, nullable=False),
    sa.Column("rank", sa.SmallInteger, nullable=False),  # 1 = most probable token
    sa.Column("token_id", sa.Integer, nullable=False),
    _text("token_text"),  # the token decoded alone (leading space kept)
    sa.Column("prob", sa.REAL, nullable=False),  # softmax over the base vocabulary (extra ids masked)
    info={"storage": "fact"},
)

question_tokens = sa.Table(
    "question_tokens",
    metadata,
    _text("run_id", nullable=False),
    _text("problem_id", nullable=False),
    sa.Column("token_pos", sa.SmallInteger, nullable=False),  # 0.. within the question (BOS included)
    sa.Column("token_id", sa.Integer, nullable=False),
    _text("token_text"),
    sa.Column("number", sa.Double),  # the value of the number written in the question this token is part of
    info={"storage": "fact"},
)

token_attention = sa.Table(
    "token_attention",
    metadata,
    _text("run_id", nullable=False),
    _text("problem_id", nullable=False),
    sa.Column("layer", sa.SmallInteger, nullable=False),
    sa.Column("head", sa.SmallInteger, nullable=False),
    sa.Column("dst", sa.SmallInteger, nullable=False),  # query: 0..5 thoughts, 6 EOT (baseline rows)
    sa.Column("token_pos", sa.SmallInteger, nullable=False),  # key: question_tokens.token_pos
    sa.Column("weight", sa.REAL, nullable=False),
    info={"storage": "fact"},
)

probe_results = sa.Table(
    "probe_results",
    metadata,
    _text("run_id", nullable=False),
    _text("probe_set", nullable=False),  # sha256 prefix of the probe settings: a rerun with them replaces
    _text("target", nullable=False),  # value | operation | n_steps
    sa.Column("step", sa.SmallInteger),  # the reasoning step the target belongs to (1..6); NULL: n_steps
    sa.Column("position", sa.SmallInteger, nullable=False),
    sa.Column("layer", sa.SmallInteger, nullable=False),
    _text("estimator", nullable=False),  # ridge | logistic
    _text("metric", nullable=False),  # r2 | accuracy
    sa.Column("score", sa.Double),  # out-of-fold, folds grouped by problem
    sa.Column("ci_low", sa.Double),
    sa.Column("ci_high", sa.Double),
    sa.Column("chance", sa.Double),  # what a probe that learned nothing scores (majority class; R^2 0)
    sa.Column("shuffled", sa.Double),  # mean score of the same probe on shuffled labels
    sa.Column("shuffled_high", sa.Double),  # 95th percentile of the shuffled scores
    sa.Column("p_value", sa.Double),  # permutation test: (1 + #shuffled >= score) / (1 + permutations)
    # analytic one-sided test (accuracy: binomial against chance; R^2: Pearson r of out-of-fold predictions
    # and labels), which can resolve the small p a Holm adjustment over hundreds of probes needs
    sa.Column("p_analytic", sa.Double),
    sa.Column("n", sa.Integer),  # problems
    sa.Column("n_classes", sa.SmallInteger),
    sa.Column("folds", sa.SmallInteger),
    sa.Column("permutations", sa.Integer),
    sa.Column("settings", sa.JSON),
    sa.Column("created_at", sa.DateTime),
    info={"storage": "table"},
)

READOUT_TABLES = ("states", "decoding", "question_tokens", "token_attention")
FACT_TABLES = ("results", "attention", "run_problems", *READOUT_TABLES)
# Tables rows are conformed to before they are written (facts, and the problems a batch brings).
SHARD_TABLES = (*FACT_TABLES, "problems")
NATIVE_TABLES = tuple(t.name for t in metadata.sorted_tables if t.info["storage"] == "table")
# What makes a row unique (the store refuses a batch that repeats one, or repeats a committed problem).
KEYS = {
    "problems": ("problem_id",),
    "results": ("problem_id", "condition_id"),
    "attention": ("problem_id", "condition_id", "layer", "head", "dst", "src"),
    "run_problems": ("problem_id",),
    "states": ("problem_id", "layer", "position"),
    "decoding": ("problem_id", "layer", "position", "rank"),
    "question_tokens": ("problem_id", "token_pos"),
    "token_attention": ("problem_id", "layer", "head", "dst", "token_pos"),
}
# Columns an incoming frame must carry (the others may be missing and are then NULL).
REQUIRED = {
    "results": ("method", "condition_id"),
    "attention": ("condition_id", "layer", "head", "dst", "src", "weight"),
    "problems": ("problem_id",),
    "run_problems": ("problem_id", "ordinal"),
    "states": ("layer", "position", "state"),
    "decoding": ("layer", "position", "rank", "token_id", "prob"),
    "question_tokens": ("token_pos", "token_id"),
    "token_attention": ("layer", "head", "dst", "token_pos", "weight"),
}
# String key columns written dictionary-encoded: constant within a problem, so nearly free.
DICTIONARY_COLUMNS = ("run_id", "problem_id")

_ARROW = {
    sa.Text: pa.string(),
    sa.SmallInteger: pa.int16(),
    sa.Integer: pa.int32(),
    sa.BigInteger: pa.int64(),
    sa.Double: pa.float64(),
    sa.REAL: pa.float32(),
    sa.Boolean: pa.bool_(),
    sa.DateTime: pa.timestamp("us"),
    sa.JSON: pa.string(),  # JSON text (probe_results.settings)
}


def _arrow_type(column: sa.Column) -> pa.DataType:
    if isinstance(column.type, sa.ARRAY):
        item = column.type.item_type
        return pa.list_(next(a for t, a in _ARROW.items() if type(item) is t))
    for sa_type, arrow_type in _ARROW.items():
        if type(column.type) is sa_type:
            if column.name in DICTIONARY_COLUMNS:
                return pa.dictionary(pa.int32(), pa.string())
            return arrow_type
    raise TypeError(f"no Arrow type for {column.table.name}.{column.name} ({column.type!r})")


_DUCKDB = {
    sa.Text: "VARCHAR",
    sa.SmallInteger: "SMALLINT",
    sa.Integer: "INTEGER",
    sa.BigInteger: "BIGINT",
    sa.Double: "DOUBLE",
    sa.REAL: "FLOAT",
    sa.Boolean: "BOOLEAN",
    sa.DateTime: "TIMESTAMP",
    sa.JSON: "JSON",
}


def _duckdb_type(column: sa.Column) -> str:
    if isinstance(column.type, sa.ARRAY):
        return _DUCKDB[type(column.type.item_type)] + "[]"
    return _DUCKDB[type(column.type)]


def ddl(table: str) -> str:
    """CREATE TABLE for one stored relation, as DuckLake takes it (types, NOT NULL, defaults)."""
    cols = []
    for c in metadata.tables[table].columns:
        text = f"{c.name} {_duckdb_type(c)}"
        if not c.nullable:
            text += " NOT NULL"
        if c.server_default is not None:
            text += f" DEFAULT '{c.server_default.arg}'"
        cols.append(text)
    return f"CREATE TABLE {table} ({', '.join(cols)})"


def stored_tables() -> list[str]:
    return [t.name for t in metadata.sorted_tables if t.info["storage"] in ("table", "fact")]


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of one shard table, in column order; every shard file is written with it."""
    sa_table = metadata.tables["problems" if table == "problems" else table]
    fields = [pa.field(c.name, _arrow_type(c)) for c in sa_table.columns]
    return pa.schema(fields, metadata={"codi_schema_version": str(SCHEMA_VERSION)})


def column_names(table: str) -> list[str]:
    return [c.name for c in metadata.tables[table].columns]
