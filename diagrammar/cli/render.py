"""Command line: `diagrammar render`, one circuit as SVG, PNG, TikZ or a graphviz DOT view.

Imports only the renderer it needs, when it runs (never jax). The output path
is checked before any drawing and the figure is written atomically, so a
failed render leaves no file and no half of one.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import BadArgument, MissingDependency
from . import _args, _files, _needs

__all__ = ["FORMATS", "add_arguments", "own_circuits", "page_path", "run"]

FORMATS = (".svg", ".png", ".tex", ".dot")
MEASURED = ("time", "train-time", "norms")  # --overlay sources measured by running the compiled circuit
MEASURED_BATCH = 32
DOT_FORMATS = (".dot", ".svg", ".png", ".pdf")  # with --dot: the DOT text, or an image graphviz lays out


def add_arguments(parser) -> None:
    parser.add_argument("file", metavar="FILE", help="a .circuit file")
    parser.add_argument("--circuit", "-c", metavar="NAME",
                        help="the circuit to draw (default: the last one defined in FILE)")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="out.svg, out.png, out.tex (TikZ) or out.dot, in a folder that exists; "
                             "'-' writes SVG to stdout (default: NAME.svg)")
    parser.add_argument("--depth", type=_args.whole(0), default=None, metavar="N",
                        help="show sub-circuit calls N levels deep, each distinct one drawn once below the "
                             "figure as a definition (default: every level; 0: named blocks only)")
    parser.add_argument("--inline", action="store_true",
                        help="draw the shown calls expanded in place, as tinted panels, instead of as definitions")
    parser.add_argument("--one-row", action="store_true",
                        help="never break a wide figure into rows (by default rows wrap to fit a page)")
    parser.add_argument("--one-page", action="store_true",
                        help="keep a tall figure on one page (by default a figure that would print over 9 in "
                             "tall at 6.5 in wide continues on OUT-2.svg, OUT-3.svg, ...; TikZ puts every "
                             "page in one document)")
    parser.add_argument("--style", choices=("screen", "paper", "mono"), default="screen",
                        help="screen (default); paper: print-safe colours, larger printed labels, sizes on "
                             "input wires; mono: the same in black")
    parser.add_argument("--cost", action="store_true",
                        help="write parameters and FLOPs under every box")
    parser.add_argument("--dot", action="store_true",
                        help="draw the graphviz dataflow view instead of the circuit diagram: -o out.dot writes "
                             "its text (as does '-'), out.svg, out.png or out.pdf an image laid out by graphviz's "
                             "dot program, which must be installed")
    parser.add_argument("--batch", type=_args.positive(), default=None, metavar="B",
                        help="batch size for --cost and --overlay flops|bytes (default 1) and for the inputs "
                             f"of --overlay time|train-time|norms (default {MEASURED_BATCH})")
    parser.add_argument("--overlay", metavar="SOURCE",
                        help="colour boxes and wires by measured values, with a colour bar: 'flops' or 'bytes' "
                             "(the cost of each box); 'time' or 'train-time' (each box's share of a profiled "
                             "forward pass or training step); 'norms' (each wire's RMS over a batch of random "
                             "inputs); or a JSON file mapping box and wire names to numbers "
                             "(docs/analysis.md; `diagrammar analyse` and --overlay-out write one); SVG and PNG only"),
    parser.add_argument("--checkpoint", metavar="RUN",
                        help="with --overlay time|train-time|norms: the weights to run, a checkpoint.npz or a "
                             "training run's folder (default: random initial weights, seed 0)")
    parser.add_argument("--overlay-out", metavar="FILE.json",
                        help="also write the overlay's values as JSON, for --overlay FILE.json later")
    from .train import add_mesh_arguments  # the same --mesh, --shard and --batch-over as train (no jax)

    add_mesh_arguments(parser, axis_types=False)
    _args.add_size_overrides(parser)


def _mesh_labels(args, diagram) -> tuple[dict[str, str], dict[str, str]]:
    """``--mesh``/``--shard``: (axis -> the mesh axes it is split over, for wire labels such as ``heads /
    model``; box path -> the collectives it implies in a training step, written under it).

    Only the communication a box's own arithmetic implies is written: partial sums all-reduced over a
    tensor-parallel axis, and a fully sharded weight gathered for use and its gradient scattered back.
    The all-reduce of every weight's gradient over the batch's mesh axes (data parallelism) would mark
    every box alike; `diagrammar stats --mesh ...` lists it.
    """
    if not getattr(args, "mesh", None):
        if getattr(args, "shard", None):
            raise BadArgument("--shard needs --mesh (e.g. --mesh data=4,model=2 --shard heads=model)")
        return {}, {}
    from ..backends.cost.comms import analyse_sharding
    from ..check.sharding import validate
    from .train import batch_mesh_axis

    mapping = validate(diagram, args.mesh, args.shard or {}, batch_mesh_axis(args))  # span errors: exit 1
    walked = {path for path, _ in diagram.walk()}
    sent: dict[str, list[str]] = {}
    for c in analyse_sharding(diagram, mapping, batch=args.batch or 1).collectives:
        if c.phase in ("gradient", "loss") and c.kind == "all-reduce":
            continue
        box = c.box if c.box in walked else c.box.rpartition(".")[0]  # a weight: the box that holds it
        if box not in walked:
            continue
        times = f"{c.times} x " if c.times > 1 else ""
        sent.setdefault(box, []).append(f"{c.kind} {times}{_kb(c.bytes)} / {','.join(c.mesh_axes)} ({c.phase})")
    mesh_axes = {axis: ",".join(on) for axis, on in mapping.axes.items() if on}
    return mesh_axes, {box: "; ".join(lines) for box, lines in sent.items()}


def _kb(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.0f} KB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.1f} MB"


def own_circuits(program) -> list[str]:
    """Circuits defined in the program's own file, in source order (not those it `use`s), that have a
    diagram of their own (a generic circuit has one per binding, drawn where it is called)."""
    generics = program.generics
    return [n for n in program.own_circuits() if n not in generics] or list(program)


def cost_labels(diagram, batch: int) -> dict[str, str]:
    """``--cost`` labels by box path, each figure shown once.

    A repeat whose body has one costed box carries the same total as that box
    (every copy counted in both); the label stays on the repeat, which says
    "all copies", and leaves the box inside it.
    """
    from ..backends.cost import box_annotations

    labels = box_annotations(diagram, batch=batch)
    for path, box in diagram.walk():
        if box.op != "repeat" or box.body is None or path not in labels:
            continue
        inside = [f"{path}.{b.name}" for b in box.body.boxes if f"{path}.{b.name}" in labels]
        if len(inside) == 1 and labels[inside[0]] == labels[path]:
            del labels[inside[0]]
    return labels


def dot_view(diagram, suffix: str, depth: int | None) -> str | bytes:
    """The graphviz dataflow view: DOT text for ``.dot``, else the image graphviz's `dot` lays out."""
    from ..backends.dot import GraphvizNotFound, render_dot, to_dot

    depth = depth if depth is not None else 99  # every level, as for the circuit diagram
    if suffix == ".dot":
        return to_dot(diagram, depth=depth)
    _needs.require("render", ("graphviz",), what=f"--dot {suffix}")
    try:
        return render_dot(diagram, suffix.lstrip("."), depth=depth)
    except GraphvizNotFound as e:
        raise MissingDependency(f"--dot {suffix}: {e}") from None


def run(args) -> int:
    from .. import load

    _files.input_file(args.file)
    out = args.output
    if out is not None and out != "-":
        suffix = Path(out).suffix.lower()
        if args.dot and suffix not in DOT_FORMATS:
            raise BadArgument(f"--dot writes {', '.join(DOT_FORMATS)}; cannot write -o {out!r}")
        if suffix not in FORMATS and not args.dot:
            raise BadArgument(f"cannot tell the format of -o {out!r}: end it in one of {', '.join(FORMATS)}"
                              + (" (.pdf with --dot)" if suffix == ".pdf" else ""))
        _files.check_output(out, what="-o")
    _check_overlay_args(args)
    program = load(args.file, sizes=dict(args.size_overrides) or _checkpoint_overrides(args) or None)
    own = own_circuits(program)
    if not own:
        raise BadArgument(f"{args.file} defines no circuit")
    name = _args.circuit_in(program, args.circuit, args.file, own) if args.circuit else own[-1]
    diagram = program[name]
    if out is None:
        out = f"{name}.svg"
        _files.check_output(out)
    suffix = ".svg" if out == "-" else Path(out).suffix.lower()
    more: list = []
    overlay = None

    if suffix == ".dot" or args.dot:
        if args.cost:
            print("diagrammar render: note: --cost is drawn on SVG, PNG and TikZ figures only", file=sys.stderr)
        if args.overlay is not None:
            raise BadArgument("--overlay is drawn on SVG and PNG figures, not on the graphviz view")
        data: str | bytes = dot_view(diagram, ".dot" if out == "-" else suffix, args.depth)
    else:
        from ..backends.svg import axis_formulas, layout

        cairosvg = None
        if suffix == ".png":
            cairosvg = _needs.load("render", "cairosvg", what="PNG output (or write .svg)")
        annotations = None
        if args.cost:
            try:
                annotations = cost_labels(diagram, args.batch or 1)
            except ImportError as e:
                raise MissingDependency(f"--cost needs the cost backend, which is not available in this "
                                        f"install ({e})") from None
        overlay = _overlay(args, diagram, suffix)
        mesh_axes, sent = _mesh_labels(args, diagram)
        if sent:
            annotations = {k: " · ".join(x for x in ((annotations or {}).get(k), sent.get(k)) if x)
                           for k in {*(annotations or {}), *sent}}
        fig = layout(diagram, depth=args.depth, annotations=annotations, axis_formulas=axis_formulas(program),
                     inline=args.inline, one_row=args.one_row, style=args.style,
                     paged=not args.one_page and out != "-", mesh_axes=mesh_axes)
        if suffix == ".tex":
            from ..backends.tikz import to_tikz
            data = to_tikz(fig)
        else:
            from ..backends.svg import to_svg_pages
            try:
                pages = to_svg_pages(fig, overlay=overlay)
            except ValueError as e:  # OverlayError: a name the figure does not draw
                raise BadArgument(f"--overlay {args.overlay}: {e}") from None
            if suffix == ".png":
                pages = [cairosvg.svg2png(bytestring=page.encode("utf-8"), scale=2.0) for page in pages]
            data, more = pages[0], pages[1:]
    if out == "-":
        sys.stdout.write(data if isinstance(data, str) else data.decode("utf-8"))
        sys.stdout.flush()
        _write_overlay(args, overlay)
        return 0
    outs = [out] + [page_path(out, i) for i in range(2, len(more) + 2)]
    for path in outs[1:]:
        _files.check_output(path, what="-o")
    for path, page in zip(outs, [data] + more):
        _files.write_atomic(path, page)
    shown = "all levels" if args.depth is None else f"depth {args.depth}"
    pages_note = f"; it continues on {', '.join(outs[1:])} (--one-page keeps one page)" if more else ""
    print(f"wrote {out} ({name}, {shown}){pages_note}", file=sys.stderr)
    _write_overlay(args, overlay)
    return 0


def _overlay(args, diagram, suffix: str):
    """The ``--overlay`` to paint, read and checked before anything is drawn (None without one)."""
    if args.overlay is None:
        return None
    from ..backends.svg.overlay import OverlayError, cost_overlay, load_overlay

    if suffix == ".tex":
        raise BadArgument("--overlay is drawn on SVG and PNG figures; TikZ output has no overlay")
    try:
        if args.overlay in ("flops", "bytes"):
            overlay = cost_overlay(diagram, args.overlay, batch=args.batch or 1)
        elif args.overlay in MEASURED:
            overlay = _measured(args, diagram)
        else:
            if not Path(args.overlay).exists() and Path(args.overlay).suffix.lower() != ".json":
                raise BadArgument(f"--overlay {args.overlay}: expected flops, bytes, {', '.join(MEASURED)} "
                                  "or a JSON file (there is no such file)")
            _files.input_file(args.overlay, what="--overlay")
            overlay = load_overlay(args.overlay)
    except OverlayError as e:
        raise BadArgument(f"--overlay {args.overlay}: {e}") from None
    except UnicodeDecodeError:
        raise BadArgument(f"--overlay {args.overlay}: not a text (JSON) file") from None
    return overlay


def _write_overlay(args, overlay) -> None:
    """--overlay-out: the overlay's values as JSON, written once the figure is drawn."""
    if args.overlay_out and overlay is not None:
        from ..analysis.overlays import overlay_json

        _files.write_atomic(args.overlay_out, overlay_json(overlay))
        print(f"wrote {args.overlay_out} (the overlay's values, for --overlay {args.overlay_out})", file=sys.stderr)


def _check_overlay_args(args) -> None:
    """Refuse, before anything is loaded or run, --checkpoint or --overlay-out that cannot be used."""
    if args.checkpoint is not None:
        if args.overlay not in MEASURED:
            raise BadArgument(f"--checkpoint gives the weights for --overlay {'|'.join(MEASURED)}"
                              + (f", not for --overlay {args.overlay}" if args.overlay else ""))
        _checkpoint_file(args.checkpoint)
    if args.overlay_out is not None:
        if args.overlay is None:
            raise BadArgument("--overlay-out writes the values of an --overlay; give one")
        if Path(args.overlay_out).suffix.lower() != ".json":
            raise BadArgument(f"--overlay-out writes JSON: end its name in .json, not {args.overlay_out!r}")
        _files.check_output(args.overlay_out, what="--overlay-out")


def _checkpoint_file(path: str) -> Path:
    """The checkpoint --checkpoint names: a file, or the checkpoint.npz of a run folder."""
    p = Path(path)
    if p.is_dir():
        f = p / "checkpoint.npz"
        if not f.exists():
            raise BadArgument(f"--checkpoint {path}: the folder holds no checkpoint.npz (is it a training "
                              "run's --out?)")
        return _files.input_file(f, what="--checkpoint")
    return _files.input_file(p, what="--checkpoint")


def _checkpoint_overrides(args) -> dict | None:
    """The --size overrides the checkpoint's run was trained with, so the figure draws that model."""
    if args.checkpoint is None:
        return None
    _needs.require("render", ("jax", "flax", "numpy"), what=f"--overlay {args.overlay}")
    from ..analysis.capture import checkpoint_sizes, reading_checkpoint
    from ..train import checkpoint as ckpt

    with reading_checkpoint():
        _, overrides = checkpoint_sizes(ckpt.load_meta(_checkpoint_file(args.checkpoint)))
    return dict(overrides) or None


def _measured(args, diagram):
    """The --overlay time|train-time|norms of ``diagram``: it is compiled (or loaded from --checkpoint) and run."""
    _needs.require("render", ("jax", "flax", "numpy"), what=f"--overlay {args.overlay}")
    from ..analysis import overlays
    from ..errors import CircuitError

    checkpoint = sizes = None
    if args.checkpoint is not None:
        from ..analysis.capture import checkpoint_sizes, reading_checkpoint
        from ..train import checkpoint as ckpt

        checkpoint = _checkpoint_file(args.checkpoint)
        with reading_checkpoint():
            bound, _ = checkpoint_sizes(ckpt.load_meta(checkpoint))
        free = diagram.free_sizes()
        sizes = {k: v for k, v in bound.items() if k in free}
    else:
        free = sorted(diagram.free_sizes())
        if free:
            raise BadArgument(f"--overlay {args.overlay}: {diagram.name} runs only with every axis sized; give "
                              + " ".join(f"--size {n}=N" for n in free))

    def progress(line: str) -> None:
        print(f"diagrammar render: {line}", file=sys.stderr, flush=True)

    batch = args.batch or MEASURED_BATCH
    weights = f"checkpoint {checkpoint}" if checkpoint else "random initial weights (seed 0)"
    try:
        if args.overlay == "norms":
            progress(f"running {diagram.name} on {batch} random inputs with {weights}, capturing every wire")
            return overlays.norm_overlay(diagram, batch=batch, checkpoint=checkpoint, sizes=sizes)
        return overlays.time_overlay(diagram, batch=batch, train=args.overlay == "train-time",
                                     checkpoint=checkpoint, sizes=sizes, progress=progress)
    except CircuitError as e:  # sizes the circuit cannot run with
        raise BadArgument(f"--overlay {args.overlay}: {diagram.name} cannot be compiled: {e}") from None
    except RuntimeError as e:  # the profiler could not trace
        raise BadArgument(f"--overlay {args.overlay}: {e}") from None


def page_path(out: str, number: int) -> str:
    """Where page `number` (2, 3, ...) of a figure written to `out` goes: fig.svg -> fig-2.svg."""
    p = Path(out)
    return str(p.with_name(f"{p.stem}-{number}{p.suffix}"))
