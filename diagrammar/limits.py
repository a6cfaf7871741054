"""Limits on what a program may be, as data: each is checked before the work it bounds, and a program
over one gets a span error naming the limit and its value (never a Python RecursionError).

The table in docs/language.md ("Limits") states the same values; a test compares them.
"""
from __future__ import annotations

__all__ = ["MAX_NESTING", "MAX_PROGRAM_BYTES", "MAX_LITERAL_DIGITS", "MAX_USE_DEPTH"]

MAX_NESTING = 200  # operators, calls, brackets, tuple types, size terms and `repeat`s nested in one another
MAX_PROGRAM_BYTES = 5_000_000  # one file's text, in UTF-8 bytes
MAX_LITERAL_DIGITS = 100  # characters in one number literal (digits, '.', exponent)
MAX_USE_DEPTH = 64  # files in a chain of `use`s, the first file included
