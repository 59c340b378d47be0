"""`curfew report --format png`: one heatmap per (vantage, target), dates down and local hours
across, coloured by the blocked share of each hour, titled with the inferred schedule.

Drawn on a bare `Figure` with the Agg canvas (no pyplot, no display, no global state), so it
works on a server and in tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probe.export.report import Report, Series

COLUMN_INCHES = 9.0
DAY_INCHES = 0.16
MIN_PANEL_INCHES = 2.4


def _matrix(series: Series, report: Report) -> np.ndarray:
    """Blocked share per (day, hour); NaN where the hour has no conclusive probe."""
    days = report.days
    grid = np.full((len(days), 24), np.nan)
    for i, d in enumerate(days):
        day = d.isoformat()
        for hour in range(24):
            cell = series.cells.get((day, hour))
            share = None if cell is None else cell.blocked_share
            if share is not None:
                grid[i, hour] = share
    return grid


def _title(series: Series) -> str:
    sentences = [s.describe() for s in series.pattern.schedules] or ["no recurring schedule"]
    return f"{series.vantage} / {series.target}\n" + "\n".join(sentences)


def write_png(report: Report, path: Path, dpi: int = 100) -> None:
    """Write the heatmaps of every series of `report`, stacked, to `path`."""
    days = report.days
    panel = max(MIN_PANEL_INCHES, len(days) * DAY_INCHES + 1.2)
    count = max(1, len(report.series))
    figure = Figure(figsize=(COLUMN_INCHES, panel * count), layout="constrained")
    FigureCanvasAgg(figure)
    cmap = colormaps["Reds"].with_extremes(bad="#dddddd")
    step = max(1, len(days) // 15)
    for index, series in enumerate(report.series):
        ax = figure.add_subplot(count, 1, index + 1)
        image = ax.imshow(
            _matrix(series, report), aspect="auto", cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest"
        )
        ax.set_xticks(range(0, 24, 2))
        ax.set_xlabel(f"local hour ({series.zone})")
        ax.set_yticks(range(0, len(days), step), [days[i].isoformat() for i in range(0, len(days), step)])
        ax.set_title(_title(series), fontsize=9)
        figure.colorbar(image, ax=ax, label="blocked share", fraction=0.04)
    figure.savefig(path, dpi=dpi, format="png")
