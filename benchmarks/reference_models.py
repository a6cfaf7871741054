"""Each zoo model against its reference implementation in PyTorch, on the same random weights.

For GPT-2, BERT, ViT-B/16, ResNet-18, U-Net, the LLaMA decoder, Mamba (one MambaMixer layer, and the
model) and MLP-Mixer this builds the reference at the small configuration that the circuit's header
states (`--size ...`), gives every parameter random values at which the activations stay of order one
(`randomise`; batch norm's running statistics random too), copies them into the compiled circuit by
name, runs both in float32 on the same random inputs in eval mode, and prints the largest |difference|
of the outputs. Goal: every model under 1e-5, with no workaround in the circuit. As a control, each
copied array in turn is reversed along its last axis: the difference must then exceed 1e-5 for every
one of them (but the two that cannot matter, NO_EFFECT: BERT's key bias and the Mixer's token-mixing
output bias), so a wrong name or layout of any weight would show.

The references are the libraries' own modules: Hugging Face transformers' GPT2LMHeadModel, BertModel,
LlamaForCausalLM (grouped-query attention, rotary embeddings) and MambaForCausalLM (whose MambaMixer
runs its torch path on CPU, the sequential scan), torchvision's VisionTransformer and resnet18, and
timm's MlpMixer (the class mixer_s16_224 builds). The U-Net is milesial/Pytorch-UNet
(unet/unet_parts.py and unet/unet_model.py at commit 21d7850, bilinear=False) written out below, with
its fixed widths 64..1024 made a parameter so that the small configuration can be narrower.

The names map as the headers of the circuits say: a few substitutions per model (`repeat.h.` is
`transformer.h.{i}.` for every copy i of the repeat), then `W`, `scale` -> `weight` and `b` -> `bias`.
Weights change layout only: nn.Linear's [out, in] is transposed to the circuit's [in..., out...] (HF's
Conv1D in GPT-2 is already [in, out]), conv weights [cout, cin/g, k...] become [k..., cin/g, cout],
transposed-conv weights [cin, cout, k...] become [k..., cin, cout], and every array is then reshaped
to the circuit's axes (the fused [3 * d, d] attention projections to [d, three, heads, dk]).

Needs torch, torchvision, transformers and timm, none of them a dependency of diagrammar or its tests:

    pip install torch torchvision transformers timm
    python benchmarks/reference_models.py [--only gpt2,resnet] [--seed 0] [--batch 2] [--seq 8] [--no-control]

The full-size parameter counts of the references are printed with `--counts` (built on torch's meta
device: nothing is allocated).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no kernels or weights from a hub: every module is built here
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import diagrammar

TOLERANCE = 1e-5


# ---------------------------------------------------------------- the circuits' small configurations


def small_sizes(stem: str) -> dict[str, int]:
    header = []
    for line in (ROOT / "circuits" / f"{stem}.circuit").read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    return {k: int(v) for k, v in re.findall(r"--size (\w+)=(\d+)", "\n".join(header))}


# ---------------------------------------------------------------- milesial/Pytorch-UNet, written out


def milesial_unet(n_channels: int = 3, n_classes: int = 2, width: int = 64):
    """UNet(n_channels, n_classes, bilinear=False) of milesial/Pytorch-UNet (commit 21d7850), its parts
    as unet/unet_parts.py writes them; `width` is its hard-coded 64 (the widths double down to 16 * 64)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class DoubleConv(nn.Module):
        def __init__(self, in_channels, out_channels, mid_channels=None):
            super().__init__()
            if not mid_channels:
                mid_channels = out_channels
            self.double_conv = nn.Sequential(
                nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(mid_channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True))

        def forward(self, x):
            return self.double_conv(x)

    class Down(nn.Module):
        def __init__(self, in_channels, out_channels):
            super().__init__()
            self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

        def forward(self, x):
            return self.maxpool_conv(x)

    class Up(nn.Module):
        def __init__(self, in_channels, out_channels):  # bilinear=False
            super().__init__()
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels)

        def forward(self, x1, x2):
            x1 = self.up(x1)
            diff_y = x2.size()[2] - x1.size()[2]
            diff_x = x2.size()[3] - x1.size()[3]
            x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
            return self.conv(torch.cat([x2, x1], dim=1))

    class OutConv(nn.Module):
        def __init__(self, in_channels, out_channels):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

        def forward(self, x):
            return self.conv(x)

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            w = width
            self.inc = DoubleConv(n_channels, w)
            self.down1 = Down(w, 2 * w)
            self.down2 = Down(2 * w, 4 * w)
            self.down3 = Down(4 * w, 8 * w)
            self.down4 = Down(8 * w, 16 * w)
            self.up1 = Up(16 * w, 8 * w)
            self.up2 = Up(8 * w, 4 * w)
            self.up3 = Up(4 * w, 2 * w)
            self.up4 = Up(2 * w, w)
            self.outc = OutConv(w, n_classes)

        def forward(self, x):
            x1 = self.inc(x)
            x2 = self.down1(x1)
            x3 = self.down2(x2)
            x4 = self.down3(x3)
            x5 = self.down4(x4)
            x = self.up1(x5, x4)
            x = self.up2(x, x3)
            x = self.up3(x, x2)
            x = self.up4(x, x1)
            return self.outc(x)

    return UNet()


# ---------------------------------------------------------------- the models


def _hf(cls, config):
    config._attn_implementation = "eager"  # the attention written out in the model's file
    return cls(config)


def build(stem: str, sizes: dict[str, int]):
    """The reference module of `stem` at the circuit's small configuration `sizes`, in PyTorch."""
    import torchvision
    import transformers as tf
    from timm.models.mlp_mixer import MlpMixer

    s = sizes
    if stem == "gpt2":
        cfg = tf.GPT2Config(vocab_size=s["vocab"], n_embd=s["d"], n_head=s["heads"], n_layer=s["layers"],
                            n_positions=1024, n_inner=4 * s["d"], bos_token_id=0, eos_token_id=0)
        return _hf(tf.GPT2LMHeadModel, cfg)
    if stem == "bert":
        cfg = tf.BertConfig(vocab_size=s["vocab"], hidden_size=s["d"], num_attention_heads=s["heads"],
                            num_hidden_layers=s["layers"], intermediate_size=4 * s["d"], hidden_act="gelu",
                            max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12)
        return _hf(tf.BertModel, cfg)
    if stem == "llama":
        cfg = tf.LlamaConfig(vocab_size=s["vocab"], hidden_size=s["d"], num_attention_heads=s["heads"],
                             num_key_value_heads=s["kv_heads"], intermediate_size=s["ffn"],
                             num_hidden_layers=s["layers"], rms_norm_eps=1e-5, tie_word_embeddings=False,
                             bos_token_id=0, eos_token_id=0)
        return _hf(tf.LlamaForCausalLM, cfg)
    if stem in ("mamba", "mamba_mixer"):
        cfg = tf.MambaConfig(vocab_size=s["vocab"], hidden_size=s["d"], state_size=16, expand=2, conv_kernel=4,
                             num_hidden_layers=s["layers"], layer_norm_epsilon=1e-5, use_bias=False,
                             use_conv_bias=True, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
                             pad_token_id=0)
        return tf.MambaForCausalLM(cfg)
    if stem == "vit":
        return torchvision.models.VisionTransformer(
            image_size=s["hh"], patch_size=16, num_layers=s["layers"], num_heads=s["heads"], hidden_dim=s["d"],
            mlp_dim=s["ffn"], num_classes=s["classes"])
    if stem == "resnet":
        return torchvision.models.resnet18(num_classes=s["classes"])
    if stem == "unet":
        return milesial_unet(width=s["ch1"])
    if stem == "mixer":
        return MlpMixer(num_classes=s["classes"], img_size=s["hh"], patch_size=16, num_blocks=s["layers"],
                        embed_dim=s["d"], mlp_ratio=(s["tokens_mlp"] / s["d"], s["channels_mlp"] / s["d"]))
    raise KeyError(stem)


# Our dotted weight name -> the reference's state_dict key: substitutions applied in order, `{i}` for the
# copy of a repeat, then the last part (W, b, scale, bias, running_mean, running_var; a param keeps its name).
NAMES = {
    "gpt2": [(r"^repeat\.h\.", "transformer.h.{i}."), (r"^(wte|wpe)$", r"transformer.\1.weight"),
             (r"^ln_f\.", "transformer.ln_f.")],
    "bert": [(r"^repeat\.layer\.", "encoder.layer.{i}."), (r"layer_norm", "LayerNorm"),
             (r"position_embeddings$", "position_embeddings.weight")],
    "vit": [(r"^repeat\.encoder_layer\.", "encoder.layers.encoder_layer_{i}."), (r"^pos_embedding$", "encoder.pos_embedding"),
            (r"in_proj\.weight$", "in_proj_weight"), (r"in_proj\.bias$", "in_proj_bias"), (r"mlp\.linear_1", "mlp.0"),
            (r"mlp\.linear_2", "mlp.3"), (r"^ln\.", "encoder.ln."), (r"^head\.", "heads.head.")],
    "resnet": [(r"layer(\d)_(\d)", r"layer\1.\2"), (r"downsample_(\d)", r"downsample.\1")],
    "unet": [(r"maxpool_conv\.", "maxpool_conv.1."), (r"\bconv1\.", "double_conv.0."), (r"\bbn1\.", "double_conv.1."),
             (r"\bconv2\.", "double_conv.3."), (r"\bbn2\.", "double_conv.4."), (r"^outc\.", "outc.conv.")],
    "llama": [(r"^repeat\.layer\.", "model.layers.{i}."), (r"^(embed_tokens|norm)\.", r"model.\1.")],
    "mamba": [(r"^repeat\.layer\.", "backbone.layers.{i}."), (r"^embeddings$", "backbone.embeddings.weight"),
              (r"^norm_f\.", "backbone.norm_f.")],
    "mamba_mixer": [(r"^", "backbone.layers.0.mixer.")],
    "mixer": [(r"^repeat\.blocks\.", "blocks.{i}."), (r"^stem\.", "stem.proj.")],
}
LAST = {"W": "weight", "b": "bias", "scale": "weight", "bias": "bias", "running_mean": "running_mean",
        "running_var": "running_var"}
# weights that cannot move the outputs, in the reference as in the circuit: left out of the control
NO_EFFECT = {
    ("bert", "repeat.layer.attention.self.key.b"): "adds query . b to every score of a query: the softmax removes it",
    ("mixer", "repeat.blocks.mlp_tokens.fc2.b"): "a constant per patch across d, which every layernorm over d removes",
}
PREFIX = {"mamba_mixer": "backbone.layers.0.mixer."}  # the part of the reference that the circuit is
# reference entries with no weight of their own in the circuit
UNUSED = {"gpt2": {"lm_head.weight"},  # tied to transformer.wte.weight
          "mamba": {"lm_head.weight"}}  # tied to backbone.embeddings.weight


def reference_key(stem: str, name: str, op: str) -> str:
    if op != "param":
        head, last = name.rsplit(".", 1)
        name = f"{head}.{LAST[last]}" if last in LAST else name
    for pattern, repl in NAMES[stem]:
        name = re.sub(pattern, repl, name)
    return name


def convert(array: np.ndarray, op: str, last: str, shape: tuple[int, ...], conv1d: bool) -> np.ndarray:
    """A reference array in the circuit's layout (without the repeat axis)."""
    if op == "linear" and last == "W" and not conv1d:
        array = array.T  # nn.Linear is [out, in]; HF's Conv1D is already [in, out]
    elif op == "conv" and last == "W":
        array = array.transpose(*range(2, array.ndim), 1, 0)  # [cout, cin/g, k...] -> [k..., cin/g, cout]
    elif op == "conv_transpose" and last == "W":
        array = array.transpose(*range(2, array.ndim), 0, 1)  # [cin, cout, k...] -> [k..., cin, cout]
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{array.shape} does not fit {shape}")
    return array.reshape(shape)


def randomise(module, seed: int) -> None:
    """Random weights at which every activation stays of order one, so that a wrong name, layout or operation
    shows in the outputs: maps with a fan-in (linear, conv, the attention's in_proj) N(0, 1/fan_in), tables
    N(0, 1), norm scales 1 + N(0, 0.1^2), biases N(0, 0.1^2), other constant parameters (D, a zero class token)
    plus N(0, 0.1^2); the rest keeps the reference's own initialisation (A_log, learned positions). Batch
    norm's running means N(0, 0.2^2) and variances uniform in [0.5, 1.5]."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)

    def normal(p, std, mean=0.0):
        p.copy_(mean + std * torch.randn(p.shape, generator=g))

    done = set()
    with torch.no_grad():
        for _, m in module.named_modules():
            own = dict(m.named_parameters(recurse=False))
            kind = type(m).__name__
            for pname, p in own.items():
                fan = None
                if pname == "bias":
                    normal(p, 0.1)
                elif "Norm" in kind:  # LayerNorm, BatchNorm2d, LlamaRMSNorm, MambaRMSNorm
                    normal(p, 0.1, mean=1.0)
                elif isinstance(m, nn.Embedding):
                    normal(p, 1.0)
                elif isinstance(m, nn.Linear):
                    fan = m.in_features
                elif kind == "Conv1D":  # Hugging Face's [in, out] linear map
                    fan = p.shape[0]
                elif isinstance(m, nn.modules.conv._ConvNd):  # a transposed conv: the taps that reach an output
                    taps = int(np.prod(m.kernel_size)) / (int(np.prod(m.stride)) if m.transposed else 1)
                    fan = (p.shape[0] if m.transposed else p.shape[1]) * taps
                elif isinstance(m, nn.MultiheadAttention) and pname == "in_proj_weight":
                    fan = m.embed_dim
                elif pname == "in_proj_bias":
                    normal(p, 0.1)
                else:
                    continue
                if fan is not None:
                    normal(p, fan ** -0.5)
                done.add(id(p))
        for _, p in module.named_parameters():
            flat = p.detach().flatten()
            if id(p) not in done and flat.numel() and bool((flat == flat[0]).all()):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.2 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


def copy_weights(stem: str, reference, model, diagram) -> list[str]:
    """Every weight and running statistic of `model` from `reference`, by name; returns unused reference keys."""
    import torch

    state = {k: v.detach().to(torch.float32).numpy() for k, v in reference.state_dict().items()}
    ops = {path: box.op for path, box in diagram.walk()}
    used = set()
    for name, weight, copies in list(diagram.weights()) + list(diagram.state()):
        op = "param" if ops.get(name) == "param" else ops[name.rsplit(".", 1)[0]]  # else the box owning the weight
        last = name.rsplit(".", 1)[-1]
        key = reference_key(stem, name, op)
        target = model.weight(name)
        n = copies.value
        per_copy = tuple(target[...].shape[1:] if "{i}" in key else target[...].shape)
        keys = [key.format(i=i) for i in range(n)] if "{i}" in key else [key]
        missing = [k for k in keys if k not in state]
        if missing:
            raise KeyError(f"{stem}: {name} -> {missing[0]}, which the reference does not have")
        arrays = [convert(state[k], op, last, per_copy, conv1d=stem == "gpt2") for k in keys]
        target[...] = np.stack(arrays) if "{i}" in key else arrays[0]
        used.update(keys)
    return sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked")
                  and k not in UNUSED.get(stem, ()) and k.startswith(PREFIX.get(stem, "")))


# ---------------------------------------------------------------- one comparison


CIRCUIT = {"gpt2": ("gpt2", "GPT2"), "bert": ("bert", "BERT"), "vit": ("vit", "ViT"), "resnet": ("resnet", "ResNet18"),
           "unet": ("unet", "UNet"), "llama": ("llama", "Llama"), "mamba_mixer": ("mamba", "MambaMixer"),
           "mamba": ("mamba", "Mamba"), "mixer": ("mixer", "Mixer")}
ORDER = ["gpt2", "bert", "vit", "resnet", "unet", "llama", "mamba_mixer", "mamba", "mixer"]
REFERENCE = {
    "gpt2": "transformers GPT2LMHeadModel", "bert": "transformers BertModel (+ pooler)",
    "vit": "torchvision VisionTransformer", "resnet": "torchvision resnet18",
    "unet": "milesial/Pytorch-UNet UNet, by hand", "llama": "transformers LlamaForCausalLM",
    "mamba_mixer": "transformers MambaMixer (torch path)", "mamba": "transformers MambaForCausalLM",
    "mixer": "timm MlpMixer",
}


def reference_run(stem, reference, sizes, rng, batch, seq):
    """Random inputs (as numpy arrays, in the circuit's order) and the reference's outputs on them."""
    import torch

    with torch.no_grad():
        if stem in ("gpt2", "llama", "mamba"):
            tokens = rng.integers(0, sizes["vocab"], (batch, seq))
            return [tokens.astype(np.int32)], [reference(input_ids=torch.from_numpy(tokens)).logits]
        if stem == "bert":
            tokens = rng.integers(0, sizes["vocab"], (batch, seq))
            segment = rng.integers(0, 2, (batch, seq))
            mask = rng.random((batch, seq)) < 0.75
            mask[:, 0] = True  # no sequence of padding only
            out = reference(input_ids=torch.from_numpy(tokens), token_type_ids=torch.from_numpy(segment),
                            attention_mask=torch.from_numpy(mask.astype(np.int64)))
            return [tokens.astype(np.int32), segment.astype(np.int32), mask], [out.last_hidden_state, out.pooler_output]
        if stem == "mamba_mixer":
            x = rng.standard_normal((batch, seq, sizes["d"])).astype(np.float32)
            return [x], [reference.backbone.layers[0].mixer(torch.from_numpy(x))]
        img = rng.standard_normal((batch, 3, sizes["hh"], sizes["ww"])).astype(np.float32)  # [batch, c, hh, ww]
        return [img], [reference(torch.from_numpy(img))]


def run_ours(model, inputs) -> list:
    import jax

    out = model(*inputs)
    return jax.block_until_ready(list(out) if isinstance(out, tuple) else [out])


def max_diff(ours, theirs) -> float:
    return max(float(np.abs(np.asarray(o, np.float64) - t.numpy().astype(np.float64)).max()) for o, t in zip(ours, theirs))


def compare(stem: str, seed: int, batch: int, seq: int, control: bool = True) -> dict:
    import torch
    from flax import nnx

    file, circuit = CIRCUIT[stem]
    sizes = small_sizes(file)
    torch.manual_seed(seed)
    reference = build(stem, sizes).eval()
    randomise(reference, seed)
    program = diagrammar.load(ROOT / "circuits" / f"{file}.circuit", sizes=sizes)
    diagram = program[circuit]
    free = {a: seq for a in diagram.free_sizes()}
    model = diagram.compile(rngs=nnx.Rngs(seed), **free)
    unused = copy_weights(stem, reference, model, diagram)
    model.eval()

    inputs, theirs = reference_run(stem, reference, sizes, np.random.default_rng(seed), batch, seq)
    diff = max_diff(run_ours(model, inputs), theirs)
    # the control: each copied array in turn reversed along its last axis (a wrong layout) must show
    weakest = None
    for name, _, _ in list(diagram.weights()) + list(diagram.state()) if control else []:
        if (stem, name) in NO_EFFECT:
            continue
        p = model.weight(name)
        kept = p[...]
        p[...] = kept[..., ::-1]
        moved = max_diff(run_ours(model, inputs), theirs)
        p[...] = kept
        if weakest is None or moved < weakest[1]:
            weakest = (name, moved)
    scale = max(float(t.abs().max()) for t in theirs)
    return {"stem": stem, "circuit": f"{file}.{circuit}", "reference": REFERENCE[stem], "diff": diff, "scale": scale,
            "control": weakest[1] if weakest else None, "weakest": weakest[0] if weakest else None,
            "params": int(diagram.parameter_count().value),
            "reference_params": sum(p.numel() for n, p in reference.named_parameters()
                                    if not (stem == "mamba_mixer" and not n.startswith("backbone.layers.0.mixer."))),
            "unused": unused}


def full_counts() -> None:
    """The references at full size on torch's meta device: their parameter counts against the circuits'."""
    import torch
    import torchvision
    import transformers as tf
    from timm.models.mlp_mixer import MlpMixer

    def count(m):
        return sum(p.numel() for p in m.parameters())

    with torch.device("meta"):
        refs = {
            ("gpt2", "GPT2"): tf.GPT2LMHeadModel(tf.GPT2Config()),
            ("bert", "BERT"): tf.BertModel(tf.BertConfig()),
            ("vit", "ViT"): torchvision.models.vit_b_16(),
            ("resnet", "ResNet18"): torchvision.models.resnet18(),
            ("unet", "UNet"): milesial_unet(),
            ("llama", "Llama"): tf.LlamaForCausalLM(tf.LlamaConfig(
                vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                num_attention_heads=32, num_key_value_heads=4, tie_word_embeddings=False)),
            ("mamba", "Mamba"): tf.MambaForCausalLM(tf.MambaConfig(
                vocab_size=50280, hidden_size=768, state_size=16, num_hidden_layers=24, expand=2, conv_kernel=4)),
            ("mixer", "Mixer"): MlpMixer(num_classes=1000, img_size=224, patch_size=16, num_blocks=8, embed_dim=512),
        }
    print(f"{'circuit':<16} {'reference':>15} {'circuit count':>15}")
    for (file, circuit), ref in refs.items():
        ours = diagrammar.load(ROOT / "circuits" / f"{file}.circuit")[circuit].parameter_count().value
        mark = "" if ours == count(ref) else "   DIFFERENT"
        print(f"{file + '.' + circuit:<16} {count(ref):>15,} {ours:>15,}{mark}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated: " + ",".join(ORDER))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=8, help="length of the token sequences (GPT-2, BERT, LLaMA, Mamba)")
    ap.add_argument("--counts", action="store_true", help="also print the references' full-size parameter counts")
    ap.add_argument("--no-control", action="store_true", help="skip the control (one run per weight, most of the time)")
    args = ap.parse_args(argv)
    try:
        import timm
        import torch
        import torchvision
        import transformers
    except ImportError as e:
        print(f"needs torch, torchvision, transformers and timm ({e}): pip install torch torchvision transformers timm")
        return 2
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    stems = args.only.split(",") if args.only else ORDER
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, transformers {transformers.__version__}, "
          f"timm {timm.__version__}; float32, eval mode, batch {args.batch}, sequences of {args.seq}, seed {args.seed}")
    print(f"{'model':<17} {'reference':<37} {'params':>10} {'max |ref|':>9} {'max |diff|':>10} {'control':>8}  result")
    failed = 0
    for stem in stems:
        start = time.perf_counter()
        r = compare(stem, args.seed, args.batch, args.seq, control=not args.no_control)
        ok = (r["diff"] < TOLERANCE and (r["control"] is None or r["control"] > TOLERANCE) and not r["unused"]
              and r["params"] == r["reference_params"])
        failed += not ok
        note = "" if r["params"] == r["reference_params"] else f"  (reference has {r['reference_params']:,} parameters)"
        if r["control"] is not None and r["control"] <= TOLERANCE:
            note += f"  (reversing {r['weakest']} moves nothing)"
        if r["unused"]:
            note += f"  (reference weights not copied: {', '.join(r['unused'])})"
        print(f"{r['circuit']:<17} {r['reference']:<37} {r['params']:>10,} {r['scale']:>9.3g} {r['diff']:>10.2e} "
              f"{'-' if r['control'] is None else format(r['control'], '.1e'):>8}  {'pass' if ok else 'FAIL'} ({time.perf_counter() - start:.1f} s){note}", flush=True)
    print(f"(control: the smallest max |diff| when any one copied array is reversed along its last axis, which must "
          f"exceed {TOLERANCE:g}: a wrong layout of any weight would show)")
    if args.counts:
        print()
        full_counts()
    print(f"\n{len(stems) - failed} of {len(stems)} under {TOLERANCE:g}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
