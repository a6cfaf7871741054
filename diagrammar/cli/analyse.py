"""Command line: `diagrammar analyse`, representation metrics between named wires of trained checkpoints.

``add_arguments`` imports nothing heavy; ``run`` checks every argument and
file before it loads jax or a checkpoint. The examples stream through each
model in batches, so memory stays bounded however many there are (see
``diagrammar.analysis.streaming`` for what is kept per metric).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ..errors import BadArgument
from . import _args, _files

__all__ = ["add_arguments", "run", "METRICS"]

DESCRIPTION = """Compare what named wires of trained circuits represent.

With one --checkpoint, every wire is compared with every other (wire x wire).
With --against B, each wire of the checkpoint is compared with each wire of B.
With several --checkpoint (e.g. saved over training), each wire of each one is
compared with the same wire of B, or of the last checkpoint when there is no
--against (wire x checkpoint). --metric kernel measures, for each wire, the
classification error against the number of leading kernel components.

Prints a table and writes into --out a heatmap (analysis-METRIC.png), the
numbers (analysis-METRIC.json) and, where each wire has one value, an overlay
for `diagrammar render --overlay` (overlay-METRIC.json).

examples:
  diagrammar analyse circuits/modadd_mlp.circuit --circuit ModAddMLP --task modadd \\
      --checkpoint runs/A --against runs/B --wires x,h --metric cka"""

# --metric -> (what the numbers are, lower is closer, value range)
METRICS = {
    "cka": ("linear CKA", False, (0.0, 1.0)),
    "rbf-cka": ("RBF CKA (bandwidth: median distance)", False, (0.0, 1.0)),
    "rsa": ("RSA (Spearman of correlation-distance RDMs)", False, (-1.0, 1.0)),
    "svcca": ("SVCCA (99% of variance)", False, (0.0, 1.0)),
    "procrustes": ("Procrustes distance", True, (0.0, 2.0)),
    "match": ("mean correlation of one-to-one matched units", False, (-1.0, 1.0)),
    "kernel": ("kernel analysis error (RBF)", True, (0.0, 1.0)),
}
_INTERNAL = {"rbf-cka": "rbf_cka"}  # --metric -> WireStatistics' name
PACKAGES = ("jax", "flax", "numpy", "scipy", "matplotlib")
DEFAULT_BATCH = 1024


def _wire_list(text: str) -> list[str]:
    names = [w.strip() for w in text.split(",")]
    if not names or any(not w for w in names):
        raise argparse.ArgumentTypeError(f"expected wire names separated by commas (e.g. x,h), got {text!r}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a wire is named twice in {text!r}")
    return names


_wire_list.__name__ = "wire list"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the .circuit file the checkpoints were trained from")
    parser.add_argument("--circuit", "-c", required=True, metavar="NAME", help="the circuit that was trained")
    parser.add_argument("--checkpoint", action="append", required=True, metavar="A",
                        help="a checkpoint.npz or a run folder holding one (repeat for several over training)")
    parser.add_argument("--against", metavar="B", help="another checkpoint (or run folder) to compare with")
    parser.add_argument("--task", required=True, choices=("modadd", "sort", "hull"),
                        help="the examples to run: modadd (every pair a, b), sort or hull (fresh inputs)")
    parser.add_argument("--wires", required=True, type=_wire_list, metavar="a,b,...",
                        help="the wires to measure, by name; a dotted path reaches into calls (attention.a)")
    parser.add_argument("--metric", choices=tuple(METRICS), default="cka", help="the measure (default: cka)")
    parser.add_argument("--examples", type=_args.whole(4), default=None, metavar="N",
                        help="examples to use (default: modadd all p*p pairs; sort and hull 1,000)")
    parser.add_argument("--batch", type=_args.positive(2 ** 16), default=DEFAULT_BATCH, metavar="B",
                        help=f"examples per forward pass (default {DEFAULT_BATCH})")
    parser.add_argument("--out", metavar="DIR",
                        help="folder for the heatmap and numbers (default: the first checkpoint's folder)")
    _args.add_size_overrides(parser)


def _checkpoint(path: str, what: str) -> Path:
    from ..analysis.capture import checkpoint_file

    p = Path(path)
    if p.is_dir():
        f = checkpoint_file(p)
        if not f.exists():
            raise BadArgument(f"{what} {path}: the folder holds no checkpoint.npz (is it a training run's --out?)")
        return _files.input_file(f, what=what)
    return _files.input_file(p, what=what)


def _label(path: Path, meta: dict[str, Any], taken: set[str]) -> str:
    """A short name for a checkpoint: its run folder, and its step when several share a folder."""
    base = path.parent.name if path.name == "checkpoint.npz" else path.stem
    step = meta.get("step")
    name = base
    if name in taken and step is not None:
        name = f"{base} @{step}"
    i = 2
    while name in taken:
        name, i = f"{base} ({i})", i + 1
    taken.add(name)
    return name


def run(args: argparse.Namespace) -> int:
    _args.require("analyse", PACKAGES)
    _files.input_file(args.file)
    paths = [_checkpoint(c, "--checkpoint") for c in args.checkpoint]
    against = _checkpoint(args.against, "--against") if args.against else None
    if args.metric == "kernel" and args.task != "modadd":
        raise BadArgument(f"--metric kernel needs class labels; --task {args.task} has none (modadd has)")
    if args.metric == "kernel" and against is not None:
        raise BadArgument("--metric kernel measures each wire against the labels; it takes no --against")
    if len(paths) == 1 and against is None and args.metric != "kernel" and len(args.wires) < 2:
        raise BadArgument("one checkpoint and one wire leave nothing to compare: name two or more --wires, or "
                          "give --against B or several --checkpoint")
    out = Path(args.out) if args.out else paths[0].parent
    _files.output_folder(out, what="--out")

    import diagrammar
    from ..analysis import capture
    from ..train import checkpoint as ckpt

    with capture.reading_checkpoint():
        metas = [ckpt.load_meta(p) for p in paths]
        against_meta = ckpt.load_meta(against) if against is not None else None
    _, overrides = capture.checkpoint_sizes(metas[0])
    if args.size_overrides:
        overrides = dict(args.size_overrides)
    program = diagrammar.load(args.file, sizes=overrides or None)
    diagram = program[_args.circuit_in(program, args.circuit, args.file)]
    for w in args.wires:
        capture.wire_layout(diagram, w)

    def compiled(meta):
        s, _ = capture.checkpoint_sizes(meta)
        free = diagram.free_sizes()
        return {k: v for k, v in s.items() if k in free}

    models = [capture.load_checkpoint(diagram, p, compiled(m))[0] for p, m in zip(paths, metas)]
    taken: set[str] = set()
    labels = [_label(p, m, taken) for p, m in zip(paths, metas)]
    if against is not None:
        models.append(capture.load_checkpoint(diagram, against, compiled(against_meta))[0])
        labels.append(_label(against, against_meta, taken))

    task_config = metas[0].get("task") if isinstance(metas[0].get("task"), dict) else {}
    examples = capture.task_examples(args.task, models[0], task_config, args.examples, seed=0)
    print(f"analysing {', '.join(args.wires)} of {args.circuit} over {examples.description}", file=sys.stderr)

    try:
        return _measure(args, models, labels, examples, paths, against, out)
    except ValueError as e:  # a wire the metric cannot measure (one feature for a correlation RDM, ...)
        raise BadArgument(f"--metric {args.metric}: {e}") from None


def _measure(args, models, labels, examples, paths, against, out) -> int:
    """Stream the wires of every model over the examples, then print, plot and write the numbers."""
    import numpy as np

    from ..analysis import capture
    from ..analysis.streaming import WireStatistics

    metric = _INTERNAL.get(args.metric, args.metric)
    streams = [capture.stream_wires(m, examples, args.wires, args.batch) for m in models]
    stats = None
    for parts in zip(*streams):
        batch = {f"{w}@{k}": part[0][w] for k, part in enumerate(parts) for w in args.wires}
        if stats is None:
            stats = WireStatistics({k: v.shape[1] for k, v in batch.items()}, metric)
        stats.update(batch, parts[0][1])
    assert stats is not None

    title_metric, lower, (vmin, vmax) = METRICS[args.metric]
    basis = stats.describe()
    if stats.used == stats.seen:  # every example counted: say which they were
        basis = basis.replace(f"all {stats.seen:,} examples", examples.description)
    result: dict[str, Any] = {"metric": args.metric, "measure": title_metric, "circuit": args.circuit,
                              "task": args.task, "examples": basis, "wires": args.wires,
                              "checkpoints": [str(p) for p in paths],
                              "against": str(against) if against is not None else None}
    written: list[Path] = []
    overlay: dict[str, float] | None = None

    if args.metric == "kernel":
        curves, rows = {}, []
        found = {(w, k): stats.kernel(f"{w}@{k}") for k in range(len(labels)) for w in args.wires}
        for k, label in enumerate(labels):
            for w in args.wires:
                errors = found[w, k]
                name = w if len(labels) == 1 else f"{w} ({label})"
                curves[name] = errors
                rows.append((name, errors))
        _print_kernel(rows, title_metric, basis)
        from ..analysis.plots import heatmap, kernel_curves

        written.append(kernel_curves(curves, out / "analysis-kernel.png",
                                     title=f"{args.circuit}: kernel analysis over {basis}"))
        if len(labels) > 1:
            mean = np.array([[float(np.mean(found[w, k])) for k in range(len(labels))]
                             for w in args.wires])
            written.append(heatmap(mean, args.wires, labels, out / "analysis-kernel-checkpoints.png",
                                   title=f"{args.circuit}: mean kernel-analysis error over d",
                                   row_label="wire", col_label="checkpoint", vmin=0, vmax=1, lower_is_closer=True))
        result["curves"] = {k: [round(float(e), 6) for e in v] for k, v in curves.items()}
        last = len(labels) - 1
        overlay = {w: float(np.mean(found[w, last])) for w in args.wires}
        overlay_label = "mean kernel-analysis error"
    else:
        if len(paths) > 1:  # wire x checkpoint, each against the reference
            ref = len(models) - 1
            cols = labels[:-1] if against is None else labels[:len(paths)]
            matrix = np.array([[stats.compare(f"{w}@{k}", f"{w}@{ref}") for k in range(len(cols))]
                               for w in args.wires])
            rows_label, cols_label = "wire", "checkpoint"
            title = f"{args.circuit}: {title_metric} of each wire with the same wire of {labels[ref]}"
            row_names, col_names = args.wires, cols
            overlay = {w: float(matrix[i, -1]) for i, w in enumerate(args.wires)}
        elif against is not None:  # wire x wire across two models
            matrix = np.array([[stats.compare(f"{a}@0", f"{b}@1") for b in args.wires] for a in args.wires])
            rows_label, cols_label = f"wire of {labels[0]}", f"wire of {labels[1]}"
            title = f"{args.circuit}: {title_metric}, {labels[0]} against {labels[1]}"
            row_names = col_names = args.wires
            overlay = {w: float(matrix[i, i]) for i, w in enumerate(args.wires)}
        else:  # wire x wire within one model
            matrix = np.array([[stats.compare(f"{a}@0", f"{b}@0") for b in args.wires] for a in args.wires])
            rows_label = cols_label = "wire"
            title = f"{args.circuit}: {title_metric} between wires of {labels[0]}"
            row_names = col_names = args.wires
        _print_matrix(matrix, row_names, col_names, title, basis)
        from ..analysis.plots import heatmap

        written.append(heatmap(matrix, row_names, col_names, out / f"analysis-{args.metric}.png",
                               title=f"{title}\n({basis})", row_label=rows_label, col_label=cols_label,
                               vmin=vmin, vmax=vmax, lower_is_closer=lower))
        result.update(rows=list(row_names), columns=list(col_names),
                      values=[[_num(v) for v in row] for row in matrix.tolist()])
        overlay_label = f"{title_metric} with {labels[-1]}"
    json_path = out / f"analysis-{args.metric}.json"
    _files.write_atomic(json_path, json.dumps(result, indent=1) + "\n")
    written.append(json_path)
    if overlay is not None:
        values = {w: v for w, v in overlay.items() if math.isfinite(v)}
        doc = {"label": overlay_label, "range": [vmin, vmax], "wires": values}
        path = out / f"overlay-{args.metric}.json"
        _files.write_atomic(path, json.dumps(doc, indent=1) + "\n")
        written.append(path)
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


def _num(v: float) -> float | None:
    return None if not math.isfinite(v) else round(float(v), 6)


def _cell(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:.3f}"


def _print_matrix(matrix, rows, cols, title: str, basis: str) -> None:
    first = max([len(r) for r in rows] + [4])
    width = max([len(c) for c in cols] + [6])
    print(f"{title}\nover {basis}")
    print(" " * first + "  " + "  ".join(c.rjust(width) for c in cols))
    for name, row in zip(rows, matrix):
        print(name.ljust(first) + "  " + "  ".join(_cell(v).rjust(width) for v in row))


def _print_kernel(rows, title: str, basis: str) -> None:
    D = len(rows[0][1])
    ds = [d for d in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if d <= D]
    if ds[-1] != D:
        ds.append(D)
    first = max([len(r[0]) for r in rows] + [4])
    print(f"{title}: classification error with d leading components\nover {basis}")
    print("wire".ljust(first) + "  " + "  ".join(f"d={d}".rjust(6) for d in ds) + "    mean")
    for name, errors in rows:
        print(name.ljust(first) + "  " + "  ".join(_cell(errors[d - 1]).rjust(6) for d in ds)
              + f"  {_cell(float(sum(errors) / len(errors))).rjust(6)}")
