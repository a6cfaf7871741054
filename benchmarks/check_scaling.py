"""Checking time against program size, and against Lark's bare LALR parse of the same text.

Prints, in one run, for programs of 1k, 2k, 4k and 8k lines: the time to check
(parse to AST with spans, resolve, type every wire, build the IR), the doubling
ratios (goal: at most 2.2x per doubling), and check time over a bare parse with
the same grammar (goal: at most 2x).

    python benchmarks/check_scaling.py
"""
from __future__ import annotations

import gc
import sys
import time

import diagrammar
from diagrammar import syntax

BLOCK = """\
circuit Block{i}(x: [seq, d]) -> [seq, d]:
    q = linear(x, d -> (heads, dk), bias = false)
    k = rename(linear(x, d -> (heads, dk), bias = false), seq -> key)
    a = softmax(causal(dot(q, k, over = dk) / sqrt(dk), seq, key), over = key)
    h = dot(a, rename(linear(x, d -> (heads, dk)), seq -> key), over = key)
    y = x + linear(h, (heads, dk) -> d)
    z = layernorm(y, over = d)
    return y + linear(gelu(linear(z, d -> mlp)), mlp -> d){call}

"""
HEADER = "axis seq = 64, key = seq, d = 128, heads = 4, dk = d // heads, mlp = 4 * d\n\n"


def program(lines: int) -> str:
    parts = [HEADER]
    i = 0
    while sum(p.count("\n") for p in parts) < lines:
        call = f" + Block{i - 1}(x)" if i % 4 == 3 else ""
        parts.append(BLOCK.format(i=i, call=call))
        i += 1
    return "".join(parts)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    sizes = [1000, 2000, 4000, 8000]
    syntax.bare_parse("axis d = 1\n")  # build both parsers before timing
    diagrammar.parse("axis d = 1\n")
    print(f"{'lines':>6} {'check s':>8} {'doubling':>9} {'bare parse s':>13} {'check/parse':>12}")
    prev = None
    worst_doubling, worst_ratio = 0.0, 0.0
    for n in sizes:
        text = program(n)
        real_lines = text.count("\n")
        repeats = 5 if n <= 2000 else 3
        t_check = best_of(lambda: diagrammar.parse(text, name="bench.circuit"), repeats)
        t_parse = best_of(lambda: syntax.bare_parse(text), repeats)
        doubling = t_check / prev if prev else float("nan")
        ratio = t_check / t_parse
        if prev:
            worst_doubling = max(worst_doubling, doubling)
        worst_ratio = max(worst_ratio, ratio)
        print(f"{real_lines:>6} {t_check:>8.3f} {doubling:>9.2f} {t_parse:>13.3f} {ratio:>12.2f}")
        prev = t_check
    print(f"worst doubling ratio {worst_doubling:.2f} (goal <= 2.2); "
          f"worst check/bare-parse {worst_ratio:.2f} (goal <= 2.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
