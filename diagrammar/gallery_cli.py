"""The `diagrammar gallery` command: every zoo circuit drawn into gallery/, with an index page.

`diagrammar gallery` rewrites gallery/ (SVG figures and README.md);
`diagrammar gallery --check` only compares, and exits 1 when the committed
gallery is stale, which is what CI runs.
"""
from __future__ import annotations

import sys
from pathlib import Path

INDEX = "README.md"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="gallery", metavar="DIR", help="where the figures go (default: gallery/)")
    parser.add_argument("--circuits", default=None, metavar="DIR",
                        help="the .circuit files to draw (default: diagrammar's zoo, circuits/)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if DIR differs from what would be written")


def _summary_line(text: str) -> str:
    """The file's opening comment block, which says what the circuits are, as one paragraph."""
    words = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("#"):
            break
        words.append(line.lstrip("#").strip())
    return " ".join(w for w in words if w)


def _has_body(diagram) -> bool:
    return any(b.op in ("call", "scan") for b in diagram.boxes) or any(
        b.op == "repeat" and any(x.op in ("call", "scan") for x in b.body.boxes) for b in diagram.boxes
        if b.body is not None)


def build(circuits_dir: Path) -> dict[str, str]:
    """File name -> content of every file the gallery holds."""
    from .backends.svg import axis_formulas, render_svg
    from .check import load
    from .render_cli import own_circuits

    files: dict[str, str] = {}
    index = [
        "# Gallery",
        "",
        "Every circuit of the zoo (`circuits/*.circuit`) drawn as a neural circuit diagram by",
        "`diagrammar.backends.svg`. This folder is generated: run `diagrammar gallery` to rebuild it;",
        "CI runs `diagrammar gallery --check` and fails when it is stale.",
        "",
        "Wires are named axes (one colour per axis, sizes in each figure's legend); a box covers only",
        "the wires it consumes and the others run past it; dots copy, `+` adds, caps contract;",
        "bold `L` is a learned linear map, triangles are softmax, pentagons index, bars reshape.",
        "Calls of other circuits are named blocks; a circuit that has them is shown a second time with",
        "them expanded one level (`diagrammar render FILE --depth 1`).",
        "",
    ]
    for path in sorted(circuits_dir.glob("*.circuit")):
        program = load(path)
        formulas = axis_formulas(program)
        index += [f"## {path.name}", ""]
        about = _summary_line(path.read_text(encoding="utf-8"))
        if about:
            index += [about, ""]
        for name in own_circuits(program):
            d = program[name]
            base = f"{path.stem}.{name}"
            files[f"{base}.svg"] = render_svg(d, axis_formulas=formulas)
            index += [f"### {name}", "", f"`{d.summary()}`", "", f"![{name}]({base}.svg)", ""]
            if _has_body(d):
                files[f"{base}.depth1.svg"] = render_svg(d, depth=1, axis_formulas=formulas)
                index += ["Expanded one level (`--depth 1`):", "", f"![{name}, expanded]({base}.depth1.svg)", ""]
    files[INDEX] = "\n".join(index).rstrip() + "\n"
    return files


def run(args) -> int:
    from . import _resources

    circuits_dir = Path(args.circuits) if args.circuits else _resources.circuits_dir()
    out = Path(args.out)
    files = build(circuits_dir)
    existing = {p.name for p in out.glob("*.svg")} | ({INDEX} if (out / INDEX).exists() else set())
    if args.check:
        stale = sorted(n for n, text in files.items()
                       if not (out / n).is_file() or (out / n).read_text(encoding="utf-8") != text)
        extra = sorted(existing - set(files))
        if stale or extra:
            for n in stale:
                print(f"stale: {out / n}", file=sys.stderr)
            for n in extra:
                print(f"not generated any more: {out / n}", file=sys.stderr)
            print("the gallery is out of date: run `diagrammar gallery` and commit the result", file=sys.stderr)
            return 1
        print(f"gallery is up to date ({len(files)} files in {out})")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    changed = 0
    for n, text in files.items():
        p = out / n
        if not p.is_file() or p.read_text(encoding="utf-8") != text:
            p.write_text(text, encoding="utf-8", newline="\n")
            changed += 1
    for n in sorted(existing - set(files)):
        if n.endswith(".svg"):
            (out / n).unlink()
            changed += 1
    print(f"wrote {out}: {len(files)} files, {changed} changed")
    return 0
