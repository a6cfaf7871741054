"""Limits on what a program may be, as data: each is checked before the work it bounds, and a program
over one gets a span error naming the limit and its value (never a Python RecursionError).

The table in docs/language.md ("Limits") states the same values; a test compares them.
"""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager

__all__ = ["MAX_NESTING", "MAX_PROGRAM_BYTES", "MAX_LITERAL_DIGITS", "MAX_USE_DEPTH", "MAX_USE_PATH", "MAX_CALL_DEPTH",
           "MAX_LOOP_DEPTH", "MAX_STEPS", "MAX_INDEX", "DEFAULT_MAX_PARAMETERS", "DEFAULT_MAX_MODEL_BYTES"]

MAX_NESTING = 200  # operators, calls, brackets, tuple types, size terms and `repeat`s nested in one another
MAX_PROGRAM_BYTES = 5_000_000  # one file's text, in UTF-8 bytes
MAX_LITERAL_DIGITS = 100  # characters in one number literal (digits, '.', exponent)
MAX_USE_DEPTH = 64  # files in a chain of `use`s, the first file included
MAX_USE_PATH = 1024  # characters in the path of one `use`
MAX_CALL_DEPTH = 100  # circuits in a chain of calls, each calling the next (scan and dispatch steps included)
MAX_LOOP_DEPTH = 32  # repeat, scan and dispatch loops nested in one another, through calls too (JAX
# traces a nested loop with about 20 Python frames: at 32, jit of grad fits Python's default recursion limit)
MAX_STEPS = 2 ** 31 - 1  # steps of one `repeat` or `scan` (JAX counts loop steps in int32)
MAX_INDEX = 2 ** 31 - 1  # one axis's size, a kernel, window or stride: positions are int32 indices
# (int constants are held to int32 too: bounds.INT32)
DEFAULT_MAX_PARAMETERS = 2 ** 31  # a model's parameters in all, every copy counted (train refuses more)
DEFAULT_MAX_MODEL_BYTES = 2 ** 35  # a model's weights in bytes plus its peak activations at the batch trained

# The checker walks expressions, statements and calls recursively. At the limits above the deepest
# program needs this many Python frames (measured: 7 per call, at most 4 per level of nesting;
# the margin covers folding constants and sizes), so checking raises Python's recursion limit to it
# for its duration instead of failing with RecursionError. The frames live on the heap (a Python call
# from Python takes no C stack), and the work stays bounded because the limits are checked first.
CHECK_FRAMES = MAX_CALL_DEPTH * (10 + 5 * MAX_NESTING)

_room_lock = threading.Lock()
_room_users = 0
_room_saved = 0


@contextmanager
def recursion_room(frames: int = CHECK_FRAMES):
    """Python's recursion limit at least `frames` above the current depth while the block runs.

    Nested and concurrent uses share one raise; the limit set before the first is restored when the
    last ends.
    """
    global _room_users, _room_saved
    depth, f = 0, sys._getframe()
    while f is not None:
        depth, f = depth + 1, f.f_back
    with _room_lock:
        if _room_users == 0:
            _room_saved = sys.getrecursionlimit()
        _room_users += 1
        if sys.getrecursionlimit() < depth + frames:
            sys.setrecursionlimit(depth + frames)
    try:
        yield
    finally:
        with _room_lock:
            _room_users -= 1
            if _room_users == 0:
                sys.setrecursionlimit(_room_saved)
