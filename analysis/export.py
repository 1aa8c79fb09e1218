"""One chart as a file: standalone HTML (Vega inlined, works offline), PNG or SVG (vl-convert).

The Vega / Vega-Lite / vega-embed bundle comes from vl-convert (no CDN, no network); building it
takes about a second, so it is built once per process and shared by every page that needs it. The
standalone page is the template analysis/templates/chart.html.j2.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import altair as alt
import vl_convert as vlc
from markupsafe import Markup

from analysis.templating import render, trusted_script

FORMATS = ("html", "png", "svg")
PNG_SCALE = 2.0  # crisp on high-density screens and in documents
VL_VERSION = "_".join(alt.SCHEMA_VERSION.split(".")[:2])  # "v6_4": the Vega-Lite that Altair's specs target
EMBED_OPTIONS = {
    "renderer": "svg",
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}

# Shared look of every chart (applied at export so sub-charts of a concat stay unconfigured).
CONFIG = {
    "font": "DejaVu Sans, Liberation Sans, Arial, sans-serif",
    "title": {"fontSize": 14, "anchor": "start", "subtitleFontSize": 11, "subtitleColor": "#555"},
    "axis": {"labelFontSize": 11, "titleFontSize": 12, "gridColor": "#e6e6e6"},
    "header": {"labelFontSize": 12, "titleFontSize": 12},
    "legend": {"labelFontSize": 11, "titleFontSize": 11},
    "view": {"stroke": None},
}


@functools.lru_cache(maxsize=1)
def javascript_bundle() -> Markup:
    """vega, vega-lite and vega-embed as one script defining window.vegaEmbed (about 0.9 MB), ready to
    inline."""
    return trusted_script(vlc.javascript_bundle(vl_version=VL_VERSION))


def styled(spec: dict[str, Any]) -> dict[str, Any]:
    """A Vega-Lite spec with the shared config (chart-level config keys win)."""
    config = spec.get("config", {})
    return {
        **spec,
        "config": {
            **config,
            **{
                k: {**v, **config.get(k, {})} if isinstance(v, dict) else config.get(k, v)
                for k, v in CONFIG.items()
            },
        },
    }


def chart_spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The chart's Vega-Lite spec with the shared config."""
    return styled(chart.to_dict())


def standalone_html(spec: dict[str, Any], title: str) -> str:
    """A page holding one chart, the bundle inlined: opens from disk with no network."""
    return render("chart.html.j2", title=title, spec=spec, options=EMBED_OPTIONS, bundle=javascript_bundle())


def write_chart(
    chart: alt.TopLevelMixin, stem: str | Path, formats: Iterable[str] = FORMATS, title: str = ""
) -> list[Path]:
    """Write `stem.html`, `stem.png`, `stem.svg` as asked; returns the paths written."""
    stem = Path(stem)
    spec = chart_spec(chart)
    written = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        if fmt == "html":
            path.write_text(standalone_html(spec, title or stem.name), encoding="utf-8")
        elif fmt == "png":
            path.write_bytes(vlc.vegalite_to_png(spec, vl_version=VL_VERSION, scale=PNG_SCALE))
        elif fmt == "svg":
            path.write_text(vlc.vegalite_to_svg(spec, vl_version=VL_VERSION), encoding="utf-8")
        else:
            raise ValueError(f"unknown chart format {fmt!r} (choose from {', '.join(FORMATS)})")
        written.append(path)
    return written


def parse_formats(text: str) -> tuple[str, ...]:
    """'html,png' -> ('html', 'png'); an unknown format is a user error naming the choices."""
    formats = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(
            f"unknown chart format {', '.join(unknown) or repr(text)} (choose from {', '.join(FORMATS)})"
        )
    return formats
