"""Measured overlays: time per box from a JAX profiler trace, and the RMS of every wire.

The parsing is checked on hand-made HLO text and trace events, the attribution on real compiled circuits
(each box's ops carry its path through `jax.named_scope`), the norms against a forward pass written out in
NumPy, and `diagrammar render --overlay time|train-time|norms` end to end, bad arguments included.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import diagrammar
from diagrammar.analysis import overlays as ov
from diagrammar.backends.svg.overlay import Overlay, load_overlay
from diagrammar.cli import main

NS = "{http://www.w3.org/2000/svg}"
NESTED = """axis n = 4, d = 8, e = 16

circuit Inner(x: [d]) -> [d]:
    q = linear(x, d -> e)
    return linear(relu(q), e -> d)

circuit Net(x: [n, d]) -> [n, d]:
    x = Inner(x)
    y = Inner(x)
    x = relu(x + y)
    repeat 2:
        x = Inner(x)
    return x
"""
# one box does nearly all the work (a [512] x [512, 2048] product per example), one next to it almost none
HEAVY = """axis d = 512, e = 2048

circuit Heavy(x: [d]) -> ([e], [d]):
    h = linear(x, d -> e, bias = false)
    r = relu(x)
    return (h, r)
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_source):
    """A tiny modular-addition MLP trained for 10 steps: (its .circuit file, its run folder)."""
    root = tmp_path_factory.mktemp("measured")
    src = root / "tiny.circuit"
    src.write_text(tiny_source)
    run = root / "run"
    assert main(["train", str(src), "--circuit", "Tiny", "--steps", "10", "--steps-per-call", "10",
                 "--eval-every", "10", "--no-progress", "--no-stop", "--out", str(run)]) == 0
    return src, run


# ---------------------------------------------------------------- op_name -> box


def test_box_of_walks_scopes_through_nested_boxes_and_skips_jax_own():
    d = diagrammar.parse(NESTED)["Net"]
    paths = {p for p, _ in d.walk()}
    assert {"x", "y", "y.q", "y.out", "x:add", "x@3", "repeat", "repeat.x.q"} <= paths
    assert ov.box_of("jit(forward)/x/q/dot_general", d) == "x.q"
    # `@` is spelled `#` in a scope (XLA cuts an op_name at `@`)
    assert ov.box_of("jit(forward)/x#3/jit(relu)/max", d) == "x@3"
    assert ov.box_of("jit(forward)/x:add/add", d) == "x:add"
    # JAX's own scopes between them, and the wrappers of a backward pass
    assert ov.box_of("jit(step)/transpose(jvp(repeat))/while/body/closed_call/x/q/dot_general", d) == "repeat.x.q"
    assert ov.box_of("jit(step)/jvp(y)/out:relu/jit(relu)/max", d) == "y.out:relu"
    assert ov.box_of("jit(step)/transpose(jvp(y))/transpose", d) == "y"
    assert ov.box_of("jit(forward)/repeat/while/body/dynamic_slice", d) == "repeat"
    assert ov.box_of("jit(forward)/reduce_sum", d) is None
    assert ov.box_of("", d) is None


def test_every_box_names_its_ops_in_the_compiled_hlo():
    """The lowering wraps each box in jax.named_scope: the compiled program's op_names lead back to the boxes."""
    import jax

    d = diagrammar.parse(NESTED)["Net"]
    model = d.compile(rngs=0)
    model.eval()
    text = jax.jit(lambda x: model(x)).lower(np.ones((3, 4, 8), np.float32)).as_text(dialect="hlo", debug_info=True)
    ops = ov.hlo_ops(text)
    owners = {ov.box_of(op.op_name, d) for op in ops.values() if op.op_name}
    # every linear map of every copy of Inner, the `@` names included
    assert {"x.q", "x.out", "y.q", "y.out", "x:add", "x@3", "repeat.x.q", "repeat.x.out"} <= owners


# ---------------------------------------------------------------- HLO text and traces

HLO = """HloModule jit_forward, entry_computation_layout={(f32[4,8]{1,0})->f32[4,8]{1,0}}

%fused_computation (param_0: f32[4,8]) -> f32[4,8] {
  %param_0 = f32[4,8]{1,0} parameter(0)
  ROOT %tanh.0 = f32[4,8]{1,0} tanh(%param_0), metadata={op_name="jit(forward)/h:tanh/tanh" stack_frame_id=3}
}

%fused_computation.1 (param_0.1: f32[4,8], param_1.1: f32[8,8]) -> f32[4,8] {
  %param_0.1 = f32[4,8]{1,0} parameter(0)
  %param_1.1 = f32[8,8]{1,0} parameter(1)
  %dot.1 = f32[4,8]{1,0} dot(%param_0.1, %param_1.1), lhs_contracting_dims={1}, rhs_contracting_dims={0}, metadata={op_name="jit(forward)/h/dot_general"}
  %dot.3 = f32[4,8]{1,0} dot(%dot.1, %param_1.1), lhs_contracting_dims={1}, rhs_contracting_dims={0}, metadata={op_name="jit(forward)/g/dot_general"}
  ROOT %max.1 = f32[4,8]{1,0} maximum(%dot.3, %dot.3), metadata={op_name="jit(forward)/h:relu/max"}
}

%body (p: (s32[], f32[4,8])) -> (s32[], f32[4,8]) {
  %p = (s32[], f32[4,8]{1,0}) parameter(0)
  %dot.2 = f32[4,8]{1,0} dot(%gte, %gte), lhs_contracting_dims={1}, metadata={op_name="jit(forward)/rep/while/body/closed_call/h/dot_general"}
  ROOT %tuple.1 = (s32[], f32[4,8]{1,0}) tuple(%c, %dot.2)
}

ENTRY %main.3 (x.1: f32[4,8]) -> f32[4,8] {
  %x.1 = f32[4,8]{1,0} parameter(0), metadata={op_name="x"}
  %tanh_fusion = f32[4,8]{1,0} fusion(%x.1), kind=kLoop, calls=%fused_computation
  %dot_fusion = f32[4,8]{1,0} fusion(%x.1, %w), kind=kCustom, calls=%fused_computation.1, metadata={op_name="jit(forward)/h:relu/max"}
  %while.7 = (s32[], f32[4,8]{1,0}) while(%t), condition=%cond, body=%body, metadata={op_name="jit(forward)/rep/while"}
  ROOT %copy.1 = f32[4,8]{1,0} copy(%x.1)
}
"""


def test_hlo_ops_reads_instructions_their_metadata_what_they_call_and_what_does_their_work():
    ops = ov.hlo_ops(HLO)
    assert ops["dot.2"].op_name == "jit(forward)/rep/while/body/closed_call/h/dot_general"
    assert ops["dot.2"].opcode == "dot" and ops["dot.2"].computation == "body"
    assert ops["while.7"].opcode == "while" and set(ops["while.7"].calls) == {"cond", "body"}
    # a fusion of element-wise ops counts for its root; one holding products, for the products' boxes
    assert ops["tanh_fusion"].op_name == "" and ops["tanh_fusion"].work == ("jit(forward)/h:tanh/tanh",)
    assert ops["dot_fusion"].work == ("jit(forward)/h/dot_general", "jit(forward)/g/dot_general")
    assert ops["dot.2"].work == (ops["dot.2"].op_name,)
    assert ops["copy.1"].op_name == "" and ops["copy.1"].work == ()
    assert ops["x.1"].opcode == "parameter"


def test_op_times_count_each_event_once_without_what_nests_in_it():
    """Exclusive times; an op's total is the median of its events times their number."""
    ops = {"while.7": None, "dot.2": None, "fusion": None}
    events = [
        {"ph": "X", "name": "while.7", "ts": 0.0, "dur": 100.0, "pid": 1, "tid": 1},
        {"ph": "X", "name": "dot.2", "ts": 10.0, "dur": 20.0, "pid": 1, "tid": 1},
        {"ph": "X", "name": "dot.2", "ts": 40.0, "dur": 30.0, "pid": 1, "tid": 1},
        {"ph": "X", "name": "fusion", "ts": 5.0, "dur": 50.0, "pid": 1, "tid": 2},  # another thread
        {"ph": "X", "name": "fusion", "ts": 60.0, "dur": 9.0, "pid": 1, "tid": 2},
        {"ph": "X", "name": "kernel_3", "ts": 200.0, "dur": 7.0, "pid": 2, "tid": 1, "args": {"hlo_op": "fusion"}},
        {"ph": "X", "name": "end: dot.2", "ts": 30.0, "dur": 0.1, "pid": 1, "tid": 1},  # not an op
        {"ph": "i", "name": "dot.2", "ts": 1.0, "pid": 1, "tid": 1},  # an instant, not a span
    ]
    times = ov.op_times(events, ops)
    assert times == {"while.7": 50.0, "dot.2": 50.0, "fusion": 27.0}  # fusion: 3 x median(50, 9, 7)


# ---------------------------------------------------------------- time per box, profiled


def test_profile_boxes_attributes_all_the_work_to_the_box_that_does_it():
    d = diagrammar.parse(HEAVY)["Heavy"]
    lines: list[str] = []
    t = ov.profile_boxes(d, batch=64, calls=5, progress=lines.append)
    assert any("profiling 5 calls" in line for line in lines)
    assert t.calls == 5 and t.batch == 64 and not t.train
    assert t.caption == "random initial weights (seed 0)"
    assert set(t.own) == {"h", "r"}
    assert t.own["h"] > 5 * t.own["r"]  # 1M multiply-adds per example against 512 maxima
    assert t.own["h"] > 0.5 * t.total
    assert sum(t.own.values()) + t.unattributed == pytest.approx(t.total)


def test_enclosing_boxes_hold_the_time_of_what_they_contain():
    d = diagrammar.parse(NESTED)["Net"]
    t = ov.profile_boxes(d, batch=16, calls=2)
    for outer in ("x", "y", "repeat"):
        inside = sum(v for k, v in t.own.items() if k.startswith(outer + "."))
        assert t.boxes[outer] == pytest.approx(t.own.get(outer, 0.0) + inside)
    assert {"x.q", "y.q", "repeat.x.q"} <= set(t.own)


def test_time_overlay_of_a_training_step_is_an_overlay_on_a_log_scale():
    model = diagrammar.load("circuits/modadd_mlp.circuit")["ModAddMLP"].compile(rngs=0)
    model.eval()
    overlay = ov.time_overlay(model, batch=8, calls=2, train=True)
    assert isinstance(overlay, Overlay) and overlay.scale == "log" and overlay.lenient
    boxes = dict(overlay.boxes)
    assert {"h", "out"} <= set(boxes) and all(v > 0 for v in boxes.values())
    assert "training step" in overlay.label and "batch 8" in overlay.label and "weights as given" in overlay.label
    assert model.deterministic  # still in eval mode: measuring a model leaves it as it was


# ---------------------------------------------------------------- inputs and norms


def test_random_inputs_stay_inside_the_tables_they_index():
    grok = diagrammar.load("circuits/grok_transformer.circuit")["GrokTransformer"].compile(rngs=0)
    (tokens,) = ov.random_inputs(grok, batch=500)
    assert tokens.shape == (500, 3) and tokens.dtype == np.int32
    assert tokens.min() >= 0 and tokens.max() < 114 and tokens.max() > 100  # embed: vocab = 114 rows
    mlp = diagrammar.load("circuits/modadd_mlp.circuit")["ModAddMLP"].compile(rngs=0)
    a, b = ov.random_inputs(mlp, batch=500, seed=3)
    assert a.shape == b.shape == (500,) and max(a.max(), b.max()) == 96  # onehot along p = 97
    again, _ = ov.random_inputs(mlp, batch=500, seed=3)
    assert (again == a).all()
    heavy = diagrammar.parse(HEAVY)["Heavy"].compile(rngs=0)
    (x,) = ov.random_inputs(heavy, batch=4)
    assert x.shape == (4, 512) and x.dtype == np.float32 and 0.8 < x.std() < 1.2


def _tiny_by_hand(leaves, a, b, p=7):
    """Every wire of the tiny MLP, computed in NumPy from its weights."""
    W, bias = leaves["h.W"], leaves["h.b"]
    x = np.stack([np.eye(p)[a], np.eye(p)[b]], axis=1)
    pre = np.einsum("nap,aph->nh", x, W) + bias
    h = np.maximum(pre, 0)
    out = h @ leaves["out.W"] + leaves["out.b"]
    return {"x": x, "h:linear": pre, "h": h, "out": out}


def _rms(a):
    return float(np.sqrt(np.mean(np.square(np.asarray(a, np.float64)))))


def test_norms_match_a_forward_pass_written_out_in_numpy(tiny_run):
    src, run = tiny_run
    d = diagrammar.load(src)["Tiny"]
    overlay = ov.norm_overlay(d, batch=40, checkpoint=run, scale="linear")
    assert overlay.scale == "linear" and not overlay.boxes and "checkpoint run at step 10" in overlay.label
    model, _ = ov.prepare_model(d, run)
    a, b = ov.random_inputs(model, batch=40)
    leaves = {k: np.asarray(model.weight(k)[...]) for k in ("h.W", "h.b", "out.W", "out.b")}
    want = {k: _rms(v) for k, v in _tiny_by_hand(leaves, a, b).items()}
    got = dict(overlay.wires)
    assert set(want) <= set(got)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-5), k
    # the checkpoint's weights, not fresh ones
    fresh = dict(ov.norm_overlay(d, batch=40, scale="linear").wires)
    assert fresh["out"] != pytest.approx(got["out"], rel=1e-3)


def test_norms_leave_out_constants_and_masked_entries():
    d = diagrammar.load("circuits/grok_transformer.circuit")["GrokTransformer"]
    norms, caption = ov.wire_norms(d, batch=4)
    assert "attention.a:const" not in norms  # sqrt(dk), no activation
    assert np.isfinite(norms["attention.a:causal"])  # -inf where masked, left out
    assert "tokens" not in norms  # an int wire
    assert caption == "4 random inputs; random initial weights (seed 0)"


def test_overlay_json_round_trips():
    overlay = Overlay(boxes=(("h", 2.5),), wires=(("x", 0.25),), label="µs", scale="log", lenient=True)
    assert load_overlay(json.loads(ov.overlay_json(overlay))) == overlay


# ---------------------------------------------------------------- the command line

MLP = "circuits/modadd_mlp.circuit"


def _painted(svg_text: str) -> dict[str, set[str]]:
    root = ET.fromstring(svg_text)
    out: dict[str, set[str]] = {}
    for e in root.iter():
        if e.get("data-overlay") is not None:
            out.setdefault(e.get("data-box") or e.get("data-wire") or "", set()).add(e.get("data-overlay"))
    return out


def test_render_overlay_norms_writes_the_figure_and_reusable_values(tmp_path, capsys):
    out, values = tmp_path / "n.svg", tmp_path / "n.json"
    assert main(["render", MLP, "--circuit", "ModAddMLP", "--overlay", "norms", "--batch", "16",
                 "-o", str(out), "--overlay-out", str(values)]) == 0
    err = capsys.readouterr().err
    assert "16 random inputs" in err and f"wrote {values}" in err
    svg = out.read_text()
    assert "random initial weights (seed 0)" in svg  # the colour bar's caption
    saved = json.loads(values.read_text())
    assert set(saved["wires"]) >= {"x", "h", "h:linear", "out"} and saved["lenient"] is True
    painted = _painted(svg)
    assert {"h", "out"} <= set(painted)
    # the values drawn are those written: the file, read back, draws the same figure
    again = tmp_path / "again.svg"
    assert main(["render", MLP, "--circuit", "ModAddMLP", "--overlay", str(values), "-o", str(again)]) == 0
    assert again.read_text() == svg


def test_render_overlay_time_profiles_and_paints_boxes(tmp_path, capsys):
    out = tmp_path / "t.svg"
    assert main(["render", MLP, "--circuit", "ModAddMLP", "--overlay", "time", "--batch", "8",
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "compiling ModAddMLP's forward pass (batch 8)" in err and "jax.profiler" in err
    svg = out.read_text()
    assert "µs per box, forward pass, batch 8; random initial weights (seed 0), log scale" in svg
    assert {"h", "out"} <= set(_painted(svg))


def test_render_overlay_with_a_checkpoint(tiny_run, tmp_path, capsys):
    src, run = tiny_run
    out = tmp_path / "c.svg"
    assert main(["render", str(src), "--circuit", "Tiny", "--overlay", "norms", "--checkpoint", str(run),
                 "-o", str(out)]) == 0
    assert "checkpoint run at step 10" in out.read_text()


@pytest.mark.parametrize("args, message", [
    (["--overlay", "norms", "--checkpoint", "nowhere/run"], "--checkpoint nowhere/run"),
    (["--overlay", "flops", "--checkpoint", "x.npz"], "--checkpoint gives the weights for --overlay"),
    (["--overlay-out", "v.json"], "--overlay-out writes the values of an --overlay"),
    (["--overlay", "flops", "--overlay-out", "v.txt"], "end its name in .json"),
    (["--overlay", "flops", "--overlay-out", "missing/v.json"], "--overlay-out missing/v.json"),
    (["--overlay", "time", "-o", "f.tex"], "TikZ output has no overlay"),
])
def test_bad_overlay_arguments_exit_2_naming_the_flag(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "mlp.circuit"
    src.write_text((Path(__file__).resolve().parents[2] / MLP).read_text())
    assert main(["render", str(src), "--circuit", "ModAddMLP", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not any(p.suffix in (".svg", ".png", ".tex", ".json") for p in tmp_path.iterdir())


def test_a_folder_without_a_checkpoint_is_refused(tmp_path, capsys):
    assert main(["render", MLP, "--circuit", "ModAddMLP", "--overlay", "norms", "--checkpoint", str(tmp_path),
                 "-o", str(tmp_path / "f.svg")]) == 2
    assert "holds no checkpoint.npz" in capsys.readouterr().err
    assert not (tmp_path / "f.svg").exists()


def test_a_checkpoint_of_another_model_is_refused(tiny_run, tmp_path, capsys):
    _, run = tiny_run
    assert main(["render", MLP, "--circuit", "ModAddMLP", "--overlay", "norms", "--checkpoint", str(run),
                 "-o", str(tmp_path / "f.svg")]) == 2
    err = capsys.readouterr().err
    assert "different model" in err and "Traceback" not in err
    assert not (tmp_path / "f.svg").exists()
