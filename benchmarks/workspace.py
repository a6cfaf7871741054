"""Global workspace a + b against an LSTM and a Transformer: accuracy on seen, held-out and extrapolation pairs.

Trains every model on the same split (``diagrammar.train.workspace``; seen pairs
have b <= 6, 14 pairs are held out, extrapolation asks for b = 7..9) and prints
one table: parameters, accuracy on seen pairs, held-out pairs (interpolation),
extrapolation pairs (b = 7..9 with sums <= 15, so every single increment was
trained) and all b = 7..9 pairs (sums up to 18), as mean [min..max] over seeds.

    python3 benchmarks/workspace.py                  # both input forms, 3 seeds (about 8 min on 2 CPU cores)
    python3 benchmarks/workspace.py --inputs ints    # digits as numbers only (about 1.5 min)
    python3 benchmarks/workspace.py --seeds 0 --json results.json
    python3 benchmarks/workspace.py --out gallery/results  # also the plots shown in the gallery
    python3 benchmarks/workspace.py --from-json results.json --out DIR   # table and comparison plot, no training

With --out DIR it writes DIR/workspace_accuracy.png (every model on every
split, mean and range over seeds) and, from the first seed's models,
DIR/routing.png (Workspace) and DIR/routing_digits.png (WorkspaceDigits): the
controller's gate over the module axis at every step.

Models (circuits/workspace.circuit, circuits/workspace_baselines.circuit):
  digits as numbers   Workspace (hand-designed modules, only the LSTM controller learns),
                      LSTMAdder, TransformerAdder
  digits as images    WorkspaceDigits (learned image encoder and Increment module, LSTM controller),
                      LSTMDigits, TransformerDigits (the same image encoder, trained on the same
                      perception objective, then the sequence model)
WorkspaceDigits trains on fresh train-pool images at every step, each slightly rotated
(up to 10 degrees), rescaled (up to 10%) and moved (up to half a pixel): the task's
augmentation. The image baselines train on the images as they are, their better setting:
with the augmentation TransformerDigits falls to 21.0% held-out and 52.4% extrapolation
(seeds 0-2) and LSTMDigits stays at 0. Held-out and extrapolation pairs show test-pool
images, never augmented.
All use AdamW for 3,000 steps. The workspace models use the train command's
defaults (lr 1e-3, weight decay 1); each baseline uses the setting it did best
with in a sweep over lr {1e-3, 3e-3} x weight decay {0, 0.1, 1} (--sweep, seed 0;
the baselines barely depend on it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclasses.dataclass(frozen=True)
class Setting:
    label: str
    file: str
    circuit: str
    inputs: str
    steps: int
    lr: float
    weight_decay: float
    augment: bool = True  # images: train on augmented images (the task's default), or on the images as they are


NO_AUGMENT = {"rotate": 0.0, "rescale": 0.0, "move": 0.0}
SETTINGS = [  # the workspace models with the train command's defaults; the baselines with their best sweep setting
    Setting("Workspace", "circuits/workspace.circuit", "Workspace", "ints", 3000, 1e-3, 1.0),
    Setting("LSTM", "circuits/workspace_baselines.circuit", "LSTMAdder", "ints", 3000, 1e-3, 1.0),
    Setting("Transformer", "circuits/workspace_baselines.circuit", "TransformerAdder", "ints", 3000, 1e-3, 0.1),
    Setting("Workspace", "circuits/workspace.circuit", "WorkspaceDigits", "images", 3000, 1e-3, 1.0),
    Setting("LSTM", "circuits/workspace_baselines.circuit", "LSTMDigits", "images", 3000, 1e-3, 1.0, False),
    Setting("Transformer", "circuits/workspace_baselines.circuit", "TransformerDigits", "images", 3000, 3e-3, 0.0,
            False),
]
SWEEP = [(lr, wd) for lr in (1e-3, 3e-3) for wd in (0.0, 0.1, 1.0)]
COLUMNS = ("seen", "heldout", "extrap", "extrap_full")


ROUTING_FILES = {"Workspace": "routing.png", "WorkspaceDigits": "routing_digits.png"}


def run_one(s: Setting, seed: int, steps: int | None = None, lr: float | None = None,
            weight_decay: float | None = None, routing: Path | None = None) -> dict:
    """Train one model on one seed; its accuracies, parameter count and training time.

    ``routing``: also plot the trained model's routing there (workspace models only)."""
    from flax import nnx

    import diagrammar
    from diagrammar.train.loop import default_optimizer, train
    from diagrammar.train.workspace import WorkspaceAdd, parameter_count

    model = diagrammar.load(ROOT / s.file)[s.circuit].compile(rngs=nnx.Rngs(seed))
    task = WorkspaceAdd(inputs=s.inputs, seed=seed, **({} if s.augment else NO_AUGMENT))
    t0 = time.perf_counter()
    opt = default_optimizer(s.lr if lr is None else lr, s.weight_decay if weight_decay is None else weight_decay)
    n = s.steps if steps is None else steps
    train(model, task, steps=n, optimizer=opt, steps_per_call=min(n, 500), eval_every=n, progress=False)
    seconds = time.perf_counter() - t0
    if routing is not None:
        task.plot_routing(model, routing)
    return {**task.evaluate(model), "params": parameter_count(model), "seconds": seconds}


def _cell(values: list[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{100 * mean:6.1f}"
    return f"{100 * mean:6.1f} [{100 * min(values):5.1f}..{100 * max(values):5.1f}]"


def table(results: dict[tuple[str, str], list[dict]]) -> str:
    """The README table: one row per model, accuracies in percent (mean [min..max] over seeds)."""
    head = ("| inputs | model | circuit | parameters | seen pairs | held-out pairs | extrapolation (b 7-9, sums <= 15) "
            "| all b 7-9 pairs | train time |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in SETTINGS:
        rows = results.get((s.circuit, s.inputs))
        if not rows:
            continue
        what = "digits as numbers" if s.inputs == "ints" else "8x8 digit images"
        cells = [_cell([r[c] for r in rows]) for c in COLUMNS]
        secs = sum(r["seconds"] for r in rows) / len(rows)
        lines.append(f"| {what} | {s.label} | {s.circuit} | {rows[0]['params']:,} | " + " | ".join(cells)
                     + f" | {secs:.0f} s |")
    return "\n".join(lines)


def plot(results: dict[tuple[str, str], list[dict]], path: Path) -> Path:
    """``workspace_accuracy.png``: every model run, one panel per input form."""
    from diagrammar.train.workspace import plot_comparison

    panels: dict[str, dict[str, list[dict]]] = {}
    for s in SETTINGS:
        rows = results.get((s.circuit, s.inputs))
        if rows:
            panel = "digits as numbers" if s.inputs == "ints" else "8x8 digit images"
            panels.setdefault(panel, {})[s.label] = rows
    seeds = sorted({r["seed"] for rows in results.values() for r in rows})
    return plot_comparison(panels, path, title=f"a + b, trained on b <= 6; seeds {', '.join(map(str, seeds))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", choices=("ints", "images", "both"), default="both")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", metavar="CIRCUIT", help="run only these circuits")
    parser.add_argument("--steps", type=int, default=None, help="override every model's number of steps")
    parser.add_argument("--sweep", action="store_true",
                        help="also try every learning rate and weight decay in a small grid (seed 0) and print them")
    parser.add_argument("--json", metavar="FILE", help="write every run's numbers to FILE")
    parser.add_argument("--out", metavar="DIR", help="write workspace_accuracy.png and the routing plots to DIR")
    parser.add_argument("--from-json", metavar="FILE",
                        help="train nothing: the table and workspace_accuracy.png from a --json file of earlier runs")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        results = {tuple(k.split("/", 1)): v for k, v in saved.items()}
        print(table(results))
        if out is not None:
            print(f"wrote {plot(results, out / 'workspace_accuracy.png')}", file=sys.stderr)
        return 0

    chosen = [s for s in SETTINGS if args.inputs in ("both", s.inputs) and (not args.only or s.circuit in args.only)]
    if args.sweep:
        print("| circuit | lr | weight decay | seen | held-out | extrapolation | all b 7-9 |", flush=True)
        print("|---|---|---|---|---|---|---|", flush=True)
        for s in chosen:
            for lr, wd in SWEEP:
                r = run_one(s, 0, args.steps, lr, wd)
                print(f"| {s.circuit} | {lr:g} | {wd:g} | " + " | ".join(f"{100 * r[c]:.1f}" for c in COLUMNS) + " |",
                      flush=True)
        print(flush=True)
    results: dict[tuple[str, str], list[dict]] = {}
    for s in chosen:
        for seed in args.seeds:
            routing = out / ROUTING_FILES[s.circuit] if out and s.circuit in ROUTING_FILES and seed == args.seeds[0] else None
            r = run_one(s, seed, args.steps, routing=routing)
            results.setdefault((s.circuit, s.inputs), []).append({"seed": seed, **r})
            print(f"{s.circuit:18s} seed {seed}: " + "  ".join(f"{c} {100 * r[c]:5.1f}" for c in COLUMNS)
                  + f"  params {r['params']:,}  {r['seconds']:.0f} s", file=sys.stderr, flush=True)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({f"{c}/{i}": v for (c, i), v in results.items()}, indent=1))
    if out is not None:
        print(f"wrote {plot(results, out / 'workspace_accuracy.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
