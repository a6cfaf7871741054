"""Command line: `diagrammar gallery`, every zoo circuit drawn into gallery/, with an index page.

`diagrammar gallery` rewrites gallery/ (SVG figures and README.md);
`diagrammar gallery --check` only compares, and exits 1 when the committed
gallery is stale, which is what CI runs.

gallery/results/ holds PNG plots of real training runs, written by the
benchmarks (each entry of ``RESULTS`` names the command). The gallery command
never trains, writes or deletes them: it only shows on the index page those
that are present, so deleting one makes the committed index stale.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import NamedTuple

from ..errors import UnusableFile
from . import _files

INDEX = "README.md"
RESULTS_DIR = "results"


class ResultPlot(NamedTuple):
    """A committed plot of a training run: its file in gallery/results/, a heading, what it shows, and the
    command that wrote it."""

    file: str
    title: str
    caption: str
    command: str


RESULTS = (
    ResultPlot("modadd_mlp_curves.png", "Grokking: ModAddMLP",
               "`ModAddMLP` (circuits/modadd_mlp.circuit), p = 97, half the pairs for training, full batch, AdamW "
               "lr 1e-3, weight decay 1: train accuracy reaches 100% within 300 steps, test accuracy stays near 0 "
               "and then jumps, passing 99% at step 2,800 (48-61 s on this 2-core CPU, compile included).",
               "python benchmarks/grokking.py --only mlp --out runs/grok --gallery gallery/results"),
    ResultPlot("modadd_mlp_fourier.png", "Grokking: ModAddMLP's first layer in the Fourier basis",
               "The norm of the first layer's weights (`h.W`) at each frequency over the inputs, after grokking. "
               "Each neuron is sparse in frequency (per-neuron IPR 0.54) but 512 neurons cover many frequencies.",
               "python benchmarks/grokking.py --only mlp --out runs/grok --gallery gallery/results"),
    ResultPlot("grok_transformer_curves.png", "Grokking: GrokTransformer",
               "`GrokTransformer` (circuits/grok_transformer.circuit, the one-layer transformer of Nanda et al. "
               "2023), p = 113, 30% of the pairs, full batch, AdamW lr 1e-3, weight decay 1: test accuracy "
               "passes 99% at step 3,600 (4.3 minutes of training on the shared 2-core machine) and the run goes on "
               "to 6,000 steps.",
               "python benchmarks/grokking.py --only transformer --out runs/grok --gallery gallery/results"),
    ResultPlot("grok_transformer_fourier.png", "Grokking: GrokTransformer's embedding in the Fourier basis",
               "After the clean-up phase (step 6,000), five key frequencies (1, 24, 38, 48, 54) carry 90% of the "
               "embedding's power, as Nanda et al. found for this model.",
               "python benchmarks/grokking.py --only transformer --out runs/grok --gallery gallery/results"),
    ResultPlot("pointer_sort.png", "Pointer network: sorting",
               "`PointerNet` (circuits/pointer.circuit) trained on sorting n = 5..10 numbers for 6,000 steps "
               "(6.6 minutes): 98.8% exact sequences at n = 10, 96.9% at n = 15. Greedy decoding against "
               "input length, 200 fresh examples per length.",
               "python benchmarks/pointer.py --only sort --gallery gallery/results"),
    ResultPlot("pointer_hull.png", "Pointer network: planar convex hull",
               "`PointerNet` trained on the convex hull of n = 5..50 points: the 8,000 steps of "
               "`python benchmarks/pointer.py --only hull`, resumed with a new cosine schedule each time "
               "(`--hull-steps 14000`, then 20000, 28000 and 36000). At n = 10: area coverage 99.1%, exact "
               "sequences 76.3%. Left, greedy decoding against length; right, test examples with n = 10.",
               "python benchmarks/pointer.py --only hull --hull-steps 36000 --hull-minutes 100000 "
               "--gallery gallery/results"),
    ResultPlot("workspace_accuracy.png", "Global workspace against its baselines",
               "a + b trained on b <= 6: accuracy on seen pairs, held-out pairs and larger b (more steps), "
               "mean over seeds 0-2 with the range as error bars, for digits given as numbers and as 8x8 images.",
               "python benchmarks/workspace.py --out gallery/results"),
    ResultPlot("routing.png", "Routing of the global workspace",
               "The LSTM controller's gate over the module axis at every step of `Workspace` (seed 0), for "
               "pairs with b from 0 to 9: Input, then b Increments, then Output.",
               "python benchmarks/workspace.py --out gallery/results"),
    ResultPlot("routing_digits.png", "Routing of the global workspace on digit images",
               "The same for `WorkspaceDigits` (seed 0), which reads 8x8 digit images and learns its modules.",
               "python benchmarks/workspace.py --out gallery/results"),
)


# circuits also drawn whole, every level (the README shows the first)
WHOLE_MODELS = (("transformer", "Decoder"), ("pointer", "PointerNet"))


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="gallery", metavar="DIR",
                        help="where the figures go, created if missing (default: gallery/)")
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


def _results_section(results_dir: Path | None) -> list[str]:
    """The index's section on the committed result plots present in ``results_dir``."""
    present = [r for r in RESULTS if results_dir is not None and (results_dir / r.file).is_file()]
    if not present:
        return []
    lines = [
        "## Results of training runs",
        "",
        f"Plots from real training runs, committed under `{RESULTS_DIR}/`. `diagrammar gallery` never writes or",
        "deletes them (it does not train); each caption names the command that wrote the plot.",
        "",
    ]
    for r in present:
        lines += [f"### {r.title}", "", f"{r.caption} Written by `{r.command}`.", "",
                  f"![{r.title}]({RESULTS_DIR}/{r.file})", ""]
    return lines


def build(circuits_dir: Path, results_dir: Path | None = None) -> dict[str, str]:
    """File name -> content of every file the gallery holds (the plots in ``results_dir`` are only linked)."""
    from .. import load
    from ..backends.svg import axis_formulas, render_pages
    from .render import own_circuits

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
        "each sub-circuit it calls drawn once below it as a definition, \"Name = body\"",
        "(`diagrammar render FILE --depth 1`). Figures wider than a page wrap into rows: wires carry",
        "on from an arrowhead at the end of one row to an arrowhead at the start of the next, and a",
        "wire that skips a whole row is stored (`→ name`) and loaded again (`name →`). A figure that",
        "would print over 9 inches tall at 6.5 inches wide continues on a second page (`NAME-2.svg`).",
        "",
    ]
    results = _results_section(results_dir)
    if results:
        index += ["Plots of trained models are at the end: [results of training runs](#results-of-training-runs).", ""]
    for path in sorted(circuits_dir.glob("*.circuit")):
        program = load(path)
        formulas = axis_formulas(program)
        index += [f"## {path.name}", ""]
        about = _summary_line(_read(path) or "")
        if about:
            index += [about, ""]
        for name in own_circuits(program):
            d = program[name]
            base = f"{path.stem}.{name}"

            def figure(stem: str, alt: str, depth: int | None) -> list[str]:
                """Write the figure's pages (usually one) and return the index lines that show them."""
                pages = render_pages(d, depth=depth, axis_formulas=formulas)
                shown = []
                for i, page in enumerate(pages, start=1):
                    file = f"{stem}.svg" if i == 1 else f"{stem}-{i}.svg"
                    files[file] = page
                    shown += [f"![{alt}{'' if i == 1 else f', continued ({i})'}]({file})", ""]
                return shown

            index += [f"### {name}", "", f"`{d.summary()}`", ""] + figure(base, name, 0)
            if _has_body(d):
                index += ["With the sub-circuits it calls (`--depth 1`):", ""]
                index += figure(f"{base}.depth1", f"{name}, with its sub-circuits", 1)
            if (path.stem, name) in WHOLE_MODELS:
                index += ["The whole model, every level (`diagrammar render` with no `--depth`):", ""]
                index += figure(f"{base}.all", f"{name}, the whole model", None)
    index += results
    files[INDEX] = "\n".join(index).rstrip() + "\n"
    return files


def run(args) -> int:
    from .. import _resources

    circuits_dir = Path(args.circuits) if args.circuits else _resources.circuits_dir()
    if not circuits_dir.is_dir():
        raise UnusableFile(f"--circuits {circuits_dir}: no such folder")
    if not any(circuits_dir.glob("*.circuit")):
        raise UnusableFile(f"--circuits {circuits_dir} holds no .circuit file")
    out = Path(args.out)
    if args.check:
        if out.exists() and not out.is_dir():
            raise UnusableFile(f"--out {out} is not a folder")
    else:
        _files.output_folder(out, what="--out")  # before drawing anything
    files = build(circuits_dir, out / RESULTS_DIR)
    existing = {p.name for p in out.glob("*.svg")} | ({INDEX} if (out / INDEX).exists() else set())
    if args.check:
        stale = sorted(n for n, text in files.items() if _read(out / n) != text)
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
    changed = 0
    for n, text in files.items():
        if _read(out / n) != text:
            _files.write_atomic(out / n, text)
            changed += 1
    for n in sorted(existing - set(files)):
        if n.endswith(".svg"):
            try:
                (out / n).unlink()
            except OSError as e:
                raise _files.unusable(e, out / n, "remove") from None
            changed += 1
    print(f"wrote {out}: {len(files)} files, {changed} changed")
    return 0


def _read(path: Path) -> str | None:
    """The text of a gallery file, or None if it is missing or not a regular file (so it is rewritten)."""
    try:
        with _files.open_regular(path) as f, io.TextIOWrapper(f, encoding="utf-8") as text:
            return text.read()  # newlines translated, as read_text() does
    except (UnusableFile, UnicodeDecodeError):
        return None
