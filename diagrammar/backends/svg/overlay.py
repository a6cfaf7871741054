"""Backends, svg: overlays, measured values painted on a figure's boxes and wires, with a colour bar.

An overlay maps names, as the figure's semantic attributes give them
(``data-box``: a box's dotted path as ``Diagram.walk`` names it, such as
``h`` or ``attention.q``; ``data-wire``: a wire's dotted name), to numbers.
``to_svg(fig, overlay=...)`` fills each named box, or strokes each named
wire, with the colour its value maps to on a perceptually uniform scale
(viridis), greys the boxes or wires of the same kind that carry no value, and
draws a colour bar under the figure. Geometry is never changed: the figure
only grows at the bottom, by the colour bar's band.

The JSON form (``diagrammar render --overlay FILE.json``, see docs/analysis.md)::

    {"label": "linear CKA with seed 1", "scale": "linear", "range": [0, 1],
     "boxes": {"h": 0.8}, "wires": {"h": 0.93, "x": 1.0}}

``"lenient": true`` skips names the figure does not draw instead of refusing them (the measured
overlays name every box at every depth, so one file serves a figure of any ``--depth``).

Pure Python (no numpy), like the rest of the renderer.
"""
from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Overlay", "OverlayError", "load_overlay", "cost_overlay", "VIRIDIS", "NEUTRAL_WIRE", "NEUTRAL_BOX"]

# matplotlib's viridis at 17 evenly spaced points; colours between are interpolated in sRGB
VIRIDIS = ("#440154", "#48186a", "#472d7b", "#424086", "#3b528b", "#33638d", "#2c728e", "#26828e", "#21918c",
           "#1fa088", "#28ae80", "#3fbc73", "#5ec962", "#84d44b", "#addc30", "#d8e219", "#fde725")
NEUTRAL_WIRE = "#c8c8c8"  # a wire with no value, when wires are overlaid
NEUTRAL_BOX = "#f2f2f2"   # a box with no value, when boxes are overlaid
KEYS = ("label", "scale", "range", "boxes", "wires", "lenient")
BAND = 46.0  # the height the colour bar adds under the figure


class OverlayError(ValueError):
    """An overlay that cannot be drawn: malformed, or naming a box or wire the figure does not draw."""


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OverlayError(f"{where} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Overlay:
    """Values by box path and by wire name, and how they map to colours.

    Args:
      boxes: ``{box path: value}``.
      wires: ``{wire name: value}``.
      label: the colour bar's caption (what the values are).
      scale: ``"linear"`` or ``"log"`` (every value positive; for FLOPs and bytes).
      range: ``(low, high)`` mapped to the ends of the scale (values outside are clamped); default the
        smallest and largest value.
    """

    boxes: tuple[tuple[str, float], ...] = ()
    wires: tuple[tuple[str, float], ...] = ()
    label: str = ""
    scale: str = "linear"
    range: tuple[float, float] | None = None
    lenient: bool = False  # skip names the figure does not draw (the built-in cost overlays name every box)

    def __post_init__(self) -> None:
        if self.scale not in ("linear", "log"):
            raise OverlayError(f"scale must be 'linear' or 'log', got {self.scale!r}")
        if not self.boxes and not self.wires:
            raise OverlayError("the overlay gives no values: add \"boxes\" or \"wires\"")
        if self.scale == "log":
            bad = [n for n, v in self.boxes + self.wires if v <= 0]
            if bad:
                raise OverlayError(f"a log scale needs positive values; {bad[0]!r} has "
                                   f"{dict(self.boxes + self.wires)[bad[0]]}")
        if self.range is not None:
            lo, hi = self.range
            if not lo < hi:
                raise OverlayError(f"range must be [low, high] with low < high, got {list(self.range)}")
            if self.scale == "log" and lo <= 0:
                raise OverlayError(f"a log scale needs a positive range, got {list(self.range)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Overlay:
        """The overlay a JSON document describes (see the module docstring)."""
        if not isinstance(data, Mapping):
            raise OverlayError("an overlay is a JSON object with \"boxes\" and/or \"wires\"")
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise OverlayError(f"unknown key {unknown[0]!r} in the overlay; the keys are {', '.join(KEYS)}")
        parts = {}
        for kind in ("boxes", "wires"):
            table = data.get(kind, {})
            if not isinstance(table, Mapping):
                raise OverlayError(f"\"{kind}\" must map names to numbers")
            parts[kind] = tuple(sorted((str(k), _number(v, f"{kind}[{k!r}]")) for k, v in table.items()))
        rng = data.get("range")
        if rng is not None:
            if not isinstance(rng, (list, tuple)) or len(rng) != 2:
                raise OverlayError(f"range must be [low, high], got {rng!r}")
            rng = (_number(rng[0], "range[0]"), _number(rng[1], "range[1]"))
        label = data.get("label", "")
        if not isinstance(label, str):
            raise OverlayError(f"label must be text, got {label!r}")
        lenient = data.get("lenient", False)
        if not isinstance(lenient, bool):
            raise OverlayError(f"lenient must be true or false, got {lenient!r}")
        return cls(parts["boxes"], parts["wires"], label, data.get("scale", "linear"), rng, lenient)

    def bounds(self) -> tuple[float, float]:
        """The values mapped to the two ends of the scale."""
        if self.range is not None:
            return self.range
        values = [v for _, v in self.boxes + self.wires]
        lo, hi = min(values), max(values)
        if lo == hi:  # one value: put it in the middle of the scale
            pad = abs(lo) * 0.5 if lo else 1.0
            lo, hi = (lo / 2, lo * 2) if self.scale == "log" else (lo - pad, hi + pad)
        return lo, hi

    def position(self, value: float) -> float:
        """Where ``value`` falls on the scale, from 0 to 1 (clamped)."""
        lo, hi = self.bounds()
        if self.scale == "log":
            value, lo, hi = math.log(max(value, lo)), math.log(lo), math.log(hi)
        return min(1.0, max(0.0, (value - lo) / (hi - lo)))

    def colour(self, value: float) -> str:
        """The colour ``value`` maps to."""
        return colour_at(self.position(value))


def colour_at(t: float) -> str:
    """The viridis colour at ``t`` in [0, 1].

    >>> colour_at(0.0), colour_at(1.0), colour_at(0.5)
    ('#440154', '#fde725', '#21918c')
    """
    x = min(1.0, max(0.0, t)) * (len(VIRIDIS) - 1)
    i = min(int(x), len(VIRIDIS) - 2)
    f = x - i
    a, b = VIRIDIS[i], VIRIDIS[i + 1]
    rgb = [round(int(a[k:k + 2], 16) * (1 - f) + int(b[k:k + 2], 16) * f) for k in (1, 3, 5)]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def load_overlay(source: str | Mapping[str, Any] | Overlay) -> Overlay:
    """An :class:`Overlay` from itself, a dict, or the path of a JSON file.

    Raises:
      OverlayError: the document is malformed.
      OSError: the file cannot be read.
    """
    if isinstance(source, Overlay):
        return source
    if isinstance(source, Mapping):
        return Overlay.from_dict(source)
    with open(source, encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except ValueError as e:
        raise OverlayError(f"{source} is not JSON: {e}") from None
    try:
        return Overlay.from_dict(data)
    except OverlayError as e:
        raise OverlayError(f"{source}: {e}") from None


def cost_overlay(diagram, kind: str = "flops", batch: int = 1, bindings: dict[str, int] | None = None) -> Overlay:
    """The cost backend's forward FLOPs (``kind="flops"``) or activation bytes (``"bytes"``) per box, on a log
    scale; boxes that cost nothing are left uncoloured."""
    from ..cost import analyse

    if kind not in ("flops", "bytes"):
        raise OverlayError(f"the built-in overlays are 'flops' and 'bytes', got {kind!r}")
    report = analyse(diagram, batch=batch, bindings=bindings)
    values = {}
    for row in report.boxes:
        n = (row.forward_flops if kind == "flops" else row.activation_bytes).number
        if n:
            values[row.path] = float(n)
    if not values:
        raise OverlayError(f"no box of {diagram.name} has a known, non-zero {kind} count")
    label = f"forward FLOPs per box (batch {batch})" if kind == "flops" else f"activation bytes per box (batch {batch})"
    return Overlay(boxes=tuple(sorted(values.items())), label=label, scale="log", lenient=True)


# ---------------------------------------------------------------- painting a layout


def _meta(shape) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in getattr(shape, "meta", ()):
        if key != "class" and value not in (None, ""):
            out.setdefault(key, str(value))
    return out


def _dark(colour: str) -> bool:
    """Whether black text would be hard to read on ``colour`` (its luma below one half).

    >>> _dark("#440154"), _dark("#fde725")
    (True, False)
    """
    r, g, b = (int(colour[k:k + 2], 16) / 255 for k in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5


def _filled(value) -> bool:
    return bool(value) and value != "none"


def _drawn(shapes) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """{box path: shape indices} and {wire name: shape indices} of what a list of shapes draws."""
    boxes: dict[str, list[int]] = {}
    wires: dict[str, list[int]] = {}
    for i, s in enumerate(shapes):
        role, meta = getattr(s, "role", ""), _meta(s)
        if role == "box" and "box" in meta:
            boxes.setdefault(meta["box"], []).append(i)
        elif role == "wire" and "wire" in meta:
            for name in meta["wire"].split():
                wires.setdefault(name, []).append(i)
    return boxes, wires


def check_drawn(name: str, shapes, overlay: Overlay) -> None:
    """Refuse an overlay that names a box or wire none of ``shapes`` draws (the figure called ``name``).

    Raises:
      OverlayError: naming the first such name, a close match, and the names the figure does draw.
    """
    if overlay.lenient:
        return
    drawn_boxes, drawn_wires = _drawn(shapes)
    for kind, wanted, drawn in (("box", dict(overlay.boxes), drawn_boxes), ("wire", dict(overlay.wires), drawn_wires)):
        missing = sorted(set(wanted) - set(drawn))
        if missing:
            hint = difflib.get_close_matches(missing[0], list(drawn), n=1)
            listing = ", ".join(sorted(drawn)[:30]) + (", ..." if len(drawn) > 30 else "")
            msg = f"the overlay names the {kind} {missing[0]!r}, which the figure of {name} does not draw"
            if kind == "box":
                msg += " (a box inside a collapsed call is drawn only at a greater depth)"
            msg += f"; did you mean {hint[0]!r}?" if hint else "."
            raise OverlayError(f"{msg} {'Boxes' if kind == 'box' else 'Wires'} drawn: {listing or 'none'}")


def paints(fig, overlay: Overlay, strict: bool = True) -> dict[int, tuple[str | None, str | None, float | None]]:
    """The new (fill, stroke, value) of each shape the overlay recolours, by index in ``fig.shapes``.

    ``None`` keeps a paint as it was; the value is None for shapes greyed for lack of one.

    Raises:
      OverlayError: (when ``strict``) a name the figure draws no box or wire of.
    """
    if strict:
        check_drawn(fig.name, fig.shapes, overlay)
    boxes, wires = dict(overlay.boxes), dict(overlay.wires)
    drawn_boxes, drawn_wires = _drawn(fig.shapes)
    out: dict[int, tuple[str | None, str | None, float | None]] = {}
    if boxes:
        for name, indices in drawn_boxes.items():
            value = boxes.get(name)
            outlined = [i for i in indices
                        if _filled(getattr(fig.shapes[i], "fill", None)) and getattr(fig.shapes[i], "stroke", None)]
            if value is None:
                for i in outlined:
                    out[i] = (NEUTRAL_BOX, None, None)
                continue
            colour = overlay.colour(value)
            if _dark(colour):  # the box's own text, drawn on the new fill, turns white to stay legible
                for i in indices:
                    if isinstance(getattr(fig.shapes[i], "text", None), str):
                        out[i] = ("#ffffff", None, value)
            if outlined:
                for i in outlined:
                    out[i] = (colour, None, value)
            else:  # a glyph with no outline (a bar, a dot): paint the glyph itself
                for i in indices:
                    s = fig.shapes[i]
                    if _filled(getattr(s, "fill", None)) or getattr(s, "stroke", None):
                        out[i] = (colour if _filled(s.fill) else None, colour if s.stroke else None, value)
    if wires:
        for name, indices in drawn_wires.items():
            value = wires.get(name)
            for i in indices:
                if i in out and out[i][2] is not None:
                    continue  # a cap joining two wires: the first with a value colours it
                out[i] = (None, NEUTRAL_WIRE if value is None else overlay.colour(value), value)
    return out


def _short(v: float) -> str:
    """A number in at most four significant digits, with k/M/G/T for large ones.

    >>> _short(0.934), _short(1234567.0), _short(-2.0), _short(12.5)
    ('0.934', '1.23M', '-2', '12.5')
    """
    a = abs(v)
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def colour_bar(fig, overlay: Overlay, top: float, fmt) -> list[str]:
    """SVG elements of the colour bar, in a band of height :data:`BAND` starting at ``top``."""
    titles = [s.x for s in fig.shapes if getattr(s, "role", "") == "title" and isinstance(getattr(s, "x", None), (int, float))]
    x0 = min(titles) if titles else 12.0  # under the figure, aligned with its title
    width = max(120.0, min(240.0, fig.width - x0 - 12.0))
    y = top + 20.0
    lo, hi = overlay.bounds()
    stops = "".join(f'<stop offset="{fmt(k / (len(VIRIDIS) - 1))}" stop-color="{c}"/>' for k, c in enumerate(VIRIDIS))
    ticks = [(0.0, lo), (1.0, hi)]
    ticks.insert(1, (0.5, math.sqrt(lo * hi) if overlay.scale == "log" else (lo + hi) / 2))
    from xml.sax.saxutils import escape

    from .geometry import text_width

    scale_note = ", log scale" if overlay.scale == "log" else ""
    caption = (overlay.label or "value") + scale_note
    room, wide = fig.width - x0 - 8.0, text_width(caption, 10.0)
    size = 10.0 if wide <= room else max(7.0, 10.0 * room / wide)  # a long caption shrinks to fit the figure
    caption = escape(caption)
    lines = [
        f'<defs><linearGradient id="overlay-scale" x1="0" y1="0" x2="1" y2="0">{stops}</linearGradient></defs>',
        f'<text class="overlay-scale" x="{fmt(x0)}" y="{fmt(top + 13)}" font-size="{fmt(size)}">{caption}</text>',
        (f'<rect class="overlay-scale" data-low="{lo!r}" data-high="{hi!r}" x="{fmt(x0)}" y="{fmt(y)}" '
         f'width="{fmt(width)}" height="9" fill="url(#overlay-scale)" stroke="#888888" stroke-width="0.6"/>'),
    ]
    for t, v in ticks:
        anchor = "start" if t == 0 else "end" if t == 1 else "middle"
        x = x0 + t * width
        lines.append(f'<path class="overlay-scale" d="M{fmt(x)} {fmt(y + 9)}L{fmt(x)} {fmt(y + 12)}" fill="none" '
                     f'stroke="#888888" stroke-width="0.6"/>')
        lines.append(f'<text class="overlay-scale" x="{fmt(x)}" y="{fmt(y + 21)}" font-size="8" '
                     f'text-anchor="{anchor}">{escape(_short(v))}</text>')
    return lines
