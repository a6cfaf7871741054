"""Backends, svg stage 1: the geometry of a neural circuit diagram (no SVG text).

`layout(diagram)` turns the typed IR into positioned shapes (paths, circles,
texts) plus an index of what they mean (boxes, axis labels, wire tracks) that
tests and other renderers read. `draw.py` writes SVG and `tikz.py` writes TikZ
from the same shapes, so both show exactly the same figure.

The work is split along its seams: `geometry` (sizes, text metrics, shapes),
`nodes` (the sweep's records), `lanes` (columns, the lane sweep, vertical and
horizontal placement), `ports` (each kind of node's ports and glyph size),
`glyphs` (the shapes drawn), `page` (title, legend, the whole figure).
"""
from __future__ import annotations

from .geometry import (
                       PALETTE,
                       BoxGeom,
                       Circle,
                       LabelGeom,
                       Layout,
                       Path,
                       Text,
                       TrackGeom,
                       axis_colors,
                       gc_paused,
                       text_width,
)
from .page import layout

__all__ = ["layout", "Layout", "Path", "Circle", "Text", "BoxGeom", "LabelGeom", "TrackGeom",
           "text_width", "axis_colors", "PALETTE", "gc_paused"]
