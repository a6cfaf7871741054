"""Study: convergent learning in grokking: do seeds of ModAddMLP learn the same wires before and after they grok?

Li et al. (2015) asked whether networks trained from different seeds learn the
same representations. Here four seeds of ModAddMLP (circuits/modadd_mlp.circuit,
the README's main job: p = 97, half the pairs for training, full batch, AdamW
lr 1e-3, weight decay 1, betas 0.9/0.98) train together in one compiled step
(``diagrammar.train.seeds``; seed S is exactly ``diagrammar train --seed S``).
Each seed is stopped once its test accuracy reaches 99%. The representations
are compared at an early step, once the training pairs are memorised but
before the test accuracy rises, and at the end:

  * linear CKA (Kornblith et al. 2019, ``diagrammar.analysis.metrics.linear_cka``)
    between every pair of seeds, for each named wire (``x``, the stacked one-hot
    inputs, identical in every seed by construction; ``h``, the hidden layer)
    and for the logits, over all p * p pairs;
  * the Fourier key frequencies of each seed's first-layer weight (the fewest
    frequencies over Z_p holding 90% of its non-constant squared norm,
    ``diagrammar.train.modadd.fourier_spectrum``).

Writes gallery/studies/convergent_cka.png, convergent_fourier.png,
convergent.json and convergent.md. The run folder (default
runs/study-convergent) keeps each seed's checkpoint and metrics; running the
command again resumes it.

Run:  python benchmarks/study_convergent.py [--seeds 4] [--early 300] [--steps 6000]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.figure import Figure

import diagrammar
from diagrammar._resources import circuits_dir
from diagrammar.analysis.metrics import linear_cka
from diagrammar.cli import _files
from diagrammar.train.loop import default_optimizer
from diagrammar.train.modadd import ModAdd, find_input_weight, fourier_basis, fourier_spectrum
from diagrammar.train.plots import save_figure
from diagrammar.train.seeds import train_seeds

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "gallery" / "studies"
P = 97
WIRES = ("x", "h", "logits")


def capture(model: nnx.Module) -> dict[str, np.ndarray]:
    """Every named wire (and the logits) of ``model`` over all p * p pairs, as (examples, features) arrays."""
    a, b = (jnp.asarray(v, jnp.int32) for v in np.divmod(np.arange(P * P), P))
    model.eval()
    graphdef, state = nnx.split(model)
    out, wires = jax.jit(lambda s, a, b: nnx.merge(graphdef, s)(a, b, capture=["x", "h"]))(state, a, b)
    got = {name: np.asarray(v, np.float64).reshape(P * P, -1) for name, v in wires.items()}
    got["logits"] = np.asarray(out, np.float64)
    return got


def cka_matrices(models: dict[int, nnx.Module]) -> dict[str, np.ndarray]:
    """Seed x seed linear CKA for each wire."""
    seeds = list(models)
    reps = {s: capture(m) for s, m in models.items()}
    out = {}
    for wire in WIRES:
        m = np.eye(len(seeds))
        for i in range(len(seeds)):
            for j in range(i + 1, len(seeds)):
                m[i, j] = m[j, i] = linear_cka(reps[seeds[i]][wire], reps[seeds[j]][wire])
        out[wire] = m
    return out


def off_diagonal(m: np.ndarray) -> np.ndarray:
    return m[~np.eye(len(m), dtype=bool)][::1]


def spectra(models: dict[int, nnx.Module]) -> dict[int, dict]:
    """Per seed: the spectrum of the first-layer weight, and each hidden neuron's dominant frequency.

    A neuron's power at frequency k sums, over both input slots, the squared
    coefficients of its weights over Z_p on cos k and sin k; its dominant
    frequency holds the most, and its purity is that frequency's share of the
    non-constant power (1 for a neuron that reads one frequency, as in Gromov 2023).
    """
    basis = fourier_basis(P)
    freq_of_row = (np.arange(P) + 1) // 2
    out = {}
    for s, m in models.items():
        name, w, axis = find_input_weight(m, P)
        cols = np.moveaxis(np.asarray(w, np.float64), axis, 0).reshape(P, 2, -1)  # [p, arg, hidden]
        coeff = np.einsum("rp,pah->rah", basis, cols) ** 2
        power = np.zeros((P // 2 + 1, cols.shape[2]))
        np.add.at(power, freq_of_row, coeff.sum(axis=1))
        nonconst = power[1:]
        dominant = 1 + nonconst.argmax(axis=0)
        purity = nonconst.max(axis=0) / np.maximum(nonconst.sum(axis=0), 1e-30)
        counts = np.bincount(dominant, minlength=P // 2 + 1)
        top = [int(k) for k in np.argsort(-counts, kind="stable")[:6] if counts[k] > 0]
        out[s] = {"param": name, **fourier_spectrum(w, P, axis=axis), "neurons_per_freq": counts.tolist(),
                  "top_neuron_freqs": top, "purity": float(purity.mean())}
    return out


def plot_cka(before: dict, after: dict, seeds: list[int], steps: dict, path: Path) -> Path:
    fig = Figure(figsize=(11, 7.2), layout="constrained")
    axes = fig.subplots(2, len(WIRES))
    labels = [str(s) for s in seeds]
    for row, (when, mats) in enumerate((("before", before), ("after", after))):
        for col, wire in enumerate(WIRES):
            ax = axes[row, col]
            m = mats[wire]
            image = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
            for i in range(len(seeds)):
                for j in range(len(seeds)):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=9,
                            color="black" if m[i, j] > 0.6 else "white")
            ax.set_xticks(range(len(seeds)), labels=labels)
            ax.set_yticks(range(len(seeds)), labels=labels)
            mean = off_diagonal(m).mean() if len(seeds) > 1 else 1.0
            what = {"x": "x (one-hot inputs)", "h": "h (hidden, 512)", "logits": "logits (p = 97)"}[wire]
            ax.set_title(f"{what}\nmean off-diagonal {mean:.2f}", fontsize=10)
            if col == 0:
                ax.set_ylabel(f"{when} grokking ({steps[when]})\nseed", fontsize=10)
            if row == 1:
                ax.set_xlabel("seed")
    fig.colorbar(image, ax=axes, shrink=0.8, label="linear CKA")
    fig.suptitle("ModAddMLP, p = 97: linear CKA between seeds, per wire, before and after grokking", fontsize=12)
    return save_figure(fig, path)


def plot_fourier(spec: dict[int, dict], accs: dict[int, float], path: Path) -> Path:
    seeds = list(spec)
    fig = Figure(figsize=(10.5, 1.75 * len(seeds) + 1.0), layout="constrained")
    axes = fig.subplots(len(seeds), 1, sharex=True, squeeze=False)[:, 0]
    k = np.arange(1, P // 2 + 1)
    for ax, s in zip(axes, seeds):
        counts = np.asarray(spec[s]["neurons_per_freq"])[1:]
        top = set(spec[s]["top_neuron_freqs"][:3])
        ax.bar(k, counts, color=["#d62728" if f in top else "#7f8fa6" for f in k], width=0.8)
        ax.set_ylabel(f"seed {s}\nneurons", fontsize=9)
        ax.set_title(f"seed {s}: most neurons read frequencies {', '.join(map(str, spec[s]['top_neuron_freqs'][:3]))}"
                     f"; mean purity {spec[s]['purity']:.2f}; {len(spec[s]['key_freqs'])} of {P // 2} frequencies "
                     f"hold 90% of the weight's power; test accuracy {accs[s]:.3f}", fontsize=9, loc="left")
        ax.set_xlim(0.3, P // 2 + 0.7)
    axes[-1].set_xlabel("dominant frequency k of a hidden neuron's weights over Z_97 (red: the three most used)")
    fig.suptitle(f"Fourier frequencies of each seed's first-layer weight {spec[seeds[0]]['param']} once grokked "
                 f"(512 neurons per seed)", fontsize=12)
    return save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="train seeds 0..N-1 (default 4)")
    parser.add_argument("--early", type=int, default=300, help="the 'before grokking' step (default 300)")
    parser.add_argument("--steps", type=int, default=6000, help="most steps per seed (default 6000)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "study-convergent")
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    diagram = diagrammar.load(str(circuits_dir() / "modadd_mlp.circuit"))["ModAddMLP"]
    make_model = lambda s: diagram.compile(rngs=nnx.Rngs(s))  # noqa: E731
    make_task = lambda s: ModAdd(p=P, train_frac=0.5, seed=s)  # noqa: E731
    kw = dict(optimizer=default_optimizer(1e-3, 1.0, 0.9, 0.98), steps_per_call=100, eval_every=100,
              out_dir=args.out, progress=True)
    t0 = time.perf_counter()
    # The early representations are measured once and kept: later steps overwrite the seeds' checkpoints.
    early_file = args.out / "early.json"
    if early_file.exists():
        kept = json.loads(early_file.read_text())
        before = {w: np.array(m) for w, m in kept["cka_before"].items()}
        before_acc = {int(s): (a["train"], a["test"]) for s, a in kept["early_accuracy"].items()}
    else:
        early = train_seeds(make_model, make_task, seeds, steps=args.early, **kw)
        if any(r.step != args.early for r in early.results.values()):
            raise SystemExit(f"{args.out} holds seeds past step {args.early} but no early.json; give another --out")
        before = cka_matrices(early.models)
        before_acc = {s: (r.metrics["train_acc"], r.metrics["test_acc"]) for s, r in early.results.items()}
        kept = {"cka_before": {w: m.tolist() for w, m in before.items()},
                "early_accuracy": {s: {"train": a, "test": b} for s, (a, b) in before_acc.items()}}
        _files.write_atomic(early_file, (json.dumps(kept) + "\n").encode())
    late = train_seeds(make_model, make_task, seeds, steps=args.steps,
                       stop_when=lambda m: m["test_acc"] >= 0.99, **kw)
    seconds = time.perf_counter() - t0
    after = cka_matrices(late.models)
    spec = spectra(late.models)
    accs = {s: r.metrics["test_acc"] for s, r in late.results.items()}
    grok_steps = {s: r.step for s, r in late.results.items()}
    steps = {"before": f"step {args.early}",
             "after": f"steps {min(grok_steps.values())}-{max(grok_steps.values())}"}

    GALLERY.mkdir(parents=True, exist_ok=True)
    plot_cka(before, after, seeds, steps, GALLERY / "convergent_cka.png")
    plot_fourier(spec, accs, GALLERY / "convergent_fourier.png")
    summary = {
        "command": "python benchmarks/study_convergent.py " + f"--seeds {args.seeds} --early {args.early} "
                   f"--steps {args.steps}",
        "settings": {"circuit": "circuits/modadd_mlp.circuit ModAddMLP", "p": P, "train_frac": 0.5,
                     "batch": "full", "optimizer": "adamw lr 1e-3 wd 1 betas 0.9/0.98", "seeds": seeds,
                     "stop": "test accuracy >= 0.99"},
        "early_step": args.early,
        "early_accuracy": {s: {"train": a, "test": b} for s, (a, b) in before_acc.items()},
        "final_step": grok_steps, "final_test_accuracy": accs,
        "cka_before": {w: m.tolist() for w, m in before.items()},
        "cka_after": {w: m.tolist() for w, m in after.items()},
        "mean_offdiag_cka": {w: {"before": float(off_diagonal(before[w]).mean()),
                                 "sd_before": float(off_diagonal(before[w]).std()),
                                 "after": float(off_diagonal(after[w]).mean()),
                                 "sd_after": float(off_diagonal(after[w]).std())} for w in WIRES},
        "key_freqs": {s: spec[s]["key_freqs"] for s in seeds},
        "ipr": {s: spec[s]["ipr"] for s in seeds},
        "top_neuron_freqs": {s: spec[s]["top_neuron_freqs"] for s in seeds},
        "neurons_per_freq": {s: spec[s]["neurons_per_freq"] for s in seeds},
        "purity": {s: spec[s]["purity"] for s in seeds},
        "wall_seconds": round(seconds, 1),
    }
    _files.write_atomic(GALLERY / "convergent.json", (json.dumps(summary, indent=1) + "\n").encode())
    print(json.dumps({k: summary[k] for k in ("early_accuracy", "final_step", "final_test_accuracy",
                                              "mean_offdiag_cka", "top_neuron_freqs", "purity", "wall_seconds")}, indent=1))


if __name__ == "__main__":
    main()
