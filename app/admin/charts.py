"""Server-side SVG charts (pygal) for the recommendation pages, served through <img> so the strict
page CSP stays as it is. Every chart is paired with a table of the same numbers in its template."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pygal
from flask import Response
from pygal.style import Style

SVG_MIMETYPE = "image/svg+xml"
# The SVG only needs pygal's own <style>; nothing else may load or run inside it.
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'"

STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1d2433",
    foreground_strong="#1d2433",
    foreground_subtle="#5b6478",
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    colors=("#2f5bd3", "#1f7a4d", "#a8640b", "#b3261e", "#6b4fbb", "#00838f"),
    title_font_size=18,
    label_font_size=12,
    major_label_font_size=12,
    legend_font_size=13,
)

Series = dict[str, Sequence[float | None]]


def _without_scripts(root):
    """pygal always embeds a config <script> for its optional tooltips; drop it, we serve no JS."""
    for parent in list(root.iter()):
        for child in [c for c in parent if isinstance(c.tag, str) and c.tag.endswith("script")]:
            parent.remove(child)
    return root


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}".rstrip("0").rstrip(".")


# Characters XML 1.0 cannot hold at all: one in a label (a title stored before typed text lost its
# control characters) and the browser draws no chart.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("", str(text))


def _chart(kind, title: str, x_labels: Sequence[str], series: Series, percent: bool, **config):
    chart = kind(
        title=_xml_text(title),
        style=STYLE,
        js=[],
        width=900,
        height=420,
        explicit_size=False,
        legend_at_bottom=True,
        truncate_legend=-1,
        value_formatter=_percent if percent else _number,
        show_minor_x_labels=len(x_labels) <= 16,
        x_labels_major_every=max(1, len(x_labels) // 8),
        x_label_rotation=30 if len(x_labels) > 8 else 0,
        no_data_text="No data yet",
        include_x_axis=True,
        **config,
    )
    chart.add_xml_filter(_without_scripts)
    chart.x_labels = [_xml_text(label) for label in x_labels]
    for name, values in series.items():
        chart.add(_xml_text(name), list(values))
    return chart.render()


def line_chart(title: str, x_labels: Sequence[str], series: Series, percent: bool = False) -> bytes:
    return _chart(pygal.Line, title, x_labels, series, percent, dots_size=3)


def bar_chart(title: str, x_labels: Sequence[str], series: Series, percent: bool = False) -> bytes:
    return _chart(pygal.Bar, title, x_labels, series, percent, truncate_label=22)


def svg_response(svg: bytes) -> Response:
    response = Response(svg, mimetype=SVG_MIMETYPE)
    response.headers["Content-Security-Policy"] = SVG_CSP
    response.headers["Cache-Control"] = "private, max-age=60"
    return response
