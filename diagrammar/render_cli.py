"""The `diagrammar render` command: one circuit as SVG, PNG, TikZ or a graphviz DOT view.

Imports only the renderer it needs, when it runs (never jax).
"""
from __future__ import annotations

import sys
from pathlib import Path

FORMATS = (".svg", ".png", ".tex", ".dot")


def add_arguments(parser) -> None:
    parser.add_argument("file", metavar="FILE", help="a .circuit file")
    parser.add_argument("--circuit", "-c", metavar="NAME",
                        help="the circuit to draw (default: the last one defined in FILE)")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="out.svg, out.png, out.tex (TikZ) or out.dot; '-' writes SVG to stdout "
                             "(default: NAME.svg)")
    parser.add_argument("--depth", type=int, default=None, metavar="N",
                        help="show sub-circuit calls N levels deep, each distinct one drawn once below the "
                             "figure as a definition (default: every level; 0: named blocks only)")
    parser.add_argument("--inline", action="store_true",
                        help="draw the shown calls expanded in place, as tinted panels, instead of as definitions")
    parser.add_argument("--one-row", action="store_true",
                        help="never break a wide figure into rows (by default rows wrap to fit a page)")
    parser.add_argument("--style", choices=("screen", "paper", "mono"), default="screen",
                        help="screen (default); paper: print-safe colours, larger printed labels, sizes on "
                             "input wires; mono: the same in black")
    parser.add_argument("--cost", action="store_true",
                        help="write parameters and FLOPs under every box")
    parser.add_argument("--batch", type=int, default=1, metavar="B",
                        help="batch size for --cost (default 1)")


def own_circuits(program) -> list[str]:
    """Circuits defined in the program's own file, in source order (not those it `use`s)."""
    return program.own_circuits or list(program)


def _fail(message: str, code: int = 1) -> int:
    print(f"diagrammar render: {message}", file=sys.stderr)
    return code


def run(args) -> int:
    from .check import load

    program = load(args.file)
    own = own_circuits(program)
    if not own:
        return _fail(f"{args.file} defines no circuit")
    name = args.circuit or own[-1]
    if name not in program:
        return _fail(f"no circuit named {name!r} in {args.file}; circuits: {', '.join(own)}")
    diagram = program[name]
    out = args.output or f"{name}.svg"
    suffix = ".svg" if out == "-" else Path(out).suffix.lower()
    if suffix not in FORMATS:
        return _fail(f"cannot tell the format of {out!r}: use one of {', '.join(FORMATS)}", 2)
    if args.depth is not None and args.depth < 0:
        return _fail("--depth must be 0 or more", 2)

    if suffix == ".dot":
        try:
            from .backends.dot import to_dot
        except ImportError as e:
            return _fail(f"the graphviz view is not available in this install ({e})")
        if args.cost:
            print("diagrammar render: --cost is drawn on SVG, PNG and TikZ figures only", file=sys.stderr)
        data: str | bytes = to_dot(diagram, depth=args.depth if args.depth is not None else 99)
    else:
        from .backends.svg import PNG_MISSING, axis_formulas, layout, to_svg

        annotations = None
        if args.cost:
            try:
                from .backends.cost import box_annotations
            except ImportError as e:
                return _fail(f"--cost needs the cost backend, which is not available in this install ({e})")
            annotations = box_annotations(diagram, batch=args.batch)
        fig = layout(diagram, depth=args.depth, annotations=annotations, axis_formulas=axis_formulas(program),
                     inline=args.inline, one_row=args.one_row, style=args.style)
        if suffix == ".tex":
            from .backends.tikz import to_tikz
            data = to_tikz(fig)
        elif suffix == ".png":
            try:
                import cairosvg
            except ImportError:
                return _fail(PNG_MISSING)
            data = cairosvg.svg2png(bytestring=to_svg(fig).encode("utf-8"), scale=2.0)
        else:
            data = to_svg(fig)
    if out == "-":
        sys.stdout.write(data if isinstance(data, str) else data.decode("utf-8"))
        return 0
    path = Path(out)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    shown = "all levels" if args.depth is None else f"depth {args.depth}"
    print(f"wrote {out} ({name}, {shown})", file=sys.stderr)
    return 0
