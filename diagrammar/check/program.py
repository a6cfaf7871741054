"""Front end, checker: a program's files, `use` resolution and circuits; the entry points load and parse.

The checker walks each circuit once per set of axis arguments, giving every
expression a typed value and recording boxes and wires as it goes. Errors are
collected (one per statement at most, so a mistake does not cascade) and
raised together at the end. It never imports a backend.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from pathlib import Path

from .. import _resources
from .. import syntax as S
from ..errors import (
    CircuitError,
    CircuitSyntaxError,
    DuplicateDefinition,
    ErrorSink,
    InvalidArgument,
    RecursiveCircuit,
    Span,
    UseNotFound,
    UseOutsideRoots,
)
from ..ir import Diagram, Size
from .circuit import _CircuitChecker
from .hints import _did_you_mean
from .sizes import eval_size, global_lookup, resolve_axes

DEFAULT_MAX_WEIGHT_ELEMENTS = 2 ** 31


@dataclass
class _CircuitSrc:
    node: S.CircuitDef
    file: str


class Program:
    """A checked program: every circuit of a file and the files it uses.

    `program["Name"]` is the circuit's typed diagram with its axis parameters
    at their defaults; `program.instantiate("Name", hidden=256)` sets them.
    """

    def __init__(self, checker: Checker, root: str, diagrams: dict[str, Diagram]):
        self._checker = checker
        self.file = root
        self._diagrams = diagrams

    @property
    def circuits(self) -> list[str]:
        """Names of all circuits, those of the root file first, in source order."""
        return list(self._diagrams)

    @property
    def axes(self) -> dict[str, Size]:
        """Every top-level axis and its size (symbolic where bound at compile time)."""
        return dict(self._checker.global_axes)

    @property
    def axis_formulas(self) -> dict[str, str]:
        """Axis -> its size as declared (`dk` -> `d // heads`), for legends and docs."""
        return {name: S.size_text(item.size) for name, (item, _file) in self._checker.axis_decls.items()
                if "\0" not in name and item.size is not None}

    @property
    def own_circuits(self) -> list[str]:
        """Circuits defined in the program's own file (not those it `use`s), in source order."""
        return [n for n in self._diagrams if self._checker.circuits[n].file == self.file]

    def __getitem__(self, name: str) -> Diagram:
        if name not in self._diagrams:
            hint = _did_you_mean(name, self._diagrams)
            raise KeyError(f"no circuit named {name!r} in {self.file}"
                           + (f"; {hint}" if hint else f"; circuits: {', '.join(self._diagrams)}"))
        return self._diagrams[name]

    def __contains__(self, name: str) -> bool:
        return name in self._diagrams

    def __iter__(self):
        return iter(self._diagrams)

    def instantiate(self, name: str, **axis_args: int) -> Diagram:
        """The circuit with some axis parameters set (raises CircuitError)."""
        self[name]
        sink = ErrorSink()
        self._checker.sink = sink
        sizes = {k: Size.of(int(v)) for k, v in axis_args.items()}
        src = self._checker.circuits[name]
        unknown = [k for k in sizes if k not in {a.name for a in src.node.axis_params}]
        if unknown:
            raise InvalidArgument(f"{name} has no axis parameter {unknown[0]!r}", src.node.name_span,
                                  source=self._checker.sources.get(src.file))
        d = self._checker.instantiate(name, sizes, src.node.span)
        sink.raise_if_any(self._checker.sources)
        return d

    def __repr__(self) -> str:
        return f"<Program {self.file}: {', '.join(self._diagrams)}>"


class Checker:
    """Loads files, resolves names and sizes, and instantiates circuits into diagrams."""

    def __init__(self, roots: list[Path], max_weight_elements: int = DEFAULT_MAX_WEIGHT_ELEMENTS):
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.max_weight_elements = max_weight_elements
        self.sink = ErrorSink()
        self.sources: dict[str, str] = {}
        self.modules: dict[str, S.Module] = {}
        self.axis_decls: dict[str, tuple[S.AxisItem, str]] = {}
        self.global_axes: dict[str, Size] = {}
        self.circuits: dict[str, _CircuitSrc] = {}
        self.root_order: list[str] = []
        self.cache: dict[tuple, Diagram] = {}
        self.stack: list[str] = []

    # ---------------------------------------------------- loading files

    def load_file(self, path: Path, display: str, span: Span | None = None) -> S.Module | None:
        real = str(Path(os.path.realpath(path)))
        if real in self.modules:
            return self.modules[real]
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            self.sink.add(CircuitSyntaxError(f"{display} is not UTF-8 text", span))
            return None
        except OSError as e:
            self.sink.add(UseNotFound(f"cannot read {display}: {e.strerror}", span))
            return None
        return self.load_text(text, display, real, base=path.parent)

    def load_text(self, text: str, display: str, key: str, base: Path | None) -> S.Module | None:
        self.sources[display] = text
        try:
            module = S.parse_module(text, display)
        except CircuitError as e:
            e.source = text
            self.sink.add(e)
            self.modules[key] = None
            return None
        self.modules[key] = module
        for use in module.uses:
            self._resolve_use(use, base)
        self._collect(module)
        return module

    def _resolve_use(self, use: S.Use, base: Path | None):
        rel = use.path
        if not rel.endswith(".circuit"):
            self.sink.add(UseNotFound(f"use names a .circuit file, got {rel!r}", use.span))
            return
        if os.path.isabs(rel) or rel.startswith("~"):
            self.sink.add(UseOutsideRoots(f"use paths are relative; {rel!r} is absolute", use.span,
                                          hint="write the path relative to this file or to diagrammar's circuits/"))
            return
        candidates = ([base / rel] if base is not None else []) + [_resources.circuits_dir() / rel]
        for cand in candidates:
            real = Path(os.path.realpath(cand))
            if not self._inside(real):
                # refused before it is read, even when it exists
                self.sink.add(UseOutsideRoots(
                    f"use {rel!r} points outside the search roots; it was not read", use.span,
                    hint="search roots: " + ", ".join(self._display(r) for r in self.roots)))
                return
            if real.is_file():
                self.load_file(real, self._display(real), use.span)
                return
        self.sink.add(UseNotFound(f"no file {rel!r} next to this file or in diagrammar's circuits/", use.span))

    def _inside(self, real: Path) -> bool:
        return any(real == r or r in real.parents for r in self.roots)

    def _display(self, p: Path) -> str:
        """A path as the user will recognise it: relative to the working folder when below it."""
        try:
            rel = os.path.relpath(p)
        except ValueError:
            return str(p)
        return str(p) if rel.startswith("..") else rel

    def _collect(self, module: S.Module):
        seen_here: set[str] = set()
        for decl in module.axes:
            for item in decl.items:
                prev = self.axis_decls.get(item.name)
                if item.name in seen_here:
                    self.sink.add(DuplicateDefinition(f"axis {item.name} is declared twice", item.span,
                                                      hint=f"first declared at {prev[0].span}" if prev else None))
                    continue
                seen_here.add(item.name)
                if prev is not None and prev[1] != module.file:
                    # the same axis in two files is fine when the sizes agree (checked later)
                    self.axis_decls.setdefault(f"{item.name}\0{module.file}", (item, module.file))
                    continue
                self.axis_decls[item.name] = (item, module.file)
        for c in module.circuits:
            prev = self.circuits.get(c.name)
            if prev is not None:
                if prev.node is c:
                    continue
                self.sink.add(DuplicateDefinition(f"circuit {c.name} is defined twice", c.name_span,
                                                  hint=f"first defined at {prev.node.name_span}"))
                continue
            self.circuits[c.name] = _CircuitSrc(c, module.file)

    # ---------------------------------------------------- global axes

    def resolve_axes(self):
        self.global_axes = resolve_axes(self.axis_decls, self.sink)

    # ---------------------------------------------------- circuits

    def instantiate(self, name: str, axis_args: dict[str, Size], span: Span) -> Diagram | None:
        src = self.circuits[name]
        node = src.node
        sizes: dict[str, Size] = {}
        for ap in node.axis_params:
            if ap.name in axis_args:
                sizes[ap.name] = axis_args[ap.name]
            elif ap.size is not None:
                try:
                    sizes[ap.name] = eval_size(ap.size, global_lookup(self.global_axes, sizes))
                except CircuitError as e:
                    self.sink.add(e)
                    sizes[ap.name] = Size.symbol(ap.name)
            else:
                sizes[ap.name] = Size.symbol(ap.name)
        key = (name, tuple(sorted((k, v) for k, v in sizes.items())))
        if key in self.cache:
            return self.cache[key]
        if name in self.stack:
            cycle = " -> ".join(self.stack[self.stack.index(name):] + [name])
            self.sink.add(RecursiveCircuit(f"circuit {name} calls itself: {cycle}", span,
                                           hint="circuits cannot recurse; use repeat or scan"))
            return None
        self.stack.append(name)
        try:
            d = _CircuitChecker(self, src, sizes).run()
        finally:
            self.stack.pop()
        self.cache[key] = d
        return d


# ---------------------------------------------------------------- entry points


class _NoCycleCollection:
    """Pause the cyclic garbage collector while checking.

    Checking allocates many small objects and no cycles worth collecting; a
    generational collection every few thousand allocations re-walks the whole
    young heap and made checking time grow faster than program size.
    """

    def __enter__(self):
        self.was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.was_enabled:
            gc.enable()


def _check(checker: Checker, root_module: S.Module | None, root: str) -> Program:
    checker.resolve_axes()
    diagrams: dict[str, Diagram] = {}
    order = []
    if root_module is not None:
        order = [c.name for c in root_module.circuits]
    order += [n for n in checker.circuits if n not in order]
    for name in order:
        src = checker.circuits[name]
        d = checker.instantiate(name, {}, src.node.span)
        if d is not None:
            diagrams[name] = d
    checker.sink.raise_if_any(checker.sources)
    return Program(checker, root, diagrams)


def load(path, *, max_weight_elements: int = DEFAULT_MAX_WEIGHT_ELEMENTS) -> Program:
    """Read, check and return a program from a `.circuit` file.

    `use` may read files next to this one (and below) and in the bundled
    circuits/ folder; nothing else. Raises CircuitError with every problem found.
    """
    path = Path(path)
    display = str(path)
    checker = Checker([path.parent, _resources.circuits_dir()], max_weight_elements)
    if not path.is_file():
        raise UseNotFound(f"no such file: {path}")
    with _NoCycleCollection():
        module = checker.load_file(path, display)
        return _check(checker, module, display)


def parse(text: str, name: str = "<text>", *, root: str | os.PathLike | None = None,
          max_weight_elements: int = DEFAULT_MAX_WEIGHT_ELEMENTS) -> Program:
    """Check program text. `use` resolves against `root` (if given) and circuits/.

    >>> program = parse("axis d = 4\\ncircuit Id(x: [d]) -> [d]:\\n    return x\\n")
    >>> program["Id"].output.type
    TensorType(axes=(Axis(name='d', size=Size('4')),), dtype='float')
    """
    roots = ([Path(root)] if root is not None else []) + [_resources.circuits_dir()]
    checker = Checker(roots, max_weight_elements)
    with _NoCycleCollection():
        module = checker.load_text(text, name, f"<text:{name}>", Path(root) if root is not None else None)
        return _check(checker, module, name)
