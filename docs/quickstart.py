# %% [markdown]
# # codi-warehouse from Python
#
# The same work as `python cli.py run`, `stats`, `compare` and `charts`, as values a notebook can hold.
# Runs offline on the bundled `gpt2-tiny`. Open it as a notebook (Jupytext, VS Code, PyCharm read the
# `# %%` cells) or run it as a script: `python docs/quickstart.py`. The test suite runs it with
# `QUICKSTART_PROBLEMS=4` (tests/test_quickstart.py).

# %%
import os
from pathlib import Path

from analysis import charts, compare_runs, run_stats, write_report
from engine import EngineOptions, RunConfig, build_conditions, load_model, run_chunk, run_experiment
from ingest import load_problems
from warehouse import open_warehouse

OUT = Path(os.environ.get("QUICKSTART_OUT", "results/quickstart"))
N = int(os.environ.get("QUICKSTART_PROBLEMS", "20"))

# %% [markdown]
# ## Run the experiment into a warehouse
# A warehouse is one folder; `run_experiment` returns a `Run` handle (its id, lineage and views).

# %%
wh = open_warehouse(OUT / "warehouse")
run = run_experiment(RunConfig(model="gpt2-tiny", problems=N), wh)
print(run, run.lineage["status"], run.lineage["rows"])

# %% [markdown]
# ## Read it back: views, tables, any read-only SQL (polars DataFrames)

# %%
importance = run.view("token_importance")
print(importance.select("thought_name", "n", "failures", "failure_rate", "ci_low", "ci_high"))
print(run.results(method="zero").select("problem_id", "thought", "correct", "flipped", "kl_answer").head())
print(run.attention(layer=3).shape)
print(wh.runs().select("run_id", "status", "model_name", "problems_committed"))
print(wh.sql("SELECT method, count(*) AS n FROM results GROUP BY method ORDER BY method"))

# %% [markdown]
# ## Statistics with uncertainty, and a second run to compare with

# %%
stats = run_stats(run, n_boot=200, n_perm=200)
print(stats.importance)
other = run_experiment(
    RunConfig(model="gpt2-tiny", problems=N, layer=1, methods="zero,gauss"), wh
)  # same problems
comparison = compare_runs(run, other, n_boot=200)  # B - A on the shared problems, thought by thought
print(comparison.by_thought)

# %% [markdown]
# ## Charts (Altair) and the offline HTML report

# %%
chart = charts.importance_by_thought(run, vs=other)
written = write_report(run, out=OUT / "charts", vs=other, formats=("html",))
print(f"{len(written)} files, report: {OUT / 'charts' / 'report.html'}")
chart  # noqa: B018  (a notebook shows the chart; it renders offline, see analysis/charts)

# %% [markdown]
# ## The engine alone: one chunk of problems, no warehouse
# `run_chunk` returns the rows `run` would store (polars results, Arrow attention). Methods that
# draw from other problems (random, mean) also take `pool=`, the donors' clean sites.

# %%
model = load_model("gpt2-tiny")
problems = load_problems("synthetic", n=4)
options = EngineOptions(conditions=build_conditions([3], methods=("zero", "gauss", "shuffle")), seed=0)
out = run_chunk(model, problems, options)
print(out.results.select("problem_id", "method", "thought", "correct", "kl_answer").head())
