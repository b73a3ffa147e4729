"""The revenue-by-day chart, a PNG drawn with matplotlib's Agg renderer.

matplotlib is an optional dependency (`pip install 'retail-stream[report]'`):
it is imported only when a chart is asked for, and its absence is a named
error, raised before anything is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from reporting.warehouse import DailyRevenue

LABEL_EVERY_DAY_UP_TO = 14  # beyond, matplotlib picks the date ticks
INSTALL_HINT = "pip install 'retail-stream[report]' (or: pip install matplotlib)"


class ChartUnavailable(RuntimeError):
    """matplotlib is not installed, so no chart can be drawn."""


def require_matplotlib() -> None:
    """Raise ChartUnavailable, naming the fix, unless matplotlib imports."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise ChartUnavailable(
            f"--chart needs matplotlib, which is not installed ({error}): {INSTALL_HINT}"
        ) from None


def write_revenue_chart(daily: Sequence[DailyRevenue], path: Path) -> None:
    """Write a PNG of gross revenue (bars up), cancelled revenue (bars down)
    and net revenue (line) per day to `path`, creating its folder. Uses a
    Figure with the Agg canvas directly: no pyplot, no display, no global
    state. Raises ChartUnavailable without matplotlib, OSError when the file
    cannot be written."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    days = [entry.day for entry in daily]
    figure = Figure(figsize=(10, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.bar(days, [float(entry.gross_revenue) for entry in daily], width=0.8, color="#4c72b0", label="gross")
    axes.bar(days, [-float(entry.cancelled_revenue) for entry in daily], width=0.8, color="#c44e52",
             label="cancelled")
    axes.plot(days, [float(entry.net_revenue) for entry in daily], color="black", marker="o", markersize=3,
              linewidth=1.2, label="net")
    axes.axhline(0, color="grey", linewidth=0.6)
    if len(days) <= LABEL_EVERY_DAY_UP_TO:
        axes.set_xticks(days, [day.isoformat() for day in days])
    else:
        locator = AutoDateLocator()
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes.set_title("Revenue by day (sales minus cancellations; adjustments excluded)")
    axes.set_ylabel("revenue")
    axes.legend(loc="best")
    axes.grid(axis="y", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
