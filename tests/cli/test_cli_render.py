"""`diagrammar render --cost`: every figure shown once."""
from __future__ import annotations

import re

from diagrammar.cli import main


def test_a_repeat_and_the_one_box_inside_it_do_not_both_carry_its_cost(tmp_path):
    out = tmp_path / "decoder.svg"
    assert main(["render", "circuits/transformer.circuit", "--circuit", "Decoder", "--cost", "--depth", "0",
                 "-o", str(out)]) == 0
    labels = {m.group(1): m.group(2) for m in
              re.finditer(r'<text class="annotation"[^>]*data-box="([^"]*)"[^>]*>([^<]*)<', out.read_text())}
    repeats = [box for box in labels if box == "repeat"]
    assert repeats, labels  # the repeat keeps its label: the total of every copy
    assert "repeat.x" not in labels  # the block the repeat copies: the same figure was printed twice
    import diagrammar
    from diagrammar.cli.render import cost_labels

    nested = cost_labels(diagrammar.load("circuits/transformer.circuit")["Decoder"], 1)
    assert "repeat.x" not in nested and "repeat.x.feed_forward" in nested  # boxes inside the block keep theirs
