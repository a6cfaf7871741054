"""Train stage: the modular addition task and its grokking analysis (Fourier spectra, IPR).

Networks that grok ``(a + b) mod p`` end up computing with a few Fourier
frequencies of the inputs (Nanda et al. 2023; Gromov 2023). The analysis here
measures that in the first-layer or embedding weights: the norm per frequency,
the key frequencies holding most of it, and the inverse participation ratio.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from . import plots

SPECTRUM_NAME = "fourier.png"
MAX_P = 8192  # the task holds all p * p pairs: 67M at most, about 800 MB of int32


@dataclasses.dataclass
class ModAdd:
    """Modular addition: every pair ``(a, b)`` in ``[0, p)^2`` labelled ``(a + b) mod p``.

    The pairs are split into train and test sets by a permutation seeded with
    ``seed``. The model is called as ``model(a, b)`` with int32 arrays of shape
    ``[batch]`` (``inputs="ab"``, e.g. ModAddMLP) or as ``model(tokens)`` with
    ``tokens = [a, b, p]`` of shape ``[batch, 3]`` (``inputs="tokens"``, e.g.
    GrokTransformer, where token ``p`` is "="); either way it returns logits
    ``[batch, p]``.

    Args:
      p: the modulus.
      train_frac: the fraction of the ``p * p`` pairs used for training.
      seed: seeds the train/test split.
      loss_kind: ``"ce"`` (cross-entropy) or ``"mse"`` (squared error against one-hot).
      batch_size: None for full batch (as in the grokking papers).
      inputs: ``"ab"`` or ``"tokens"``, see above.
      fourier_param: the name (dotted path) of the weight to analyse; None
        finds it with :func:`find_input_weight`.
      key_mass: key frequencies are the fewest that hold this share of the
        non-constant squared norm.
    """

    p: int = 97
    train_frac: float = 0.5
    seed: int = 0
    loss_kind: str = "ce"
    batch_size: int | None = None
    inputs: str = "ab"
    fourier_param: str | None = None
    key_mass: float = 0.9

    def __post_init__(self) -> None:
        if self.p < 2:
            raise ValueError(f"p must be at least 2, got {self.p}")
        if self.p > MAX_P:
            raise ValueError(f"p = {self.p:,} gives {self.p * self.p:,} pairs to hold in memory; p can be at most "
                             f"{MAX_P:,}")
        if not 0.0 < self.train_frac < 1.0:
            raise ValueError(f"train_frac must be strictly between 0 and 1, got {self.train_frac}")
        if self.loss_kind not in ("ce", "mse"):
            raise ValueError(f"loss must be 'ce' or 'mse', got {self.loss_kind!r}")
        if self.inputs not in ("ab", "tokens"):
            raise ValueError(f"inputs must be 'ab' or 'tokens', got {self.inputs!r}")
        a, b = np.divmod(np.arange(self.p * self.p), self.p)
        order = np.random.default_rng(self.seed).permutation(self.p * self.p)
        n_train = min(max(int(round(self.train_frac * self.p * self.p)), 1), self.p * self.p - 1)
        tr, te = order[:n_train], order[n_train:]
        labels = (a + b) % self.p
        self.train_data = {"a": jnp.asarray(a[tr], jnp.int32), "b": jnp.asarray(b[tr], jnp.int32),
                           "label": jnp.asarray(labels[tr], jnp.int32)}
        self.test_data = {"a": jnp.asarray(a[te], jnp.int32), "b": jnp.asarray(b[te], jnp.int32),
                          "label": jnp.asarray(labels[te], jnp.int32)}

    @property
    def config(self) -> dict[str, Any]:
        """What determines the data; a resumed run must match it."""
        return {"task": "modadd", "p": self.p, "train_frac": self.train_frac, "seed": self.seed,
                "loss": self.loss_kind, "batch_size": self.batch_size, "inputs": self.inputs}

    def model_inputs(self, batch: dict[str, jax.Array]) -> tuple[jax.Array, ...]:
        """The positional arguments of the model for ``batch``."""
        if self.inputs == "ab":
            return batch["a"], batch["b"]
        eq = jnp.full_like(batch["a"], self.p)
        return (jnp.stack([batch["a"], batch["b"], eq], axis=-1),)

    def loss(self, model: nnx.Module, batch: dict[str, jax.Array],
             train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Mean loss and accuracy of ``model`` on ``batch``."""
        logits = model(*self.model_inputs(batch)).astype(jnp.float32)
        labels = batch["label"]
        if self.loss_kind == "ce":
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        else:
            loss = jnp.mean(jnp.sum(jnp.square(logits - jax.nn.one_hot(labels, self.p)), axis=-1))
        acc = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
        return loss, {"acc": acc}

    def _weight(self, model: nnx.Module) -> tuple[str, np.ndarray, int] | None:
        try:
            return find_input_weight(model, self.p, name=self.fourier_param)
        except LookupError:
            if self.fourier_param is not None:
                raise
            return None

    def analyse(self, model: nnx.Module) -> dict[str, Any]:
        """Fourier metrics of the input weights: key frequencies and IPR."""
        found = self._weight(model)
        if found is None:
            return {}
        name, w, axis = found
        s = fourier_spectrum(w, self.p, axis=axis, key_mass=self.key_mass)
        return {"fourier_param": name, "key_freqs": s["key_freqs"], "top_freqs": s["top_freqs"],
                "ipr": s["ipr"], "ipr_neuron": s["ipr_neuron"]}

    def report(self, model: nnx.Module, out_dir: str | os.PathLike) -> list[Path]:
        """Write the bar chart of norm per frequency (``fourier.png``)."""
        found = self._weight(model)
        if found is None:
            return []
        name, w, axis = found
        s = fourier_spectrum(w, self.p, axis=axis, key_mass=self.key_mass)
        title = f"Fourier spectrum of {name} over p = {self.p}: IPR {s['ipr']:.3f}, per neuron {s['ipr_neuron']:.3f}"
        return [plots.plot_spectrum(s["norms"], Path(out_dir) / SPECTRUM_NAME, s["key_freqs"], title)]


def fourier_basis(p: int) -> np.ndarray:
    """Orthonormal real DFT basis over ``Z_p``, rows ordered ``1, cos 1, sin 1, cos 2, sin 2, ...``.

    Returns:
      ``F`` of shape ``[p, p]`` with ``F @ F.T == I``; row ``0`` is the constant,
      rows ``2k - 1`` and ``2k`` are cos and sin of frequency ``k``. For even
      ``p`` the last row is the cosine of frequency ``p // 2`` (its sine is zero).

    Example:
      >>> F = fourier_basis(5)
      >>> bool(np.allclose(F @ F.T, np.eye(5)))
      True
    """
    x = np.arange(p)
    rows = [np.full(p, 1.0 / np.sqrt(p))]
    for k in range(1, p // 2 + 1):
        c = np.cos(2 * np.pi * k * x / p)
        rows.append(c / np.linalg.norm(c))
        if 2 * k != p:
            s = np.sin(2 * np.pi * k * x / p)
            rows.append(s / np.linalg.norm(s))
    return np.stack(rows)


def _frequency_of_row(p: int) -> np.ndarray:
    # Row r of fourier_basis(p) belongs to frequency (r + 1) // 2.
    return (np.arange(p) + 1) // 2


def fourier_spectrum(w: Any, p: int, axis: int | None = None, key_mass: float = 0.9) -> dict[str, Any]:
    """Norm per frequency of ``w`` over its axis of size ``p``, key frequencies and IPR.

    Args:
      w: an array with one axis of size ``p`` (e.g. ``[p, hidden]`` or ``[2, p, hidden]``).
      p: the modulus.
      axis: which axis is over ``Z_p``; None picks the only (or first) axis of size ``p``.
      key_mass: key frequencies are the fewest frequencies ``k >= 1`` whose squared
        norms add up to this share of the total over ``k >= 1``.

    Returns:
      A dict with ``norms`` (list, index ``k = 0 .. p//2``; ``k = 0`` is the
      constant), ``key_freqs`` (sorted list), ``ipr`` (inverse participation
      ratio of the squared-norm distribution over ``k >= 1``: 1 for a single
      frequency, ``1/n`` for ``n`` equal ones) and ``ipr_neuron`` (the same per
      column of ``w``, i.e. per neuron as in Gromov 2023, averaged with weights
      by each column's norm so that dead neurons do not count); ``top_freqs``
      lists up to 8 key frequencies, strongest first.

    Example:
      >>> x = np.arange(11)
      >>> s = fourier_spectrum(np.cos(2 * np.pi * 3 * x / 11)[:, None], 11)
      >>> s["key_freqs"], round(s["ipr"], 6)
      ([3], 1.0)
    """
    w = np.asarray(w, dtype=np.float64)
    if axis is None:
        axes = [i for i, n in enumerate(w.shape) if n == p]
        if not axes:
            raise ValueError(f"no axis of size p = {p} in a weight of shape {list(w.shape)}")
        axis = axes[0]
    cols = np.moveaxis(w, axis, 0).reshape(p, -1)
    coeff = fourier_basis(p) @ cols  # [p rows of the basis, columns]
    freq = _frequency_of_row(p)
    power = np.zeros((p // 2 + 1, cols.shape[1]))
    np.add.at(power, freq, coeff**2)  # [frequency, column]
    total = power.sum(axis=1)
    norms = np.sqrt(total)
    nonconst = total[1:]
    mass = nonconst.sum()
    if mass <= 0:
        return {"norms": norms.tolist(), "key_freqs": [], "ipr": 0.0, "ipr_neuron": 0.0, "top_freqs": []}
    share = nonconst / mass
    order = np.argsort(-share, kind="stable")
    n_key = int(np.searchsorted(np.cumsum(share[order]), key_mass - 1e-12) + 1)
    key = sorted(int(k) + 1 for k in order[:n_key])
    col_power = power[1:]
    col_mass = col_power.sum(axis=0)
    live = col_mass > 0
    col_ipr = np.sum(col_power[:, live] ** 2, axis=0) / col_mass[live] ** 2
    ipr_neuron = float(np.sum(col_ipr * col_mass[live]) / col_mass[live].sum())
    return {"norms": norms.tolist(), "key_freqs": key, "ipr": float(np.sum(share**2)), "ipr_neuron": ipr_neuron,
            "top_freqs": [int(k) + 1 for k in order[: min(n_key, 8)]]}


def find_input_weight(model: nnx.Module, p: int, name: str | None = None) -> tuple[str, np.ndarray, int]:
    """Find the embedding or first-layer weight of a modular-arithmetic model.

    Candidates are ``nnx.Param``s of rank >= 2 with an axis over ``Z_p``: an
    axis of size ``p``; of size ``p + 1`` (an embedding whose extra row is the
    "=" token; its first ``p`` rows are kept); or, as an input axis, of size
    ``2p`` or ``3p`` (one-hot inputs concatenated rather than stacked; split
    into ``[k, p]``). Weights are laid out ``[IN..., OUT]``, so an input axis
    beats the last axis (this skips the unembedding ``[hidden, p]``); then
    names containing "embed" win, then the weight with the most entries.

    Args:
      model: the module to search.
      p: the modulus.
      name: a dotted path (e.g. ``"layer1.kernel"``) to use instead of searching.

    Returns:
      ``(dotted name, weight as numpy with one axis of size p, index of that axis)``.

    Raises:
      LookupError: nothing fits (or ``name`` does not exist or does not fit).
    """
    found = []
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        dotted = ".".join(str(k) for k in path)
        if name is not None and dotted != name:
            continue
        value = np.asarray(var.get_value() if isinstance(var, nnx.Variable) else var)
        form = _p_axis(value, p)
        if form is None:
            if name is not None:
                raise LookupError(f"{name} has shape {list(value.shape)}: no axis over Z_{p}")
            continue
        w, axis, is_last, exact = form
        found.append(((is_last, "embed" not in dotted.lower(), not exact, -value.size, dotted), dotted, w, axis))
    if not found:
        raise LookupError(f"no parameter named {name}" if name is not None
                          else f"no parameter with an axis of size p = {p}")
    _, dotted, w, axis = min(found, key=lambda t: t[0])
    return dotted, w, axis


def _p_axis(w: np.ndarray, p: int) -> tuple[np.ndarray, int, bool, bool] | None:
    """View ``w`` with one axis of size p: (weight, axis, that axis is the last, no reshaping needed)."""
    if w.ndim < 2:
        return None
    for i, n in enumerate(w.shape):
        if n == p:
            return w, i, i == w.ndim - 1, True
    for i, n in enumerate(w.shape):
        if n == p + 1:
            return np.take(w, np.arange(p), axis=i), i, i == w.ndim - 1, False
    for i, n in enumerate(w.shape[:-1]):
        if n in (2 * p, 3 * p):
            return w.reshape(w.shape[:i] + (n // p, p) + w.shape[i + 1:]), i + 1, False, False
    return None


class ModAddMLP(nnx.Module):
    """ModAddMLP of LANGUAGE.md written by hand: the reference for tests and benchmarks.

    ``x = stack(onehot(a, p), onehot(b, p), along=arg)``, ``h = relu(linear(x,
    (arg, p) -> hidden))``, ``return linear(h, hidden -> p)``, with weights laid
    out ``W1: [arg, p, hidden]``, ``W2: [hidden, p]`` and LeCun-normal init over
    the input axes, as the circuit declares.

    ``lookup=True`` computes the first layer as ``W1[0, a] + W1[1, b]``, the
    same numbers as the one-hot product without its ``2p``-wide matmul (about
    1.7x faster per step at p = 97 on CPU).
    """

    def __init__(self, p: int = 97, hidden: int = 512, *, rngs: nnx.Rngs, lookup: bool = False):
        init = jax.nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2)
        self.p, self.lookup = p, lookup
        self.w1 = nnx.Param(init(rngs.params(), (2, p, hidden)))
        self.b1 = nnx.Param(jnp.zeros((hidden,)))
        self.w2 = nnx.Param(jax.nn.initializers.lecun_normal()(rngs.params(), (hidden, p)))
        self.b2 = nnx.Param(jnp.zeros((p,)))

    def __call__(self, a: jax.Array, b: jax.Array) -> jax.Array:
        w1 = self.w1[...]
        if self.lookup:
            pre = w1[0][a] + w1[1][b]
        else:
            x = jnp.stack([jax.nn.one_hot(a, self.p), jax.nn.one_hot(b, self.p)], axis=-2)
            pre = jnp.einsum("...ip,iph->...h", x, w1)
        h = jax.nn.relu(pre + _lead(self.b1[...], pre.ndim))
        out = h @ self.w2[...]
        return out + _lead(self.b2[...], out.ndim)


def _lead(bias: jax.Array, ndim: int) -> jax.Array:
    # Explicit leading axes, so the model also runs under jax_numpy_rank_promotion="raise".
    return jnp.reshape(bias, (1,) * (ndim - 1) + bias.shape)


# --------------------------------------------------------------------------- the command line


def probe_inputs(model: nnx.Module, inputs: str = "auto") -> tuple[str, int]:
    """How to call ``model`` and its output size p, found by abstract evaluation (no FLOPs).

    Args:
      model: the compiled circuit.
      inputs: ``"ab"``, ``"tokens"`` or ``"auto"`` (try both).

    Returns:
      ``(inputs, p)``.

    Raises:
      ValueError: the model takes neither form, or does not return ``[batch, p]``.
    """
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


def task_for_cli(args: Any, model: nnx.Module) -> tuple[ModAdd, str, str]:
    """``--task modadd``: (task, output-folder tag, description) for ``model``; raises ValueError if it does not fit."""
    inputs, p = probe_inputs(model, args.inputs)
    if args.p is not None and p != args.p:
        raise ValueError(f"it returns {p} logits, but --p is {args.p}")
    task = ModAdd(p=p, train_frac=args.train_frac, seed=args.seed, loss_kind=args.loss,
                  batch_size=args.batch_size, inputs=inputs)
    call = "model(a, b)" if inputs == "ab" else "model(tokens)"
    description = (f"modular addition mod {p} ({task.train_data['a'].shape[0]} train / "
                   f"{task.test_data['a'].shape[0]} test pairs, {call})")
    return task, f"p{p}", description
