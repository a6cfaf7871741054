"""Diagnostics: source spans, the CircuitError family, and their printed form.

Errors are data. Every error carries the Span of the code it is about, a
message, and optionally a table (for shape errors: both types axis by axis)
and a hint naming the fix. The checker collects all errors of a run and raises
the first, which carries the others in ``errors``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = [
    "Span", "CircuitError", "CircuitSyntaxError", "NotUTF8", "UnknownName", "DuplicateDefinition",
    "ShapeMismatch", "SizeConflict", "InvalidArgument", "WrongArity",
    "RecursiveCircuit", "UseNotFound", "UseOutsideRoots", "SizeTooLarge",
    "AxisValueClash", "NoReturn", "AxisCapture", "RequirementFailed",
    "CommandError", "BadArgument", "UnusableFile", "RunInProgress", "MissingDependency",
]


@dataclass(frozen=True, order=True)
class Span:
    """Where a piece of source lives: 1-based lines and columns, end exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class CircuitError(Exception):
    """A problem with a `.circuit` program, reported with its source location.

    Attributes:
        message: what is wrong, in one sentence.
        span: where (None only for errors about a whole file).
        table: extra lines shown under the caret (e.g. types axis by axis).
        hint: how to fix it, when we can tell.
        notes: context printed after the hint, one line each: `note: ...`, or as
            written when in parentheses (the instantiation an error was found in
            and its call site; last, the size overrides in effect).
        errors: every error found in the same run (this one first).
    """

    kind = "error"

    def __init__(self, message: str, span: Span | None = None, *, hint: str | None = None,
                 table: list[str] | None = None, source: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.table = list(table or [])
        self.source = source  # text of span.file, for the caret line
        self.notes: list[str] = []
        self.errors: list[CircuitError] = [self]

    @property
    def code(self) -> str:
        """A stable name for editors and JSON output (the class name)."""
        return type(self).__name__

    def format_one(self) -> str:
        """`file:line:col: error: message`, the source line, a caret, table and hint."""
        lines = []
        if self.span is None:
            lines.append(f"error: {self.message}")
        else:
            lines.append(f"{self.span}: error: {self.message}")
            src_line = _source_line(self.source, self.span.line)
            if src_line is not None:
                text = src_line.expandtabs(1)
                start = max(self.span.column - 1, 0)
                if self.span.end_line == self.span.line:
                    width = max(self.span.end_column - self.span.column, 1)
                else:
                    width = max(len(text.rstrip()) - start, 1)
                lines.append("    " + text.rstrip())
                lines.append("    " + " " * start + "^" * width)
        lines.extend("  " + row for row in self.table)
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        lines.extend(f"  {n}" if n.startswith("(") else f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def format(self) -> str:
        """All errors of the run, each with its caret, then a count."""
        parts = [e.format_one() for e in self.errors]
        if len(self.errors) > 1:
            parts.append(f"{len(self.errors)} errors")
        return "\n".join(parts)

    def to_json(self) -> list[dict]:
        """Diagnostics as plain data for editors (one dict per error)."""
        out = []
        for e in self.errors:
            d = {"code": e.code, "severity": e.kind, "message": e.message,
                 "hint": e.hint, "detail": e.table}
            if e.notes:
                d["notes"] = list(e.notes)
            if e.span is not None:
                d.update(file=e.span.file, line=e.span.line, column=e.span.column,
                         end_line=e.span.end_line, end_column=e.span.end_column)
            out.append(d)
        return out

    def __str__(self) -> str:
        return self.format()

    @property
    def _render_traceback_(self):
        """IPython and Jupyter show what this returns instead of the traceback, so a bad program in a
        notebook shows its diagnostic alone (the frames are inside diagrammar and say nothing about the
        program). With ``DIAGRAMMAR_DEBUG`` set the attribute is absent and the traceback shows, as in the CLI.
        """
        if os.environ.get("DIAGRAMMAR_DEBUG"):
            raise AttributeError("_render_traceback_")
        return lambda: self.format().split("\n")


def _source_line(source: str | None, line: int) -> str | None:
    if source is None:
        return None
    lines = source.splitlines()
    if 1 <= line <= len(lines):
        return lines[line - 1]
    return None


class CircuitSyntaxError(CircuitError):
    """The text does not follow the grammar (says what was expected)."""


class NotUTF8(CircuitSyntaxError):
    """A file whose bytes are not UTF-8 (at the first bad byte); the command line exits 2, as for
    any file it cannot use."""

    exit_code = 2


class UnknownName(CircuitError):
    """A name that is not an axis, value, circuit or operation in scope."""


class DuplicateDefinition(CircuitError):
    """A name defined twice where it must be unique."""


class ShapeMismatch(CircuitError):
    """Two wire bundles do not have the types an operation needs."""


class SizeConflict(CircuitError):
    """Two sizes that must agree do not (rename, merge, call sites, ...)."""


class InvalidArgument(CircuitError):
    """An operation got an argument it cannot use."""


class WrongArity(CircuitError):
    """Wrong number of arguments, results or tuple items."""


class RecursiveCircuit(CircuitError):
    """A circuit that calls itself, directly or through others."""


class UseNotFound(CircuitError):
    """A `use` names a file that does not exist in the search roots."""


class UseOutsideRoots(CircuitError):
    """A `use` path that escapes the search roots (refused, never read)."""


class SizeTooLarge(CircuitError):
    """An absurd size: a weight over the element budget, or a size <= 0."""


class AxisValueClash(CircuitError):
    """One name used both as an axis and as a value in the same scope."""


class NoReturn(CircuitError):
    """A circuit body that never returns."""


class AxisCapture(CircuitError):
    """A binding of a generic circuit's name parameters that changes what its text means: two axes the
    text names apart become one (an operation would match them by name, or a type would hold it twice)."""


class RequirementFailed(CircuitError):
    """A `require` that does not hold for the sizes given (`require seq <= ctx fails: seq = 40, ctx = 32`)."""


class CommandError(Exception):
    """A command that cannot do what it was asked, for a reason outside the program text.

    The command line prints the message alone, with no traceback, and exits
    with ``exit_code`` (2: a usage or file error). The message is whole
    sentences that say what to do.
    """

    exit_code = 2


class BadArgument(CommandError):
    """A command-line argument the command cannot use: a value out of range, a circuit the file lacks."""


class UnusableFile(CommandError, OSError):
    """A file or folder that cannot be read or written as asked: missing, read-only, full, a folder
    or FIFO where a file should be. Nothing was half-written. Also an ``OSError``."""

    def __init__(self, message: str):
        # OSError's constructor reads (errno, strerror) pairs; keep the message whole.
        CommandError.__init__(self, message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RunInProgress(CommandError):
    """Another process is training into the same output folder."""


class MissingDependency(CommandError, ImportError):
    """A package the command needs is not installed; the message names the install command. Also an ``ImportError``."""


@dataclass
class ErrorSink:
    """Collects errors during a run so the user sees all of them at once."""

    errors: list[CircuitError] = field(default_factory=list)

    def add(self, err: CircuitError) -> None:
        self.errors.append(err)

    def raise_if_any(self, sources: dict[str, str]) -> None:
        if not self.errors:
            return
        seen = set()
        unique = []
        for e in self.errors:
            key = (type(e), e.message, e.span)
            if key not in seen:
                seen.add(key)
                unique.append(e)
        unique.sort(key=lambda e: (e.span is None, e.span or Span("", 0, 0, 0, 0)))
        for e in unique:
            if e.span is not None and e.source is None:
                e.source = sources.get(e.span.file)
        first = unique[0]
        first.errors = unique
        raise first
