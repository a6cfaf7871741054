"""Fuzz the checker with mutants of the zoo: a bad program must get a span error, never a traceback.

Each mutant is a program of circuits/*.circuit or tests/language_v1/*.circuit with one to three edits:
token and line edits (delete, duplicate, swap), numbers made extreme (0, -1, 2**31, 2**62, 1e999,
huge digit strings), deep nesting, long lines and odd bytes (NUL, lone CR, invalid UTF-8, a BOM).
Each is read as a file's bytes are (`syntax.decode_source`), checked (`diagrammar.parse`, with `use`
resolved next to the original file) and, where it checks, every circuit's diagram is costed
(`backends.cost.analyse`). A worker subprocess runs the mutants, each with a time limit; one that
dies or hangs is replaced.

Outcomes: accepted; rejected with a span error (a CircuitError with a line and a column); crashed
(any other exception, a CircuitError without a span, or the worker's death); over the time limit.
The first crashing or slow inputs are saved to --save for reproduction (`diagrammar check FILE`).
Mutant i depends only on --seed and i, so a run is deterministic for a seed whatever --jobs is.

    python benchmarks/fuzz.py [--count 2000] [--seed 0] [--jobs 2] [--timeout 10] [--save DIR]

Goal (issue 13): 20,000 mutants, zero crashed, zero over 10 s.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import random
import re
import select
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's diagrammar, also in the worker processes
CORPUS_GLOBS = ("circuits/*.circuit", "tests/language_v1/*.circuit")

# ---------------------------------------------------------------- mutants

EXTREME_NUMBERS = (b"0", b"-1", b"1", b"2147483647", b"2147483648", b"4294967296", b"4611686018427387904",
                   b"9223372036854775808", b"1e999", b"1e39", b"-1e39", b"1e-999", b"0.0", b"inf", b"-inf",
                   b"3.4e38", b"1e308")
ODD_BYTES = (b"\x00", b"\r", b"\r\n", b"\xff", b"\xc3", b"\xe2\x82", b"\xef\xbb\xbf", b"\t", b"\x0c", b"\x1b",
             b"\xc0\x80", b"\xed\xa0\x80", b"\\", b"\"", b"#", b"\xe9", b"\xf0\x9f\x98\x80", b"\x7f")
_TOKEN = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|->|//|<=|>=|==|\S")
_NUMBER = re.compile(rb"(?<![A-Za-z_0-9.])\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
_OPERAND = re.compile(rb"(?<![A-Za-z_0-9])[a-z_][a-z0-9_]*(?![A-Za-z0-9_(\[])")


def corpus(root: Path = ROOT) -> list[tuple[str, bytes]]:
    """(path relative to root, bytes) of every zoo program, sorted so mutant i is the same everywhere."""
    files = sorted({p for g in CORPUS_GLOBS for p in root.glob(g)})
    return [(str(p.relative_to(root)), p.read_bytes()) for p in files]


def _tokens(data: bytes) -> list[tuple[int, int]]:
    return [m.span() for m in _TOKEN.finditer(data)]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _pick_span(rng: random.Random, spans: list[tuple[int, int]]):
    return spans[rng.randrange(len(spans))] if spans else None


def mutate_once(rng: random.Random, data: bytes) -> bytes:
    """One edit of `data`, chosen by `rng`."""
    kind = rng.choice(("token_delete", "token_duplicate", "token_swap", "token_replace", "line_delete",
                       "line_duplicate", "line_swap", "number", "nesting", "long_line", "odd_byte"))
    if kind.startswith("token"):
        toks = _tokens(data)
        if not toks:
            return data
        a, b = _pick_span(rng, toks)
        if kind == "token_delete":
            return data[:a] + data[b:]
        if kind == "token_duplicate":
            return data[:b] + b" " * rng.randint(0, 1) + data[a:b] + data[b:]
        if kind == "token_replace":
            c, d = _pick_span(rng, toks)
            return data[:a] + data[c:d] + data[b:]
        c, d = _pick_span(rng, toks)
        if (c, d) < (a, b):
            (a, b), (c, d) = (c, d), (a, b)
        if b > c:
            return data
        return data[:a] + data[c:d] + data[b:c] + data[a:b] + data[d:]
    if kind.startswith("line"):
        lines = _lines(data)
        i = rng.randrange(len(lines))
        if kind == "line_delete":
            del lines[i]
        elif kind == "line_duplicate":
            lines.insert(i, lines[i])
        else:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines)
    if kind == "number":
        nums = [m.span() for m in _NUMBER.finditer(data)]
        a, b = _pick_span(rng, nums) or (len(data), len(data))
        choice = rng.random()
        if choice < 0.7:
            new = rng.choice(EXTREME_NUMBERS)
        elif choice < 0.85:
            new = b"9" * rng.choice((20, 99, 100, 101, 400, 5000))
        else:
            new = b"0." + b"0" * rng.choice((50, 98, 300)) + b"1"
        return data[:a] + new + data[b:]
    if kind == "nesting":
        ops = [m.span() for m in _OPERAND.finditer(data)]
        a, b = _pick_span(rng, ops) or (0, 0)
        depth = rng.choice((10, 50, 150, 199, 200, 201, 300, 1000, 3000))
        style = rng.randrange(5)
        word = data[a:b]
        if style == 0:
            new = b"relu(" * depth + word + b")" * depth
        elif style == 1:
            new = b"(" * depth + word + b")" * depth
        elif style == 2:
            new = b" + ".join([word] * depth)
        elif style == 3:
            new = b"-" * depth + word
        else:
            new = b"(" * depth + word  # unbalanced
        return data[:a] + new + data[b:]
    if kind == "long_line":
        lines = _lines(data)
        i = rng.randrange(len(lines))
        n = rng.choice((1000, 10000, 100000))
        filler = rng.choice((b" ", b"x", b"# ", b" + x", b"[d]", b"\t"))
        lines[i] = lines[i] + filler * (n // len(filler))
        return b"\n".join(lines)
    # odd bytes, anywhere (the start too, for a BOM)
    at = 0 if rng.random() < 0.1 else rng.randrange(len(data) + 1)
    return data[:at] + rng.choice(ODD_BYTES) * rng.choice((1, 1, 1, 2, 50)) + data[at:]


def mutant(seed: int, index: int, files: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """Mutant `index` of the run with `seed`: (the original's path, its bytes)."""
    rng = random.Random(f"{seed}:{index}")
    name, data = files[rng.randrange(len(files))]
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        data = mutate_once(rng, data)
    return name, data


# ---------------------------------------------------------------- judging one mutant


def judge(name: str, data: bytes, root: Path = ROOT) -> tuple[str, str]:
    """("accepted" | "rejected" | "crashed", detail) for one program, in this process."""
    import diagrammar
    from diagrammar import syntax
    from diagrammar.backends.cost import analyse
    from diagrammar.errors import CircuitError

    path = root / name
    try:
        text = syntax.decode_source(data, name)
        program = diagrammar.parse(text, name=name, root=path.parent)
        for circuit in program:
            analyse(program[circuit])
    except CircuitError as e:
        if e.span is None or not e.span.line or not e.span.column:
            return "crashed", f"{type(e).__name__} without a line and column: {e.message}"
        return "rejected", f"{type(e).__name__} at {e.span.line}:{e.span.column}"
    except Exception as e:  # noqa: BLE001 - anything else is what this looks for
        return "crashed", "".join(traceback.format_exception(type(e), e, e.__traceback__)[-12:])
    return "accepted", ""


# ---------------------------------------------------------------- workers


def _send(stream, payload: bytes) -> None:
    stream.write(struct.pack(">I", len(payload)) + payload)
    stream.flush()


def _read_exact(stream, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = stream.read(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def worker_main() -> None:
    """Judge mutants read from stdin (name, then bytes; each length-prefixed) and answer in JSON lines."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # whatever the checker prints must not mix with the answers
    while True:
        try:
            name = _read_exact(stdin, struct.unpack(">I", _read_exact(stdin, 4))[0]).decode()
            data = _read_exact(stdin, struct.unpack(">I", _read_exact(stdin, 4))[0])
        except EOFError:
            return
        outcome, detail = judge(name, data)
        _send(stdout, json.dumps([outcome, detail]).encode())


class _Worker:
    """One worker subprocess; replaced after a death or a timeout."""

    def __init__(self):
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
        os.set_blocking(self.proc.stdout.fileno(), True)

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def run(self, name: str, data: bytes, timeout: float) -> tuple[str, str]:
        if self.proc is None:
            self.start()
        try:
            _send(self.proc.stdin, name.encode())
            _send(self.proc.stdin, data)
        except (BrokenPipeError, OSError):
            self.stop()
            return "crashed", "the worker died before reading the program"
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            self.stop()
            return "timeout", f"over {timeout:g} s"
        try:
            size = struct.unpack(">I", _read_exact(self.proc.stdout, 4))[0]
            answer = json.loads(_read_exact(self.proc.stdout, size))
        except (EOFError, struct.error, ValueError):
            code = self.proc.poll()
            self.stop()
            return "crashed", f"the worker died (exit {code})"
        return answer[0], answer[1]


def run(count: int, seed: int, jobs: int, timeout: float, save: Path | None, keep: int,
        progress: bool = True) -> Counter:
    files = corpus()
    todo: queue.Queue = queue.Queue()
    for i in range(count):
        todo.put(i)
    counts: Counter = Counter()
    kept: list[tuple[int, str, str, bytes, str]] = []
    lock = threading.Lock()
    started = time.monotonic()

    def serve():
        worker = _Worker()
        try:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                name, data = mutant(seed, i, files)
                outcome, detail = worker.run(name, data, timeout)
                with lock:
                    counts[outcome] += 1
                    if outcome in ("crashed", "timeout"):
                        kept.append((i, outcome, name, data, detail))
                    done = sum(counts.values())
                    if progress and done % 500 == 0:
                        print(f"  {done:,}/{count:,} in {time.monotonic() - started:.0f} s: " + _line(counts),
                              file=sys.stderr, flush=True)
        finally:
            worker.stop()

    threads = [threading.Thread(target=serve, daemon=True) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept.sort()
    if save is not None and kept:
        save.mkdir(parents=True, exist_ok=True)
        for i, outcome, name, data, detail in kept[:keep]:
            stem = f"{outcome}-seed{seed}-{i}"
            _write_atomic(save / f"{stem}.circuit", data)
            _write_atomic(save / f"{stem}.txt", f"mutant {i} of {name} (seed {seed})\n{detail}\n".encode())
    counts["_seconds"] = round(time.monotonic() - started)
    counts["_saved"] = min(len(kept), keep) if save is not None else 0
    return counts


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _line(counts: Counter) -> str:
    return (f"accepted {counts['accepted']:,}, rejected with a span error {counts['rejected']:,}, "
            f"crashed {counts['crashed']:,}, over the time limit {counts['timeout']:,}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="mutants to try (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per mutant (default 10)")
    parser.add_argument("--save", type=Path, default=ROOT / "benchmarks" / "fuzz-failures",
                        help="folder for the first crashing or slow inputs (default benchmarks/fuzz-failures)")
    parser.add_argument("--keep", type=int, default=10, help="inputs saved at most (default 10)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main()
        return 0
    for flag in ("count", "jobs", "keep"):
        if getattr(args, flag) < (0 if flag == "keep" else 1):
            parser.error(f"--{flag} must be at least {0 if flag == 'keep' else 1}")
    if not args.timeout > 0:
        parser.error("--timeout must be above 0")
    counts = run(args.count, args.seed, args.jobs, args.timeout, args.save, args.keep)
    print(f"fuzz: {args.count:,} mutants, seed {args.seed}, {args.jobs} jobs, {counts['_seconds']:,} s")
    print(_line(counts).replace("over the time limit", f"over {args.timeout:g} s"))
    if counts["_saved"]:
        print(f"first {counts['_saved']} crashing or slow inputs saved to {args.save}")
    return 1 if counts["crashed"] or counts["timeout"] else 0


if __name__ == "__main__":
    sys.exit(main())
