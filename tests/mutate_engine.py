"""Mutation testing of the engine's measurement, condition and patching code (docs/MUTATION.md).

    python tests/mutate_engine.py              # every selected function (11-13 min on 2 busy cores)
    python tests/mutate_engine.py --report     # only print the score of the last run
    python tests/mutate_engine.py 'engine.interventions.measures.*'   # some mutants only (mutmut name globs)

mutmut (settings in pyproject.toml, [tool.mutmut]) mutates whole files; this script runs only the
mutants of the functions below (SELECTED), then prints the score per module and every survivor with the
reason it is left (EQUIVALENT), or NOT EXPLAINED. `mutmut show NAME` prints a mutant's diff. Workers run
torch with one thread (OMP_NUM_THREADS=1): two one-thread workers are the fastest on two cores, and
torch's OpenMP pool must not be started before mutmut forks (see process_isolation in pyproject.toml).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# mutmut names a mutant `<module>.x_<function>__mutmut_<n>` (methods: `xǁClassǁmethod`).
SELECTED = [
    "engine.interventions.measures.*",
    "engine.interventions.conditions.*",
    "engine.interventions.methods.x_replacement__mutmut_*",
    "engine.interventions.methods.x_zero__mutmut_*",  # the corruption methods, one function each
    "engine.interventions.methods.x_gauss__mutmut_*",
    "engine.interventions.methods.x_random_donor__mutmut_*",
    "engine.interventions.methods.x_shuffle__mutmut_*",
    "engine.interventions.methods.x_clean__mutmut_*",
    "engine.interventions.methods.x_mean__mutmut_*",
    "engine.interventions.methods.x_pool_methods__mutmut_*",
    "engine.interventions.chunk.x_build_plan__mutmut_*",
    "engine.interventions.rows.x_condition_measures__mutmut_*",
    "engine.interventions.rows.x_baseline_measures__mutmut_*",
    "engine.interventions.rows.x_assemble__mutmut_*",
    "engine.interventions.rows.x__append_row__mutmut_*",  # correct / flipped / fixed of every row
    "engine.interventions.rows.x__at_answer__mutmut_*",  # the distribution at the answer number
    "engine.interventions.rows.x__finite_or_none__mutmut_*",
    "engine.interventions.patching.*",
    "engine.model.answer_tokens.*",
    "engine.model.answers.*",
]


# Survivors no test can kill, each with its mutated line (checked: a name that now means another mutation is
# reported as unexplained) and why. docs/MUTATION.md lists them; a new survivor must be killed or added here.
NAN = 'float() reads "NAN", "INF" and "-INF" as it reads "nan", "inf", "-inf": the same value'
DEVICE = (
    "device placement: the same on the CPU, where these tests run (on an accelerator a tensor left on "
    "the CPU would raise); the meta device cannot stand in here, the rows read values back"
)
AXIS = "the tensor is always 2-D here ([rows, vocab] or [rows, positions]): axis +1 is axis -1"
SENTINEL = "any negative 'no number' index works: it is clamped to 0 for the gather and masked by idx < 0"
STRICT = (
    "zip(strict=True) made strict=None/False or dropped: the two sequences have one length by construction "
    "(one value per problem; one flag per shown value), so the check never fires in a test"
)
UNUSED = "baseline_measures and condition_measures take `model` and never use it"
EQUIVALENT = {
    "engine.model.answer_tokens.x_gold_tokens__mutmut_19": (
        "decode(baseline_tokens[idx : idx + 1], )",
        (
            "the number's first token holds its first character, "
            "so it is never a special token: skip_special_tokens changes nothing"
        ),
    ),
    "engine.model.answer_tokens.x_gold_tokens__mutmut_22": (
        "idx + 1], skip_special_tokens=False)",
        "as mutant 19: the number's first token is never special",
    ),
    "engine.model.answer_tokens.x_gold_tokens__mutmut_21": (
        "baseline_tokens[idx : idx + 2]",
        (
            "only the leading whitespace of the piece is used, and the first "
            "token (which holds the number's first character) decides it"
        ),
    ),
    **{
        f"engine.interventions.rows.x_assemble__mutmut_{n}": ("zip(base_values, problems", STRICT)
        for n in (11, 14, 15)
    },
    **{
        f"engine.interventions.conditions.x__once__mutmut_{n}": ("enumerate(zip(shown, values", STRICT)
        for n in (9, 12, 13)
    },
    "engine.interventions.chunk.x_build_plan__mutmut_7": (
        "assert cond.layer is not None or cond.thought is not None",
        "an assert for the type checker: every corrupted condition has both a layer and a thought "
        "(build_conditions), so `and` and `or` never differ",
    ),
    "engine.interventions.measures.x_entropy__mutmut_27": ('float("NAN")', NAN),
    "engine.interventions.measures.x_kl_divergence__mutmut_35": ('float("NAN")', NAN),
    "engine.interventions.rows.x__at_answer__mutmut_17": (
        "expand(-1, 2, logp.shape[-1])",
        "the gather index repeated along axis 1, then [:, 0]: the same row",
    ),
    "engine.interventions.rows.x__at_answer__mutmut_29": ('float("NAN")', NAN),
    "engine.interventions.rows.x_assemble__mutmut_23": ("baseline_measures(None,", UNUSED),
    "engine.interventions.rows.x_assemble__mutmut_61": ("condition_measures(None,", UNUSED),
    "engine.interventions.rows.x_assemble__mutmut_57": ("torch.arange(n_problems, device=None)", DEVICE),
    "engine.interventions.rows.x_assemble__mutmut_59": ("torch.arange(n_problems, )", DEVICE),
    "engine.interventions.rows.x_baseline_measures__mutmut_4": (
        "for i in number_index], device=None)",
        DEVICE,
    ),
    "engine.interventions.rows.x_baseline_measures__mutmut_6": ("for i in number_index], )", DEVICE),
    "engine.interventions.rows.x_baseline_measures__mutmut_10": ("[-2 if i is None", SENTINEL),
    "engine.interventions.rows.x_baseline_measures__mutmut_17": ("any(+1)", AXIS),
    "engine.interventions.rows.x_baseline_measures__mutmut_23": ('float("INF")', NAN),
    # .all(-1) is formatted over three lines: the mutated line is its argument alone
    "engine.interventions.rows.x_baseline_measures__mutmut_24": ("        +1", AXIS),
    "engine.interventions.rows.x_baseline_measures__mutmut_34": ("torch.zeros(n, device=None)", DEVICE),
    "engine.interventions.rows.x_baseline_measures__mutmut_36": ("torch.zeros(n, )", DEVICE),
    "engine.interventions.rows.x_baseline_measures__mutmut_39": ('float("nan"), device=None)', DEVICE),
    "engine.interventions.rows.x_baseline_measures__mutmut_42": ('float("nan"), )', DEVICE),
    "engine.interventions.rows.x_baseline_measures__mutmut_45": ('float("NAN")', NAN),
    "engine.interventions.rows.x_baseline_measures__mutmut_61": ('float("NAN")', NAN),
    "engine.interventions.rows.x_condition_measures__mutmut_11": (
        "for t in base.tokens], device=None)",
        DEVICE,
    ),
    "engine.interventions.rows.x_condition_measures__mutmut_13": ("for t in base.tokens], )", DEVICE),
    "engine.interventions.rows.x_condition_measures__mutmut_16": ("torch.arange(width, device=None)", DEVICE),
    "engine.interventions.rows.x_condition_measures__mutmut_18": ("torch.arange(width, )", DEVICE),
    "engine.interventions.rows.x_condition_measures__mutmut_34": ('float("-INF")', NAN),
    "engine.interventions.rows.x_condition_measures__mutmut_35": ("max(+1)", AXIS),
    "engine.interventions.rows.x_condition_measures__mutmut_39": (
        "for i in number_index], device=None)",
        DEVICE,
    ),
    "engine.interventions.rows.x_condition_measures__mutmut_41": ("for i in number_index], )", DEVICE),
    "engine.interventions.rows.x_condition_measures__mutmut_45": ("[-2 if i is None", SENTINEL),
    "engine.interventions.rows.x_condition_measures__mutmut_70": ('float("NAN")', NAN),
    "engine.interventions.methods.x_mean__mutmut_9": (
        "'XX, XX'.join(sorted(pool))",
        ("raised only when the pool holds no problem but the target: at most one id, never joined"),
    ),
}


def explained(name: str) -> str | None:
    """Why a surviving mutant is left (EQUIVALENT), if its mutated line is still the one recorded there."""
    if name not in EQUIVALENT:
        return None
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    line, why = EQUIVALENT[name]
    module = name.split(".x")[0]
    diff = get_diff_for_mutant(name, path=Path(*module.split(".")).with_suffix(".py"))
    added = [d for d in diff.splitlines() if d.startswith("+") and not d.startswith("+++")]
    return why if any(line in d for d in added) else None


def statuses(globs: list[str]) -> dict[str, str]:
    """mutant name -> status of the last run, for the mutants matching `globs`."""
    from mutmut.stats import status_by_exit_code

    out = {}
    for meta in sorted((ROOT / "mutants" / "engine").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        for name, code in codes.items():
            if any(fnmatch.fnmatch(name, g) for g in globs):
                out[name] = status_by_exit_code[code]
    return out


def report(globs: list[str]) -> int:
    found = statuses(globs)
    if not found:
        print("no mutants: run `python tests/mutate_engine.py` first")
        return 1
    by_module: dict[str, Counter] = {}
    for name, status in found.items():
        by_module.setdefault(name.split(".x")[0], Counter())[status] += 1
    print(
        f"\n{'module':<32} {'killed':>7} {'timeout':>8} {'survived':>9} "
        f"{'no tests':>9} {'other':>6} {'score':>8}"
    )
    total = Counter()
    for module, c in sorted(by_module.items()):
        total += c
        print(_line(module, c))
    print(_line("all", total))
    untested = Counter(n.split("__mutmut_")[0] for n, s in found.items() if s == "no tests")
    if untested:
        print(
            "\nno test reaches (not in the score): "
            + ", ".join(f"{f} ({k})" for f, k in sorted(untested.items()))
        )
    survivors = sorted(n for n, s in found.items() if s not in ("killed", "timeout", "no tests"))
    why = {name: explained(name) for name in survivors}
    if survivors:
        print("\nnot killed (`mutmut show NAME` shows the change):")
        for name in survivors:
            print(f"  {found[name]:<9} {name}: " + (why[name] or "NOT EXPLAINED: kill it or explain it"))
    tested = sum(s != "no tests" for s in found.values())
    killed = sum(s in ("killed", "timeout") for s in found.values())
    left = sum(1 for w in why.values() if w)
    print(
        f"\nscore {killed} / {tested} = {100 * killed / tested:.1f}%; {left} survivor(s) explained above, "
        f"{killed} / {tested - left} = {100 * killed / (tested - left):.1f}% without them; "
        f"{len(survivors) - left} unexplained"
    )
    return 0


def _line(module: str, c: Counter) -> str:
    other = sum(v for k, v in c.items() if k not in ("killed", "timeout", "survived", "no tests"))
    tested = c["killed"] + c["timeout"] + c["survived"] + other
    score = f"{100 * (c['killed'] + c['timeout']) / tested:.1f}%" if tested else "-"
    return (
        f"{module:<32} {c['killed']:>7} {c['timeout']:>8} {c['survived']:>9} {c['no tests']:>9} {other:>6} "
        f"{score:>8}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("globs", nargs="*", help="mutant name globs (default: every selected function)")
    parser.add_argument("--report", action="store_true", help="print the last run's score, run nothing")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    os.chdir(ROOT)
    globs = args.globs or SELECTED
    if not args.report:
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        mutmut = Path(sys.executable).parent / "mutmut"
        start = time.monotonic()
        code = subprocess.run(
            [str(mutmut), "run", "--max-children", str(args.max_children), *globs],
            check=False,
            cwd=ROOT,
            env=env,
        ).returncode
        print(f"\nmutmut run: exit {code}, {time.monotonic() - start:.0f} s")
        if code != 0:
            return code
    return report(globs)


if __name__ == "__main__":
    sys.exit(main())
