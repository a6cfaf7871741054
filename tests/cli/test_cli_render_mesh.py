"""`render --mesh --shard`: sharded wires carry their mesh axis, and boxes that communicate say what they send."""
from __future__ import annotations

import re

from diagrammar.cli import main

GROK = "circuits/grok_transformer.circuit"


def _svg(capsys, *flags) -> str:
    assert main(["render", GROK, "--circuit", "GrokTransformer", "-o", "-", *flags]) == 0
    return capsys.readouterr().out


def test_tensor_parallel_wires_and_communicating_boxes(capsys):
    plain = _svg(capsys)
    svg = _svg(capsys, "--mesh", "data=4,model=2", "--shard", "heads=model,mlp=model")
    assert "heads / model" in svg and "mlp / model" in svg
    # the wire mlp goes on in the next row: labelled again at that row's start, with its mesh axis
    assert svg.count(">mlp / model<") == 2 and ">mlp<" not in svg
    assert "heads / model" not in plain and "all-reduce" not in plain
    # the MLP's second product and the attention's output projection sum partial results over `model` in the
    # forward pass; the products that read d all-reduce their input's gradient in the backward pass
    notes = re.findall(r"all-reduce [^<]* / model \((forward|backward)\)", svg)
    assert notes.count("forward") == 2 and notes.count("backward") == 4
    assert "/ data" not in svg  # the data-parallel gradient all-reduce marks no box


def test_fully_sharded_weights_are_gathered_where_they_are_used(capsys):
    svg = _svg(capsys, "--mesh", "data=8", "--shard", "d=data", "--depth", "0", "--batch", "64")
    assert "d / data" in svg
    assert "all-gather" in svg and "reduce-scatter" in svg
    # a batch of one does not split over 8 devices: each gathered weight's gradient is all-reduced whole,
    # which, like data parallelism's, marks no box
    one = _svg(capsys, "--mesh", "data=8", "--shard", "d=data", "--depth", "0")
    assert "all-gather" in one and "reduce-scatter" not in one


def test_a_bad_mapping_is_a_span_error(capsys):
    assert main(["render", GROK, "--circuit", "GrokTransformer", "-o", "-", "--mesh", "data=8",
                 "--shard", "heads=model"]) == 1
    err = capsys.readouterr().err
    assert "grok_transformer.circuit:" in err and "mesh axis 'model'" in err and "Traceback" not in err
    assert main(["render", GROK, "--circuit", "GrokTransformer", "-o", "-", "--shard", "heads=model"]) == 2
    assert "--shard needs --mesh" in capsys.readouterr().err
