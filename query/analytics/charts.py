"""Charts of reports, as PNG or SVG bytes, drawn with matplotlib.

Figures are made with `matplotlib.figure.Figure` and never through pyplot, so there is no
global figure state: the HTTP service draws charts from worker threads. Saving picks the
Agg (PNG) or SVG renderer by format. SVG output is reproducible: its element ids are
salted with a constant and it carries no creation date.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date
from decimal import Decimal
from io import BytesIO
from typing import Any, Literal

import matplotlib
from matplotlib.figure import Figure

from query.analytics.reports import Chart, Report, Section

matplotlib.rcParams["svg.hashsalt"] = "prov-report"
FORMATS: dict[str, str] = {"png": "image/png", "svg": "image/svg+xml"}
MAX_SERIES = 8
MAX_BARS = 20
_WIDTH, _SECTION_HEIGHT = 10.0, 4.5

ChartFormat = Literal["png", "svg"]


def render_chart(report: Report, fmt: ChartFormat) -> bytes:
    """The report's charts, one panel per section that has one, in one image."""
    drawn = [section for section in report.sections if section.chart is not None]
    figure = Figure(figsize=(_WIDTH, _SECTION_HEIGHT * max(1, len(drawn))), layout="constrained")
    figure.suptitle(report.title)
    axes_list = figure.subplots(max(1, len(drawn)), 1, squeeze=False)[:, 0]
    if not drawn:
        axes_list[0].text(0.5, 0.5, "this report has no chart", ha="center", va="center")
        axes_list[0].set_axis_off()
    for axes, section in zip(axes_list, drawn, strict=False):
        assert section.chart is not None
        if section.title != report.title:
            axes.set_title(section.title, fontsize="medium")
        if section.table.num_rows == 0:
            axes.text(0.5, 0.5, "no data", ha="center", va="center")
            axes.set_axis_off()
        elif section.chart.kind == "line":
            _lines(axes, section, section.chart)
        else:
            _bars(axes, section, section.chart)
    buffer = BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    figure.savefig(buffer, format=fmt, metadata=metadata)
    return buffer.getvalue()


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float | Decimal) else float("nan")


def _label(row: dict[str, Any], columns: tuple[str, ...]) -> str:
    return " / ".join(str(row[column]) for column in columns)


def _lines(axes: Any, section: Section, chart: Chart) -> None:
    """One line per series, the largest (by their sum) first; the rest are left out, and
    the legend says how many. With a single `x` (one day of data), one bar per series."""
    [y] = chart.y
    series: dict[str, list[tuple[Any, float]]] = defaultdict(list)
    for row in section.table.to_pylist():
        series[_label(row, chart.series)].append((row[chart.x[0]], _number(row[y])))
    ranked = sorted(series, key=lambda name: -sum(v for _, v in series[name] if not math.isnan(v)))
    single = len({x for points in series.values() for x, _ in points}) == 1
    for position, name in enumerate(ranked[:MAX_SERIES]):
        points = sorted(series[name], key=lambda point: point[0])
        if single:
            axes.bar(position, points[0][1], label=name)
        else:
            axes.plot([x for x, _ in points], [v for _, v in points], marker="o", label=name)
    if not single:
        _dates_in_range(axes, [x for points in series.values() for x, _ in points])
    if single:
        axes.set_xticks([], [])
        axes.set_xlabel(str(next(iter(series.values()))[0][0]))
    title = f"top {MAX_SERIES} of {len(ranked)}" if len(ranked) > MAX_SERIES else None
    axes.legend(fontsize="small", title=title, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.set_ylabel(chart.ylabel or y)
    axes.grid(alpha=0.3)
    axes.tick_params(axis="x", labelrotation=30)


def _dates_in_range(axes: Any, xs: list[Any]) -> None:
    """Matplotlib draws dates of the years 1 to 9999 only: an axis whose data reach either
    end (a record stored before admission bounded its time, clamped by the export) gets no
    margin, which would run past it."""
    moments = [x for x in xs if isinstance(x, date)]
    if moments and (min(moments).year <= 1 or max(moments).year >= 9999):
        axes.set_xmargin(0)


def _bars(axes: Any, section: Section, chart: Chart) -> None:
    """Grouped bars: one group per row (the first `MAX_BARS`), one bar per `y` column."""
    rows = section.table.to_pylist()[:MAX_BARS]
    width = 0.8 / len(chart.y)
    positions = range(len(rows))
    for offset, column in enumerate(chart.y):
        axes.bar(
            [p + offset * width for p in positions],
            [_number(row[column]) for row in rows],
            width,
            label=column,
        )
    axes.set_xticks(
        [p + width * (len(chart.y) - 1) / 2 for p in positions],
        [_label(row, chart.x) for row in rows],
        rotation=30,
        ha="right",
        fontsize="small",
    )
    axes.set_ylabel(chart.ylabel)
    axes.legend(fontsize="small")
    axes.grid(axis="y", alpha=0.3)
