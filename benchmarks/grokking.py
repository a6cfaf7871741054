"""Grokking runs from the zoo, through the same `diagrammar train` the README shows.

    python benchmarks/grokking.py            # ModAddMLP, then GrokTransformer
    python benchmarks/grokking.py --only mlp

ModAddMLP: p=97, half the pairs for training, AdamW lr 1e-3, weight decay 1,
full batch; goal >= 99% test accuracy within 60 s on the 2-core CPU.
GrokTransformer: p=113, 30% of pairs, full batch, AdamW lr 1e-3, weight decay 1;
goal >= 99% test accuracy; prints steps, time and its key frequencies.
ModAddMLP stops as soon as test accuracy reaches 99%. GrokTransformer runs on to
6,000 steps, past the clean-up phase of Nanda et al. (2023), after which a few key
frequencies carry the embedding; the step and time at which it first reached 99%
are read from its metrics. Times include compiling.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from diagrammar.cli import main as cli
from diagrammar.train.checkpoint import _write_atomic

RUNS = {
    "mlp": ("circuits/modadd_mlp.circuit", "ModAddMLP", ["--p", "97", "--train-frac", "0.5", "--steps", "20000"]),
    "transformer": ("circuits/grok_transformer.circuit", "GrokTransformer",
                    ["--p", "113", "--train-frac", "0.3", "--steps", "6000", "--no-stop", "--inputs", "tokens"]),
}


GALLERY_NAMES = {"mlp": "modadd_mlp", "transformer": "grok_transformer"}


def run(key: str, out: Path) -> dict:
    file, circuit, extra = RUNS[key]
    t = time.perf_counter()
    status = cli(["train", file, "--circuit", circuit, "--task", "modadd", "--lr", "1e-3",
                  "--weight-decay", "1", "--out", str(out), "--fresh", "--no-progress", *extra])
    seconds = time.perf_counter() - t
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    first = next((r for r in rows if r.get("test_acc", 0) >= 0.99), None)
    return {"circuit": circuit, "status": status, "seconds": seconds, "last": rows[-1], "first": first}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(RUNS))
    parser.add_argument("--out", metavar="DIR", help="keep each run's metrics, plots and checkpoint in DIR/mlp, "
                        "DIR/transformer (default: a temporary directory)")
    parser.add_argument("--gallery", metavar="DIR", help="also copy each run's curves and Fourier plots to DIR "
                        "(gallery/results: modadd_mlp_curves.png, grok_transformer_fourier.png, ...)")
    args = parser.parse_args()
    keys = [args.only] if args.only else ["mlp", "transformer"]
    with tempfile.TemporaryDirectory() as tmp:
        for key in keys:
            r = run(key, Path(args.out or tmp) / key)
            if args.gallery:
                for plot in ("curves", "fourier"):
                    _write_atomic(Path(args.gallery) / f"{GALLERY_NAMES[key]}_{plot}.png",
                                  (Path(args.out or tmp) / key / f"{plot}.png").read_bytes())
            last, first = r["last"], r["first"]
            goal = "(goal: >= 0.99" + (" within 60 s)" if key == "mlp" else ")")
            if first is None:
                print(f"{r['circuit']}: never reached 99% test accuracy in {last['step']} steps "
                      f"({r['seconds']:.1f} s wall) {goal}")
            else:
                print(f"{r['circuit']}: 99% test accuracy at step {first['step']} ({first['time']:.1f} s of training); "
                      f"{r['seconds']:.1f} s wall in all {goal}")
            print(f"  at step {last['step']}: test accuracy {last.get('test_acc'):.4f}; Fourier spectrum of "
                  f"{last.get('fourier_param')}: key frequencies {last.get('key_freqs')}, strongest first "
                  f"{last.get('top_freqs')}, IPR {last.get('ipr', float('nan')):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
