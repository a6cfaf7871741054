"""Front end, checker: the typing rule of every operation, found by its name in TYPING.

A rule is `rule(ck, op, node, args) -> value`: `ck` is the circuit checker
(its helpers read operands, axes and constants and add boxes), `op` the
operation's name, `node` the syntax node of the call (an `S.BinOp` or
`S.Neg` for an operator), and `args` the call's arguments bound to the
catalogue's parameter names (`ops.CATALOGUE[op]`), or None for a variadic
operation and a circuit call (`call`), which read `node.args` themselves. It
returns the value the call gives (`T`, `Tup` or `C`) and raises a
CircuitError for a mistake.

The rules are grouped by family, one module each; importing this package
fills the table.
"""
from __future__ import annotations

from collections.abc import Callable

from ... import ops

TYPING: dict[str, Callable] = {}

# Operations no call makes, so no typing rule: the checker builds them from statements and literals.
NOT_SUPPORTED = {
    "const": "made for a number in an expression (the checker's materialise), never called by name",
    "param": "made by a `param name: [axes] = init` statement",
    "repeat": "made by a `repeat N:` block",
}

typing_rule = ops.registrar(TYPING)  # @typing_rule("name", ...) files the function in TYPING


from . import (  # noqa: F401  (they fill TYPING)
    along,
    batchnorm,
    calls,
    constants,
    elementwise,
    index,
    integers,
    linear,
    shape,
    slicing,
    sparse,
    spatial,
    user,
)

ops.bind_table(TYPING, user.rule_for)
