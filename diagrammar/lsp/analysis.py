"""Tools, language server: what an editor asks about a `.circuit` text, answered from the checker.

Pure Python, no pygls: the server (server.py) and the tests call it. A text is
checked once per version (`Analysis`); every answer reads that result and the
AST, never a second parser. When the text has errors, the diagrams of the
circuits that did check are still used, and when it does not parse, the last
analysis that did parse answers for names (the server keeps it).

Positions here are 1-based lines and 0-based columns in code points, as the
checker's spans (whose columns are 1-based) convert; the server converts to
and from LSP's UTF-16 positions.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import _resources, ops
from .. import syntax as S
from ..errors import CircuitError, Span
from ..fmt import tokenize

__all__ = ["Analysis", "analyse", "Diagnostic", "Symbol", "Completion", "KEYWORDS"]

KEYWORDS = ("use", "axis", "circuit", "param", "return", "repeat", "require", "int", "bool", "float")

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WIRE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(@\d+)?((?:\.\d+)*)$")  # target, @k of a reassignment, .i of a tuple


@dataclass
class Diagnostic:
    line: int  # 1-based
    column: int  # 1-based, as Span
    end_line: int
    end_column: int
    message: str
    code: str
    severity: str = "error"
    hint: str | None = None
    detail: list[str] = field(default_factory=list)


@dataclass
class Symbol:
    name: str
    kind: str  # circuit | axis | use | input | wire | weight
    span: Span
    selection: Span
    detail: str = ""
    children: list["Symbol"] = field(default_factory=list)


@dataclass
class Completion:
    label: str
    kind: str  # operation | keyword-argument | circuit | axis | wire | keyword | file
    detail: str = ""
    documentation: str = ""
    insert_text: str | None = None


@dataclass
class Definition:
    path: str
    span: Span


def _abs(file: str) -> str:
    return file if os.path.isabs(file) else os.path.abspath(file)


def _size_text(size) -> str:
    return str(size)


def type_with_sizes(t) -> str:
    """`[seq=16, d=64]` (dtype first when not float); tuples in parentheses."""
    if hasattr(t, "items"):
        return "(" + ", ".join(type_with_sizes(x) for x in t.items) + ")"
    prefix = "" if t.dtype == "float" else t.dtype
    return prefix + "[" + ", ".join(a.name if _size_text(a.size) == a.name else f"{a.name}={_size_text(a.size)}"
                                    for a in t.axes) + "]"


class Analysis:
    """One version of one document: its diagnostics, AST, checker and diagrams."""

    def __init__(self, text: str, path: str | None, name: str | None = None):
        self.text = text
        self.path = path
        self.name = name or path or "<untitled>"  # how spans and messages name this text
        self.lines = text.splitlines()
        self.module: S.Module | None = None
        self.checker = None
        self.diagrams: dict = {}
        self.errors: list[CircuitError] = []
        self.diagnostics: list[Diagnostic] = []
        self._cost: dict = {}
        self._run()

    # ------------------------------------------------------------ checking

    def _run(self) -> None:
        from ..check import Checker
        from ..check import program as P

        root = Path(self.path).parent if self.path else None
        roots = ([root] if root is not None else []) + [_resources.circuits_dir()]
        checker = Checker(roots)
        self.checker = checker
        try:
            module = checker.load_text(self.text, self.name, f"<text:{self.name}>", root)
            self.module = module
            if module is not None:
                P._check(checker, module, self.name)
            else:
                checker.sink.raise_if_any(checker.sources)
        except CircuitError as e:
            self.errors = list(e.errors)
        except RecursionError:
            self.errors = [CircuitError("this program nests too deeply to check")]
        # every circuit that checked, at its default sizes (the last instantiation of each)
        for (name, _sizes), d in checker.cache.items():
            if d is not None and name in checker.circuits:
                src = checker.circuits[name]
                if not src.node.axis_params or not _sizes or name not in self.diagrams:
                    self.diagrams[name] = d
        self.diagnostics = [self._diagnostic(e) for e in self.errors]

    def _diagnostic(self, e: CircuitError) -> Diagnostic:
        span = e.span
        if span is not None and span.file == self.name:
            return Diagnostic(span.line, span.column, span.end_line, span.end_column, e.message, e.code,
                              e.kind, e.hint, list(e.table))
        # an error in a file this one uses (or about the whole file): shown on the `use` that reads it
        where = None
        if span is not None and self.module is not None:
            for use in self.module.uses:
                where = use.span
                if os.path.basename(span.file) == os.path.basename(use.path):
                    break
        msg = e.message if span is None else f"{span}: {e.message}"
        if where is None:
            return Diagnostic(1, 1, 1, 2, msg, e.code, e.kind, e.hint, list(e.table))
        return Diagnostic(where.line, where.column, where.end_line, where.end_column, msg, e.code, e.kind,
                          e.hint, list(e.table))

    @property
    def ok(self) -> bool:
        return not self.errors

    # ------------------------------------------------------------ names

    def axes(self) -> dict[str, tuple[S.AxisItem, str]]:
        """Every declared axis (this file and the files it uses): name -> (declaration, file)."""
        if self.checker is None:
            return {}
        return {n: v for n, v in self.checker.axis_decls.items() if "\0" not in n}

    def circuits(self) -> dict:
        """Every circuit known: name -> the checker's source record (node, file)."""
        return dict(self.checker.circuits) if self.checker is not None else {}

    def word_at(self, line: int, col: int) -> tuple[str, int, int] | None:
        """The name under (line, col): (word, start column, end column), 0-based columns."""
        if not 1 <= line <= len(self.lines):
            return None
        text = self.lines[line - 1]
        for m in _WORD.finditer(text):
            if m.start() <= col <= m.end():
                if "#" in text[:m.start()] and _in_comment(text, m.start()):
                    return None
                return m.group(), m.start(), m.end()
        return None

    def circuit_at(self, line: int) -> S.CircuitDef | None:
        if self.module is None:
            return None
        for c in self.module.circuits:
            if c.span.line <= line <= c.span.end_line:
                return c
        return None

    def _next_char(self, line: int, end: int) -> str:
        rest = self.lines[line - 1][end:].lstrip()
        return rest[:1]

    # ------------------------------------------------------------ hover

    def hover(self, line: int, col: int) -> str | None:
        """Markdown for the name at (line, col), or None."""
        w = self.word_at(line, col)
        if w is None:
            return None
        word, start, end = w
        nxt = self._next_char(line, end)
        circuit = self.circuit_at(line)
        if word in KEYWORDS:
            return None
        # a keyword argument: `over = d`
        if nxt == "=" and not self.lines[line - 1][end:].lstrip().startswith("==") and circuit is not None:
            call = self.enclosing_call(line, start)
            if call:
                op = ops.lookup(call)
                if op is not None:
                    kw = op.keyword_dict
                    if word in kw:
                        default = "required" if kw[word] is ops.REQUIRED else f"default {kw[word]}"
                        return f"`{word}`: keyword argument of `{op.signature()}` ({default})"
        # a call: its box
        if nxt in ("(", "[") and circuit is not None:
            box_md = self._box_hover(circuit, word, line, start)
            if box_md:
                return box_md
        circuits = self.circuits()
        if word in circuits:
            return self._circuit_hover(word)
        op = ops.lookup(word)
        if op is not None and nxt == "(":
            return f"```\n{op.signature()}\n```\n{op.doc}"
        if circuit is not None:
            wire = self._wire_hover(circuit, word, line, start)
            if wire:
                return wire
            for ap in circuit.axis_params:
                if ap.name == word:
                    return f"axis parameter `{word}` of {circuit.name}" + (
                        f" (default {S.size_text(ap.size)})" if getattr(ap, "size", None) is not None else "")
        axes = self.axes()
        if word in axes:
            return self._axis_hover(word)
        if op is not None:
            return f"```\n{op.signature()}\n```\n{op.doc}"
        return None

    def _axis_hover(self, name: str) -> str:
        item, file = self.axes()[name]
        size = self.checker.global_axes.get(name) if self.checker is not None else None
        decl = S.size_text(item.size) if item.size is not None else None
        if size is None:
            return f"axis `{name}`" + (f" = {decl}" if decl else " (size bound when compiling)")
        if decl is None:
            return f"axis `{name}`: free, its size is given when compiling"
        text = f"axis `{name}` = {decl}"
        if str(size) != decl:
            text += f" = {size}"
        return text

    def _circuit_hover(self, name: str) -> str:
        d = self.diagrams.get(name)
        if d is None:
            return f"circuit `{name}` (does not check yet)"
        lines = [f"```\ncircuit {d.summary()}\n```"]
        cost = self._cost_report(name)
        if cost is not None:
            lines.append(f"{cost.parameters} parameters, {cost.forward_flops} FLOPs forward (batch 1)")
        return "\n".join(lines)

    def _cost_report(self, name: str):
        if name in self._cost:
            return self._cost[name]
        rep = None
        d = self.diagrams.get(name)
        if d is not None:
            try:
                from ..backends.cost import analyse as cost_analyse

                rep = cost_analyse(d)
            except Exception:  # noqa: BLE001 - a cost rule that fails never breaks a hover
                rep = None
        self._cost[name] = rep
        return rep

    def _boxes_of(self, circuit: S.CircuitDef):
        """(path, box, diagram) for the boxes of ``circuit`` (its repeat bodies included)."""
        d = self.diagrams.get(circuit.name)
        if d is None:
            return []
        out = []

        def walk(diagram, prefix):
            for b in diagram.boxes:
                out.append((prefix + b.name, b, diagram))
                if b.body is not None and b.op == "repeat":
                    walk(b.body, prefix + b.name + ".")
        walk(d, "")
        return out

    def _box_hover(self, circuit: S.CircuitDef, word: str, line: int, start: int) -> str | None:
        found = None
        for path, b, diagram in self._boxes_of(circuit):
            if b.span is not None and b.span.line == line and b.span.column == start + 1:
                if found is None or b.op == word or b.op in ("call", "scan", "repeat", "dispatch"):
                    found = (path, b, diagram)
        if found is None:
            return None
        path, b, diagram = found
        outs = [diagram.wire(o) for o in b.outputs if _has_wire(diagram, o)]
        head = f"`{word}` → " + ", ".join(type_with_sizes(w.type) for w in outs) if outs else f"`{word}`"
        lines = [head]
        op = ops.lookup(word)
        if op is not None:
            lines.append(f"```\n{op.signature()}\n```\n{op.doc}")
        elif word in self.diagrams:
            lines.append(f"```\ncircuit {self.diagrams[word].summary()}\n```")
        rep = self._cost_report(circuit.name)
        row = None
        if rep is not None:
            row = next((r for r in rep.boxes if r.path == path), None)
        if row is not None:
            lines.append(f"box `{path}`: {row.params} parameters, {row.forward_flops} FLOPs forward (batch 1)")
        else:
            n = sum(w.type.numel().value for w in b.weights if w.type.numel().is_const)
            lines.append(f"box `{path}`: {n:,} parameters")
        return "\n\n".join(lines)

    def _wire_hover(self, circuit: S.CircuitDef, word: str, line: int, start: int) -> str | None:
        d = self.diagrams.get(circuit.name)
        if d is None:
            return None
        stmt, target = self._defining_statement(circuit, word, line, start)
        if stmt is None:
            return None
        if isinstance(stmt, S.Param):
            for p in d.inputs:
                if p.name == word:
                    return f"input `{word}`: {type_with_sizes(p.type)}"
            return None
        boxes = [(p, b, dg) for p, b, dg in self._boxes_of(circuit)
                 if b.span is not None and stmt.span.line <= b.span.line <= stmt.span.end_line
                 and _within(b.span, stmt.span)]
        if isinstance(stmt, S.ParamStmt):
            for p, b, dg in boxes:
                if b.weights:
                    outs = [dg.wire(o) for o in b.outputs if _has_wire(dg, o)]
                    t = outs[0].type if outs else b.weights[0].type
                    return (f"weight `{word}`: {type_with_sizes(t)}, "
                            f"{_count(b.weights[0].type.numel())} parameters, init {b.weights[0].init}")
            return None
        if not boxes:
            # a plain renaming (`y = x`): the wire keeps its name
            for wname in (word,):
                if _has_wire(d, wname):
                    return f"wire `{word}`: {type_with_sizes(d.wire(wname).type)}"
            return None
        value = getattr(stmt, "value", None)
        top = None
        if value is not None:
            top = next(((p, b, dg) for p, b, dg in boxes if b.span == value.span), None)
        if top is None:
            top = boxes[-1]
        # the wires the statement names after the target: `x`, `x@2`, `state.0` and `state.1` of a tuple
        named = [(o, dg) for _p, bx, dg in boxes for o in bx.outputs
                 if _WIRE.match(o) and _WIRE.match(o).group(1) == word and _has_wire(dg, o)]
        named = list(dict.fromkeys(named))
        if named:
            last = _WIRE.match(named[-1][0]).group(2) or ""
            parts = [(o, dg) for o, dg in named if (_WIRE.match(o).group(2) or "") == last]
            types = [type_with_sizes(dg.wire(o).type) for o, dg in parts]
            shown = types[0] if len(types) == 1 and not _WIRE.match(parts[0][0]).group(3) else \
                "(" + ", ".join(types) + ")"
            return f"wire `{word}`: {shown}"
        path, b, dg = top
        idx = target
        outs = list(b.outputs)
        if len(outs) > 1 and idx is not None and idx < len(outs):
            wire = outs[idx]
        else:
            wire = outs[0] if outs else None
        if wire is None or not _has_wire(dg, wire):
            return None
        t = dg.wire(wire).type
        return f"wire `{word}`: {type_with_sizes(t)}" + (f"  \nfrom `{b.op}` box `{path}`" if b.op else "")

    def _statements(self, circuit: S.CircuitDef):
        def flat(body):
            for st in body:
                yield st
                if isinstance(st, S.Repeat):
                    yield from flat(st.body)
        return list(flat(circuit.body))

    def _defining_statement(self, circuit: S.CircuitDef, word: str, line: int, start: int):
        """The statement that gives ``word`` its value at this position, and the target's index."""
        stmts = self._statements(circuit)
        here = next((st for st in stmts if not isinstance(st, S.Repeat)
                     and st.span.line <= line <= st.span.end_line), None)
        # the name is a target of this very statement
        if isinstance(here, S.Assign):
            for i, (t, sp) in enumerate(here.targets):
                if t == word and sp.line == line and sp.column == start + 1:
                    return here, i
        if isinstance(here, S.ParamStmt) and here.name == word and here.name_span.column == start + 1:
            return here, None
        before = [st for st in stmts if not isinstance(st, S.Repeat)
                  and (here is None or st.span.line < here.span.line)]
        if here is None:
            before = [st for st in stmts if not isinstance(st, S.Repeat) and st.span.line < line]
        for st in reversed(before):
            if isinstance(st, S.Assign):
                for i, (t, _sp) in enumerate(st.targets):
                    if t == word:
                        return st, i
            if isinstance(st, S.ParamStmt) and st.name == word:
                return st, None
        for p in circuit.params:
            if p.name == word:
                return p, None
        return None, None

    # ------------------------------------------------------------ definitions

    def definition(self, line: int, col: int) -> list[Definition]:
        """Where the name (or `use` path) at (line, col) is defined."""
        text = self.lines[line - 1] if 1 <= line <= len(self.lines) else ""
        use = re.match(r'\s*use\s+"([^"]*)"', text)
        if use and use.start(1) <= col <= use.end(1):
            target = self._use_target(use.group(1))
            return [Definition(target, Span(target, 1, 1, 1, 1))] if target else []
        w = self.word_at(line, col)
        if w is None:
            return []
        word, start, end = w
        circuit = self.circuit_at(line)
        nxt = self._next_char(line, end)
        if circuit is not None and word not in KEYWORDS and nxt != "(" and word not in self.circuits():
            stmt, idx = self._defining_statement(circuit, word, line, start)
            if isinstance(stmt, S.Assign):
                sp = stmt.targets[idx or 0][1]
                return [Definition(self._file(sp.file), sp)]
            if isinstance(stmt, S.ParamStmt):
                return [Definition(self._file(stmt.name_span.file), stmt.name_span)]
            if isinstance(stmt, S.Param):
                return [Definition(self._file(stmt.span.file), stmt.span)]
            for ap in circuit.axis_params:
                if ap.name == word:
                    return [Definition(self._file(ap.span.file), ap.span)]
        circuits = self.circuits()
        if word in circuits:
            node = circuits[word].node
            return [Definition(self._file(circuits[word].file), node.name_span)]
        axes = self.axes()
        if word in axes:
            item, file = axes[word]
            return [Definition(self._file(file), item.span)]
        return []

    def _file(self, display: str) -> str:
        if display == self.name and self.path:
            return self.path
        return _abs(display)

    def _use_target(self, rel: str) -> str | None:
        bases = ([Path(self.path).parent] if self.path else []) + [_resources.circuits_dir()]
        for b in bases:
            p = b / rel
            if p.is_file():
                return str(p.resolve())
        return None

    # ------------------------------------------------------------ symbols

    def symbols(self) -> list[Symbol]:
        if self.module is None:
            return []
        out = []
        for item in self.module.items:
            if isinstance(item, S.Use):
                out.append(Symbol(item.path, "use", item.span, item.span, "use"))
            elif isinstance(item, S.AxisDecl):
                for ai in item.items:
                    size = S.size_text(ai.size) if ai.size is not None else "free"
                    out.append(Symbol(ai.name, "axis", ai.span, ai.span, size))
            elif isinstance(item, S.CircuitDef):
                d = self.diagrams.get(item.name)
                detail = f"-> {d.output.type}" if d is not None else ""
                sym = Symbol(item.name, "circuit", item.span, item.name_span, detail)
                for p in item.params:
                    sym.children.append(Symbol(p.name, "input", p.span, p.span, ""))
                seen = set()
                for st in self._statements(item):
                    if isinstance(st, S.ParamStmt):
                        sym.children.append(Symbol(st.name, "weight", st.span, st.name_span, "param"))
                    elif isinstance(st, S.Assign):
                        for t, sp in st.targets:
                            if t not in seen:
                                seen.add(t)
                                sym.children.append(Symbol(t, "wire", st.span, sp, ""))
                out.append(sym)
        return out

    # ------------------------------------------------------------ completion

    def enclosing_call(self, line: int, col: int) -> str | None:
        """The operation or circuit whose argument list holds (line, col), if any."""
        prefix = "\n".join(self.lines[:line - 1] + [self.lines[line - 1][:col] if line <= len(self.lines) else ""])
        toks = [t for t in tokenize(prefix) if t[0] == "tok"]
        depth = 0
        for k in range(len(toks) - 1, -1, -1):
            text = toks[k][2]
            if text in (")", "]"):
                depth += 1
            elif text in ("(", "["):
                if depth == 0:
                    if text == "(" and k > 0:
                        j = k - 1
                        if toks[j][2] == "]":  # Name[p = a](
                            d2 = 0
                            while j >= 0:
                                if toks[j][2] == "]":
                                    d2 += 1
                                elif toks[j][2] == "[":
                                    d2 -= 1
                                    if d2 == 0:
                                        break
                                j -= 1
                            j -= 1
                        if j >= 0 and toks[j][1] == "word":
                            return toks[j][2]
                    return None
                depth -= 1
        return None

    def complete(self, line: int, col: int) -> list[Completion]:
        text = self.lines[line - 1][:col] if 1 <= line <= len(self.lines) else ""
        use = re.match(r'\s*use\s+"([^"]*)$', text)
        if use:
            return self._complete_use()
        items: list[Completion] = []
        call = self.enclosing_call(line, col) if text.strip() else None
        if call:
            op = ops.lookup(call)
            if op is not None:
                for k, v in op.keywords:
                    default = "required" if v is ops.REQUIRED else f"default {v}"
                    items.append(Completion(k, "keyword-argument", f"{call}: {default}", op.signature(), f"{k} = "))
        circuit = self.circuit_at(line)
        names = self._names_in_scope(circuit, line) if circuit is not None else self._names_by_text(line)
        for name in names:
            items.append(Completion(name, "wire", "value"))
        for name, (item, _file) in sorted(self.axes().items()):
            items.append(Completion(name, "axis", "axis = " + (S.size_text(item.size) if item.size else "free")))
        if self.module is None:  # typing: the declarations as written
            for text in self.lines:
                m = re.match(r"axis\s+(.*)", text)
                if m:
                    for part in m.group(1).split("#")[0].split(","):
                        name = re.match(r"\s*([A-Za-z_]\w*)", part)
                        if name:
                            items.append(Completion(name.group(1), "axis", "axis"))
                m = re.match(r"circuit\s+([A-Za-z_]\w*)", text)
                if m:
                    items.append(Completion(m.group(1), "circuit", "circuit"))
        if circuit is not None:
            for ap in circuit.axis_params:
                items.append(Completion(ap.name, "axis", f"axis parameter of {circuit.name}"))
        for name, src in self.circuits().items():
            d = self.diagrams.get(name)
            items.append(Completion(name, "circuit", d.summary() if d is not None else "circuit"))
        for name in ops.callable_names():
            op = ops.lookup(name)
            items.append(Completion(name, "operation", op.signature(), op.doc))
        for k in KEYWORDS:
            items.append(Completion(k, "keyword"))
        seen, out = set(), []
        for it in items:
            if it.label not in seen:
                seen.add(it.label)
                out.append(it)
        return out

    def _names_in_scope(self, circuit: S.CircuitDef, line: int) -> list[str]:
        names = [p.name for p in circuit.params]
        for st in self._statements(circuit):
            if st.span.line >= line:
                break
            if isinstance(st, S.Assign):
                names += [t for t, _ in st.targets]
            elif isinstance(st, S.ParamStmt):
                names.append(st.name)
        return list(dict.fromkeys(names))

    def _names_by_text(self, line: int) -> list[str]:
        """Values in scope read from the lines themselves, for a text that does not parse (typing)."""
        names: list[str] = []
        for text in self.lines[:line - 1]:
            header = re.match(r"\s*circuit\s+\w+\s*(?:\[[^\]]*\])?\s*\((.*)", text)
            if header:
                names = re.findall(r"([A-Za-z_]\w*)\s*:", header.group(1))
                continue
            m = re.match(r"\s*(?:param\s+)?([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*[:=](?!=)", text)
            if m and text[:1].isspace():
                names += [n.strip() for n in m.group(1).split(",")]
        return [n for n in dict.fromkeys(names) if n not in KEYWORDS]

    def _complete_use(self) -> list[Completion]:
        out = []
        bases = ([Path(self.path).parent] if self.path else []) + [_resources.circuits_dir()]
        for b in bases:
            try:
                for p in sorted(b.glob("*.circuit")):
                    if self.path and p.resolve() == Path(self.path).resolve():
                        continue
                    out.append(Completion(p.name, "file", str(b)))
            except OSError:
                continue
        return out

    # ------------------------------------------------------------ semantic tokens

    def semantic_tokens(self) -> list[tuple[int, int, int, str]]:
        """(line 1-based, column 0-based, length, kind) for every token worth a colour, in order."""
        circuits = set(self.circuits()) | ({c.name for c in self.module.circuits} if self.module else set())
        axes = set(self.axes())
        if self.module is not None:
            for c in self.module.circuits:
                axes |= {ap.name for ap in c.axis_params}
        callables = set(ops.callable_names())
        from ..fmt import _lexicon

        _, keywords, _ = _lexicon()
        raw = tokenize(self.text)
        toks = [t for t in raw if t[0] in ("tok", "comment")]
        out = []
        for i, t in enumerate(toks):
            if t[0] == "comment":
                out.append((t[2], t[3], len(t[1]), "comment"))
                continue
            _, kind, text, line, col = t
            nxt = toks[i + 1][2] if i + 1 < len(toks) and toks[i + 1][0] == "tok" else ""
            if kind == "number":
                out.append((line, col, len(text), "number"))
            elif kind == "string":
                out.append((line, col, len(text), "string"))
            elif kind == "word":
                if text in keywords:
                    out.append((line, col, len(text), "keyword"))
                elif text in circuits:
                    out.append((line, col, len(text), "class"))
                elif nxt == "(" and text in callables:
                    out.append((line, col, len(text), "function"))
                elif nxt == "=" and i > 0 and _inside_call(toks, i):
                    out.append((line, col, len(text), "parameter"))
                elif text in axes:
                    out.append((line, col, len(text), "type"))
                else:
                    out.append((line, col, len(text), "variable"))
            elif kind == "punct" and text not in ("(", ")", "[", "]", ",", ":"):
                out.append((line, col, len(text), "operator"))
        return out


def _inside_call(toks, i: int) -> bool:
    depth = 0
    for k in range(i - 1, -1, -1):
        if toks[k][0] != "tok":
            continue
        t = toks[k][2]
        if t in (")", "]"):
            depth += 1
        elif t in ("(", "["):
            if depth == 0:
                return True
            depth -= 1
    return False


def _in_comment(text: str, pos: int) -> bool:
    quoted = False
    for ch in text[:pos]:
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            return True
    return False


def _has_wire(d, name: str) -> bool:
    return any(w.name == name for w in d.wires)


def _within(inner: Span, outer: Span) -> bool:
    return (inner.line, inner.column) >= (outer.line, outer.column) and \
        (inner.end_line, inner.end_column) <= (outer.end_line, outer.end_column)


def _count(size) -> str:
    return f"{size.value:,}" if size.is_const else str(size)


def analyse(text: str, path: str | None = None) -> Analysis:
    """Check ``text`` (the contents of ``path``, which need not be saved) for an editor.

    >>> a = analyse("axis d = 4\\ncircuit F(x: [d]) -> [d]:\\n    y = relu(x)\\n    return y\\n")
    >>> a.ok, a.hover(3, 4)
    (True, 'wire `y`: [d=4]')
    """
    return Analysis(text, path)
