"""Charts in Jupyter without a network: the `codi_offline` Altair renderer.

Altair's default renderers hand the spec to a frontend that fetches vega, vega-lite and vega-embed
from a CDN (jsdelivr); offline, a notebook then shows nothing. This renderer returns a `text/html`
mimebundle with the project's vendored bundle inlined (vl-convert's, as the report uses: no URL is
fetched), the shared look of analysis/export.py applied, and the chart drawn as SVG:

    import altair as alt
    from analysis import charts
    charts.enable_offline()              # or: alt.renderers.enable("codi_offline")
    charts.importance_by_thought(run)    # displays inline, offline

Each output carries the bundle (about 0.9 MB), so a notebook saved with its outputs opens offline too;
`alt.renderers.enable("default")` goes back to Altair's renderer. The renderer is registered when
`analysis.charts` is imported; enabling it is the notebook's choice.
"""

from __future__ import annotations

import uuid
from typing import Any

import altair as alt

from analysis.export import EMBED_OPTIONS, javascript_bundle, styled
from analysis.templating import render

NAME = "codi_offline"


def offline_html(spec: dict[str, Any]) -> str:
    """The HTML of one chart output: a div, the bundle inline, and the call that draws the spec into it."""
    return render(
        "notebook.html.j2",
        div=f"codi-chart-{uuid.uuid4().hex}",
        spec=styled(spec),
        options=EMBED_OPTIONS,
        bundle=javascript_bundle(),
    )


def offline_renderer(spec: dict[str, Any], **metadata: Any) -> dict[str, str]:
    """An Altair renderer: the chart's spec in, a mimebundle with offline HTML out."""
    return {"text/html": offline_html(spec)}


def register() -> None:
    """Make `codi_offline` one of Altair's renderers (idempotent)."""
    if NAME not in alt.renderers.names():
        alt.renderers.register(NAME, offline_renderer)


def enable_offline() -> None:
    """Show Altair charts in this notebook offline, with the vendored bundle."""
    register()
    alt.renderers.enable(NAME)
