"""Train stage: a + b through a global workspace (Chateau-Laurent and VanRullen 2025), and its baselines.

The model adds two digits by writing ``a`` into a workspace and applying an
Increment module ``b`` times, an LSTM controller choosing at every step which
module's output is broadcast (``circuits/workspace.circuit``). The baselines
(``circuits/workspace_baselines.circuit``) read ``(a, b)`` and emit the sum
directly. Every model is trained on the same split
(:func:`~diagrammar.train.tasks_data.workspace_split`):

- seen pairs (b <= 6 by default, minus the held-out ones) for training;
- held-out pairs (b <= 6, never trained on): interpolation, ``test_acc``;
- extrapolation pairs (b in 7..9, more increments than ever trained, sums at
  most 15 so that every single increment on the way was trained):
  ``extrap_acc``; ``extrap_full_acc`` adds the sums 16..18 that need
  increments training never showed.

Two input forms, found from the circuit's signature: ``ints`` (``a, b:
int[]``, the digits as numbers) and ``images`` (``a, b: [8, 8]``,
scikit-learn's bundled handwritten digits; training draws fresh images of
the train pool at every step, evaluation uses images of the other half of
each class that training never shows, except for the seen pairs, whose images
come from the train pool). A model returns logits (or log-probabilities) over
the answers ``0..N-1``, or a tuple whose first item is that (the workspace
models also return their routing, ``[steps, module]``).
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


def _first(out: Any) -> jax.Array:
    """The scores of a model's output: the output itself, or the first item of a tuple."""
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out


def answer_logits(out: Any, steps: int) -> jax.Array:
    """Scores ``[batch, answers]`` of a model's output, read after ``steps`` controller steps.

    A model that returns its answer after every step (``[batch, steps, answers]``,
    the workspace circuits) is read after ``steps`` of them (its last step if it
    has fewer); one that returns ``[batch, answers]`` is read as it is.
    """
    x = _first(out)
    if x.ndim == 3:
        x = x[:, min(steps, x.shape[1]) - 1]
    return x


def parameter_count(model: nnx.Module) -> int:
    """Number of trained numbers (``nnx.Param`` entries) in ``model``."""
    return int(sum(np.size(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))


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
      module_weight: weight of the modules' own objectives, for a model that
        exposes its modules (see :meth:`loss`); 0 trains on the answer alone.
    """

    inputs: str = "ints"
    seed: int = 0
    max_digit: int = 9
    heldout_frac: float = 0.2
    extrap_b: tuple[int, ...] = (7, 8, 9)
    batch_size: int | None = None
    eval_draws: int = 10
    module_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.inputs not in ("ints", "images"):
            raise ValueError(f"inputs must be 'ints' or 'images', got {self.inputs!r}")
        self.extrap_b = tuple(int(b) for b in self.extrap_b)
        split = td.workspace_split(self.max_digit, self.heldout_frac, self.extrap_b, self.seed)
        self.n_numbers = int(split["n_numbers"])
        self.max_train_b = int(split["max_train_b"])
        # Controller steps a workspace model gets: input, b increments, output.
        self.horizons = {"seen": self.max_train_b + 2, "heldout": self.max_train_b + 2,
                         "extrap": max(self.extrap_b) + 2, "extrap_full": max(self.extrap_b) + 2}
        # The increments k -> k + 1 that the training pairs go through (0 -> 1 .. 14 -> 15).
        seen = split["train"]
        self.increments = np.array(sorted({k for a, b in zip(seen["a"].tolist(), seen["b"].tolist())
                                           for k in range(a, a + b)}), np.int32)
        self.pairs = {"seen": split["train"], "heldout": split["heldout"],
                      "extrap": split["extrap"], "extrap_full": split["extrap_full"]}
        if self.inputs == "ints":
            self.sets = {k: {"a": v["a"], "b": v["b"], "sum": v["sum"]} for k, v in self.pairs.items()}
            self.sample = None
        else:
            if self.batch_size is None:
                self.batch_size = 128
            pools = td.split_digit_images(td.load_digit_images(), seed=self.seed)
            rng = np.random.default_rng(self.seed + 1)
            self.sets = {}
            for k, v in self.pairs.items():
                pool = pools["train" if k == "seen" else "test"]
                a = np.repeat(v["a"], self.eval_draws)
                b = np.repeat(v["b"], self.eval_draws)
                self.sets[k] = {"a": a, "b": b, "sum": a + b,
                                "a_img": td.digit_image_batch(rng, pool, a),
                                "b_img": td.digit_image_batch(rng, pool, b)}
            # The train pool sorted by label, for drawing images inside the compiled step.
            tr = pools["train"]
            order = np.argsort(tr["labels"], kind="stable")
            counts = np.bincount(tr["labels"], minlength=self.max_digit + 1)
            self._pool = jnp.asarray(tr["images"][order])
            self._starts = jnp.asarray(np.concatenate([[0], np.cumsum(counts)[:-1]]), jnp.int32)
            self._counts = jnp.asarray(counts, jnp.int32)
            self._seen_a = jnp.asarray(self.pairs["seen"]["a"])
            self._seen_b = jnp.asarray(self.pairs["seen"]["b"])
            self.sample = self._sample_images
        self.sets = {k: {n: jnp.asarray(x) for n, x in v.items()} for k, v in self.sets.items()}
        self.train_data = self.sets["seen"]
        self.test_data = self.sets["heldout"]

    # ------------------------------------------------------------------ the Task protocol

    @property
    def config(self) -> dict[str, Any]:
        """What determines the data; a resumed run must match it."""
        return {"task": "workspace", "inputs": self.inputs, "seed": self.seed, "max_digit": self.max_digit,
                "heldout_frac": self.heldout_frac, "extrap_b": list(self.extrap_b),
                "batch_size": self.batch_size, "eval_draws": self.eval_draws, "module_weight": self.module_weight}

    def model_inputs(self, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        """The positional arguments of the model for ``batch``."""
        if self.inputs == "ints":
            return batch["a"], batch["b"]
        return batch["a_img"], batch["b_img"]

    def loss(self, model: nnx.Module, batch: dict[str, jax.Array],
             train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Cross-entropy of the answer, and exact accuracy, on ``batch`` (seen or held-out pairs).

        A workspace model is read after ``max_train_b + 2`` steps: it is trained
        to answer within the steps the largest trained b needs. A model whose
        output tuple goes on, after the answers and the routing, with the
        addends as its Input module perceived them (``[2, answers]``) and its
        Increment module's table (``[answers, answers]``, row k: the code after
        k; ``WorkspaceDigits``) also learns its modules' own objectives, added
        with weight ``module_weight``: perceive each digit as its number, and
        map each number k the training pairs increment to k + 1.
        """
        out = model(*self.model_inputs(batch))
        logits = answer_logits(out, self.horizons["seen"]).astype(jnp.float32)
        labels = batch["sum"]
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        aux = {"acc": jnp.mean(jnp.argmax(logits, axis=-1) == labels)}
        if self.module_weight and isinstance(out, (tuple, list)) and len(out) >= 4:
            codes, succ = out[2], out[3]
            addends = jnp.stack([batch["a"], batch["b"]], axis=-1)  # [batch, 2]
            perceive = -jnp.mean(jnp.log(jnp.take_along_axis(codes, addends[..., None], axis=-1) + 1e-6))
            table = succ.reshape((-1,) + succ.shape[-2:])[0]  # the same for every example
            k = jnp.asarray(self.increments)
            increment = -jnp.mean(jnp.log(table[k, k + 1] + 1e-6))
            loss = loss + self.module_weight * (perceive + increment)
            aux["perceive_acc"] = jnp.mean(jnp.argmax(codes, axis=-1) == addends)
            aux["increment_acc"] = jnp.mean(jnp.argmax(table[k], axis=-1) == k + 1)
        return loss, aux

    def _sample_images(self, key: jax.Array) -> dict[str, jax.Array]:
        """A fresh training batch: seen pairs, each digit drawn as a random image of the train pool."""
        k_pair, k_a, k_b = jax.random.split(key, 3)
        i = jax.random.randint(k_pair, (self.batch_size,), 0, self._seen_a.shape[0])
        a, b = self._seen_a[i], self._seen_b[i]

        def images(k, labels):
            u = jax.random.uniform(k, labels.shape)
            pick = self._starts[labels] + jnp.minimum((u * self._counts[labels]).astype(jnp.int32),
                                                      self._counts[labels] - 1)
            return self._pool[pick]

        return {"a": a, "b": b, "sum": a + b, "a_img": images(k_a, a), "b_img": images(k_b, b)}

    def analyse(self, model: nnx.Module) -> dict[str, Any]:
        """Extrapolation accuracies and the parameter count, logged at every evaluation."""
        acc = self.evaluate(model, ("extrap", "extrap_full"))
        return {"extrap_acc": acc["extrap"], "extrap_full_acc": acc["extrap_full"],
                "params": parameter_count(model)}

    def report(self, model: nnx.Module, out_dir: str | os.PathLike) -> list[Path]:
        """Accuracy by b for every split (``workspace_accuracy.png``); the routing, if the model returns it."""
        out = Path(out_dir)
        files = [self.plot_accuracy(model, out / ACCURACY_NAME)]
        routing = self.plot_routing(model, out / ROUTING_NAME)
        if routing is not None:
            files.append(routing)
        return files

    # ------------------------------------------------------------------ evaluation

    def predict(self, model: nnx.Module, split: str) -> np.ndarray:
        """The model's answers (argmax) on every example of ``split``, after ``horizons[split]`` steps."""
        model.eval()
        logits = answer_logits(_forward(model, *self.model_inputs(self.sets[split])), self.horizons[split])
        return np.asarray(jnp.argmax(logits, axis=-1))

    def evaluate(self, model: nnx.Module, splits: Sequence[str] = SPLITS) -> dict[str, float]:
        """Exact accuracy on each split (``seen``, ``heldout``, ``extrap``, ``extrap_full``)."""
        return {s: float(np.mean(self.predict(model, s) == np.asarray(self.sets[s]["sum"]))) for s in splits}

    def accuracy_by_b(self, model: nnx.Module) -> dict[str, dict[int, float]]:
        """Per split, accuracy for each value of b."""
        out = {}
        for s in ("seen", "heldout", "extrap_full"):
            ok = self.predict(model, s) == np.asarray(self.sets[s]["sum"])
            b = np.asarray(self.sets[s]["b"])
            out[s] = {int(v): float(ok[b == v].mean()) for v in np.unique(b)}
        return out

    def plot_accuracy(self, model: nnx.Module, path: Path) -> Path:
        from matplotlib.figure import Figure

        by_b = self.accuracy_by_b(model)
        acc = self.evaluate(model)
        fig = Figure(figsize=(7, 3.5), layout="constrained")
        ax = fig.subplots()
        names = {"seen": "seen pairs", "heldout": "held-out pairs", "extrap_full": "larger b (extrapolation)"}
        for s, marker in (("seen", "o"), ("heldout", "s"), ("extrap_full", "^")):
            xs = sorted(by_b[s])
            ax.plot(xs, [by_b[s][x] for x in xs], marker=marker, label=names[s])
        ax.axvline(self.max_train_b + 0.5, color="gray", ls=":", lw=1)
        ax.set_xlabel("b (increments needed)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left")
        ax.set_title(f"a + b: seen {acc['seen']:.3f}, held-out {acc['heldout']:.3f}, "
                     f"extrapolation {acc['extrap']:.3f} (sums <= {self.max_digit + self.max_train_b}), "
                     f"{acc['extrap_full']:.3f} (all)", fontsize=9)
        return plots.save_figure(fig, path)

    def plot_routing(self, model: nnx.Module, path: Path,
                     pairs: Sequence[tuple[int, int]] = ((3, 0), (2, 4), (5, 6), (4, 9))) -> Path | None:
        """The controller's gates over steps for a few pairs, if the model returns them."""
        from matplotlib.figure import Figure

        a = np.array([p[0] for p in pairs], np.int32)
        b = np.array([p[1] for p in pairs], np.int32)
        if self.inputs == "ints":
            xs = (jnp.asarray(a), jnp.asarray(b))
        else:
            pool = td.split_digit_images(td.load_digit_images(), seed=self.seed)["test"]
            rng = np.random.default_rng(self.seed + 2)
            xs = (jnp.asarray(td.digit_image_batch(rng, pool, a)), jnp.asarray(td.digit_image_batch(rng, pool, b)))
        model.eval()
        out = _forward(model, *xs)
        if not isinstance(out, (tuple, list)) or len(out) < 2 or np.ndim(out[1]) != 3:
            return None
        answers = np.asarray(jnp.argmax(answer_logits(out, self.horizons["extrap"]), axis=-1))
        gates = np.asarray(out[1])  # [pair, steps, module]
        fig = Figure(figsize=(3.2 * len(pairs), 2.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(pairs)))
        for i, ax in enumerate(axes):
            ax.imshow(gates[i].T, aspect="auto", cmap="Greys", vmin=0, vmax=1)
            ax.set_yticks(range(gates.shape[2]))
            ax.set_yticklabels(["input", "increment", "output"][: gates.shape[2]])
            ax.set_xlabel("step")
            ax.set_title(f"{a[i]} + {b[i]}: answered {answers[i]}", fontsize=9)
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
            out = jax.eval_shape(lambda s, *xs: _first(nnx.merge(graphdef, s)(*xs)), state, *xs)
        except Exception as e:  # any failure means "not called this way"; reported below
            tried.append(f"{mode}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        if getattr(out, "ndim", 0) in (2, 3) and out.shape[0] == 1:
            return mode, int(out.shape[-1])
        tried.append(f"{mode}: returned shape {getattr(out, 'shape', type(out).__name__)}, expected [batch, answers] or [batch, steps, answers]")
    raise ValueError("the circuit does not take a + b inputs as model(a, b) with a, b: int[] or a, b: [8, 8] "
                     "images, returning scores over the answers (or a tuple starting with them):\n  "
                     + "\n  ".join(tried))


def task_for_cli(args: Any, model: nnx.Module) -> tuple[WorkspaceAdd, str, str]:
    """``--task workspace``: (task, output-directory tag, description) for ``model``."""
    inputs, n_out = probe_inputs(model)
    task = WorkspaceAdd(inputs=inputs, seed=args.seed, batch_size=args.batch_size)
    if n_out < task.n_numbers:
        raise ValueError(f"it scores {n_out} answers, but sums of two digits need {task.n_numbers} (0..18)")
    n = {k: len(v["a"]) for k, v in task.pairs.items()}
    description = (f"a + b on {'digit images' if inputs == 'images' else 'digits'} ({n['seen']} seen pairs with "
                   f"b <= {task.max_train_b}, {n['heldout']} held out; extrapolation: {n['extrap']} pairs with b in "
                   f"{min(task.extrap_b)}..{max(task.extrap_b)}), {parameter_count(model):,} parameters")
    return task, inputs, description
