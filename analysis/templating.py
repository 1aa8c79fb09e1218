"""The report's HTML, CSS and JavaScript are files under analysis/templates/, rendered with jinja2
(autoescape on).

Values reach the pages escaped; what is trusted on purpose is marked so here: the vendored Vega bundle
(`bundle`) and JSON for <script> elements (`script_json`, which cannot close its element early).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

TEMPLATES = Path(__file__).resolve().parent / "templates"


def script_json(value: Any) -> Markup:
    """JSON that is safe inside a <script> element (no `</script>` can close it early)."""
    return Markup(json.dumps(value, separators=(",", ":"), default=str).replace("</", "<\\/"))


def cell(value: Any, column: str, percent: tuple[str, ...] = ()) -> tuple[str, str]:
    """(CSS class, text) of a table cell: rates as percentages, other floats to 3 places, lists joined."""
    if value is None or value == {} or (isinstance(value, float) and math.isnan(value)):
        return "null", "–"
    if isinstance(value, dict):  # a run's tags
        return "", ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, bool):
        return "", str(value)
    if isinstance(value, float):
        if column in percent:
            return "num", f"{value:.1%}"
        return "num", f"{value:.3f}" if abs(value) >= 0.001 or value == 0 else f"{value:.2e}"
    if isinstance(value, int):
        return "num", str(value)
    if isinstance(value, list):
        return "", ", ".join(str(v) for v in value)
    return "", str(value)


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["script_json"] = script_json
    env.globals["cell"] = cell
    return env


def render(template: str, **context: Any) -> str:
    """The template `template` (a file name under analysis/templates/) rendered with `context`."""
    return environment().get_template(template).render(**context)


def trusted_script(text: str) -> Markup:
    """Vendored JavaScript (the Vega bundle) for a <script> element, unescaped."""
    return Markup(text.replace("</script", "<\\/script"))
