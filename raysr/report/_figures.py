"""The report's plotly figures, each returned as an HTML ``<div>`` (plotly.js not included).

Every figure is drawn from pre-binned numbers (see :mod:`raysr.report._data`),
so a million-item job embeds the same few kilobytes as a ten-item one. Labels
from the manifest are HTML-escaped: plotly renders a subset of HTML in text
(``<b>``, ``<a href>``) and decodes entities, so escaped text shows as typed.
"""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from raysr.report import _data

STATUS_COLOURS = {"ok": "#2e8b57", "flagged": "#e69f00", "error": "#c0392b", "skipped": "#95a5a6"}
_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 50, "b": 50}, "height": 340,
           "legend": {"orientation": "h", "y": -0.2}}


def to_div(figure: go.Figure) -> str:
    """The figure as a ``<div>`` plus the script that draws it (needs plotly.js on the page)."""
    return figure.to_html(full_html=False, include_plotlyjs=False, config=_CONFIG)


def _label(value: str) -> str:
    return html.escape(value, quote=False)


def throughput(starts: np.ndarray, by_status: dict[str, np.ndarray], width_s: float) -> go.Figure:
    """Stacked bars: items finished per time bin, coloured by status."""
    figure = go.Figure()
    times = starts.astype("datetime64[ms]").astype(str)
    for status, counts in by_status.items():
        figure.add_bar(x=times, y=counts, name=status, marker_color=STATUS_COLOURS.get(status),
                       offset=0, width=width_s * 1000, hovertemplate="%{x}<br>%{y} items<extra>" + status + "</extra>")
    figure.update_layout(**_LAYOUT, barmode="stack", bargap=0,
                         title=f"Items finished per {width_s:g} s (UTC)")
    figure.update_xaxes(type="date")
    figure.update_yaxes(title_text="items")
    return figure


def stages(stats: dict[str, dict[str, float]]) -> go.Figure:
    """Total seconds per stage (bars) next to per-item seconds (box plots from quartiles)."""
    names = list(stats)
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Total seconds per stage", "Seconds per item"))
    figure.add_bar(x=names, y=[stats[name]["total"] for name in names], marker_color="#4c72b0",
                   name="total s", showlegend=False, row=1, col=1)
    figure.add_trace(go.Box(
        x=names, q1=[stats[n]["q1"] for n in names], median=[stats[n]["median"] for n in names],
        q3=[stats[n]["q3"] for n in names], lowerfence=[stats[n]["min"] for n in names],
        upperfence=[stats[n]["max"] for n in names], mean=[stats[n]["mean"] for n in names],
        marker_color="#4c72b0", name="per item", showlegend=False,
    ), row=1, col=2)
    figure.update_layout(**_LAYOUT)
    figure.update_yaxes(title_text="seconds", row=1, col=1)
    return figure


def load(by_node: list[tuple[str, int, float]], by_actor: list[tuple[str, int, float]]) -> go.Figure:
    """Items and upscale seconds per node (top row) and per actor (bottom row)."""
    figure = make_subplots(rows=2, cols=2, vertical_spacing=0.28, subplot_titles=(
        "Items per node", "Upscale seconds per node", "Items per actor", "Upscale seconds per actor"))
    for row, entries, colour in ((1, by_node, "#55a868"), (2, by_actor, "#8172b2")):
        labels = [_label(name) for name, _, _ in entries]
        figure.add_bar(x=labels, y=[items for _, items, _ in entries], marker_color=colour,
                       showlegend=False, name="items", row=row, col=1)
        figure.add_bar(x=labels, y=[seconds for _, _, seconds in entries], marker_color=colour,
                       showlegend=False, name="upscale s", row=row, col=2)
    figure.update_layout(**{**_LAYOUT, "height": 520})
    figure.update_xaxes(type="category", tickangle=-30)
    return figure


def metrics(values: dict[str, np.ndarray], limits: dict[str, tuple[str, float]]) -> go.Figure:
    """One histogram per metric; a dashed red line where the run's flag threshold was."""
    names = list(values)
    titles = [f"{name} (flag if {limits[name][0]} {limits[name][1]:g})" if name in limits else name
              for name in names]
    figure = make_subplots(rows=1, cols=len(names), subplot_titles=titles)
    for col, name in enumerate(names, start=1):
        counts, edges = _data.histogram(values[name])
        centres = (edges[:-1] + edges[1:]) / 2
        figure.add_bar(x=centres, y=counts, width=float(edges[1] - edges[0]), marker_color="#4c72b0",
                       name=name, showlegend=False, row=1, col=col,
                       hovertemplate=f"{name} %{{x:.3g}}<br>%{{y}} items<extra></extra>")
        if name in limits:
            figure.add_vline(x=limits[name][1], line_dash="dash", line_color="#c0392b", row=1, col=col)
    figure.update_layout(**_LAYOUT, bargap=0.05)
    figure.update_yaxes(title_text="items", row=1, col=1)
    return figure
