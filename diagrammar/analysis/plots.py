"""Analysis: PNG figures of an analysis (a heatmap of a metric, kernel-analysis curves), written atomically.

Drawn on matplotlib's Agg canvas directly (no pyplot), as the training plots are.
"""
from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from ..train.plots import save_figure

__all__ = ["heatmap", "kernel_curves"]


def _wrap(title: str, chars: int) -> str:
    """A title broken into lines of at most ``chars`` characters (matplotlib never wraps a title itself)."""
    return "\n".join(textwrap.fill(line, chars) for line in title.splitlines())


def heatmap(values: np.ndarray, rows: Sequence[str], cols: Sequence[str], path: str | os.PathLike, *,
            title: str, row_label: str, col_label: str, vmin: float, vmax: float, lower_is_closer: bool = False
            ) -> Path:
    """A labelled heatmap with every value written in its cell; NaN cells are grey and marked "-"."""
    values = np.asarray(values, dtype=float)
    n_rows, n_cols = values.shape
    width = min(max(6.0, 3.2 + 0.75 * n_cols + 0.06 * max(map(len, rows), default=0)), 16)
    height = min(2.0 + 0.5 * n_rows + 0.05 * max(map(len, cols), default=0), 14)
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["viridis_r" if lower_is_closer else "viridis"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(n_cols), labels=list(cols), rotation=30 if max(map(len, cols), default=0) > 6 else 0,
                  ha="right" if max(map(len, cols), default=0) > 6 else "center")
    ax.set_yticks(range(n_rows), labels=list(rows))
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    ax.set_title(_wrap(title, int(width * 11)), fontsize=10)
    span = vmax - vmin
    if n_rows * n_cols <= 400:
        for i in range(n_rows):
            for j in range(n_cols):
                v = values[i, j]
                if math.isnan(v):
                    ax.text(j, i, "-", ha="center", va="center", color="#555555", fontsize=9)
                    continue
                share = (v - vmin) / span if span > 0 else 0.5
                dark = share < 0.6 if not lower_is_closer else share > 0.4  # viridis is dark at its low end
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=9,
                        color="white" if dark else "black")
    fig.colorbar(image, ax=ax, shrink=0.9)
    return save_figure(fig, path)


def kernel_curves(curves: dict[str, np.ndarray], path: str | os.PathLike, *, title: str) -> Path:
    """Classification error against the number of leading kernel components, one line per wire."""
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for name, errors in curves.items():
        ax.plot(np.arange(1, len(errors) + 1), errors, label=name, linewidth=1.6)
    ax.set_xscale("log")
    ax.set_xlabel("leading kernel principal components d")
    ax.set_ylabel("classification error")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_wrap(title, 77), fontsize=10)
    return save_figure(fig, path)
