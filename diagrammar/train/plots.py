"""Train stage: PNG plots of a run (learning curves, Fourier spectra), written atomically.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so plotting
never touches global backend state or opens a window, and each PNG is written
to a temporary file and moved into place so a viewer never sees half an image.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .checkpoint import _write_atomic


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Render ``fig`` to PNG at ``path`` atomically (the checkpoint's temp file + ``os.replace``)."""
    path = Path(path)
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    _write_atomic(path, buffer.getvalue())
    return path


def _series(history: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    # Step 0 cannot sit on a log axis; it is drawn at step 1 so the start still shows.
    xs, ys = [], []
    for row in history:
        if key in row and row[key] is not None:
            xs.append(max(int(row["step"]), 1))
            ys.append(float(row[key]))
    return xs, ys


def _floor_zeros(ys: list[float]) -> list[float]:
    """A loss that rounds to 0 in float32 stays on the log axis, drawn at the lowest positive value seen."""
    lowest = min((y for y in ys if y > 0), default=None)
    return [y if y > 0 or lowest is None else lowest for y in ys]


def plot_history(history: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Loss and accuracy curves, train vs test, against steps on a log axis.

    Args:
      history: metric rows as logged to ``metrics.jsonl`` (``step``,
        ``train_loss``, ``test_loss``, ``train_acc``, ``test_acc``, ...).
      path: the PNG file to write.
      title: an optional figure title.

    Returns:
      The path written.
    """
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for split, style in (("train", "-"), ("test", "--")):
        xs, ys = _series(history, f"{split}_loss")
        ys = _floor_zeros(ys)
        if xs:
            ax_loss.plot(xs, ys, style, label=split)
        xs, ys = _series(history, f"{split}_acc")
        if xs:
            ax_acc.plot(xs, ys, style, label=split)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(-0.02, 1.02)
    for ax in (ax_loss, ax_acc):
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_spectrum(
    norms: Sequence[float],
    path: str | os.PathLike,
    key_freqs: Sequence[int] = (),
    title: str = "Fourier spectrum",
) -> Path:
    """Bar chart of the weight norm per frequency ``k = 0 .. p//2``; key frequencies in red.

    Args:
      norms: norm per frequency, index ``k`` (``k = 0`` is the constant component).
      path: the PNG file to write.
      key_freqs: frequencies to highlight.
      title: the axes title.

    Returns:
      The path written.
    """
    key = set(int(k) for k in key_freqs)
    fig = Figure(figsize=(10, 3.5), layout="constrained")
    ax = fig.subplots()
    ks = list(range(len(norms)))
    colours = ["tab:red" if k in key else ("tab:gray" if k == 0 else "tab:blue") for k in ks]
    ax.bar(ks, [float(n) for n in norms], color=colours, width=0.8)
    ax.set_xlabel("frequency k")
    ax.set_ylabel("norm")
    if key:
        shown = ", ".join(map(str, sorted(key))) if len(key) <= 12 else f"{len(key)} of {len(norms) - 1}"
        title += f"\nkey frequencies (red): {shown}"
    ax.set_title(title, fontsize=10)
    ax.set_xlim(-0.8, len(norms) - 0.2)
    return save_figure(fig, path)
