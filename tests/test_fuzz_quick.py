"""A quick run of benchmarks/fuzz.py (issue 13): a few hundred mutants of the zoo, judged in this
process, and not one crashes. The full run (`python benchmarks/fuzz.py --count 20000`) uses worker
processes with a time limit each."""
import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("diagrammar_fuzz", ROOT / "benchmarks" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_mutants_are_deterministic_for_a_seed(fuzz):
    files = fuzz.corpus()
    assert len(files) >= 20
    first = [fuzz.mutant(5, i, files) for i in range(50)]
    assert first == [fuzz.mutant(5, i, files) for i in range(50)]
    assert first != [fuzz.mutant(6, i, files) for i in range(50)]
    assert sum(data != dict(files)[name] for name, data in first) >= 45  # nearly every one is edited


def test_a_few_hundred_mutants_never_crash_the_checker(fuzz):
    files = fuzz.corpus()
    counts: Counter = Counter()
    crashes = []
    for i in range(300):
        name, data = fuzz.mutant(2026, i, files)
        outcome, detail = fuzz.judge(name, data)
        counts[outcome] += 1
        if outcome == "crashed":
            crashes.append((i, name, detail))
    assert not crashes, crashes[:3]
    assert counts["accepted"] >= 20 and counts["rejected"] >= 150, counts  # both paths are exercised


def test_judge_tells_a_crash_from_a_span_error(fuzz, monkeypatch):
    good = b"axis d = 4\ncircuit F(x: [d]) -> [d]:\n    return relu(x)\n"
    assert fuzz.judge("circuits/t.circuit", good)[0] == "accepted"
    outcome, detail = fuzz.judge("circuits/t.circuit", good.replace(b"relu(x)", b"relu(x) +"))
    assert (outcome, detail) == ("rejected", "CircuitSyntaxError at 3:21")
    assert fuzz.judge("circuits/t.circuit", good.replace(b"relu", b"r\xe9lu"))[0] == "rejected"

    from diagrammar.backends import cost

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cost, "analyse", broken)
    outcome, detail = fuzz.judge("circuits/t.circuit", good)
    assert outcome == "crashed" and "ZeroDivisionError: a bug" in detail


def test_a_worker_that_dies_is_a_crash_and_is_replaced(fuzz):
    worker = fuzz._Worker()
    good = b"axis d = 4\ncircuit F(x: [d]) -> [d]:\n    return relu(x)\n"
    try:
        assert worker.run("circuits/t.circuit", good, 60)[0] == "accepted"
        worker.proc.kill()
        worker.proc.wait()
        assert worker.run("circuits/t.circuit", good, 60)[0] == "crashed"
        assert worker.run("circuits/t.circuit", good, 60)[0] == "accepted"  # a new worker
    finally:
        worker.stop()


def test_a_worker_over_the_time_limit_is_counted_and_replaced(fuzz):
    worker = fuzz._Worker()
    good = b"axis d = 4\ncircuit F(x: [d]) -> [d]:\n    return relu(x)\n"
    try:
        assert worker.run("circuits/t.circuit", good, 1e-6) == ("timeout", "over 1e-06 s")  # still importing
        assert worker.proc is None
        assert worker.run("circuits/t.circuit", good, 60)[0] == "accepted"
    finally:
        worker.stop()
