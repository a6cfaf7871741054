"""Optimisation passes (diagrammar/passes): each rewrite leaves the module's values and gradients as they were.

For every zoo circuit where a pass fires, the module compiled with that pass alone is compared with the one
compiled with none, on the same random weights (same seed, so the same draws) and random inputs: forward and
gradients within 1e-5. Small configurations from each file's header keep it fast; the larger models are slow.
"""
from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import diagrammar
from diagrammar.errors import InvalidArgument
from diagrammar.ir import TupleType
from diagrammar.passes import PASSES, optimise

ROOT = Path(__file__).resolve().parents[2]
CIRCUITS = ROOT / "circuits"
FREE = 4  # free axes (seq, n, steps, ...) are bound to this
# files whose header names no small configuration: sizes that keep each comparison to a few seconds
SMALL = {"transformer": {"d": 16}, "attention": {"d": 16}, "grok_transformer": {"d": 32, "mlp": 64},
         "pointer": {"hd": 16, "att": 16}}
SLOW_CIRCUITS = {("transformer", "Decoder")}  # four blocks: its Block is tested fast
SLOW_FILES = {"mixer", "bert", "gpt2", "llama", "mamba", "vit", "workspace", "workspace_baselines"}


def _small_sizes(path: Path) -> dict[str, int]:
    head = " ".join(line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#"))
    return {k: int(v) for k, v in re.findall(r"--size (\w+)=(\d+)", head)} or SMALL.get(path.stem, {})


def _load(stem: str, name: str):
    path = CIRCUITS / f"{stem}.circuit"
    return diagrammar.load(path, sizes=_small_sizes(path) or None)[name]


def _cases():
    """(stem, circuit, pass) for every circuit defined in a zoo file and every pass that fires on it."""
    out = []
    for path in sorted(CIRCUITS.glob("*.circuit")):
        program = diagrammar.load(path, sizes=_small_sizes(path) or None)
        for name in program:
            d = program[name]
            if d.span is None or Path(d.span.file).name != path.name:
                continue  # defined in a file it uses: tested there
            bindings = {a: FREE for a in d.free_sizes()}
            for p in PASSES:
                rewrites = optimise(d, bindings, {q: q == p for q in PASSES})[1]
                if not rewrites:
                    continue
                big = path.stem in SLOW_FILES or (path.stem, name) in SLOW_CIRCUITS
                if big and not any(_own_level(d, r.where) for r in rewrites):
                    continue  # every rewrite is inside a circuit it calls, which has a case of its own
                marks = [pytest.mark.slow] if big else []
                out.append(pytest.param(path.stem, name, p, marks=marks, id=f"{path.stem}.{name}-{p}"))
    return out


def _own_level(d, where: str) -> bool:
    """Whether a rewrite at `where` (a dotted box path) is in `d`'s own body (through `repeat`s), not
    inside a sub-circuit it calls. The big models are compared only where a pass fires at their own
    level: that keeps the suite in its time budget, and each callee is compared on its own."""
    parts = where.split(".") if where else []
    diagram = d
    for i, part in enumerate(parts):
        box = next((b for b in diagram.boxes if b.name == part), None)
        if box is None or box.body is None or i == len(parts) - 1:
            return True
        if box.op != "repeat":
            return False
        diagram = box.body
    return True


CASES = _cases()


def _input(t, sizes, rng, batch):
    """A random value of type `t` (a tuple type gives a tuple) with a leading batch axis."""
    if isinstance(t, TupleType):
        return tuple(_input(item, sizes, rng, batch) for item in t.items)
    shape = (batch,) + tuple(a.size.evaluate(sizes) for a in t.axes)
    if t.dtype == "float":
        return jnp.asarray(rng.standard_normal(shape), jnp.float32)
    if t.dtype == "bool":
        mask = rng.random(shape) < 0.7
        if mask.ndim > 1:
            mask[..., 0] = True  # never a row of padding only
        return jnp.asarray(mask)
    return jnp.asarray(rng.integers(0, 2, shape), jnp.int32)


def _inputs(d, rng, batch=2):
    sizes = {a: FREE for a in d.free_sizes()}
    return [_input(port.type, sizes, rng, batch) for port in d.inputs]


def _value_and_grads(model, inputs):
    """The output and the gradient of a fixed random function of it with respect to every weight (jitted)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def run(params, rest, inputs):
        def loss(params):
            out = nnx.merge(graphdef, params, rest)(*inputs)
            leaves = jax.tree.leaves(out)
            return sum(jnp.sum(jnp.sin(3.0 * leaf.astype(jnp.float32) + i)) for i, leaf in enumerate(leaves)), out
        return jax.value_and_grad(loss, has_aux=True)(params)

    (_, out), grads = run(params, rest, inputs)
    return out, grads


def _compare(d, passes_on, seed=0, batch=2):
    sizes = {a: FREE for a in d.free_sizes()}
    inputs = _inputs(d, np.random.default_rng(seed), batch)
    optimised = d.compile(rngs=nnx.Rngs(seed), passes=passes_on, **sizes)
    plain = d.compile(rngs=nnx.Rngs(seed), passes=False, **sizes)
    assert optimised._plan.rewrites, "the pass should fire"
    assert not plain._plan.rewrites
    for m in (optimised, plain):
        m.eval()
    out_a, grads_a = _value_and_grads(optimised, inputs)
    out_b, grads_b = _value_and_grads(plain, inputs)
    for a, b in zip(jax.tree.leaves(out_a), jax.tree.leaves(out_b)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    flat_a, flat_b = nnx.to_flat_state(grads_a), nnx.to_flat_state(grads_b)
    assert [k for k, _ in flat_a] == [k for k, _ in flat_b]  # the same weights, by the same names
    for (key, ga), (_, gb) in zip(flat_a, flat_b):
        scale = max(1.0, float(jnp.abs(gb[...]).max()))
        np.testing.assert_allclose(np.asarray(ga[...]) / scale, np.asarray(gb[...]) / scale, atol=1e-5,
                                   err_msg=".".join(map(str, key)))
    return optimised, plain


@pytest.mark.parametrize("stem,name,pass_name", CASES)
def test_pass_keeps_values_and_gradients(stem, name, pass_name):
    _compare(_load(stem, name), {q: q == pass_name for q in PASSES})


def test_every_pass_fires_somewhere_in_the_zoo():
    assert {c.values[2] for c in CASES} == set(PASSES)


def test_grok_transformer_rewrites():
    d = _load("grok_transformer", "GrokTransformer")
    runnable, rewrites = optimise(d)
    assert [(w.pass_name, w.where) for w in rewrites] == [
        ("take_early", ""), ("take_early", ""), ("take_early", ""),
        ("multiply_sum", "attention"), ("multiply_sum", "attention")]  # fuse_siblings is off by default
    # the MLP runs on the last position alone, and so does the residual add after the attention
    names = [b.name for b in runnable.boxes]
    assert names.index("out:take") == names.index("x@2") - 1 == names.index("attention") + 1
    assert runnable.box("out:take").inputs == ("x",)
    assert runnable.box("x@2").inputs == ("x#out:take", "x:attention")
    assert runnable.wire("x:attention").type.names == ("d",)  # the call returns one position
    assert runnable.box("linear_2").outputs == ("x:linear@2",)
    assert runnable.wire("x:linear@2").type.names == ("d",)  # was [pos, d]
    assert runnable.box("x@3").outputs == ("out:take",)
    # inside the attention: the query, scores, mixing and output projection run for the last position;
    # keys and values read every position, in one product
    att = runnable.box("attention").body
    assert att.box("out:take").inputs == ("x",) and att.box("q").inputs == ("x#out:take",)
    assert att.wire("a").type.names == ("heads", "key")
    assert dict(att.box("a:causal").attr("pass")) == {"take_early": 2}  # masks keys after position 2 of 3
    fused = optimise(d, passes={"fuse_siblings": True})[0].box("attention").body
    assert fused.box("k").outputs == ("k:linear", "k+v:fused") and fused.box("v").inputs == ("k+v:fused",)
    # weights, their names, shapes, order and initialisers do not change; the body gains one take
    assert list(runnable.weights()) == list(d.weights())
    assert sorted(b.name for _, b in runnable.walk()) == sorted([b.name for _, b in d.walk()] + ["out:take"])
    assert optimise(d, passes=False) == (d, ())


def test_fuse_siblings_is_off_unless_asked_for():
    d = _load("grok_transformer", "GrokTransformer")
    names = {w.pass_name for w in optimise(d)[1]}
    assert "fuse_siblings" not in names and "take_early" in names
    assert "fuse_siblings" in {w.pass_name for w in optimise(d, passes=True)[1]}
    assert "fuse_siblings" in {w.pass_name for w in optimise(d, passes={"fuse_siblings": True})[1]}
    assert "fuse_siblings" not in {w.pass_name for w in optimise(d, passes={"take_early": False})[1]}


SINK = """
axis pos = 3, d = 8
circuit Mix(x: [pos, d]) -> [pos, d]:
    return DROP(linear(x, d -> d)RATE)
circuit Top(x: [pos, d]) -> [d]:
    return take(x + Mix(x), pos, -1)
"""


@pytest.mark.parametrize("drop", ["", "dropout"])
def test_a_take_sinks_into_a_call_only_when_it_draws_no_random_numbers(drop):
    d = diagrammar.parse(SINK.replace("DROP", drop).replace("RATE", ", 0.1" if drop else ""))["Top"]
    runnable, rewrites = optimise(d)
    call = next(b for b in runnable.boxes if b.op == "call")
    if drop:  # dropout's mask is keyed by box position inside the call: the body stays as written
        assert not rewrites and runnable == d
    else:
        assert runnable.wire(call.outputs[0]).type.names == ("d",)
        assert [b.op for b in call.body.boxes][0] == "take"
        _compare(d, True)


def test_multiply_sum_depends_on_the_sizes():
    d = diagrammar.load(CIRCUITS / "attention.circuit")["CausalSelfAttention"]  # seq = dk = 16: a product kernel
    assert not optimise(d, passes={"fuse_siblings": False})[1]
    small = diagrammar.load(CIRCUITS / "attention.circuit", sizes={"seq": 3})["CausalSelfAttention"]
    assert len(optimise(small, passes={"fuse_siblings": False})[1]) == 2


def test_all_passes_together_in_training_mode():
    """Dropout keys fold in each box's position; the passes move no box, so training-mode outputs agree too."""
    d = diagrammar.load(CIRCUITS / "transformer.circuit", sizes={"seq": 4, "d": 16})["Block"]
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4, 16)), jnp.float32)
    on = d.compile(rngs=nnx.Rngs(0), passes=True)  # every pass, also those off by default
    off = d.compile(rngs=nnx.Rngs(0), passes=False)
    assert {w.pass_name for w in on._plan.rewrites} == {"fuse_siblings", "multiply_sum"}
    call = nnx.jit(lambda m, x: m(x))
    first, again = np.asarray(call(on, x)), np.asarray(call(off, x))  # one call each: the same dropout keys
    np.testing.assert_allclose(first, again, rtol=1e-5, atol=1e-5)
    on.eval()
    assert not np.allclose(first, np.asarray(call(on, x)))  # dropout was active


def test_checkpoint_saved_with_passes_loads_without(tmp_path):
    from diagrammar.train import checkpoint

    d = _load("grok_transformer", "GrokTransformer")
    on = d.compile(rngs=nnx.Rngs(1))
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 114, (5, 3)), jnp.int32)
    path = checkpoint.save(tmp_path / checkpoint.CHECKPOINT_NAME, nnx.state(on), {"step": 3})
    off = d.compile(rngs=nnx.Rngs(2), passes=False)  # other weights, until the checkpoint is loaded
    assert not np.allclose(np.asarray(on(tokens)), np.asarray(off(tokens)))
    state, _ = checkpoint.load(path, nnx.state(off))
    nnx.update(off, state)
    np.testing.assert_allclose(np.asarray(on(tokens)), np.asarray(off(tokens)), rtol=1e-5, atol=1e-5)


def test_capture_sees_the_wires_the_user_named():
    d = _load("grok_transformer", "GrokTransformer")
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 114, (5, 3)), jnp.int32)
    on, off = d.compile(rngs=nnx.Rngs(0)), d.compile(rngs=nnx.Rngs(0), passes=False)
    for name in ("attention.q", "attention.k", "attention.v", "attention.a"):
        a, b = on(tokens, capture=[name])[1][name], off(tokens, capture=[name])[1][name]
        assert a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert on.diagram is d  # the module reports the diagram as checked, not the rewritten one


@pytest.mark.parametrize("bad,message", [({"fuse": False}, "no optimisation pass 'fuse'"),
                                         ({"fuse_siblings": 0}, "must be True or False"),
                                         ("all", "must be a dict")])
def test_a_bad_switch_is_refused(bad, message):
    d = _load("grok_transformer", "GrokTransformer")
    with pytest.raises(InvalidArgument, match=message):
        d.compile(rngs=nnx.Rngs(0), passes=bad)
