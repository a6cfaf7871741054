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
from ..bounds import DEFAULT_MAX_WEIGHT_ELEMENTS
from ..errors import (
    AxisCapture,
    CircuitError,
    CircuitSyntaxError,
    DuplicateDefinition,
    ErrorSink,
    InvalidArgument,
    RecursiveCircuit,
    Span,
    UnknownName,
    UseNotFound,
    UseOutsideRoots,
    WrongArity,
)
from ..ir import Axis, Diagram, Requirement, Size
from ..limits import MAX_CALL_DEPTH, MAX_PROGRAM_BYTES, MAX_USE_DEPTH, MAX_USE_PATH, recursion_room
from . import generic
from .circuit import _CALLS, _LOOPS, _CircuitChecker
from .hints import _did_you_mean
from .sizes import (
    check_overrides,
    eval_size,
    global_lookup,
    requirement,
    resolve_axes,
    whole_size,
)


@dataclass
class _CircuitSrc:
    node: S.CircuitDef
    file: str


class Program:
    """A checked program: every circuit of a file and the files it uses.

    `program["Name"]` is the circuit's typed diagram with its axis parameters
    at their defaults; `program.instantiate("Name", hidden=256)` sets them. A
    circuit generic over axis names (`Block[axis h, axis c]`) has a diagram only
    per binding: `program.instantiate("Block", h="h2", c="c64")`.
    `program.with_sizes(d=64)` is the program checked again with other sizes.
    """

    def __init__(self, checker: Checker, root: str, diagrams: dict[str, Diagram], order: list[str] | None = None):
        self._checker = checker
        self.file = root
        self._diagrams = diagrams
        self._order = order if order is not None else list(diagrams)

    @property
    def circuits(self) -> list[str]:
        """Names of all circuits (generic ones included), those of the root file first, in source order."""
        return list(self._order)

    @property
    def generics(self) -> dict[str, str]:
        """Generic circuit -> its header as written (`Block[axis h, axis w, axis c]`), in source order."""
        return {n: generic.header(self._checker.circuits[n].node) for n in self._order
                if generic.is_generic(self._checker.circuits[n].node)}

    @property
    def sizes(self) -> dict[str, int]:
        """The size overrides in effect (`load(path, sizes=...)`, `with_sizes`); empty when none."""
        return dict(self._checker.overrides)

    def with_sizes(self, **sizes: int) -> Program:
        """This program checked again with some top-level axes given other sizes (a new Program).

        Each override acts as if every file declaring the axis said `axis NAME = N`;
        everything computed from it follows (derived axes, parameter defaults,
        requirements, weight budgets, parameter counts). This program is unchanged.

        Raises:
            UnknownName: no file declares the axis (a circuit's axis parameter is set at its calls).
            SizeTooLarge: a size below 1.
            InvalidArgument: a size that is not a whole number.
            CircuitError: whatever the new check finds.

        >>> small = parse("axis d = 256\\ncircuit F(x: [d]) -> [d]:\\n    return linear(x, d -> d)\\n").with_sizes(d=8)
        >>> small.sizes, small["F"].parameter_count().value
        ({'d': 8}, 72)
        """
        merged = {**self._checker.overrides, **sizes}
        checker = self._checker.fork(merged)
        with _NoCycleCollection():
            return _check(checker, checker.root_module, self.file)

    @property
    def axes(self) -> dict[str, Size]:
        """Every top-level axis and its size (symbolic where bound at compile time)."""
        return dict(self._checker.global_axes)

    @property
    def axis_formulas(self) -> dict[str, str]:
        """Axis -> its size as declared (`dk` -> `d // heads`), for legends and docs; an overridden axis
        shows its new size."""
        out = {name: S.size_text(item.size) for name, (item, _file) in self._checker.axis_decls.items()
               if "\0" not in name and item.size is not None}
        out.update({name: str(n) for name, n in self._checker.overrides.items()})
        return out

    def own_circuits(self) -> list[str]:
        """Circuits defined in the program's own file (not those it `use`s), generic ones included, in source order."""
        return [n for n in self._order if self._checker.circuits[n].file == self.file]

    def __getitem__(self, name: str) -> Diagram:
        if name not in self._diagrams:
            src = self._checker.circuits.get(name)
            if src is not None and generic.is_generic(src.node):
                params = [p.name for p in src.node.axis_params if isinstance(p, S.NameParam)]
                raise InvalidArgument(
                    f"{generic.header(src.node)} is generic over axis names: it has a diagram only for a binding of "
                    f"its name parameter{'s' if len(params) > 1 else ''} {', '.join(params)}", src.node.name_span,
                    hint=f"instantiate it: program.instantiate({name!r}, "
                    + ", ".join(f"{p}='axis'" for p in params) + ")",
                    source=self._checker.sources.get(src.file))
            hint = _did_you_mean(name, self._order)
            raise KeyError(f"no circuit named {name!r} in {self.file}"
                           + (f"; {hint}" if hint else f"; circuits: {', '.join(self._order)}"))
        return self._diagrams[name]

    def __contains__(self, name: str) -> bool:
        return name in self._diagrams or name in self.generics

    def __iter__(self):
        """The circuits that have a diagram of their own (generic ones have one per binding)."""
        return iter(self._diagrams)

    def instantiate(self, name: str, **axis_args: int | str) -> Diagram:
        """The circuit with some axis parameters set, and a generic one's name parameters bound to
        declared axes by name (`instantiate("Attention", q="seq", k="key")`). Raises CircuitError."""
        if name not in self:
            self[name]
        checker = self._checker
        src = checker.circuits[name]
        source = checker.sources.get(src.file)
        params = {a.name: a for a in src.node.axis_params}
        args: dict[str, Size | Axis] = {}
        for k, v in axis_args.items():
            if k not in params:
                raise InvalidArgument(f"{name} has no axis parameter {k!r}", src.node.name_span, source=source,
                                      hint=f"its parameters: {generic.header(src.node)}")
            if isinstance(params[k], S.NameParam):
                if not isinstance(v, str) or v not in checker.global_axes:
                    cls = UnknownName if isinstance(v, str) else InvalidArgument
                    raise cls(f"{name}'s name parameter {k} is bound to a declared axis, by its name; got {v!r}",
                              src.node.name_span, source=source,
                              hint=_did_you_mean(v, checker.global_axes) if isinstance(v, str) else None)
                args[k] = Axis(v, checker.global_axes[v])
            else:
                if isinstance(v, bool) or not isinstance(v, int) and not hasattr(v, "__index__"):
                    raise InvalidArgument(f"{name}'s axis parameter {k} is a size, a whole number; got {v!r}",
                                          src.node.name_span, source=source)
                args[k] = Size.of(int(v))
        checker.sink = ErrorSink()
        try:
            with _NoCycleCollection():
                d = checker.instantiate(name, args, None)
        except CircuitError as e:
            checker.sink.add(e)
            d = None
        checker.raise_errors()
        return d

    def __repr__(self) -> str:
        return f"<Program {self.file}: {', '.join(self._diagrams)}>"


class Checker:
    """Loads files, resolves names and sizes, and instantiates circuits into diagrams."""

    def __init__(self, roots: list[Path], max_weight_elements: int = DEFAULT_MAX_WEIGHT_ELEMENTS,
                 overrides: dict | None = None):
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.max_weight_elements = max_weight_elements
        self.overrides: dict = dict(overrides or {})  # axis -> size given from outside (`--size d=64`)
        self.sink = ErrorSink()
        self.sources: dict[str, str] = {}
        self.modules: dict[str, S.Module] = {}
        self.axis_decls: dict[str, tuple[S.AxisItem, str]] = {}
        self.global_axes: dict[str, Size] = {}
        self.circuits: dict[str, _CircuitSrc] = {}
        self.requires: list[S.Require] = []  # top-level `require`s of every file, in load order
        self.global_requires: tuple[Requirement, ...] = ()  # those that wait for free sizes
        self.root_order: list[str] = []
        self.root_module: S.Module | None = None
        self.root = "the program"  # the root file as the user named it
        self.cache: dict[tuple, Diagram] = {}
        self.stack: list[str] = []
        self.nesting: dict[int, tuple[Diagram, int, int]] = {}  # id -> (diagram, calls, loops) below it

    def nested(self, d: Diagram) -> tuple[int, int]:
        """The calls and the loops nested below `d` at most (a chain C1 -> C2 below is 2 calls).

        Counted bottom-up and remembered per diagram, so a diagram made from cached ones is measured
        without walking them again (and a cache never hides a chain over limits.MAX_CALL_DEPTH).
        """
        hit = self.nesting.get(id(d))
        if hit is not None and hit[0] is d:
            return hit[1], hit[2]
        calls = loops = 0
        for b in d.boxes:
            if b.body is not None:
                c, lp = self.nested(b.body)  # remembered already: bodies are measured as their boxes are made
                calls = max(calls, c + (b.op in _CALLS))
                loops = max(loops, lp + (b.op in _LOOPS))
        self.nesting[id(d)] = (d, calls, loops)
        return calls, loops

    def fork(self, overrides: dict) -> Checker:
        """A checker of the same files (read and parsed once) with other size overrides, not yet checked."""
        new = Checker([], self.max_weight_elements, overrides)
        new.roots = list(self.roots)
        new.sources = dict(self.sources)
        new.modules = dict(self.modules)
        new.axis_decls = dict(self.axis_decls)
        new.circuits = dict(self.circuits)
        new.requires = list(self.requires)
        new.root_module = self.root_module
        new.root = self.root
        return new

    def raise_errors(self) -> None:
        """Raise every error collected (the first carries the others); under size overrides each ends
        with them, so a message is never read against the sizes in the text."""
        if self.overrides and self.sink.errors:
            note = "(sizes overridden: " + ", ".join(f"{k} = {v}" for k, v in self.overrides.items()) + ")"
            for e in self.sink.errors:
                if note not in e.notes:
                    e.notes.append(note)
        self.sink.raise_if_any(self.sources)

    # ---------------------------------------------------- loading files

    def load_file(self, path: Path, display: str, span: Span | None = None, depth: int = 1) -> S.Module | None:
        real = str(Path(os.path.realpath(path)))
        if real in self.modules:
            return self.modules[real]
        if depth > MAX_USE_DEPTH:  # each file of a chain of uses is loaded inside the one before
            self.sink.add(InvalidArgument(
                f"this use makes a chain of {depth} files, each using the next; the limit is {MAX_USE_DEPTH} "
                f"(limits.MAX_USE_DEPTH), so {display} was not read", span,
                hint="use the files from one file that lists them, rather than each from the one before"))
            return None
        try:
            with open(path, "rb") as f:  # no more than the limit is read, whatever the file's size
                data = f.read(MAX_PROGRAM_BYTES + 1)
                size = os.fstat(f.fileno()).st_size
            if len(data) > MAX_PROGRAM_BYTES:
                self.sink.add(CircuitSyntaxError(
                    f"{display} is {max(size, len(data)):,} bytes; the limit is {MAX_PROGRAM_BYTES:,} "
                    "(limits.MAX_PROGRAM_BYTES), so it was not parsed", Span(display, 1, 1, 1, 2)))
                return None
            text = S.decode_source(data, display)
        except CircuitSyntaxError as e:  # at the first byte that is not UTF-8, in that file
            self.sources[display] = e.source
            self.sink.add(e)
            return None
        except OSError as e:
            self.sink.add(UseNotFound(f"cannot read {display}: {e.strerror}", span))
            return None
        return self.load_text(text, display, real, base=path.parent, depth=depth)

    def load_text(self, text: str, display: str, key: str, base: Path | None, depth: int = 1) -> S.Module | None:
        text = S.normalise_text(text)  # the text the spans count in
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
            self._resolve_use(use, base, depth)
        self._collect(module)
        return module

    def _resolve_use(self, use: S.Use, base: Path | None, depth: int = 1):
        rel = use.path
        if len(rel) > MAX_USE_PATH:  # refused before the file system sees it (resolving is slow in the length)
            self.sink.add(InvalidArgument(f"this use path has {len(rel):,} characters; the limit is {MAX_USE_PATH:,} "
                                          "(limits.MAX_USE_PATH)", use.span))
            return
        bad = next((c for c in rel if ord(c) < 32 or ord(c) == 127), None)
        if bad is not None:
            self.sink.add(InvalidArgument(f"a use path cannot hold the control character {bad!r}", use.span))
            return
        try:
            self._resolve_path(use, rel, base, depth)
        except (OSError, ValueError) as e:  # a name too long for the file system, ...
            self.sink.add(UseNotFound(f"cannot use {rel!r}: {getattr(e, 'strerror', None) or e}", use.span))

    def _resolve_path(self, use: S.Use, rel: str, base: Path | None, depth: int):
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
                self.load_file(real, self._display(real), use.span, depth + 1)
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
        self.requires.extend(it for it in module.items if isinstance(it, S.Require))
        for c in module.circuits:
            seen_params: set[str] = set()
            for ap in c.axis_params:
                if ap.name in seen_params:
                    self.sink.add(DuplicateDefinition(f"{c.name} has two parameters named {ap.name}", ap.span))
                seen_params.add(ap.name)
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
        params: dict[str, list[str]] = {}
        for name, src in self.circuits.items():
            for ap in src.node.axis_params:
                params.setdefault(ap.name, []).append(name)
        for e in check_overrides(self.overrides, self.axis_decls, params, self.root):
            self.sink.add(e)
        whole = {k: whole_size(v) for k, v in self.overrides.items()}
        self.overrides = {k: v if whole[k] is None else whole[k] for k, v in self.overrides.items()}
        valid = {k: n for k, n in whole.items() if n is not None and n >= 1 and k in self.axis_decls}
        self.global_axes = resolve_axes(self.axis_decls, self.sink, valid)

    def check_requires(self):
        """The top-level `require`s: decided now when their sizes are known, else kept for every diagram."""
        lookup = global_lookup(self.global_axes, {})
        deferred = []
        for node in self.requires:
            try:
                r = requirement(node, lookup)
            except CircuitError as e:
                self.sink.add(e)
                continue
            if r is not None:
                deferred.append(r)
        self.global_requires = tuple(deferred)

    # ---------------------------------------------------- circuits

    def instantiate(self, name: str, axis_args: dict[str, Size | Axis], span: Span | None) -> Diagram | None:
        """The circuit checked with these axis arguments: sizes for its axis parameters (the others take
        their defaults), an `ir.Axis` for each name parameter. One diagram per distinct binding, cached.

        Errors inside it go to the sink with a note naming the binding and `span`, the call site. Raises
        WrongArity (at `span`) when a name parameter is left unbound.
        """
        src = self.circuits[name]
        node = src.node
        sizes: dict[str, Size] = {}  # axis parameters
        bound: dict[str, Axis] = {}  # name parameters
        scope: dict[str, Size] = {}  # both, by size, for the defaults that follow them
        for ap in node.axis_params:
            if isinstance(ap, S.NameParam):
                if ap.name not in axis_args:
                    names = [p.name for p in node.axis_params if isinstance(p, S.NameParam)]
                    raise WrongArity(f"{name} is generic: a call binds its name parameter {ap.name} to an axis",
                                     span, hint=f"{name}[" + ", ".join(f"{p} = ..." for p in names) + "](...)")
                bound[ap.name] = axis_args[ap.name]
                scope[ap.name] = bound[ap.name].size
                continue
            if ap.name in axis_args:
                sizes[ap.name] = axis_args[ap.name]
            elif ap.size is not None:
                try:
                    sizes[ap.name] = eval_size(ap.size, global_lookup(self.global_axes, scope))
                except CircuitError as e:
                    self.sink.add(e)
                    sizes[ap.name] = Size.symbol(ap.name)
            else:
                sizes[ap.name] = Size.symbol(ap.name)
            scope[ap.name] = sizes[ap.name]
        key = (name, tuple(sorted({**sizes, **bound}.items(), key=lambda kv: kv[0])))
        if key in self.cache:
            return self.cache[key]
        if name in self.stack:
            cycle = " -> ".join(self.stack[self.stack.index(name):] + [name])
            self.sink.add(RecursiveCircuit(f"circuit {name} calls itself: {cycle}", span,
                                           hint="circuits cannot recurse; use repeat or scan"))
            return None
        if len(self.stack) >= MAX_CALL_DEPTH:  # checked before recursing into the callee
            self.sink.add(InvalidArgument(
                f"this call makes a chain of {len(self.stack) + 1} circuits, each calling the next "
                f"({self.stack[0]} -> ... -> {self.stack[-1]} -> {name}); the limit is {MAX_CALL_DEPTH} "
                f"(limits.MAX_CALL_DEPTH)", span, hint="call the parts one after another from one circuit"))
            return None
        sink, first = self.sink, len(self.sink.errors)
        self.stack.append(name)
        try:
            d = self._instantiate_generic(src, sizes, bound, span) if bound else _CircuitChecker(self, src, sizes).run()
        finally:
            self.stack.pop()
        if axis_args:  # an error inside an instantiation names it and where it was asked for
            note = f"in {generic.binding_text(name, axis_args)}" + (f", called at {span}" if span is not None else "")
            for e in sink.errors[first:]:
                e.notes.append(note)
        self.cache[key] = d
        return d

    def _instantiate_generic(self, src: _CircuitSrc, sizes: dict[str, Size], bound: dict[str, Axis],
                             span: Span | None) -> Diagram | None:
        """A generic circuit with its name parameters bound: checked first with each parameter an axis of
        its own (what the text means for distinct axes), then with the bound axes in their place."""
        node = src.node
        scope = dict(self.global_axes)
        scope.update(sizes)
        for p, a in bound.items():
            if a.name in scope and scope[a.name] != a.size:
                raise AxisCapture(f"{p} is bound to {a.name} (size {a.size}), but inside {node.name} {a.name} names "
                                  f"another axis (size {scope[a.name]})", span,
                                  hint="bind it to an axis of another name")
        distinct_args = {}
        for ap in node.axis_params:
            distinct_args[ap.name] = bound[ap.name].size if ap.name in bound else sizes[ap.name]
        sink, cache = self.sink, self.cache
        self.sink, self.cache = ErrorSink(), _Overlay(cache)  # what fails here is reported by the real check
        try:
            distinct = _CircuitChecker(self, src, distinct_args).run()
            quiet = self.sink.errors
        finally:
            self.sink, self.cache = sink, cache
        if distinct is not None:
            found = generic.captures(distinct, node, bound)
            if found:
                for e in found:
                    self.sink.add(e)
                return None
        d = _CircuitChecker(self, src, sizes, bound).run()
        if distinct is None and d is not None and quiet:
            first = min(quiet, key=lambda e: (e.span is None, e.span or Span("", 0, 0, 0, 0)))
            self.sink.add(AxisCapture(
                f"{generic.merged_by(node, bound)}, and the text checks only because they are one axis; for "
                f"distinct axes: {first.message}", first.span,
                hint="bind the parameters to distinct axes (declare another of the same size: axis d2 = d)"))
            return None
        return d


# ---------------------------------------------------------------- entry points


class _NoCycleCollection:
    """Pause the cyclic garbage collector while checking, and give the checker room on the stack.

    Checking allocates many small objects and no cycles worth collecting; a
    generational collection every few thousand allocations re-walks the whole
    young heap and made checking time grow faster than program size. The
    checker recurses through calls and nesting, bounded by the limits
    (limits.CHECK_FRAMES), so Python's recursion limit is raised to that.
    """

    def __enter__(self):
        self.was_enabled = gc.isenabled()
        gc.disable()
        self.room = recursion_room()
        self.room.__enter__()

    def __exit__(self, *exc):
        self.room.__exit__(*exc)
        if self.was_enabled:
            gc.enable()


class _Overlay(dict):
    """A cache that reads through to another and keeps its own writes (for checks whose results,
    failures included, must not be seen by the real check)."""

    def __init__(self, base: dict):
        super().__init__()
        self.base = base

    def __contains__(self, key) -> bool:
        return dict.__contains__(self, key) or key in self.base

    def __getitem__(self, key):
        return dict.__getitem__(self, key) if dict.__contains__(self, key) else self.base[key]


def _check(checker: Checker, root_module: S.Module | None, root: str) -> Program:
    checker.root_module, checker.root = root_module, root
    checker.resolve_axes()
    checker.check_requires()
    diagrams: dict[str, Diagram] = {}
    order = []
    if root_module is not None:
        order = [c.name for c in root_module.circuits]
    order += [n for n in checker.circuits if n not in order]
    for name in order:
        src = checker.circuits[name]
        if generic.is_generic(src.node):  # typed per binding, at its calls
            continue
        d = checker.instantiate(name, {}, src.node.span)
        if d is not None:
            diagrams[name] = d
    called = {key[0] for key in checker.cache}
    for name in order:  # a generic circuit nothing calls is not typed, but its names are resolved
        src = checker.circuits[name]
        if generic.is_generic(src.node) and name not in called:
            for e in generic.unresolved(src.node, checker.global_axes, checker.circuits):
                checker.sink.add(e)
    checker.raise_errors()
    return Program(checker, root, diagrams, order)


def load(path, *, max_weight_elements: int = DEFAULT_MAX_WEIGHT_ELEMENTS, sizes: dict | None = None) -> Program:
    """Read, check and return a program from a `.circuit` file.

    `use` may read files next to this one (and below) and in the bundled
    circuits/ folder; nothing else. `sizes` overrides the sizes of top-level
    axes (see `Program.with_sizes`). Raises CircuitError with every problem found.
    """
    path = Path(path)
    display = str(path)
    checker = Checker([path.parent, _resources.circuits_dir()], max_weight_elements, sizes)
    if not path.is_file():
        raise UseNotFound(f"no such file: {path}")
    with _NoCycleCollection():
        module = checker.load_file(path, display)
        return _check(checker, module, display)


def parse(text: str, name: str = "<text>", *, root: str | os.PathLike | None = None,
          max_weight_elements: int = DEFAULT_MAX_WEIGHT_ELEMENTS, sizes: dict | None = None) -> Program:
    """Check program text. `use` resolves against `root` (if given) and circuits/; `sizes` overrides
    the sizes of top-level axes (see `Program.with_sizes`).

    >>> program = parse("axis d = 4\\ncircuit Id(x: [d]) -> [d]:\\n    return x\\n")
    >>> program["Id"].output.type
    TensorType(axes=(Axis(name='d', size=Size('4')),), dtype='float')
    """
    roots = ([Path(root)] if root is not None else []) + [_resources.circuits_dir()]
    checker = Checker(roots, max_weight_elements, sizes)
    with _NoCycleCollection():
        module = checker.load_text(text, name, f"<text:{name}>", Path(root) if root is not None else None)
        return _check(checker, module, name)
