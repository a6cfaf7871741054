"""Front end, checker: the statements of a circuit body (assign, param, return, repeat) and its signature.

A mixin of `_CircuitChecker`: these methods read its expressions' values and
name the boxes and wires each statement made after its targets.
"""
from __future__ import annotations

from .. import syntax as S
from ..errors import (
    AxisValueClash,
    CircuitError,
    DuplicateDefinition,
    InvalidArgument,
    NoReturn,
    ShapeMismatch,
    Span,
    WrongArity,
)
from ..ir import Diagram, Init, Port, TensorType, TupleType, Weight, Wire
from ..limits import MAX_STEPS
from ..ops import OWNS_WEIGHTS
from .hints import mismatch_hint, type_table
from .sizes import requirement
from .values import (
    POISON,
    C,
    T,
    Tup,
    _Builder,
    _flat,
    _map_value,
    _Poison,
    _Skip,
    _type_of,
)

INITIALISERS = {"zeros", "ones", "normal", "uniform", "lecun", "glorot"}  # what `param ... = init` takes


class _Statements:
    """The statements of a body and its signature; `run` checks a whole circuit."""

    # ---------------------------------------------------- the body

    def run(self) -> Diagram | None:
        node = self.node
        ports = []
        for ap in node.axis_params:
            if ap.name in {p.name for p in node.params}:
                self.checker.sink.add(AxisValueClash(f"{ap.name} is both an axis parameter and an input", ap.span))
        seen = set()
        for p in node.params:
            try:
                if p.name in seen:
                    self.err(DuplicateDefinition, f"input {p.name} is declared twice", p.span)
                seen.add(p.name)
                if p.name in self.b.axes:
                    self.err(AxisValueClash, f"{p.name} is an axis and cannot also name an input", p.span,
                             hint=f"rename the input, e.g. {p.name}_")
                ptype = self.resolve_type(p.type)
            except CircuitError as e:
                self.checker.sink.add(e)
                self.b.values[p.name] = POISON
                ports.append(None)
                continue
            value = self._input_value(p.name, ptype)
            self.b.values[p.name] = value
            ports.append(Port(p.name, ptype, tuple(v.wire for v in _flat(value))))
        try:
            ret_type = self.resolve_type(node.returns)
        except CircuitError as e:
            self.checker.sink.add(e)
            ret_type = None
        result = self.block(node.body, top=True)
        if result is None:
            if not any(isinstance(st, S.Return) for st in node.body):
                self.checker.sink.add(NoReturn(f"circuit {node.name} has no return statement", node.name_span,
                                               hint=f"end the body with: return <value of type {node.returns and ret_type}>"))
            return None
        value, rspan = result
        if any(p is None for p in ports) or ret_type is None or isinstance(value, _Poison):
            return None
        try:
            value = self.coerce_return(value, ret_type, rspan)
        except CircuitError as e:
            self.checker.sink.add(e)
            return None
        except _Skip:
            return None
        out = Port("return", ret_type, tuple(v.wire for v in _flat(value)))
        return self.b.freeze(tuple(ports), out, tuple(self.axis_args.items()), node.span,
                             requires=tuple(self.requires) + self.checker.global_requires)

    def _input_value(self, name, ptype):
        if isinstance(ptype, TupleType):
            return Tup(tuple(self._input_value(f"{name}.{i}", t) for i, t in enumerate(ptype.items)))
        wire = self.b.unique_wire(name)
        self.b.wires[wire] = Wire(wire, ptype)
        return T(wire, ptype)

    def coerce_return(self, value, rtype, span):
        if isinstance(rtype, TupleType):
            if not isinstance(value, Tup) or len(value.items) != len(rtype.items):
                n = len(value.items) if isinstance(value, Tup) else 1
                self.err(WrongArity, f"returns {n} bundle{'s' if n != 1 else ''}, but the signature says {rtype}",
                         span)
            return Tup(tuple(self.coerce_return(v, t, span) for v, t in zip(value.items, rtype.items)))
        if isinstance(value, C):  # int where the signature returns int (v1), else float
            value = self.constant_for(value, rtype, span)
        t = self.tensor(value, span, "the returned value")
        if not t.type.same(rtype):
            self.err(ShapeMismatch, f"returns {t.type}, but the signature says {rtype}", span,
                     table=type_table(rtype, t.type, "signature", "returned"),
                     hint=mismatch_hint(rtype, t.type, "the result"))
        return t

    def block(self, stmts, top=False):
        """Checks statements; returns (value, span) of the return statement if any."""
        ret = None
        for st in stmts:
            if ret is not None:
                self.checker.sink.add(InvalidArgument("statement after return is never reached", st.span))
                break
            self.stmt_boxes = []
            try:
                if isinstance(st, S.Assign):
                    self.assign(st)
                elif isinstance(st, S.ParamStmt):
                    self.param(st)
                elif isinstance(st, S.Return):
                    ret = self.return_stmt(st)
                    if not top:
                        self.checker.sink.add(InvalidArgument("return inside repeat is not allowed", st.span))
                elif isinstance(st, S.Repeat):
                    self.repeat(st)
                elif isinstance(st, S.Require):
                    self.require(st)
            except CircuitError as e:
                self.checker.sink.add(e)
                self._poison_targets(st)
            except _Skip:
                self._poison_targets(st)
        return ret

    def _poison_targets(self, st):
        if isinstance(st, S.Assign):
            for name, _ in st.targets:
                self.b.values[name] = POISON
        elif isinstance(st, S.ParamStmt):
            self.b.values[st.name] = POISON
        elif isinstance(st, S.Return):
            pass

    def check_target(self, name, span):
        if name in self.b.axes or name in self.renames:
            self.err(AxisValueClash, f"{name} is an axis and cannot also name a value", span,
                     hint=f"pick another name for the value, e.g. {name}_")

    def assign(self, st: S.Assign):
        for name, span in st.targets:
            self.check_target(name, span)
        value = self.expr(st.value)
        if isinstance(value, _Poison) or (isinstance(value, Tup) and any(isinstance(v, _Poison) for v in _flat(value))):
            raise _Skip()
        names = [n for n, _ in st.targets]
        if len(names) > 1:
            if not isinstance(value, Tup) or len(value.items) != len(names):
                n = len(value.items) if isinstance(value, Tup) else 1
                self.err(WrongArity, f"{len(names)} names on the left, but the right gives {n} "
                         f"bundle{'s' if n != 1 else ''}", st.span)
            items = list(value.items)
        else:
            items = [value]
        self.finish_statement(names, items)
        for n, v in zip(names, items):
            self.b.values[n] = v
        if len(names) > 1:  # an unpacking names parts of a value made elsewhere (an input, a call's result)
            for n, v in zip(names, items):
                flat = _flat(v)
                for i, x in enumerate(flat):
                    if isinstance(x, T) and x.wire not in self.b.aliases and not x.wire.startswith("%"):
                        self.b.aliases[x.wire] = n if len(flat) == 1 else f"{n}.{i}"

    def finish_statement(self, targets: list[str], items: list):
        """Names this statement's boxes and wires after its targets (see docs/language.md)."""
        created = {w for bx in self.stmt_boxes for w in bx.outputs}
        mapping: dict[str, str] = {}
        new_items = []
        for name, v in zip(targets, items):
            def rename(t: T, name=name):
                if t.wire in created and t.wire not in mapping:
                    mapping[t.wire] = self.b.unique_wire(name)
                    self.b.wires[mapping[t.wire]] = None  # reserve
                return t
            flat = _flat(v)
            if isinstance(v, Tup):
                for i, x in enumerate(flat):
                    if isinstance(x, T):
                        rename(x, f"{name}.{i}")
            elif isinstance(v, T):
                rename(v)
            new_items.append(v)
        base = targets[0] if len(targets) == 1 else "_".join(targets)
        for bx in self.stmt_boxes:
            for w in bx.outputs:
                if w not in mapping:
                    mapping[w] = self.b.unique_wire(f"{base}:{bx.label_hint or bx.op}")
                    self.b.wires[mapping[w]] = None
        for new in mapping.values():
            del self.b.wires[new]
        self.b.rename_wires(mapping, self.stmt_boxes)
        for i, v in enumerate(new_items):
            new_items[i] = _map_value(v, lambda t: T(mapping.get(t.wire, t.wire), t.type))
        items[:] = new_items
        owners = [bx for bx in self.stmt_boxes if bx.op in OWNS_WEIGHTS and (bx.weights or bx.body is not None)]
        for bx in owners:
            if len(owners) == 1 and len(targets) == 1 and targets[0] not in self.b.box_names and \
                    bx.op not in ("repeat",):
                bx.name = targets[0]
            else:
                bx.name = self.b.unique_box(bx.label_hint or bx.op)
            self.b.box_names.add(bx.name)
        for bx in self.stmt_boxes:
            if bx.name is None:
                base = bx.outputs[0] if bx.outputs else bx.op
                if base in self.b.box_names:
                    base = f"{base}:{bx.op}"
                bx.name = self.b.unique_box(base, "@")
                self.b.box_names.add(bx.name)

    def param(self, st: S.ParamStmt):
        self.check_target(st.name, st.name_span)
        if st.name in self.b.values:
            self.err(DuplicateDefinition, f"{st.name} is already defined", st.name_span)
        ptype = self.resolve_type(st.type)
        if not isinstance(ptype, TensorType) or ptype.dtype != "float":
            self.err(InvalidArgument, f"a param is a float bundle such as [d]; got {ptype}", st.type.span)
        init = self.initialiser(st.init, ptype)
        (out,) = self.add_box("param", [], [ptype], st.span, weights=[Weight("", ptype, init)],
                              roles={a.name: "produced" for a in ptype.axes})
        box = self.stmt_boxes[-1]
        items = [out]
        self.finish_statement([st.name], items)
        box.name = st.name if st.name not in self.b.box_names or box.name == st.name else box.name
        self.b.values[st.name] = items[0]

    def initialiser(self, node, ptype: TensorType) -> Init:
        names = ptype.names
        if node is None:
            return Init("normal", (0.02,))
        if isinstance(node, S.Name) and node.id in ("zeros", "ones"):
            return Init(node.id)
        if isinstance(node, S.Name) and node.id in ("lecun", "glorot"):
            if len(names) < 2:
                return Init(node.id, (), names, ())
            return Init(node.id, (), names[:-1], names[-1:])
        if isinstance(node, S.Call) and node.func in ("normal", "uniform"):
            want = 1 if node.func == "normal" else 2
            if len(node.args) != want or any(isinstance(a, (S.Keyword, S.Mapping)) for a in node.args):
                self.err(WrongArity, f"{node.func} takes {want} number{'s' if want > 1 else ''}: "
                         + ("normal(std)" if want == 1 else "uniform(lo, hi)"), node.span)
            vals = tuple(self.const_number(a, f"{node.func}'s argument") for a in node.args)
            if node.func == "normal" and vals[0] < 0:
                self.err(InvalidArgument, "normal(std) needs std >= 0", node.span)
            if node.func == "uniform" and vals[0] > vals[1]:
                self.err(InvalidArgument, "uniform(lo, hi) needs lo <= hi", node.span)
            return Init(node.func, vals)
        # v1: a constant expression (imported here: that module builds on this one's checker)
        from .initialisers import init_expression

        return init_expression(self, node, ptype)

    def return_stmt(self, st: S.Return):
        if len(st.values) == 1:
            value = self.expr(st.values[0])
        else:
            value = Tup(tuple(self.expr(v) for v in st.values))
        target = "out" if "out" not in self.b.values else "out_"
        if isinstance(value, C):  # int where the signature returns int (v1), else float
            r = self.node.returns
            value = self.constant_for(value, TensorType((), r.dtype) if isinstance(r, S.TensorTypeNode) else None,
                                      st.span)
        items = [value]
        self.finish_statement([target], items)
        return items[0], st.span

    def repeat(self, st: S.Repeat):
        count = self.eval_size_here(st.count)
        if count.is_const and count.value < 1:
            self.err(InvalidArgument, f"repeat needs a count of at least 1, got {count.value}", st.count.span)
        if count.is_const and count.value > MAX_STEPS:
            self.err(InvalidArgument, f"repeat {count.value:,} is over the limit of {MAX_STEPS:,} steps "
                     "(limits.MAX_STEPS)", st.count.span, hint="JAX counts the steps of a loop in int32")
        carried = []
        for name in _assigned_names(st.body):
            v = self.b.lookup(name)
            if v is not None and not isinstance(v, C):
                carried.append((name, v))
        outer_boxes = self.stmt_boxes
        inner = type(self).__new__(type(self))
        inner.checker, inner.src, inner.node, inner.axis_args = self.checker, self.src, self.node, {}
        inner.renames, inner.requires = self.renames, self.requires  # the same text, the same binding
        inner.b = _Builder("repeat", self.b.axes, parent=self.b)
        inner.stmt_boxes = []
        # carried values enter the body as its first inputs
        in_ports = []
        for name, v in carried:
            if isinstance(v, _Poison):
                raise _Skip()
            inner.b.values[name] = _map_value(v, lambda t: t)  # placeholder, replaced below
            val = inner._input_value(name, _type_of(v))
            inner.b.values[name] = val
            in_ports.append(Port(name, _type_of(v), tuple(x.wire for x in _flat(val))))
        inner.block(st.body)
        outs = []
        for name, v in carried:
            final = inner.b.values.get(name)
            if isinstance(final, _Poison):
                raise _Skip()
            if not _type_of(final).same(_type_of(v)):
                t0, t1 = _type_of(v), _type_of(final)
                table = type_table(t0, t1, "before", "after") if isinstance(t0, TensorType) and isinstance(t1, TensorType) else []
                self.err(ShapeMismatch, f"the repeat body changes the type of {name} from {t0} to {t1}",
                         st.span, table=table, hint="each copy must give back what it got")
            outs.append(final)
        cap_ports = [Port(n, inner_v.type, (inner_v.wire,)) for n, _o, inner_v in inner.b.captures]
        out_wires = tuple(x.wire for v in outs for x in _flat(v))
        out_type = TupleType(tuple(_type_of(v) for v in outs))
        body = inner.b.freeze(tuple(in_ports + cap_ports), Port("carry", out_type, out_wires), (), st.span)
        self.stmt_boxes = outer_boxes
        in_wires = [x.wire for _, v in carried for x in _flat(v)] + [o.wire for _n, o, _i in inner.b.captures]
        out_types = [x.type for _, v in carried for x in _flat(v)]
        roles = {a.name: "replaced" for t in out_types for a in t.axes}
        header = Span(st.span.file, st.span.line, st.span.column, st.count.span.end_line, st.count.span.end_column)
        self.budget_of_copies(body, count, header, f"repeat {S.size_text(st.count)}")
        results = self.add_box("repeat", in_wires, out_types, st.span, roles=roles,
                               attrs={"count": count, "carried": len(out_types)}, body=body, label="repeat")
        # rebind carried names
        it = iter(results)
        new_vals = []
        for name, v in carried:
            new_vals.append(_map_value(v, lambda t: next(it)))
        names = [n for n, _ in carried]
        self.finish_statement(names or ["repeat"], new_vals if names else [Tup(())])
        for n, nv in zip(names, new_vals):
            self.b.values[n] = nv


    def require(self, st: S.Require):
        """`require` in a body: decided for this instantiation now, or kept for when free sizes are bound."""
        r = requirement(st, self.size_lookup)
        if r is not None:
            self.requires.append(r)


def _assigned_names(stmts) -> list[str]:
    out = []
    for st in stmts:
        if isinstance(st, S.Assign):
            for n, _ in st.targets:
                if n not in out:
                    out.append(n)
        elif isinstance(st, S.Repeat):
            for n in _assigned_names(st.body):
                if n not in out:
                    out.append(n)
    return out
