"""Command line: `diagrammar train FILE --circuit NAME --task modadd`, an optax run with checkpoints.

``add_arguments`` imports nothing heavy, so building the whole command-line
parser never loads jax; ``run`` imports it only when a run starts. Before
anything is compiled the run checks every argument, that the circuit fits the
task and that its weights fit the parameter budget, and takes the output
folder's lock. Every expected failure ends in one message and an exit code,
never a traceback (see ``diagrammar.cli`` for the codes).
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import BadArgument, CommandError, SizeTooLarge
from .. import limits
from . import _args, _files

__all__ = ["add_arguments", "run", "summary", "TASKS", "DEFAULT_MAX_PARAMETERS"]

DESCRIPTION = """Train a circuit on a task with AdamW, fusing many steps into one compiled call.

The run keeps metrics.jsonl, checkpoint.npz and plots in --out. Running the same
command again resumes it; a run with other settings (learning rate, weight decay,
task, sizes, seed, ...) is refused unless --force, and --fresh starts over. One
run at a time may use an output folder. Ctrl-C or SIGTERM saves the last completed
steps first.

exit codes: 0 done; 1 errors in the program, a circuit that does not fit the task,
a run that diverged; 2 a bad argument or file, a checkpoint of another run, the
output folder in use, a missing package; 130 Ctrl-C; 143 SIGTERM."""

PACKAGES = ("jax", "flax", "optax", "numpy", "matplotlib", "tqdm")  # what a run imports
DEFAULT_MAX_PARAMETERS = limits.DEFAULT_MAX_PARAMETERS  # the whole model, as the checker's default bounds each weight
DEFAULT_MAX_MODEL_BYTES = limits.DEFAULT_MAX_MODEL_BYTES  # weights plus peak activations at the batch trained
ADAMW_BETAS = (0.9, 0.98)


class TaskMismatch(CommandError):
    """The circuit cannot be trained on the task asked for (exit code 1: the program does not fit)."""

    exit_code = 1


def _lazy(module: str, function: str, *first: Any) -> Callable[..., Any]:
    """``diagrammar.train.<module>.<function>(*first, ...)``, imported only when a run starts."""
    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(f"diagrammar.train.{module}"), function)(*first, *args)
    return call


@dataclass(frozen=True)
class TaskSpec:
    """What ``--task NAME`` needs.

    Attributes:
      build: ``build(args, model) -> (task, folder tag, description)``; raises ValueError if the model does not fit.
      expects: the circuits the task trains, as a user reads it.
      settings: the ``args`` fields that shape the run (compared on resume).
      compile_options: ``options(args) -> dict``: free axes the task binds, and ``remat``.
    """

    build: Callable[..., Any]
    expects: str
    settings: tuple[str, ...]
    compile_options: Callable[..., dict[str, Any]] | None = None


TASKS = {
    "modadd": TaskSpec(_lazy("modadd", "task_for_cli"),
                       "a circuit called as model(a, b) with a, b: int[], or as model(tokens) with tokens: int[3], "
                       "returning [p] (ModAddMLP in circuits/modadd_mlp.circuit, GrokTransformer in "
                       "circuits/grok_transformer.circuit)",
                       ("p", "train_frac", "loss", "inputs", "batch_size")),
    "sort": TaskSpec(_lazy("pointer", "task_for_cli", "sort"),
                     "a pointer network with free axes n and steps (PointerNet in circuits/pointer.circuit)",
                     ("batch_size",), _lazy("pointer", "cli_compile_options", "sort")),
    "hull": TaskSpec(_lazy("pointer", "task_for_cli", "hull"),
                     "a pointer network with free axes n and steps (PointerNet in circuits/pointer.circuit)",
                     ("batch_size",), _lazy("pointer", "cli_compile_options", "hull")),
    "workspace": TaskSpec(_lazy("workspace", "task_for_cli"),
                          "a circuit called as model(a, b) with a, b: int[] or [8, 8] digit images, scoring the "
                          "answers (Workspace and WorkspaceDigits in circuits/workspace.circuit)",
                          ("batch_size",)),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` command's arguments to ``parser``.

    The defaults grok ModAddMLP (p = 97, half the pairs for training, AdamW
    lr 1e-3, weight decay 1, betas 0.9/0.98, full batch) and stop once test
    accuracy reaches 99%.
    """
    parser.add_argument("file", help="the .circuit file")
    parser.add_argument("--circuit", required=True, metavar="NAME", help="the circuit to train")
    parser.add_argument("--task", choices=tuple(TASKS), default="modadd", help="the task (default: modadd)")
    parser.add_argument("--steps", type=_args.positive(), default=10000, metavar="N",
                        help="total optimiser steps of the run, a resumed one included (default: 10000)")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder, created if missing (default: runs/NAME-TASK-TAG-sSEED)")
    parser.add_argument("--p", type=_args.whole(2), default=None,
                        help="the modulus; passed to the circuit as axis p (default: the circuit's own p)")
    parser.add_argument("--train-frac", type=_args.real(0, 1, open_low=True, open_high=True), default=0.5,
                        metavar="F", help="fraction of pairs to train on, between 0 and 1 (default: 0.5)")
    parser.add_argument("--lr", type=_args.real(0, open_low=True), default=1e-3,
                        help="AdamW learning rate (default: 1e-3)")
    parser.add_argument("--weight-decay", type=_args.real(0), default=1.0, metavar="WD",
                        help="AdamW weight decay (default: 1.0)")
    parser.add_argument("--seed", type=_args.seed, default=0,
                        help=f"seeds the weights, the split and the data order, 0 to {_args.SEED_MAX} (default: 0)")
    parser.add_argument("--seeds", type=seed_list, default=None, metavar="LIST",
                        help="train several seeds in one compiled step, each as --seed S would (0-7, 0,3,5 or "
                             "0-3,8); seed S writes into OUT/seed-S/, which --seed S --out OUT/seed-S resumes")
    parser.add_argument("--loss", choices=("ce", "mse"), default="ce", help="cross-entropy or squared error")
    parser.add_argument("--batch-size", type=_args.positive(), default=None, metavar="B",
                        help="minibatch size (default: full batch)")
    parser.add_argument("--inputs", choices=("auto", "ab", "tokens"), default="auto",
                        help="call the model as model(a, b) or model([a, b, p]) (default: try both)")
    parser.add_argument("--axis", type=_args.axis_size, action="append", default=[], metavar="NAME=SIZE",
                        help="set another axis size of the circuit (repeatable)")
    parser.add_argument("--steps-per-call", type=_args.positive(), default=100, metavar="N",
                        help="steps fused into one compiled call (default: 100)")
    parser.add_argument("--eval-every", type=_args.positive(), default=100, metavar="N",
                        help="steps between evaluations (default: 100)")
    parser.add_argument("--stop-at-test-acc", type=_args.fraction, default=0.99, metavar="ACC",
                        help="stop once test accuracy reaches ACC, from 0 to 1 (default: 0.99)")
    parser.add_argument("--max-parameters", type=_args.positive(2 ** 62), default=DEFAULT_MAX_PARAMETERS, metavar="N",
                        help="refuse, before allocating anything, a model with more parameters "
                             f"(default: 2**31 = {DEFAULT_MAX_PARAMETERS:,})")
    parser.add_argument("--max-model-bytes", type=_args.positive(2 ** 62), default=DEFAULT_MAX_MODEL_BYTES,
                        metavar="N", help="refuse, before allocating anything, a model whose float32 weights plus "
                                          "peak activations at the batch size take more bytes "
                                          f"(default: 2**35 = {DEFAULT_MAX_MODEL_BYTES:,})")
    parser.add_argument("--no-stop", action="store_true", help="run all --steps, even after reaching the target")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--fresh", action="store_true", help="ignore and replace a checkpoint in --out")
    again.add_argument("--force", action="store_true",
                       help="resume the checkpoint in --out even though its settings differ (the new ones apply)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_mesh_arguments(parser)
    from ..passes import OFF_BY_DEFAULT, PASSES  # the IR only: no jax

    parser.add_argument("--no-pass", action="append", default=[], choices=(*PASSES, "all"), metavar="PASS",
                        help="compile without this optimisation pass (repeatable; 'all' for none): "
                             + ", ".join(PASSES) + " (see docs/passes.md)")
    parser.add_argument("--pass", dest="with_pass", action="append", default=[], choices=PASSES, metavar="PASS",
                        help="compile with this pass, also one that is off by default: "
                             + ", ".join(sorted(OFF_BY_DEFAULT)) + " (repeatable)")
    _args.add_size_overrides(parser)


def compile_settings(args: argparse.Namespace) -> tuple[dict[str, int], dict[str, Any]]:
    """(axis sizes, other compile options) from ``--p``, ``--axis`` and the task; ``--axis`` wins."""
    sizes: dict[str, int] = {}
    options: dict[str, Any] = {}
    spec = TASKS[args.task]
    if spec.compile_options is not None:
        for key, value in spec.compile_options(args).items():
            (options if key == "remat" else sizes)[key] = value
    if args.p is not None:
        sizes["p"] = args.p
    sizes.update(dict(args.axis))
    if getattr(args, "mesh", None):  # onto a device mesh (docs/sharding.md); jax is imported by now
        from ..train.mesh import make_mesh

        options.update(mesh=make_mesh(args.mesh, explicit=args.mesh_axes == "explicit"), shard=args.shard or {},
                       batch=batch_mesh_axis(args))
    elif getattr(args, "shard", None):
        raise BadArgument("--shard needs --mesh (e.g. --mesh data=4,model=2 --shard heads=model)")
    from ..passes import switches

    passes = switches(getattr(args, "with_pass", None) or [], getattr(args, "no_pass", None) or [])
    if passes is not None:
        options["passes"] = passes
    return sizes, options


def add_mesh_arguments(parser: argparse.ArgumentParser, axis_types: bool = True) -> None:
    """``--mesh``, ``--shard``, ``--batch-over`` and (for a run, ``axis_types``) ``--mesh-axes``; train, stats
    and render share them (the last two only read the mapping)."""
    from ..check.sharding import parse_mesh, parse_shard  # no jax

    def typed(parse):
        def convert(text: str):
            try:
                return parse(text)
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from None
        convert.__name__ = parse.__name__.removeprefix("parse_")
        return convert

    parser.add_argument("--mesh", type=typed(parse_mesh), default=None, metavar="AXIS=N,...",
                        help=("run on a mesh of devices, e.g. data=4,model=2 (on CPU set "
                              "XLA_FLAGS=--xla_force_host_platform_device_count=8)" if axis_types else
                              "a mesh of devices to count (stats) or draw (render) for, e.g. data=4,model=2")
                        + "; see docs/sharding.md")
    parser.add_argument("--shard", type=typed(parse_shard), default=None, metavar="AXIS=MESH_AXIS,...",
                        help="with --mesh, split these named axes over mesh axes: heads=model,mlp=model (tensor "
                             "parallel), d=data (fully sharded data parallel); default: none (data parallel)")
    parser.add_argument("--batch-over", default=None, metavar="MESH_AXIS",
                        help="with --mesh, the mesh axis the batch is split over (default: data if the mesh has "
                             "it, else its first axis)")
    if not axis_types:
        return
    parser.add_argument("--mesh-axes", choices=("auto", "explicit"), default="auto",
                        help="JAX's mesh axis type: the partitioner decides (auto) or sharding is part of every "
                             "array's type (explicit)")


def batch_mesh_axis(args: argparse.Namespace) -> str | None:
    """The mesh axis the batch is split over: ``--batch-over``, else ``data``, else the mesh's first axis."""
    if args.batch_over:
        if args.batch_over not in args.mesh:
            raise BadArgument(f"--batch-over {args.batch_over}: the mesh has no such axis (it has "
                              + ", ".join(args.mesh) + ")")
        return args.batch_over
    return "data" if "data" in args.mesh else next(iter(args.mesh))


def check_sizes(diagram: Any, args: argparse.Namespace, sizes: dict[str, int]) -> None:
    """Refuse sizes that do not fit the circuit: the free axes the task binds, ``--axis`` names, and free
    axes left without a size.

    Raises:
      TaskMismatch: the circuit lacks a free axis the task binds (exit 1); the message says what the task expects.
      BadArgument: ``--axis`` names an axis that is not free, or a free axis has no size (exit 2).
    """
    free = diagram.free_sizes()
    has = f"free axes {', '.join(sorted(free))}" if free else "no free axes"
    given = {name for name, _ in args.axis}
    from_task = sorted(k for k in sizes if k not in given and k != "p" and k not in free)
    if from_task:
        raise TaskMismatch(f"{args.circuit} cannot be trained on --task {args.task}: it has {has}, and the task "
                           f"sets {', '.join(from_task)}. --task {args.task} expects {TASKS[args.task].expects}")
    unknown = sorted(given - free)
    if unknown:
        raise BadArgument(f"--axis {unknown[0]}: {args.circuit} has no free axis {unknown[0]} (it has {has}; "
                          f"sizes the program declares are fixed). --size {unknown[0]}=N changes a declared size")
    unset = sorted(free - set(sizes))
    if unset:
        raise BadArgument(f"{args.circuit} has free axes without a size: {', '.join(unset)}; give them with "
                          + " ".join(f"--axis {n}=N" for n in unset)
                          + f" (--task {args.task} expects {TASKS[args.task].expects})")


def check_budget(diagram: Any, sizes: dict[str, int], budget: int, file: str) -> None:
    """Refuse, before anything is allocated, a model with more than ``budget`` parameters.

    Sums the IR's weights (every copy of a ``repeat``) with the free sizes bound.
    """
    free = diagram.free_sizes()
    bind = {k: v for k, v in sizes.items() if k in free}
    count = diagram.parameter_count(bind)
    if not count.is_const or count.value <= budget:
        return  # a free size still unbound: compiling will say so
    biggest = []
    for name, w, copies in diagram.weights():
        n = (w.type.numel() * copies).bind(bind) if bind else w.type.numel() * copies
        if n.is_const:
            biggest.append((n.value, name, w))
    biggest.sort(key=lambda t: -t[0])
    top = ", ".join(f"{name} {w.type} {n:,}" for n, name, w in biggest[:3])
    gib = count.value * 16 / 2 ** 30  # float32 weights, gradients and AdamW's two moments
    err = SizeTooLarge(
        f"{diagram.name} has {count.value:,} parameters, over the training budget of {budget:,} "
        f"(--max-parameters); nothing was allocated",
        diagram.span,
        hint=f"training it would take about {gib:,.0f} GiB for weights, gradients and optimiser state; largest "
             f"weights: {top}; shrink the sizes, or raise --max-parameters")
    try:
        if diagram.span is not None:
            with _files.open_regular(diagram.span.file) as f:
                err.source = f.read().decode("utf-8", "replace")
    except (CommandError, OSError):
        pass
    raise err


def check_memory(diagram: Any, sizes: dict[str, int], budget: int, batch: int) -> None:
    """Refuse, before anything is allocated, a model whose weights plus peak activations (the cost
    backend's `peak_bytes` at `batch`) take more than ``budget`` bytes; unknown figures are not refused."""
    from ..backends.cost import analyse, human_bytes

    free = diagram.free_sizes()
    try:
        report = analyse(diagram, batch=batch, bindings={k: v for k, v in sizes.items() if k in free})
    except ValueError:
        return  # a size the task binds that is not free: compiling reports it
    peak, weights = report.peak_bytes.number, report.weight_bytes.number
    if peak is None or peak <= budget:
        return
    err = SizeTooLarge(
        f"{diagram.name} needs {peak:,} bytes ({human_bytes(peak)}) for its weights and peak activations at batch "
        f"size {batch}, over the model budget of {budget:,} bytes (--max-model-bytes); nothing was allocated",
        diagram.span,
        hint=f"weights {human_bytes(weights or 0)}, activations {human_bytes(peak - (weights or 0))}; shrink the "
             "sizes or the batch, or raise --max-model-bytes")
    try:
        if diagram.span is not None:
            with _files.open_regular(diagram.span.file) as f:
                err.source = f.read().decode("utf-8", "replace")
    except (CommandError, OSError):
        pass
    raise err


def compile_circuit(diagram: Any, seed: int, sizes: dict[str, int], options: dict[str, Any]) -> Any:
    """The flax module: ``diagram.compile(rngs=nnx.Rngs(seed), **options, **sizes)``."""
    from flax import nnx

    return diagram.compile(rngs=nnx.Rngs(seed), **options, **sizes)


def build_model(args: argparse.Namespace, sizes: dict[str, int], options: dict[str, Any]) -> Any:
    """Load FILE, check the circuit against the task and the budget, then compile it.

    Raises:
      UnusableFile, BadArgument: FILE, ``--circuit`` or ``--axis`` cannot be used (exit 2).
      CircuitError: the program has errors, or the model is over the budget (exit 1).
      TaskMismatch: the circuit lacks what the task needs (exit 1).
    """
    import diagrammar

    _files.input_file(args.file)
    program = diagrammar.load(args.file, sizes=_overrides(args) or None)
    diagram = program[_args.circuit_in(program, args.circuit, args.file)]
    check_sizes(diagram, args, sizes)
    check_budget(diagram, sizes, args.max_parameters, args.file)
    check_memory(diagram, sizes, getattr(args, "max_model_bytes", DEFAULT_MAX_MODEL_BYTES),
                 getattr(args, "batch_size", None) or 1)
    return compile_circuit(diagram, args.seed, sizes, options)


def run_settings(args: argparse.Namespace, sizes: dict[str, int]) -> dict[str, Any]:
    """Everything that shapes the run beyond seed and task data; a resumed run must match it (or --force)."""
    spec = TASKS[args.task]
    settings = {"circuit": args.circuit, "task": args.task, "sizes": dict(sorted(sizes.items())),
                "optimizer": {"name": "adamw", "learning_rate": args.lr, "weight_decay": args.weight_decay,
                              "b1": ADAMW_BETAS[0], "b2": ADAMW_BETAS[1]}}
    settings.update({name: getattr(args, name) for name in spec.settings})
    if _overrides(args):  # only when given, so runs from before --size existed still resume
        settings["size_overrides"] = dict(sorted(_overrides(args).items()))
    return settings


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--size NAME=N`` as a dict (empty when none was given)."""
    return dict(getattr(args, "size_overrides", None) or [])


def run(args: argparse.Namespace) -> int:
    """Run ``diagrammar train``; returns the process exit code."""
    if getattr(args, "seeds", None):
        return run_seeds(args)
    _args.require("train", PACKAGES)
    t0 = time.perf_counter()
    spec = TASKS[args.task]
    target = None if args.no_stop else args.stop_at_test_acc
    out = Path(args.out) if args.out else None
    with ExitStack() as held:
        from ..train import rundir

        if out is not None:  # refuse a folder in use before compiling anything
            held.enter_context(rundir.claim(out))
        sizes, options = compile_settings(args)
        model = build_model(args, sizes, options)
        from ..train.mesh import context as mesh_context

        held.enter_context(mesh_context(model))  # a model on a mesh runs under it (explicit axes need that)
        task, tag, description = _build_task(spec, args, model)
        if out is None:
            out = Path("runs") / f"{args.circuit}-{args.task}-{tag}-s{args.seed}"
            held.enter_context(rundir.claim(out))
        print(f"training {args.circuit} on {description} -> {out}", file=sys.stderr)

        from ..train.loop import default_optimizer, train

        result, code = _stopped_or(lambda: train(
            model, task, steps=args.steps,
            optimizer=default_optimizer(args.lr, args.weight_decay, *ADAMW_BETAS),
            steps_per_call=args.steps_per_call, eval_every=args.eval_every, out_dir=out, seed=args.seed,
            resume=not args.fresh, progress=not args.no_progress, config=run_settings(args, sizes),
            force=args.force, stop_when=_stop_rule(target),
        ), saved=lambda: _saved(out), smaller="a smaller --batch-size or smaller sizes")
        if code is not None:
            return code
    print(summary(args.circuit, result, target, time.perf_counter() - t0))
    return 0


MAX_SEEDS = 4096


def seed_list(text: str) -> tuple[int, ...]:
    """An argparse type: seeds written as ``0-7``, ``0,3,5`` or a mix (``0-3,8``), in the order given.

    >>> seed_list("0-3,8")
    (0, 1, 2, 3, 8)
    >>> seed_list("3-1")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: the range 3-1 runs backwards; write 1-3
    """
    seeds: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        if not lo.strip().isdigit() or (dash and not hi.strip().isdigit()):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a list of seeds: write a range 0-7, a list 0,3,5, or both (0-3,8)")
        first, last = int(lo), int(hi) if dash else int(lo)
        if last < first:
            raise argparse.ArgumentTypeError(f"the range {part.strip()} runs backwards; write {last}-{first}")
        if last > _args.SEED_MAX:
            raise argparse.ArgumentTypeError(f"seed {last} is over the largest seed, {_args.SEED_MAX}")
        if len(seeds) + last - first + 1 > MAX_SEEDS:
            raise argparse.ArgumentTypeError(f"{text!r} asks for more than {MAX_SEEDS} seeds")
        seeds.extend(range(first, last + 1))
    if len(set(seeds)) != len(seeds):
        twice = next(s for s in seeds if seeds.count(s) > 1)
        raise argparse.ArgumentTypeError(f"seed {twice} is given twice in {text!r}")
    return tuple(seeds)


def run_seeds(args: argparse.Namespace) -> int:
    """``diagrammar train --seeds LIST``: each seed's model and task built as ``--seed S`` builds them, then all
    trained together in one compiled step (``diagrammar.train.seeds``); returns the exit code."""
    if getattr(args, "mesh", None):
        raise BadArgument("--seeds cannot be combined with --mesh yet: train the seeds one at a time with --seed")
    _args.require("train", PACKAGES)
    t0 = time.perf_counter()
    spec = TASKS[args.task]
    target = None if args.no_stop else args.stop_at_test_acc
    out = Path(args.out) if args.out else None
    with ExitStack() as held:
        from ..train import rundir

        if out is not None:
            held.enter_context(rundir.claim(out))
        sizes, options = compile_settings(args)
        per_seed = {s: argparse.Namespace(**{**vars(args), "seed": s}) for s in args.seeds}
        models, tasks = {}, {}
        for s, seed_args in per_seed.items():
            models[s] = build_model(seed_args, sizes, options)
            tasks[s], tag, description = _build_task(spec, seed_args, models[s])
        if out is None:
            out = Path("runs") / f"{args.circuit}-{args.task}-{tag}-seeds{_seeds_text(args.seeds)}"
            held.enter_context(rundir.claim(out))
        print(f"training {args.circuit} on {description}, seeds {_seeds_text(args.seeds)} in one compiled step "
              f"-> {out}/seed-S", file=sys.stderr)

        from ..train.loop import default_optimizer
        from ..train.seeds import train_seeds

        def make_model(s: int) -> Any:  # built above; built again only to catch up a lagging seed
            return models.pop(s) if s in models else build_model(per_seed[s], sizes, options)

        result, code = _stopped_or(lambda: train_seeds(
            make_model, tasks.__getitem__, args.seeds, steps=args.steps,
            optimizer=default_optimizer(args.lr, args.weight_decay, *ADAMW_BETAS),
            steps_per_call=args.steps_per_call, eval_every=args.eval_every, out_dir=out,
            resume=not args.fresh, progress=not args.no_progress, config=run_settings(args, sizes),
            force=args.force, stop_when=_stop_rule(target),
        ), saved=lambda: f"each seed's last completed steps are saved in {out}/seed-S; run the same command to resume",
            smaller="fewer --seeds, a smaller --batch-size or smaller sizes")
        if code is not None:
            return code
    total = time.perf_counter() - t0
    print("\n".join(summary(f"{args.circuit} seed {s}", r, target, total) for s, r in result.results.items()))
    return 0


def _seeds_text(seeds: tuple[int, ...]) -> str:
    """``0-7`` for a run of consecutive seeds, else ``0,3,5``."""
    if len(seeds) > 1 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(str(s) for s in seeds)


def _build_task(spec, args: argparse.Namespace, model) -> tuple[Any, str, str]:
    """(task, tag for the run folder's name, description) of ``--task`` for ``model``, or TaskMismatch."""
    try:
        return spec.build(args, model)
    except ValueError as e:
        raise TaskMismatch(f"{args.circuit} cannot be trained on --task {args.task}: {e}\n"
                           f"  --task {args.task} expects {spec.expects}") from None


def _stop_rule(target: float | None):
    """``stop_when`` for the trainers: test accuracy at ``target`` (None: never stop early)."""
    return None if target is None else (lambda m: m.get("test_acc", 0.0) >= target)


def _stopped_or(run, *, saved, smaller: str) -> tuple[Any, int | None]:
    """(what ``run()`` returned, None), or (None, the exit code) for a run that stopped early, said on stderr:
    diverged (1), out of memory (1, suggesting ``smaller``), interrupted (130) or terminated (143); an
    interrupted run also says what was kept, ``saved()``, read once it has stopped. Any other error
    propagates."""
    from ..train.loop import TrainingDiverged

    try:
        return run(), None
    except TrainingDiverged as e:
        print(f"diagrammar train: error: {e}", file=sys.stderr)
        return None, 1
    except KeyboardInterrupt as e:
        from . import Terminated

        why = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"\ndiagrammar train: {why}; {saved()}", file=sys.stderr)
        return None, Terminated.exit_code if isinstance(e, Terminated) else 130
    except Exception as e:
        if type(e).__name__ == "XlaRuntimeError" and "RESOURCE_EXHAUSTED" in str(e):
            print(f"diagrammar train: error: out of memory while training; try {smaller} "
                  f"({str(e).splitlines()[0]})", file=sys.stderr)
            return None, 1
        raise


def _saved(out: Path) -> str:
    """What an interrupted run left, read back from its checkpoint."""
    from ..train import checkpoint as ckpt

    try:
        step = ckpt.load_meta(ckpt.checkpoint_path(out)).get("step")
    except Exception:  # nothing there, or unreadable: say so rather than fail while stopping
        return f"no checkpoint was saved in {out}"
    return f"steps up to {step} are saved in {out}; run the same command to resume"


def summary(name: str, result: Any, target: float | None, total_seconds: float) -> str:
    """The closing report of a run, a few lines a person reads."""
    m = result.metrics
    lines = []
    why = f" (reached test accuracy {target:g})" if result.stopped_early else ""
    again = f", resumed from step {result.resumed_from}" if result.resumed_from is not None else ""
    lines.append(f"{name}: {result.step} steps in {result.wall_time:.1f} s of training{why}; "
                 f"{total_seconds:.1f} s in this run{again}")
    if getattr(result, "changed", None):
        lines.append(f"  continued with changed settings (--force): {'; '.join(result.changed)}")
    if "train_acc" in m:
        area = f"   hull area coverage (test) {m['test_area']:.4f}" if "test_area" in m else ""
        lines.append(f"  accuracy  train {m['train_acc']:.4f}   test {m.get('test_acc', float('nan')):.4f}{area}")
        lines.append(f"  loss      train {_num(m['train_loss'])}   test {_num(m.get('test_loss', math.nan))}")
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


def _num(x: Any) -> str:
    return format(x, ".4g") if isinstance(x, (int, float)) else str(x)  # "nan"/"inf" arrive as strings
