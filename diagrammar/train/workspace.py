"""Train stage: a + b through a global workspace (Chateau-Laurent and VanRullen 2025), and its baselines.

The workspace models (``circuits/workspace.circuit``) add two digits by
writing ``a`` into a workspace and applying an Increment module ``b`` times,
an LSTM controller choosing at every step which module's output is broadcast.
The baselines (``circuits/workspace_baselines.circuit``) read ``(a, b)`` and
emit the sum in one go. Every model is trained on the same split
(:func:`~diagrammar.train.tasks_data.workspace_split`):

- ``seen``: the training pairs (b <= 6 by default, minus the held-out ones);
- ``heldout``: pairs with b <= 6 never trained on (interpolation); the
  trainer's ``test_*`` metrics;
- ``extrap``: b in 7..9, more increments than any training pair needs, with
  sums at most 15 so that every single increment on the way was trained;
  ``extrap_full`` adds the sums 16..18, whose last increments training never
  shows (fair for hand-designed modules, not for learned ones).

Inputs, found from the circuit's signature: ``ints`` (``a, b: int[]``) or
``images`` (``a, b: [8, 8]``, scikit-learn's bundled handwritten digits,
split per class into a train and a test pool: training draws fresh train-pool
images at every step, each slightly rotated, rescaled and moved (augmentation);
``seen`` is evaluated on train-pool images, the other splits on test-pool
images that training never shows, ``eval_draws`` per pair, all as they are).

What a model returns. The first output scores the answers ``0..N-1``:
``[answers]`` (a baseline) or ``[steps, answers]``, the answer after every
controller step (the workspace models). Steps: a workspace model is read
after ``max_train_b + 2`` steps (input, b increments, output) on seen and
held-out pairs, the most any training pair needs, and after
``max(extrap_b) + 2`` steps on the extrapolation pairs: extrapolation gets
more steps, as larger b needs. Further outputs are recognised by shape:
``[steps, modules]`` the routing (plotted), ``[2, answers]`` the addends as
the model's Input module perceived them, and ``[answers, answers]`` its
Increment module's successor table (row k: the code that follows k). See
:meth:`WorkspaceAdd.loss` for what is trained on each.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from . import plots
from . import tasks_data as td

ACCURACY_NAME = "workspace_accuracy.png"
ROUTING_NAME = "routing.png"
SPLITS = ("seen", "heldout", "extrap", "extrap_full")
IMAGE_SHAPE = (8, 8)
MODULES = ("input", "increment", "output")


def parameter_count(model: nnx.Module) -> int:
    """Number of trained numbers (``nnx.Param`` entries) in ``model``."""
    return int(sum(np.size(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


def model_parts(out: Any, n_answers: int) -> dict[str, jax.Array]:
    """Name the outputs of a model (see the module docstring); absent parts are left out.

    Returns ``answers`` (``[batch, answers]`` or ``[batch, steps, answers]``)
    and, when the model returns them, ``gates`` ``[batch, steps, modules]``,
    ``perceived`` ``[batch, 2, answers]`` and ``successor`` ``[answers, answers]``.
    """
    items = list(out) if isinstance(out, (tuple, list)) else [out]
    parts = {"answers": items[0]}
    for x in items[1:]:
        shape = tuple(x.shape)
        if shape[-2:] == (n_answers, n_answers):
            if isinstance(x, jax.ShapeDtypeStruct):  # under eval_shape: describe, do not compute
                parts["successor"] = jax.ShapeDtypeStruct(shape[-2:], x.dtype)
            else:
                parts["successor"] = x.reshape((-1,) + shape[-2:])[0]  # the same for every example
        elif shape[-2:] == (2, n_answers):
            parts["perceived"] = x
        elif x.ndim == 3 and parts["answers"].ndim == 3 and shape[1] == parts["answers"].shape[1]:
            parts["gates"] = x
    return parts


def answer_logits(answers: jax.Array, steps: int) -> jax.Array:
    """Scores ``[batch, answers]``: read after ``steps`` controller steps when given per step."""
    if answers.ndim == 3:
        answers = answers[:, min(steps, answers.shape[1]) - 1]
    return answers


def affine_images(images: jax.Array, angle: jax.Array, scale: jax.Array, offset: jax.Array) -> jax.Array:
    """Images ``[n, rows, cols]`` each rotated by ``angle[n]`` (radians, counter-clockwise as
    displayed), scaled by ``scale[n]`` about its centre and moved by ``offset[n]`` (pixels: rows
    down, columns right); bilinear, 0 (the background) outside the image."""
    _, rows, cols = images.shape
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    y, x = jnp.meshgrid(jnp.arange(rows) - cy, jnp.arange(cols) - cx, indexing="ij")

    def one(img, angle, scale, offset):
        # where each output pixel comes from: undo the move, then the rotation and scaling
        dy, dx = y - offset[0], x - offset[1]
        cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale
        src = [cy + cos * dy + sin * dx, cx - sin * dy + cos * dx]
        return jax.scipy.ndimage.map_coordinates(img, src, order=1, mode="constant", cval=0.0)

    return jax.vmap(one)(images, angle, scale, offset)


def augment_images(key: jax.Array, images: jax.Array, rotate: float, rescale: float, move: float) -> jax.Array:
    """Each image ``[..., rows, cols]`` rotated by a random angle in ``±rotate`` degrees, scaled by a
    random factor in ``1 ± rescale`` and moved by a random ``±move`` pixels along each axis, drawn
    independently per image (:func:`affine_images`); all zero returns the images unchanged."""
    if not (rotate or rescale or move):
        return images
    *_, rows, cols = images.shape
    flat = images.reshape((-1, rows, cols))
    n = flat.shape[0]
    k_angle, k_scale, k_move = jax.random.split(key, 3)
    angle = jnp.deg2rad(jax.random.uniform(k_angle, (n,), minval=-rotate, maxval=rotate))
    scale = jax.random.uniform(k_scale, (n,), minval=1 - rescale, maxval=1 + rescale)
    offset = jax.random.uniform(k_move, (n, 2), minval=-move, maxval=move)
    return affine_images(flat, angle, scale, offset).reshape(images.shape)


@nnx.jit
def _forward(model: nnx.Module, *inputs: jax.Array) -> Any:
    return model(*inputs)


@dataclasses.dataclass
class WorkspaceAdd:
    """The a + b task on one split, for models called ``model(a, b)``.

    Args:
      inputs: ``"ints"`` (``a, b: int32[batch]``) or ``"images"`` (``a, b:
        float32[batch, 8, 8]``).
      seed: seeds the held-out pairs, the image pools and the evaluation images.
      max_digit, heldout_frac, extrap_b: see :func:`tasks_data.workspace_split`.
      batch_size: examples per step. ``ints``: None trains on every seen pair
        at every step; ``images``: a fresh batch of pairs and images is drawn
        inside the compiled step (default 128).
      eval_draws: images per pair in the evaluation sets (``images`` only).
      rotate, rescale, move: ``images`` only: every training image is rotated
        by up to ``rotate`` degrees, scaled by up to ``rescale`` (a fraction)
        and moved by up to ``move`` pixels along each axis, freshly drawn per
        image and step (:func:`augment_images`), so that perception learns
        handwriting rather than the train pool's 90 or so images of each
        digit; all 0 trains on the images as they are. Evaluation images are
        never changed.
      deadline: train a per-step answer from the first step it can be ready
        on (see :meth:`loss`); False trains the last step only.
      module_weight: weight of the modules' own objectives (see :meth:`loss`).
    """

    inputs: str = "ints"
    seed: int = 0
    max_digit: int = 9
    heldout_frac: float = 0.2
    extrap_b: tuple[int, ...] = (7, 8, 9)
    batch_size: int | None = None
    eval_draws: int = 50
    rotate: float = 10.0
    rescale: float = 0.1
    move: float = 0.5
    deadline: bool = True
    module_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.inputs not in ("ints", "images"):
            raise ValueError(f"inputs must be 'ints' or 'images', got {self.inputs!r}")
        self.extrap_b = tuple(int(b) for b in self.extrap_b)
        split = td.workspace_split(self.max_digit, self.heldout_frac, self.extrap_b, self.seed)
        self.n_numbers = int(split["n_numbers"])
        self.max_train_b = int(split["max_train_b"])
        self.pairs = {"seen": split["train"], "heldout": split["heldout"],
                      "extrap": split["extrap"], "extrap_full": split["extrap_full"]}
        # Controller steps a workspace model gets: input, b increments, output.
        train_steps, extrap_steps = self.max_train_b + 2, max(self.extrap_b) + 2
        self.horizons = {"seen": train_steps, "heldout": train_steps,
                         "extrap": extrap_steps, "extrap_full": extrap_steps}
        # The increments k -> k + 1 that the training pairs go through (0 -> 1 .. 14 -> 15).
        seen = self.pairs["seen"]
        self.increments = np.array(sorted({k for a, b in zip(seen["a"].tolist(), seen["b"].tolist())
                                           for k in range(a, a + b)}), np.int32)
        self.sample = None
        if self.inputs == "ints":
            sets = {k: {"a": v["a"], "b": v["b"], "sum": v["sum"]} for k, v in self.pairs.items()}
        else:
            if self.batch_size is None:
                self.batch_size = 128
            pools = td.split_digit_images(td.load_digit_images(), seed=self.seed)
            rng = np.random.default_rng([self.seed, 1])
            sets = {}
            for k, v in self.pairs.items():
                pool = pools["train" if k == "seen" else "test"]
                a, b = np.repeat(v["a"], self.eval_draws), np.repeat(v["b"], self.eval_draws)
                sets[k] = {"a": a, "b": b, "sum": a + b,
                           "a_img": td.digit_image_batch(rng, pool, a), "b_img": td.digit_image_batch(rng, pool, b)}
            # The train pool sorted by label, to draw images inside the compiled step.
            tr = pools["train"]
            counts = np.bincount(tr["labels"], minlength=self.max_digit + 1)
            self._pool = jnp.asarray(tr["images"][np.argsort(tr["labels"], kind="stable")])
            self._starts = jnp.asarray(np.concatenate([[0], np.cumsum(counts)[:-1]]), jnp.int32)
            self._counts = jnp.asarray(counts, jnp.int32)
            self.sample = self._sample_images
        self.sets = {k: {n: jnp.asarray(x) for n, x in v.items()} for k, v in sets.items()}
        self.train_data = self.sets["seen"]
        self.test_data = self.sets["heldout"]

    # ------------------------------------------------------------------ the Task protocol

    @property
    def config(self) -> dict[str, Any]:
        """What determines the data and the objective; a resumed run must match it."""
        return {"task": "workspace", "inputs": self.inputs, "seed": self.seed, "max_digit": self.max_digit,
                "heldout_frac": self.heldout_frac, "extrap_b": list(self.extrap_b), "batch_size": self.batch_size,
                "eval_draws": self.eval_draws, "rotate": self.rotate, "rescale": self.rescale, "move": self.move,
                "deadline": self.deadline, "module_weight": self.module_weight}

    def model_inputs(self, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        """The positional arguments of the model for ``batch``."""
        if self.inputs == "ints":
            return batch["a"], batch["b"]
        return batch["a_img"], batch["b_img"]

    def loss(self, model: nnx.Module, batch: dict[str, jax.Array],
             train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Loss and metrics on ``batch`` (seen or held-out pairs); ``acc`` is exact accuracy.

        The answer: cross-entropy of the sum. A model answering after every
        step is read after ``max_train_b + 2`` steps (``acc``) and, with
        ``deadline``, trained on its answer at every step from ``b + 2`` on (the
        first step at which input, b increments and output can have produced
        it) to that horizon: an answer that comes late costs, so the controller
        learns the shortest routing rather than waiting, which is what lets it
        run longer at test time. Nothing says which module to choose when.

        The modules' own objectives, added with weight ``module_weight`` when
        the model exposes its modules (``WorkspaceDigits``; the image
        baselines expose their perception): the Input module perceives each
        addend's image as its number (``perceive_acc``), and the Increment
        module maps each number k that the training pairs increment to k + 1
        (``increment_acc``). Both read probabilities.
        """
        parts = model_parts(model(*self.model_inputs(batch)), self.n_numbers)
        answers, labels = parts["answers"].astype(jnp.float32), batch["sum"]
        logits = answer_logits(answers, self.horizons["seen"])
        if self.deadline and answers.ndim == 3:
            h = min(self.horizons["seen"], answers.shape[1])
            due = (jnp.arange(h)[None, :] >= batch["b"][:, None] + 1).astype(jnp.float32)  # [batch, h]
            ce = optax.softmax_cross_entropy_with_integer_labels(answers[:, :h], labels[:, None])
            loss = jnp.sum(ce * due) / jnp.maximum(jnp.sum(due), 1.0)
        else:
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        aux = {"acc": jnp.mean(jnp.argmax(logits, axis=-1) == labels)}
        if self.module_weight and "perceived" in parts:
            codes = parts["perceived"]
            addends = jnp.stack([batch["a"], batch["b"]], axis=-1)  # [batch, 2]
            picked = jnp.take_along_axis(codes, addends[..., None], axis=-1)
            loss = loss - self.module_weight * jnp.mean(jnp.log(picked + 1e-6))
            aux["perceive_acc"] = jnp.mean(jnp.argmax(codes, axis=-1) == addends)
        if self.module_weight and "successor" in parts:
            k = jnp.asarray(self.increments)
            rows = parts["successor"][k]
            loss = loss - self.module_weight * jnp.mean(jnp.log(rows[jnp.arange(k.shape[0]), k + 1] + 1e-6))
            aux["increment_acc"] = jnp.mean(jnp.argmax(rows, axis=-1) == k + 1)
        return loss, aux

    def _sample_images(self, key: jax.Array) -> dict[str, jax.Array]:
        """A fresh training batch: seen pairs, each digit drawn as a random image of the train pool,
        randomly rotated, rescaled and moved (``rotate``, ``rescale``, ``move``)."""
        k_pair, k_a, k_b = jax.random.split(key, 3)
        seen = self.train_data
        i = jax.random.randint(k_pair, (self.batch_size,), 0, seen["a"].shape[0])
        a, b = seen["a"][i], seen["b"][i]

        def images(k, labels):
            u = jax.random.uniform(k, labels.shape)
            offset = jnp.minimum((u * self._counts[labels]).astype(jnp.int32), self._counts[labels] - 1)
            # the warps from a key of their own: without augmentation, the batches are the same as ever
            return augment_images(jax.random.fold_in(k, 1), self._pool[self._starts[labels] + offset],
                                  self.rotate, self.rescale, self.move)

        return {"a": a, "b": b, "sum": a + b, "a_img": images(k_a, a), "b_img": images(k_b, b)}

    def analyse(self, model: nnx.Module) -> dict[str, Any]:
        """Extrapolation accuracies and the parameter count, logged at every evaluation."""
        acc = self.evaluate(model, ("extrap", "extrap_full"))
        return {"extrap_acc": acc["extrap"], "extrap_full_acc": acc["extrap_full"],
                "params": parameter_count(model)}

    def report(self, model: nnx.Module, out_dir: str | os.PathLike) -> list[Path]:
        """Accuracy against b (``workspace_accuracy.png``) and, if the model returns it, its routing."""
        out = Path(out_dir)
        files = [self.plot_accuracy(model, out / ACCURACY_NAME)]
        routing = self.plot_routing(model, out / ROUTING_NAME)
        if routing is not None:
            files.append(routing)
        return files

    # ------------------------------------------------------------------ evaluation

    def _run(self, model: nnx.Module, inputs: tuple[jax.Array, ...]) -> dict[str, jax.Array]:
        model.eval()
        return model_parts(_forward(model, *inputs), self.n_numbers)

    def predict(self, model: nnx.Module, split: str) -> np.ndarray:
        """The model's answers on every example of ``split``, read after ``horizons[split]`` steps."""
        answers = self._run(model, self.model_inputs(self.sets[split]))["answers"]
        return np.asarray(jnp.argmax(answer_logits(answers, self.horizons[split]), axis=-1))

    def evaluate(self, model: nnx.Module, splits: Sequence[str] = SPLITS) -> dict[str, float]:
        """Exact accuracy on each split (``seen``, ``heldout``, ``extrap``, ``extrap_full``)."""
        return {s: float(np.mean(self.predict(model, s) == np.asarray(self.sets[s]["sum"]))) for s in splits}

    def accuracy_by_b(self, model: nnx.Module) -> dict[str, dict[int, float]]:
        """Accuracy for each value of b, on every split."""
        out = {}
        for s in SPLITS:
            ok = self.predict(model, s) == np.asarray(self.sets[s]["sum"])
            b = np.asarray(self.sets[s]["b"])
            out[s] = {int(v): float(ok[b == v].mean()) for v in np.unique(b)}
        return out

    def plot_accuracy(self, model: nnx.Module, path: str | os.PathLike) -> Path:
        """Accuracy against b for seen, held-out and larger-b pairs (sums up to the largest trained, and all)."""
        from matplotlib.figure import Figure

        by_b, acc = self.accuracy_by_b(model), self.evaluate(model)
        fig = Figure(figsize=(7, 3.6), layout="constrained")
        ax = fig.subplots()
        top = self.max_digit + self.max_train_b
        names = {"seen": "seen pairs", "heldout": "held-out pairs", "extrap": f"larger b, sums <= {top}",
                 "extrap_full": "larger b, all sums"}
        for s, style in (("seen", "o-"), ("heldout", "s-"), ("extrap", "^-"), ("extrap_full", "v:")):
            xs = sorted(by_b[s])
            ax.plot(xs, [by_b[s][x] for x in xs], style, label=names[s])
        ax.axvline(self.max_train_b + 0.5, color="gray", ls=":", lw=1)
        ax.set_xlabel("b (increments needed)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left")
        ax.set_title(f"a + b: seen {acc['seen']:.3f}, held-out {acc['heldout']:.3f}, extrapolation "
                     f"{acc['extrap']:.3f} (sums <= {top}), {acc['extrap_full']:.3f} (all)", fontsize=9)
        return plots.save_figure(fig, path)

    def plot_routing(self, model: nnx.Module, path: str | os.PathLike,
                     pairs: Sequence[tuple[int, int]] = ((3, 0), (2, 4), (5, 6), (4, 9))) -> Path | None:
        """The controller's gates at every step for a few pairs (None if the model has no routing)."""
        from matplotlib.figure import Figure

        a = np.array([p[0] for p in pairs], np.int32)
        b = np.array([p[1] for p in pairs], np.int32)
        if self.inputs == "ints":
            xs = (jnp.asarray(a), jnp.asarray(b))
        else:
            pool = td.split_digit_images(td.load_digit_images(), seed=self.seed)["test"]
            rng = np.random.default_rng([self.seed, 2])
            xs = (jnp.asarray(td.digit_image_batch(rng, pool, a)), jnp.asarray(td.digit_image_batch(rng, pool, b)))
        parts = self._run(model, xs)
        if "gates" not in parts:
            return None
        answers = np.asarray(jnp.argmax(answer_logits(parts["answers"], self.horizons["extrap"]), axis=-1))
        gates = np.asarray(parts["gates"])  # [pair, steps, module]
        fig = Figure(figsize=(3.2 * len(pairs), 2.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(pairs)))
        for i, ax in enumerate(axes):
            ax.imshow(gates[i].T, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
            ax.set_yticks(range(gates.shape[2]))
            ax.set_yticklabels(list(MODULES[: gates.shape[2]]) + [""] * (gates.shape[2] - len(MODULES)))
            ax.set_xticks(range(gates.shape[1]))
            ax.set_xlabel("step")
            ax.set_title(f"{a[i]} + {b[i]}: answers {answers[i]}", fontsize=9)
        fig.suptitle("routing: the controller's gate over the modules at each step (white 0, black 1)", fontsize=10)
        return plots.save_figure(fig, path)


# ---------------------------------------------------------------------- comparing models

SPLIT_LABELS = {"seen": "seen pairs", "heldout": "held-out pairs", "extrap": "larger b,\nsums <= 15",
                "extrap_full": "larger b,\nall sums"}


def plot_comparison(panels: dict[str, dict[str, Sequence[dict[str, Any]]]], path: str | os.PathLike,
                    splits: Sequence[str] = SPLITS, title: str = "") -> Path:
    """Accuracy of several models on each split, one panel per input form: ``workspace_accuracy.png``
    of ``benchmarks/workspace.py``.

    Args:
      panels: panel title -> model label -> one dict per seed, holding the
        accuracy of every split in ``splits`` and ``params``. A bar is the mean
        over seeds, its error bar the range.
      path: the PNG file to write.
      splits: the splits, in order (the keys of each dict).
      title: an optional figure title.

    Returns:
      The path written.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6 * len(panels), 4.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
    for ax, (panel, models) in zip(axes, panels.items()):
        width = 0.8 / max(len(models), 1)
        x = np.arange(len(splits))
        for i, (label, runs) in enumerate(models.items()):
            values = np.array([[r[s] for s in splits] for r in runs], float)  # [seed, split]
            mean, low, high = values.mean(0), values.min(0), values.max(0)
            pos = x - 0.4 + width * (i + 0.5)
            ax.bar(pos, mean, width * 0.92, color=colours[i % len(colours)],
                   label=f"{label}, {int(runs[0]['params']):,} params")
            if len(runs) > 1:
                ax.errorbar(pos, mean, yerr=[mean - low, high - mean], fmt="none", ecolor="black", lw=0.8,
                            capsize=2)
        ax.set_xticks(x, [SPLIT_LABELS.get(s, s) for s in splits], fontsize=8)
        # Room above 1.0 for the legend, so that it never hides a bar.
        ax.set_ylim(0, 1.2)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_title(panel, fontsize=10)
        ax.legend(fontsize=8, loc="upper center", ncol=2, frameon=False)
    axes[0].set_ylabel("accuracy (mean, range over seeds)")
    if title:
        fig.suptitle(title, fontsize=10)
    return plots.save_figure(fig, path)


# ---------------------------------------------------------------------- the train command


def probe_inputs(model: nnx.Module) -> tuple[str, int]:
    """How the model takes (a, b) and how many answers it scores, by abstract evaluation (no FLOPs)."""
    model.eval()
    graphdef, state = nnx.split(model)
    candidates = {"ints": (jnp.zeros((1,), jnp.int32),) * 2,
                  "images": (jnp.zeros((1,) + IMAGE_SHAPE, jnp.float32),) * 2}
    tried = []
    for mode, xs in candidates.items():
        try:
            out = jax.eval_shape(lambda s, *xs: nnx.merge(graphdef, s)(*xs), state, *xs)
        except Exception as e:  # any failure means "not called this way"; reported below
            tried.append(f"{mode}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        first = out[0] if isinstance(out, (tuple, list)) else out
        if getattr(first, "ndim", 0) in (2, 3) and first.shape[0] == 1:
            return mode, int(first.shape[-1])
        tried.append(f"{mode}: returned shape {getattr(first, 'shape', type(first).__name__)}, "
                     "expected [batch, answers] or [batch, steps, answers]")
    raise ValueError("the circuit does not take a + b as model(a, b) with a, b: int[] or a, b: [8, 8] images, "
                     "scoring the answers (first output [answers] or [steps, answers]):\n  " + "\n  ".join(tried))


def task_for_cli(args: Any, model: nnx.Module) -> tuple[WorkspaceAdd, str, str]:
    """``--task workspace``: (task, output-directory tag, description) for ``model``."""
    inputs, n_out = probe_inputs(model)
    task = WorkspaceAdd(inputs=inputs, seed=args.seed, batch_size=args.batch_size)
    if n_out != task.n_numbers:
        raise ValueError(f"it scores {n_out} answers; sums of two digits 0..{task.max_digit} need "
                         f"{task.n_numbers} (0..{task.n_numbers - 1})")
    n = {k: len(v["a"]) for k, v in task.pairs.items()}
    what = "digit images" if inputs == "images" else "digits"
    description = (f"a + b on {what}: {n['seen']} seen pairs (b <= {task.max_train_b}), {n['heldout']} held out "
                   f"(test), {n['extrap']} with b in {min(task.extrap_b)}..{max(task.extrap_b)} for extrapolation; "
                   f"{parameter_count(model):,} parameters")
    return task, inputs, description
