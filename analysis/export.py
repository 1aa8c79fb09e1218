"""One chart as a file: standalone HTML (Vega inlined, works offline), PNG or SVG (vl-convert).

The Vega / Vega-Lite / vega-embed bundle comes from vl-convert (no CDN, no network); building it
takes about a second, so it is built once per process and shared by every page that needs it.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import altair as alt
import vl_convert as vlc

FORMATS = ("html", "png", "svg")
PNG_SCALE = 2.0  # crisp on high-density screens and in documents
VL_VERSION = "_".join(alt.SCHEMA_VERSION.split(".")[:2])  # "v6_4": the Vega-Lite that Altair's specs target
EMBED_OPTIONS = {"renderer": "svg", "actions": {"export": True, "source": False, "compiled": False, "editor": False}}

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
def javascript_bundle() -> str:
    """vega, vega-lite and vega-embed as one script defining window.vegaEmbed (about 0.9 MB)."""
    return vlc.javascript_bundle(vl_version=VL_VERSION)


def chart_spec(chart: alt.TopLevelMixin) -> dict:
    """The chart's Vega-Lite spec with the shared config (chart-level config keys win)."""
    spec = chart.to_dict()
    config = spec.get("config", {})
    spec["config"] = {**config, **{k: {**v, **config.get(k, {})} if isinstance(v, dict) else config.get(k, v)
                                   for k, v in CONFIG.items()}}
    return spec


def script_json(value) -> str:
    """JSON that is safe inside a <script> element (no `</script>` can close it early)."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def standalone_html(spec: dict, title: str) -> str:
    """A page holding one chart, the bundle inlined: opens from disk with no network."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{_escape(title)}</title>
<script>{javascript_bundle()}</script>
</head>
<body>
<div id="vis"></div>
<script>
vegaEmbed("#vis", {script_json(spec)}, {script_json(EMBED_OPTIONS)}).then(function () {{
  document.body.dataset.status = "rendered";
}}).catch(function (error) {{
  document.body.dataset.status = "error";
  document.getElementById("vis").textContent = "This chart failed to render: " + error;
}});
</script>
</body>
</html>
"""


def write_chart(chart: alt.TopLevelMixin, stem: str | Path, formats=FORMATS, title: str = "") -> list[Path]:
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
        raise ValueError(f"unknown chart format {', '.join(unknown) or repr(text)} (choose from {', '.join(FORMATS)})")
    return formats


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
