"""Figure quality of the zoo: wire crossings, pileups, label size and page height of every gallery figure.

Every circuit of every zoo file is laid out as `diagrammar gallery` draws it
(depth 0, and depth 1 where it calls a sub-circuit) and measured from its
Layout with `diagrammar.backends.svg.quality.measure`, which follows the
definitions of the referee `svg_metrics.py`. The same figures as committed in
the gallery at a baseline commit (default f0c6de4) are read with `git show`
and measured from their SVG, and the totals are compared: crossings now/then,
and how many figures print their axis labels under 6 pt or run over 9 in tall
on a 6.5 in wide page (DESIGN.md's limits).

Run: ``python benchmarks/figure_quality.py [--baseline REV] [--svg-metrics PATH] [--json]``

``--svg-metrics PATH`` also runs the referee (svg_metrics.py, which is not part
of the repository) on every figure, now and then, and prints wherever it
disagrees with our counter.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import diagrammar
from diagrammar import _resources
from diagrammar.backends.svg import axis_formulas, layout, to_svg_pages
from diagrammar.backends.svg.quality import (
    HEIGHT_IN_MAX,
    LABEL_PT_MIN,
    measure,
    measure_svg,
)
from diagrammar.cli.gallery import _has_body  # the gallery's rule for drawing depth 1
from diagrammar.cli.render import own_circuits

COMPARED = ("crossings", "pileups", "label_pt", "page_height_in")

HEADER = """\
Figure quality of the gallery (each figure printed 6.5 in wide)
  crossings  points where two different wire paths cross (not at a shared end)
  pileups    places where 3+ wire subpaths cross within 3 px
  label_pt   smallest axis label in points       flag <6pt when under {pt:g} pt
  height_in  figure height in inches             flag >9in when over {inch:g} in
             (a figure continued on more pages: its tallest page; crossings and pileups of all pages)
  pages      printed pages (a figure taller than a page continues on the next)
  then       crossings of the same figure in the gallery at {rev} ('-': not there)
"""


def figures(circuits_dir: Path):
    """(file name, label, depth, diagram, program) for every figure the gallery draws, in its order."""
    for path in sorted(circuits_dir.glob("*.circuit")):
        program = diagrammar.load(path)
        for name in own_circuits(program):
            d = program[name]
            base = f"{path.stem}.{name}"
            yield f"{base}.svg", base, 0, d, program
            if _has_body(d):
                yield f"{base}.depth1.svg", base, 1, d, program


def baseline_svg(rev: str, file: str) -> str | None:
    """The committed gallery figure at `rev`, or None when it is not there."""
    r = subprocess.run(["git", "show", f"{rev}:gallery/{file}"], cwd=ROOT, capture_output=True, text=True,
                       check=False)
    return r.stdout if r.returncode == 0 else None


def load_referee(path: str):
    spec = importlib.util.spec_from_file_location("svg_metrics", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the referee from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flags(m: dict) -> list[str]:
    out = []
    if m["label_pt"] is not None and m["label_pt"] < LABEL_PT_MIN:
        out.append("<6pt")
    if m["page_height_in"] > HEIGHT_IN_MAX:
        out.append(">9in")
    return out


def combined(pages: list[dict]) -> dict:
    """A figure of several printed pages measured as one: crossings and pileups added up, the smallest
    label and the tallest page (each page must fit), and how many pages."""
    pts = [m["label_pt"] for m in pages if m["label_pt"] is not None]
    return {"crossings": sum(m["crossings"] for m in pages), "pileups": sum(m["pileups"] for m in pages),
            "label_pt": min(pts) if pts else None, "page_height_in": max(m["page_height_in"] for m in pages),
            "pages": len(pages)}


def disagreements(ours: dict, theirs: dict) -> list[str]:
    return [f"{k} {ours[k]} vs referee {theirs.get(k)}" for k in COMPARED if ours[k] != theirs.get(k)]


def run(rev: str, referee_path: str | None) -> dict:
    referee = load_referee(referee_path) if referee_path else None
    t0 = time.perf_counter()
    rows, disagree = [], []
    for file, label, depth, d, program in figures(_resources.circuits_dir()):
        fig = layout(d, depth=depth, axis_formulas=axis_formulas(program))
        now = combined([measure(page) for page in [fig] + list(fig.pages)])
        row = {"file": file, "name": label, "depth": depth, **{k: now[k] for k in COMPARED},
               "pages": now["pages"], "flags": flags(now), "then": None}
        old = baseline_svg(rev, file)
        if old is not None:
            then = measure_svg(old)
            row["then"] = {k: then[k] for k in COMPARED}
            if referee is not None:
                bad = disagreements(then, referee.measure_text(old))
                disagree += [f"{file} at {rev}: {b}" for b in bad]
        if referee is not None:
            bad = disagreements(now, combined([referee.measure_text(svg) for svg in to_svg_pages(fig)]))
            disagree += [f"{file} now: {b}" for b in bad]
        rows.append(row)
    seconds = time.perf_counter() - t0

    def small(m):
        return m["label_pt"] is not None and m["label_pt"] < LABEL_PT_MIN

    def tall(m):
        return m["page_height_in"] > HEIGHT_IN_MAX

    totals = {
        "figures": len(rows),
        "crossings": sum(r["crossings"] for r in rows),
        "pileups": sum(r["pileups"] for r in rows),
        "under_6pt": sum(small(r) for r in rows),
        "over_9in": sum(tall(r) for r in rows),
        "smallest_label_pt": min((r["label_pt"] for r in rows if r["label_pt"] is not None), default=None),
        "tallest_in": max((r["page_height_in"] for r in rows), default=None),
    }
    common = [r for r in rows if r["then"] is not None]
    now_x = sum(r["crossings"] for r in common)
    then_x = sum(r["then"]["crossings"] for r in common)
    comparison = {
        "baseline": rev,
        "figures": len(common),
        "new_figures": [r["file"] for r in rows if r["then"] is None],
        "crossings_now": now_x,
        "crossings_then": then_x,
        "crossings_ratio": None if then_x == 0 else round(now_x / then_x, 3),
        "pileups_now": sum(r["pileups"] for r in common),
        "pileups_then": sum(r["then"]["pileups"] for r in common),
        "under_6pt_now": sum(small(r) for r in common),
        "under_6pt_then": sum(small(r["then"]) for r in common),
        "over_9in_now": sum(tall(r) for r in common),
        "over_9in_then": sum(tall(r["then"]) for r in common),
        "changed": [{"file": r["file"], "then": r["then"], "now": {k: r[k] for k in COMPARED}}
                    for r in common if any(r["then"][k] != r[k] for k in COMPARED)],
    }
    return {"rows": rows, "totals": totals, "comparison": comparison, "seconds": round(seconds, 2),
            "referee": None if referee is None else {"path": referee_path, "disagreements": disagree}}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:g}"


def print_report(result: dict, rev: str) -> None:
    print(HEADER.format(pt=LABEL_PT_MIN, inch=HEIGHT_IN_MAX, rev=rev))
    print(f"{'figure':<42} {'depth':>5} {'crossings':>9} {'pileups':>7} {'label_pt':>8} {'height_in':>9}"
          f" {'pages':>5}  {'<6pt':<4} {'>9in':<4} {'then':>5}")
    for r in result["rows"]:
        then = "-" if r["then"] is None else str(r["then"]["crossings"])
        print(f"{r['name']:<42} {r['depth']:>5} {r['crossings']:>9} {r['pileups']:>7} {_fmt(r['label_pt']):>8} "
              f"{_fmt(r['page_height_in']):>9} {r['pages']:>5}  {'x' if '<6pt' in r['flags'] else '':<4} "
              f"{'x' if '>9in' in r['flags'] else '':<4} {then:>5}")
    t = result["totals"]
    print()
    print(f"totals over {t['figures']} figures: {t['crossings']} crossings, {t['pileups']} pileups, "
          f"{t['under_6pt']} under {LABEL_PT_MIN:g} pt (smallest {_fmt(t['smallest_label_pt'])} pt), "
          f"{t['over_9in']} over {HEIGHT_IN_MAX:g} in (tallest {_fmt(t['tallest_in'])} in)")
    c = result["comparison"]
    if c["figures"]:
        ratio = "n/a (no crossings then)" if c["crossings_ratio"] is None else f"{c['crossings_ratio']:.3f}"
        print(f"against the gallery at {c['baseline']} ({c['figures']} figures in both):")
        print(f"  crossings now/then    {c['crossings_now']} / {c['crossings_then']} = {ratio}")
        print(f"  pileups now/then      {c['pileups_now']} / {c['pileups_then']}")
        print(f"  under {LABEL_PT_MIN:g} pt now/then    {c['under_6pt_now']} / {c['under_6pt_then']}")
        print(f"  over {HEIGHT_IN_MAX:g} in now/then     {c['over_9in_now']} / {c['over_9in_then']}")
        print(f"  figures that changed  {len(c['changed'])}")
        for ch in c["changed"]:
            diffs = ", ".join(f"{k} {_fmt(ch['then'][k])} -> {_fmt(ch['now'][k])}" for k in COMPARED
                              if ch["then"][k] != ch["now"][k])
            print(f"    {ch['file']}: {diffs}")
    else:
        print(f"no figure of the gallery at {c['baseline']} to compare with")
    if c["new_figures"]:
        print(f"  not in the gallery at {c['baseline']}: {', '.join(c['new_figures'])}")
    ref = result["referee"]
    if ref is not None:
        if ref["disagreements"]:
            print(f"the referee ({ref['path']}) disagrees with our counter:")
            for line in ref["disagreements"]:
                print(f"  {line}")
        else:
            print(f"the referee ({ref['path']}) agrees with our counter on every figure, now and at "
                  f"{c['baseline']} ({', '.join(COMPARED)})")
    print(f"({result['seconds']:.2f} s)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--baseline", default="f0c6de4", metavar="REV",
                        help="commit whose gallery/ to compare with (default: f0c6de4)")
    parser.add_argument("--svg-metrics", default=None, metavar="PATH",
                        help="the referee svg_metrics.py: also measure every figure with it and report disagreements")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    result = run(args.baseline, args.svg_metrics)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_report(result, args.baseline)
    ref = result["referee"]
    return 1 if ref is not None and ref["disagreements"] else 0


if __name__ == "__main__":
    sys.exit(main())
