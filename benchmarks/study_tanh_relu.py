"""Study: tanh versus ReLU (Alleman et al. 2024): does the hidden layer take the targets' geometry or the inputs'?

The same two-layer circuit (gallery/studies/geometry.circuit: TanhNet and
ReluNet differ only in the nonlinearity of the hidden wire ``h``) is trained
on ``diagrammar.train.geometry.GeometryTask``: 16 conditions on a 4 x 4 grid,
inputs that lie on the grid (``input_structure`` 1) in 32 dimensions with
noise 0.2, targets that are the category codes of a rule over the grid
(default: parity, a checkerboard, the target geometry least like the input
grid). Several seeds of each network train together in one compiled step
(``diagrammar.train.seeds``), full batch, AdamW lr 1e-2 without weight decay, from small
initial weights (normal, std 0.01: the feature-learning regime).

After training, the wire ``h`` is captured on the 16 noise-free condition
prototypes and its RDM (1 - Pearson correlation between conditions) is
compared, by Spearman correlation of the upper triangles
(``diagrammar.analysis.metrics.rsa``), with the RDM of the inputs and with the
RDM of the targets. Alignment = RSA(h, targets) - RSA(h, inputs): positive
when h follows the targets. Alleman et al. found tanh higher than ReLU.

Writes gallery/studies/tanh_relu.png (RSA per network, every seed shown),
tanh_relu_rdms.png (the RDMs), tanh_relu.json, and the circuits' figures
with x and h coloured by the mean alignment (TanhNet.overlay.svg/.png, ReluNet.overlay.svg/.png;
``--redraw`` redraws them and tanh_relu.png from tanh_relu.json).

Run:  python benchmarks/study_tanh_relu.py [--seeds 6] [--steps 1500] [--rules halves,quadrants,parity]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.figure import Figure

import diagrammar
from diagrammar.analysis.metrics import rdm, rsa
from diagrammar.cli import _files
from diagrammar.train.geometry import GeometryTask
from diagrammar.train.loop import default_optimizer
from diagrammar.train.plots import save_figure
from diagrammar.train.seeds import train_seeds

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "gallery" / "studies"
CIRCUIT = GALLERY / "geometry.circuit"
NETS = {"tanh": "TanhNet", "relu": "ReluNet"}
COLOURS = {"tanh": "#d95f02", "relu": "#1b9e77"}


def hidden(model: nnx.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    _, wires = model(jnp.asarray(x, jnp.float32), capture=["h"])
    return np.asarray(wires["h"], np.float64)


def run_one(rule: str, seeds: list[int], steps: int, out: Path | None) -> dict:
    """Train both networks on ``rule`` and measure RSA of h with the inputs and with the targets, per seed."""
    program = diagrammar.load(str(CIRCUIT))
    task_for = lambda s: GeometryTask(rule=rule, seed=s)  # noqa: E731
    result = {"rule": rule}
    for nl, name in NETS.items():
        diagram = program[name]
        many = train_seeds(lambda s: diagram.compile(rngs=nnx.Rngs(s)), task_for, seeds, steps=steps,
                           optimizer=default_optimizer(1e-2, 0.0), steps_per_call=500, eval_every=500,
                           out_dir=None if out is None else out / f"{rule}-{nl}", progress=False)
        rows = []
        for s in seeds:
            task = task_for(s)
            h = hidden(many.models[s], task.prototypes)
            rows.append({"seed": s, "test_acc": many.results[s].metrics["test_acc"],
                         "rsa_inputs": rsa(h, task.prototypes), "rsa_targets": rsa(h, task.targets),
                         "rsa_inputs_euclidean": rsa(h, task.prototypes, metric="euclidean"),
                         "rsa_targets_euclidean": rsa(h, task.targets, metric="euclidean"),
                         "rdm": rdm(h).tolist()})
        result[nl] = rows
    task = task_for(seeds[0])
    result["rsa_inputs_targets"] = rsa(task.prototypes, task.targets)
    result["rsa_inputs_targets_euclidean"] = rsa(task.prototypes, task.targets, metric="euclidean")
    result["rdm_inputs"], result["rdm_targets"] = rdm(task.prototypes).tolist(), rdm(task.targets).tolist()
    return result


def stats(rows: list[dict], key: str) -> tuple[float, float]:
    v = np.array([r[key] for r in rows])
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def alignment(rows: list[dict]) -> np.ndarray:
    return np.array([r["rsa_targets"] - r["rsa_inputs"] for r in rows])


def plot_rsa(results: list[dict], path: Path) -> Path:
    fig = Figure(figsize=(3.6 * len(results) + 0.6, 4.4), layout="constrained")
    axes = fig.subplots(1, len(results), sharey=True, squeeze=False)[0]
    for ax, res in zip(axes, results):
        for k, (key, label) in enumerate((("rsa_inputs", "with inputs"), ("rsa_targets", "with targets"))):
            for j, nl in enumerate(NETS):
                x = k * 3 + j
                vals = np.array([r[key] for r in res[nl]])
                mean, sd = stats(res[nl], key)
                ax.bar(x, mean, yerr=sd, color=COLOURS[nl], alpha=0.75, capsize=4,
                       label=nl if k == 0 else None)
                ax.scatter(np.full(len(vals), x) + np.linspace(-0.2, 0.2, len(vals)), vals, s=10, color="black",
                           zorder=3)
        ax.set_xticks([0.5, 3.5], labels=["RSA(h, inputs)", "RSA(h, targets)"])
        ax.axhline(0, color="grey", lw=0.6)
        t, r = alignment(res["tanh"]).mean(), alignment(res["relu"]).mean()
        ax.set_title(f"rule: {res['rule']}\nalignment, RSA(h, targets) - RSA(h, inputs):\ntanh {t:+.2f}, ReLU {r:+.2f}",
                     fontsize=10)
        ax.set_ylim(-0.2, 1.05)
    axes[0].set_ylabel("Spearman correlation of RDMs")
    axes[0].legend(loc="upper left")
    n = len(results[0]["tanh"])
    fig.suptitle(f"Hidden wire h of TanhNet and ReluNet: RSA with inputs and with targets "
                 f"(mean ± sd over {n} seeds, dots: seeds)", fontsize=11)
    return save_figure(fig, path)


def plot_rdms(res: dict, path: Path) -> Path:
    mats = [("inputs", np.array(res["rdm_inputs"])), ("targets", np.array(res["rdm_targets"]))]
    for nl in NETS:
        mats.append((f"h, {nl} (mean over seeds)", np.mean([np.array(r["rdm"]) for r in res[nl]], axis=0)))
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    axes = fig.subplots(1, len(mats))
    for ax, (title, m) in zip(axes, mats):
        image = ax.imshow(m, cmap="magma", vmin=0, vmax=max(float(m.max()), 1e-9))
        ax.set_title(title, fontsize=10)
        ax.set_xticks([0, 5, 10, 15])
        ax.set_yticks([0, 5, 10, 15])
        ax.set_xlabel("condition (u * 4 + v)")
        fig.colorbar(image, ax=ax, shrink=0.75)
    fig.suptitle(f"RDMs (1 - correlation) over the 16 grid conditions, rule {res['rule']}", fontsize=11)
    return save_figure(fig, path)


def overlays(summary: dict, rule: str) -> list[Path]:
    """The circuits' figures with the wires x and h coloured by their mean alignment (part A's overlay), as
    SVG and PNG. For x it is RSA(inputs, targets) - 1, the same measure taken on the inputs themselves."""
    from diagrammar.cli import main as cli

    entry = summary["rules"][rule]
    written = []
    for nl, name in NETS.items():
        spec = {"label": f"alignment RSA(wire, targets) - RSA(wire, inputs), rule {rule}, mean of "
                         f"{len(entry[nl]['per_seed'])} seeds", "range": [-0.5, 0.5],
                "wires": {"h": entry[nl]["alignment"][0], "x": entry["rsa_inputs_targets"] - 1.0}}
        spec_path = GALLERY / f"{name}.overlay.json"
        _files.write_atomic(spec_path, (json.dumps(spec, indent=1) + "\n").encode())
        for suffix in (".svg", ".png"):
            figure = GALLERY / f"{name}.overlay{suffix}"
            if cli(["render", str(CIRCUIT), "--circuit", name, "--overlay", str(spec_path), "-o", str(figure)]) == 0:
                written.append(figure)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--rules", default="halves,quadrants,parity")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs' checkpoints here (default: none)")
    parser.add_argument("--redraw", action="store_true",
                        help="redraw tanh_relu.png and the overlaid figures from tanh_relu.json without training")
    args = parser.parse_args()
    if args.redraw:
        summary = json.loads((GALLERY / "tanh_relu.json").read_text())
        plot_rsa([{"rule": rule, **{nl: e[nl]["per_seed"] for nl in NETS}} for rule, e in summary["rules"].items()],
                 GALLERY / "tanh_relu.png")
        overlays(summary, next(iter(summary["rules"])))
        return
    seeds = list(range(args.seeds))
    t0 = time.perf_counter()
    results = [run_one(rule, seeds, args.steps, args.out) for rule in args.rules.split(",")]
    GALLERY.mkdir(parents=True, exist_ok=True)
    plot_rsa(results, GALLERY / "tanh_relu.png")
    plot_rdms(results[0], GALLERY / "tanh_relu_rdms.png")
    summary = {"command": f"python benchmarks/study_tanh_relu.py --seeds {args.seeds} --steps {args.steps} "
                          f"--rules {args.rules}", "wall_seconds": round(time.perf_counter() - t0, 1), "rules": {}}
    for res in results:
        entry = {"rsa_inputs_targets": res["rsa_inputs_targets"],
                 "rsa_inputs_targets_euclidean": res["rsa_inputs_targets_euclidean"]}
        for nl in NETS:
            entry[nl] = {key: stats(res[nl], key) for key in ("test_acc", "rsa_inputs", "rsa_targets",
                                                              "rsa_inputs_euclidean", "rsa_targets_euclidean")}
            a = alignment(res[nl])
            entry[nl]["alignment"] = (float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0)
            e = np.array([r["rsa_targets_euclidean"] - r["rsa_inputs_euclidean"] for r in res[nl]])
            entry[nl]["alignment_euclidean"] = (float(e.mean()), float(e.std(ddof=1)) if len(e) > 1 else 0.0)
            entry[nl]["per_seed"] = [{k: v for k, v in r.items() if k != "rdm"} for r in res[nl]]
        summary["rules"][res["rule"]] = entry
        print(f"rule {res['rule']}: RSA(inputs, targets) {res['rsa_inputs_targets']:+.3f}")
        for nl in NETS:
            e = entry[nl]
            print(f"  {nl:4s} test acc {e['test_acc'][0]:.3f}  RSA(h, inputs) {e['rsa_inputs'][0]:.3f} ± "
                  f"{e['rsa_inputs'][1]:.3f}  RSA(h, targets) {e['rsa_targets'][0]:.3f} ± {e['rsa_targets'][1]:.3f}"
                  f"  alignment {e['alignment'][0]:+.3f} ± {e['alignment'][1]:.3f}  (Euclidean RDMs: "
                  f"{e['alignment_euclidean'][0]:+.3f} ± {e['alignment_euclidean'][1]:.3f})")
    _files.write_atomic(GALLERY / "tanh_relu.json", (json.dumps(summary, indent=1) + "\n").encode())
    overlays(summary, results[0]["rule"])


if __name__ == "__main__":
    main()
