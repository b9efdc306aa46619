"""What the monitor pages draw: a group's value against its limit as a bar, and a
monitor's history as an inline SVG line chart (value per group over log index, the limit
as a dashed line, breached samples as red dots).

The geometry is computed here and the template only writes it out, so the pages need no
script (their Content-Security-Policy allows none) and no chart library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from ledger.log.entry import rfc3339
from query.audit.monitors import History

# Distinguishable on white, and none of them the red that marks a breach.
PALETTE = ("#1f6feb", "#2da44e", "#8250df", "#bf8700", "#0a7f8c", "#6e7781", "#e16f24")
WIDTH, HEIGHT = 820, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 44
MAX_LEGEND = len(PALETTE)


def short_value(value: str | None) -> str:
    """A decimal text with at most 6 places, for reading; the API keeps every digit."""
    if value is None:
        return "-"
    whole, dot, places = value.partition(".")
    return value if not dot or len(places) <= 6 else f"{whole}.{places[:6]}"


def _number(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        return Decimal(0)


def gauge(value: str, limit: str) -> dict[str, str]:
    """The bar's width and the limit mark's position, in percent of a track that reaches
    a quarter past the limit, or to the value when it is further."""
    amount, bound = _number(value), _number(limit)
    scale = max(bound * Decimal("1.25"), amount, Decimal(0))
    if scale <= 0:
        return {"width": "0%", "limit": "0%"}
    width = max(Decimal(0), amount) / scale * 100
    return {"width": f"{width:.2f}%", "limit": f"{bound / scale * 100:.2f}%"}


@dataclass
class Line:
    group: str
    colour: str
    points: str  # the polyline's `points`
    dots: list[tuple[float, float]]  # breached samples
    count: int  # samples drawn
    total: int  # samples held


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    lines: list[Line] = field(default_factory=list)
    limit_y: float | None = None
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str, str]] = field(default_factory=list)  # x, index, time
    plot: tuple[int, int, int, int] = (LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM)
    empty: bool = True


def history_chart(history: History) -> Chart:
    """The chart of `history`: one line per group (the first `MAX_LEGEND` groups by key;
    the table lists them all)."""
    chart = Chart()
    series = [s for s in history.series if s.points][:MAX_LEGEND]
    if not series:
        return chart
    limit = float(_number(history.limit))
    indexes = [p.index for s in series for p in s.points]
    values = [p.value for s in series for p in s.points]
    x0, x1 = min(indexes), max(indexes)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    y0 = min(0.0, *values)
    y1 = max(limit, *values) * 1.1 or 1.0
    if y1 <= y0:
        y1 = y0 + 1.0
    left, top, right, bottom = chart.plot

    def x(index: int) -> float:
        return round(left + (index - x0) / (x1 - x0) * (right - left), 1)

    def y(value: float) -> float:
        return round(bottom - (value - y0) / (y1 - y0) * (bottom - top), 1)

    for position, s in enumerate(series):
        chart.lines.append(
            Line(
                group=s.group if s.group is not None else "(all)",
                colour=PALETTE[position % len(PALETTE)],
                points=" ".join(f"{x(p.index)},{y(p.value)}" for p in s.points),
                dots=[(x(p.index), y(p.value)) for p in s.points if p.breached],
                count=len(s.points),
                total=s.total,
            )
        )
    chart.limit_y = y(limit)
    chart.y_ticks = [(y(v), f"{v:.6g}") for v in sorted({y0, limit, (y0 + y1) / 2, y1})]
    first = min((p for s in series for p in s.points), key=lambda p: p.index)
    last = max((p for s in series for p in s.points), key=lambda p: p.index)
    chart.x_ticks = [
        (x(first.index), str(first.index), rfc3339(first.integrated_us)),
        (x(last.index), str(last.index), rfc3339(last.integrated_us)),
    ]
    chart.empty = False
    return chart
