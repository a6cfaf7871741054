"""Train stage: the ``diagrammar train FILE --circuit NAME --task modadd`` command.

``add_arguments`` imports nothing heavy, so building the whole command-line
parser never loads jax; ``run`` imports it only when a run starts. Every
expected failure (a bad program, a diverged loss, a checkpoint of another run,
Ctrl-C) ends in one message and an exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

TASKS = ("modadd", "sort", "hull", "workspace")  # keep in step with TASK_BUILDERS (listed here so the parser needs no imports)


def _axis_size(text: str) -> tuple[str, int]:
    name, eq, size = text.partition("=")
    try:
        if not eq or not name.isidentifier():
            raise ValueError
        return name, int(size)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=SIZE (e.g. hidden=256), got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` command's arguments to ``parser``.

    The defaults grok ModAddMLP (p = 97, half the pairs for training, AdamW
    lr 1e-3, weight decay 1, betas 0.9/0.98, full batch) and stop once test
    accuracy reaches 99%.
    """
    parser.add_argument("file", help="the .circuit file")
    parser.add_argument("--circuit", required=True, metavar="NAME", help="the circuit to train")
    parser.add_argument("--task", choices=TASKS, default="modadd", help="the task (default: modadd)")
    parser.add_argument("--steps", type=int, default=10000, help="total optimiser steps (default: 10000)")
    parser.add_argument("--out", metavar="DIR", help="output directory (default: runs/NAME-TASK-pP-sSEED)")
    parser.add_argument("--p", type=int, default=None,
                        help="the modulus; passed to the circuit as axis p (default: the circuit's own p)")
    parser.add_argument("--train-frac", type=float, default=0.5, help="fraction of pairs to train on (default: 0.5)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default: 1e-3)")
    parser.add_argument("--weight-decay", type=float, default=1.0, help="AdamW weight decay (default: 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the weights, the split and the data order")
    parser.add_argument("--loss", choices=("ce", "mse"), default="ce", help="cross-entropy or squared error")
    parser.add_argument("--batch-size", type=int, default=None, help="minibatch size (default: full batch)")
    parser.add_argument("--inputs", choices=("auto", "ab", "tokens"), default="auto",
                        help="call the model as model(a, b) or model([a, b, p]) (default: try both)")
    parser.add_argument("--axis", type=_axis_size, action="append", default=[], metavar="NAME=SIZE",
                        help="set another axis size of the circuit (repeatable)")
    parser.add_argument("--steps-per-call", type=int, default=100, help="steps fused into one compiled call")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between evaluations (default: 100)")
    parser.add_argument("--stop-at-test-acc", type=float, default=0.99, metavar="ACC",
                        help="stop once test accuracy reaches ACC (default: 0.99)")
    parser.add_argument("--no-stop", action="store_true", help="run all --steps, even after reaching the target")
    parser.add_argument("--fresh", action="store_true", help="ignore and replace a checkpoint in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def compile_circuit(file: str, name: str, seed: int, axis_sizes: dict[str, int]) -> Any:
    """Build the module: ``diagrammar.load(file)[name].compile(rngs=nnx.Rngs(seed), **axis_sizes)``."""
    from flax import nnx

    import diagrammar

    program = diagrammar.load(file)
    return program[name].compile(rngs=nnx.Rngs(seed), **axis_sizes)


def _probe(model: Any, inputs: str) -> tuple[str, int]:
    """How to call the model and its output size p, found by abstract evaluation (no FLOPs)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    model.eval()
    graphdef, state = nnx.split(model)
    candidates = {"ab": (jnp.zeros((1,), jnp.int32), jnp.zeros((1,), jnp.int32)),
                  "tokens": (jnp.zeros((1, 3), jnp.int32),)}
    tried = []
    for mode in (("ab", "tokens") if inputs == "auto" else (inputs,)):
        try:
            out = jax.eval_shape(lambda s, *xs: nnx.merge(graphdef, s)(*xs), state, *candidates[mode])
        except Exception as e:  # any failure means "not called this way"; reported below
            tried.append(f"{mode}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        if getattr(out, "ndim", 0) == 2 and out.shape[0] == 1:
            return mode, int(out.shape[-1])
        tried.append(f"{mode}: returned shape {getattr(out, 'shape', type(out).__name__)}, expected [batch, p]")
    raise ValueError("the circuit does not take modular-addition inputs as model(a, b) with a, b: int[] "
                     "or model(tokens) with tokens: int[3] returning [p]:\n  " + "\n  ".join(tried))


def _modadd_task(args: argparse.Namespace, model: Any) -> tuple[Any, str, str]:
    """The modular addition task for ``model``: (task, output-directory tag, description)."""
    from .modadd import ModAdd

    inputs, p = _probe(model, args.inputs)
    if args.p is not None and p != args.p:
        raise ValueError(f"it returns {p} logits, but --p is {args.p}")
    task = ModAdd(p=p, train_frac=args.train_frac, seed=args.seed, loss_kind=args.loss,
                  batch_size=args.batch_size, inputs=inputs)
    call = "model(a, b)" if inputs == "ab" else "model(tokens)"
    description = (f"modular addition mod {p} ({task.train_data['a'].shape[0]} train / "
                   f"{task.test_data['a'].shape[0]} test pairs, {call})")
    return task, f"p{p}", description


def _pointer(kind: str, what: str) -> Any:
    """``diagrammar.train.pointer.<what>(kind, ...)``, imported only when a run starts."""
    def call(*args: Any) -> Any:
        from . import pointer

        return getattr(pointer, what)(kind, *args)
    return call


def _workspace_task(args: argparse.Namespace, model: Any) -> tuple[Any, str, str]:
    """a + b through a global workspace (or a baseline): see ``diagrammar.train.workspace``."""
    from .workspace import task_for_cli

    return task_for_cli(args, model)


# --task NAME -> builder(args, model) -> (task, output-directory tag, description); raises ValueError.
TASK_BUILDERS = {"modadd": _modadd_task,
                 "sort": _pointer("sort", "task_for_cli"), "hull": _pointer("hull", "task_for_cli"),
                 "workspace": _workspace_task}
# --task NAME -> options(args): compile keywords the task sets (free axes it binds, remat); --axis NAME=SIZE wins.
TASK_COMPILE = {"sort": _pointer("sort", "cli_compile_options"), "hull": _pointer("hull", "cli_compile_options")}


def run(args: argparse.Namespace) -> int:
    """Run ``diagrammar train``; returns the process exit code."""
    import time

    t0 = time.perf_counter()
    axis_sizes = dict(args.axis)
    if args.p is not None:
        axis_sizes["p"] = args.p
    if args.task in TASK_COMPILE:
        axis_sizes = {**TASK_COMPILE[args.task](args), **axis_sizes}
    try:
        import diagrammar

        circuit_error: Any = getattr(diagrammar, "CircuitError", ())
    except ImportError:
        circuit_error = ()
    try:
        model = compile_circuit(args.file, args.circuit, args.seed, axis_sizes)
    except circuit_error as e:
        print(e.format() if hasattr(e, "format") else str(e), file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        return _error(f"{args.file}: {e.strerror or e}")
    except KeyError as e:
        return _error(str(e.args[0]) if e.args else f"{args.file} has no circuit named {args.circuit!r}")
    except (TypeError, ValueError) as e:
        return _error(f"cannot compile {args.circuit} from {args.file}: {e}")

    from .checkpoint import CheckpointMismatch
    from .loop import TrainingDiverged, default_optimizer, train

    try:
        task, tag, description = TASK_BUILDERS[args.task](args, model)
    except ValueError as e:
        return _error(f"{args.circuit}: {e}")
    out = Path(args.out) if args.out else Path("runs") / f"{args.circuit}-{args.task}-{tag}-s{args.seed}"
    print(f"training {args.circuit} on {description} -> {out}", file=sys.stderr)
    target = None if args.no_stop else args.stop_at_test_acc
    try:
        result = train(
            model, task, steps=args.steps,
            optimizer=default_optimizer(args.lr, args.weight_decay),
            steps_per_call=args.steps_per_call, eval_every=args.eval_every, out_dir=out, seed=args.seed,
            resume=not args.fresh, progress=not args.no_progress,
            stop_when=None if target is None else (lambda m: m.get("test_acc", 0.0) >= target),
        )
    except (TrainingDiverged, CheckpointMismatch) as e:
        return _error(str(e))
    except KeyboardInterrupt:
        print(f"\ninterrupted; the last completed steps are saved in {out}; run the same command to resume",
              file=sys.stderr)
        return 130
    print(summary(args.circuit, result, target, time.perf_counter() - t0))
    return 0


def summary(name: str, result: Any, target: float | None, total_seconds: float) -> str:
    """The closing report of a run, a few lines a person reads."""
    m = result.metrics
    lines = []
    why = f" (reached test accuracy {target:g})" if result.stopped_early else ""
    again = f", resumed from step {result.resumed_from}" if result.resumed_from is not None else ""
    lines.append(f"{name}: {result.step} steps in {result.wall_time:.1f} s of training{why}; "
                 f"{total_seconds:.1f} s in this run{again}")
    if "train_acc" in m:
        area = f"   hull area coverage (test) {m['test_area']:.4f}" if "test_area" in m else ""
        lines.append(f"  accuracy  train {m['train_acc']:.4f}   test {m.get('test_acc', float('nan')):.4f}{area}")
        lines.append(f"  loss      train {m['train_loss']:.4g}   test {m.get('test_loss', float('nan')):.4g}")
    if m.get("fourier_param"):
        keys = m.get("key_freqs", [])
        lines.append(f"  Fourier spectrum of {m['fourier_param']}: {len(keys)} key frequencies hold 90% of the power, "
                     f"strongest {m.get('top_freqs', [])}; IPR {m.get('ipr', 0.0):.3f}, "
                     f"per neuron {m.get('ipr_neuron', 0.0):.3f}")
    if result.out_dir is not None:
        files = [result.out_dir / "metrics.jsonl", *result.files]
        if result.checkpoint is not None:
            files.append(result.checkpoint)
        lines.append(f"  wrote {', '.join(str(f) for f in files)}")
    return "\n".join(lines)
