"""The zoo's published architectures, written as their reference implementations compute them.

Each file checks at its published size with the published parameter count, exactly (full-size models are
only checked here, never compiled). Each file's header comment states a small configuration
(`--size d=32 --size layers=2 ...`); at it every model compiles and runs, and GPT-2 and ResNet-18 are
compared with forward passes written out in NumPy on the same weights (ResNet-18 in eval mode, with
random running statistics). `benchmarks/reference_models.py` compares all of them with PyTorch.

Where the counts are published (each also recounted from the reference's module by that benchmark):
  GPT-2 small 124,439,808 (Hugging Face gpt2, GPT2LMHeadModel with its tied head); BERT-base 109,482,240
  (bert-base-uncased, BertModel with the pooler); ViT-B/16 86,567,656 (torchvision vit_b_16); ResNet-18
  11,689,512 trainable and 9,600 running statistics (torchvision resnet18); U-Net 31,037,698 and 11,776
  (milesial/Pytorch-UNet, UNet(3, 2)); Mixer-S/16 18,528,264 (timm mixer_s16_224); TinyLlama-1.1B
  1,100,048,384 (a LLaMA decoder with grouped-query attention); mamba-130m 129,135,360 and one of its
  MambaMixer layers 3,770,880 (Hugging Face MambaForCausalLM).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import diagrammar

ROOT = Path(__file__).resolve().parent.parent
CIRCUITS = ROOT / "circuits"

# (file stem, circuit): (parameters, running statistics)
PUBLISHED = {
    ("gpt2", "GPT2"): (124_439_808, 0),
    ("bert", "BERT"): (109_482_240, 0),
    ("vit", "ViT"): (86_567_656, 0),
    ("resnet", "ResNet18"): (11_689_512, 9_600),
    ("unet", "UNet"): (31_037_698, 11_776),
    ("mixer", "Mixer"): (18_528_264, 0),
    ("llama", "Llama"): (1_100_048_384, 0),
    ("mamba", "Mamba"): (129_135_360, 0),
    ("mamba", "MambaMixer"): (3_770_880, 0),
}
MODELS = sorted(PUBLISHED)
FREE = 8  # the free sequence axes (seq, t) are bound to this


def header(stem: str) -> str:
    lines = []
    for line in (CIRCUITS / f"{stem}.circuit").read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return " ".join(lines)


def small_sizes(stem: str) -> dict[str, int]:
    """The small configuration the file's header states: `--size d=32 --size layers=2 ...`."""
    return {k: int(v) for k, v in re.findall(r"--size (\w+)=(\d+)", header(stem))}


def small(stem: str, name: str):
    return diagrammar.load(CIRCUITS / f"{stem}.circuit", sizes=small_sizes(stem))[name]


def compiled(d):
    from flax import nnx

    return d.compile(rngs=nnx.Rngs(0), **{a: FREE for a in d.free_sizes()})


def _jitted(model):
    """A jitted forward pass of `model` as it is now (eager dispatch of a ResNet takes seconds)."""
    import jax
    from flax import nnx

    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda state, *xs: nnx.merge(graphdef, state)(*xs))
    return lambda *xs: fn(state, *xs)


# ---------------------------------------------------------------- published sizes, checked only


@pytest.mark.parametrize("stem,name", MODELS, ids=[f"{s}.{n}" for s, n in MODELS])
def test_published_parameter_count(stem, name):
    d = diagrammar.load(CIRCUITS / f"{stem}.circuit")[name]
    params, state = PUBLISHED[(stem, name)]
    assert d.parameter_count().value == params
    assert d.state_count().value == state
    assert f"{params:,} parameters" in header(stem)  # the header says it too
    if state:
        assert f"{state:,} running statistics" in header(stem)


@pytest.mark.parametrize("stem", sorted({s for s, _ in MODELS}))
def test_header_names_a_small_configuration_that_checks(stem):
    sizes = small_sizes(stem)
    assert sizes, f"{stem}.circuit: the header should give a small configuration (--size NAME=N)"
    program = diagrammar.load(CIRCUITS / f"{stem}.circuit", sizes=sizes)
    assert program.sizes == sizes
    for s, name in MODELS:
        if s == stem:
            assert program[name].parameter_count().value < 600_000 or stem == "resnet"  # ResNet keeps its widths


# ---------------------------------------------------------------- small configurations compile and run


def _inputs(d, sizes, rng, batch=2):
    out = []
    for port in d.inputs:
        shape = (batch,) + tuple(a.size.evaluate(sizes) for a in port.type.axes)
        if port.type.dtype == "float":
            out.append(rng.standard_normal(shape).astype(np.float32))
        elif port.type.dtype == "bool":
            mask = rng.random(shape) < 0.7
            mask[..., 0] = True  # never a row of padding only
            out.append(mask)
        else:
            out.append(rng.integers(0, 2, shape).astype(np.int32))
    return out


# GPT-2 and ResNet-18 are compared with NumPy below; the Mamba model runs its MambaMixer layers
RUN = [m for m in MODELS if m[0] not in ("gpt2", "resnet") and m != ("mamba", "MambaMixer")]


@pytest.mark.parametrize("stem,name", RUN, ids=[f"{s}.{n}" for s, n in RUN])
def test_small_configuration_compiles_and_runs(stem, name):
    import jax
    from flax import nnx

    d = small(stem, name)
    model = compiled(d)
    flax_count = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert flax_count == d.parameter_count(model.sizes).value
    model.eval()
    out = _jitted(model)(*_inputs(d, model.sizes, np.random.default_rng(0)))
    for leaf, port in zip(out if isinstance(out, tuple) else (out,), getattr(d.output.type, "items", [d.output.type])):
        assert leaf.shape == (2,) + tuple(a.size.evaluate(model.sizes) for a in port.axes)
        assert np.isfinite(np.asarray(leaf)).all()


# ---------------------------------------------------------------- GPT-2 against NumPy


def _layernorm(x, g, b, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * g + b


def _gelu_tanh(x):  # Hugging Face's "gelu_new"
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def gpt2_numpy(w, tokens, heads):
    """GPT2LMHeadModel.forward (eval), written out: `w` maps the circuit's weight names to arrays."""
    layers, d = w["repeat.h.ln_1.scale"].shape
    seq = tokens.shape[-1]
    dk = d // heads
    x = w["wte"][tokens] + w["wpe"][:seq]
    causal = np.triu(np.full((seq, seq), -np.inf), 1)
    for i in range(layers):
        h = _layernorm(x, w["repeat.h.ln_1.scale"][i], w["repeat.h.ln_1.bias"][i])
        qkv = h @ w["repeat.h.attn.c_attn.W"][i].reshape(d, 3 * d) + w["repeat.h.attn.c_attn.b"][i].reshape(3 * d)
        q, k, v = (qkv[..., j * d:(j + 1) * d].reshape(*qkv.shape[:-1], heads, dk).swapaxes(-2, -3) for j in range(3))
        a = _softmax(q @ k.swapaxes(-1, -2) / np.sqrt(dk) + causal)
        o = (a @ v).swapaxes(-2, -3).reshape(x.shape)
        x = x + o @ w["repeat.h.attn.c_proj.W"][i].reshape(d, d) + w["repeat.h.attn.c_proj.b"][i]
        h = _layernorm(x, w["repeat.h.ln_2.scale"][i], w["repeat.h.ln_2.bias"][i])
        m = _gelu_tanh(h @ w["repeat.h.mlp.c_fc.W"][i] + w["repeat.h.mlp.c_fc.b"][i])
        x = x + m @ w["repeat.h.mlp.c_proj.W"][i] + w["repeat.h.mlp.c_proj.b"][i]
    return _layernorm(x, w["ln_f.scale"], w["ln_f.bias"]) @ w["wte"].T


def _randomise(model, d, rng, scale=0.1):
    """Every weight (and running statistic) of `model` set to random values; the arrays by dotted name."""
    out = {}
    for name, weight, _copies in list(d.weights()) + list(d.state()):
        p = model.weight(name)
        value = rng.standard_normal(p[...].shape).astype(np.float32) * scale
        if name.endswith(("scale", "running_var")):
            value = 1 + value if name.endswith("scale") else rng.uniform(0.5, 2.0, value.shape).astype(np.float32)
        p[...] = value
        out[name] = value.astype(np.float64)
    return out


def test_gpt2_small_matches_numpy():
    d = small("gpt2", "GPT2")
    model = compiled(d)
    weights = _randomise(model, d, np.random.default_rng(1), scale=0.2)
    assert set(weights) == {n for n, _, _ in d.weights()}
    model.eval()
    vocab, heads = small_sizes("gpt2")["vocab"], small_sizes("gpt2")["heads"]
    tokens = np.random.default_rng(2).integers(0, vocab, (3, FREE)).astype(np.int32)
    got = np.asarray(_jitted(model)(tokens))
    want = gpt2_numpy(weights, tokens, heads)  # the head is tied: logits against the token table
    assert got.shape == (3, FREE, vocab)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- ResNet-18 against NumPy, eval mode


def _conv(x, w, stride=1, pad=0):
    """x [n, cin, h, w], w [kh, kw, cin, cout] (PyTorch's [cout, cin, kh, kw] permuted (2, 3, 1, 0))."""
    kh, kw = w.shape[:2]
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho = (x.shape[2] - kh) // stride + 1
    wo = (x.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], w.shape[3], ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            out += np.einsum("nchw,co->nohw", patch, w[i, j])
    return out


def _maxpool(x, k=3, stride=2, pad=1):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    ho = (x.shape[2] - k) // stride + 1
    wo = (x.shape[3] - k) // stride + 1
    out = np.full((x.shape[0], x.shape[1], ho, wo), -np.inf)
    for i in range(k):
        for j in range(k):
            out = np.maximum(out, x[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride])
    return out


def resnet18_numpy(w, img):
    """torchvision's resnet18 forward in eval mode, written out; `w` by the circuit's weight names."""

    def bn(x, name):
        shape = (1, -1, 1, 1)
        return ((x - w[f"{name}.running_mean"].reshape(shape)) / np.sqrt(w[f"{name}.running_var"].reshape(shape) + 1e-5)
                * w[f"{name}.scale"].reshape(shape) + w[f"{name}.bias"].reshape(shape))

    def block(x, name, stride):
        out = np.maximum(0, bn(_conv(x, w[f"{name}.conv1.W"], stride, 1), f"{name}.bn1"))
        out = bn(_conv(out, w[f"{name}.conv2.W"], 1, 1), f"{name}.bn2")
        if stride != 1:
            x = bn(_conv(x, w[f"{name}.downsample_0.W"], stride, 0), f"{name}.downsample_1")
        return np.maximum(0, out + x)

    x = _maxpool(np.maximum(0, bn(_conv(img, w["conv1.W"], 2, 3), "bn1")))
    for layer in (1, 2, 3, 4):
        x = block(x, f"layer{layer}_0", 1 if layer == 1 else 2)
        x = block(x, f"layer{layer}_1", 1)
    return x.mean(axis=(2, 3)) @ w["fc.W"] + w["fc.b"]


def test_resnet18_small_matches_numpy_in_eval_mode():
    # the header's configuration (32x32 images, 10 classes) at a quarter of the widths: 16x fewer weights to draw
    widths = {"c64": 16, "c128": 32, "c256": 64, "c512": 128}
    d = diagrammar.load(CIRCUITS / "resnet.circuit", sizes=small_sizes("resnet") | widths)["ResNet18"]
    model = compiled(d)
    weights = _randomise(model, d, np.random.default_rng(3), scale=0.1)
    assert sum(v.size for k, v in weights.items() if "running" in k) == 9_600 // 4
    model.eval()  # batch norm reads the running statistics
    img = np.random.default_rng(4).standard_normal((2, 3, 32, 32)).astype(np.float32)
    got = np.asarray(_jitted(model)(img))
    want = resnet18_numpy(weights, img.astype(np.float64))
    assert got.shape == (2, 10)
    assert np.abs(want).max() > 0.1  # a comparison of something, not of zeros
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
