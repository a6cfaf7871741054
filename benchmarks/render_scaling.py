"""Rendering scales linearly: generated residual stacks of 100, 200 and 400 blocks.

Each block is ``x = x + linear(relu(linear(layernorm(x, over = d), d -> h)), h -> d)``
(five boxes: layernorm, linear, relu, linear, add), all in one circuit so no
box is collapsed. For every size this times checking, layout and SVG writing
in one run, prints the doubling ratios (goal: at most 2.2x when the size
doubles) and, where they are installed, the peers on the same architecture:
torchview with graphviz (PyTorch) and DisCoPy's ``draw``.

Run: ``python benchmarks/render_scaling.py [--repeat 3] [--sizes 100 200 400]``
"""
from __future__ import annotations

import argparse
import gc
import io
import time

SEQ, D, H = 16, 64, 256


def residual_circuit(blocks: int) -> str:
    lines = [f"axis seq = {SEQ}, d = {D}, h = {H}", "",
             "circuit Deep(x: [seq, d]) -> [seq, d]:"]
    lines += ["    x = x + linear(relu(linear(layernorm(x, over = d), d -> h)), h -> d)"] * blocks
    lines.append("    return x")
    return "\n".join(lines) + "\n"


def best_of(repeat: int, fn, clock=time.perf_counter):
    times, result = [], None
    for _ in range(repeat):
        result = None
        gc.collect()
        t0 = clock()
        result = fn()
        times.append(clock() - t0)
    return min(times), result


def time_diagrammar(blocks: int, repeat: int) -> dict:
    import diagrammar
    from diagrammar.backends.svg.draw import to_svg
    from diagrammar.backends.svg.layout import layout

    # diagrammar runs in this process on one thread, so its CPU time is its cost; wall-clock
    # on a shared 2-core machine also counts whatever else runs (peers spawn `dot`: wall-clock)
    clock = time.process_time
    text = residual_circuit(blocks)
    t_check, program = best_of(repeat, lambda: diagrammar.parse(text), clock)
    diagram = program["Deep"]
    t_layout, fig = best_of(repeat, lambda: layout(diagram), clock)
    t_svg, svg = best_of(repeat, lambda: to_svg(fig), clock)
    return {"boxes": len(diagram.boxes), "check": t_check, "layout": t_layout, "svg": t_svg,
            "total": t_check + t_layout + t_svg, "bytes": len(svg)}


def time_torchview(blocks: int, repeat: int) -> float | None:
    try:
        import torch
        from torch import nn
        from torchview import draw_graph
    except ImportError:
        return None

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.up, self.down = nn.LayerNorm(D), nn.Linear(D, H), nn.Linear(H, D)

        def forward(self, x):
            return x + self.down(torch.relu(self.up(self.norm(x))))

    model = nn.Sequential(*[Block() for _ in range(blocks)])

    def run():
        graph = draw_graph(model, input_size=(1, SEQ, D), expand_nested=False, depth=1_000)
        return graph.visual_graph.pipe(format="svg")

    try:
        return best_of(repeat, run)[0]
    except Exception as e:  # graphviz binary missing, or a torchview version difference
        print(f"  torchview failed: {e}")
        return None


def time_discopy(blocks: int, repeat: int) -> float | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        from discopy.monoidal import Box, Id, Ty
    except ImportError:
        return None
    d, h = Ty("d"), Ty("h")
    copy, add = Box("copy", d, d @ d), Box("+", d @ d, d)
    inner = Box("LN", d, d) >> Box("L", d, h) >> Box("R", h, h) >> Box("L", h, d)
    block = copy >> (Id(d) @ inner) >> add
    diagram = Id(d)
    for _ in range(blocks):
        diagram = diagram >> block

    def run():
        buf = io.BytesIO()
        diagram.draw(path=buf, show=False, to_tikz=False)
        return buf

    try:
        return best_of(max(1, repeat // 3), run)[0]
    except Exception as e:
        print(f"  discopy failed: {e}")
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 400])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-peers", action="store_true", help="time diagrammar only")
    ap.add_argument("--discopy-sizes", type=int, nargs="+", default=[10, 20, 40],
                    help="block counts for DisCoPy, whose drawing grows quadratically (100 blocks take ~70 s)")
    args = ap.parse_args(argv)

    print(f"residual blocks of 5 boxes (layernorm, linear, relu, linear, +), seq={SEQ} d={D} h={H}; "
          f"best of {args.repeat}; diagrammar in CPU seconds, peers in wall-clock seconds")
    print(f"{'blocks':>6} {'boxes':>6} {'check s':>8} {'layout s':>9} {'svg s':>7} {'total s':>8} "
          f"{'ratio':>6} {'SVG KiB':>8} {'torchview s':>12} {'discopy s':>10}")
    rows, ok, ok_render = [], True, True
    for n in args.sizes:
        r = time_diagrammar(n, args.repeat)
        r["torchview"] = None if args.no_peers else time_torchview(n, args.repeat)
        r["discopy"] = None
        ratio = r["total"] / rows[-1]["total"] if rows else None
        growth = (n / args.sizes[len(rows) - 1]) if rows else None
        rows.append(r)
        if ratio is not None and growth == 2 and ratio > 2.2:
            ok = False
        if rows[:-1] and growth == 2:
            prev = rows[-2]
            if (r["layout"] + r["svg"]) / (prev["layout"] + prev["svg"]) > 2.2:
                ok_render = False
        tv = f"{r['torchview']:.3f}" if r["torchview"] is not None else "-"
        dc = f"{r['discopy']:.3f}" if r["discopy"] is not None else "-"
        print(f"{n:>6} {r['boxes']:>6} {r['check']:>8.3f} {r['layout']:>9.3f} {r['svg']:>7.3f} "
              f"{r['total']:>8.3f} {('%.2fx' % ratio) if ratio else '-':>6} {r['bytes'] / 1024:>8.0f} "
              f"{tv:>12} {dc:>10}")
    print()
    for a, b, na, nb in zip(rows, rows[1:], args.sizes, args.sizes[1:]):
        render = (b["layout"] + b["svg"]) / (a["layout"] + a["svg"])
        parts = [f"{na}->{nb} blocks: check {b['check'] / a['check']:.2f}x, layout {b['layout'] / a['layout']:.2f}x, "
                 f"svg {b['svg'] / a['svg']:.2f}x, render (layout+svg) {render:.2f}x, total {b['total'] / a['total']:.2f}x"]
        for peer in ("torchview", "discopy"):
            if a[peer] and b[peer]:
                parts.append(f"{peer} {b[peer] / a[peer]:.2f}x")
        print("  " + ", ".join(parts))
    got = [(n, r) for n, r in zip(args.sizes, rows) if r["torchview"]]
    if not got:
        print("  torchview: not installed here, skipped (needs torch, torchview and graphviz's `dot`)")
    for n, r in got:
        print(f"  {n} blocks: diagrammar check+layout+svg is {r['torchview'] / r['total']:.1f}x faster than torchview")
    if not args.no_peers:
        print("\nDisCoPy's draw on the same blocks (copy, four boxes, +), smaller sizes:")
        prev = None
        for n in args.discopy_sizes:
            t = time_discopy(n, args.repeat)
            if t is None:
                print("  discopy: not installed here, skipped (needs discopy and matplotlib)")
                break
            ours = time_diagrammar(n, args.repeat)["total"]
            ratio = f", {t / prev:.2f}x the previous size" if prev else ""
            print(f"  {n:>4} blocks: discopy {t:.3f} s{ratio}; diagrammar {ours:.3f} s, {t / ours:.0f}x faster")
            prev = t
    print(f"\ngoal: at most 2.2x per doubling: check+layout+svg {'met' if ok else 'NOT met'}, "
          f"render alone (layout+svg) {'met' if ok_render else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
