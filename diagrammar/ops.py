"""The catalogue of operations: each operation of the language and of the IR, declared once.

An `Operation` says what a name is: its positional parameters, its keyword
arguments with their defaults, a one-line doc, whether it owns weights and the
family it belongs to. Everything else about an operation is a rule in one
table per stage, keyed by the operation's name, the way JAX keeps one rule
table per transformation:

    stage            table                                    module
    typing           TYPING[name](ck, op, node, args)         diagrammar/check/rules/
    Flax lowering    LOWERING[name](runner, d, box, ...)      diagrammar/backends/flax/
    cost             COST[name](an, site, acc)                diagrammar/backends/cost/rules.py
    DOT label        LABELS[name]                             diagrammar/backends/dot.py
    SVG/TikZ glyph   GLYPHS[name]                             diagrammar/backends/svg/geometry.py

Each table that leaves an operation out says why in its `NOT_SUPPORTED`
dict, and tests/test_catalogue.py fails while an operation lacks a rule
anywhere or a table holds a rule for a name that is not here.

Operations registered from Python (`register_operation`) join the catalogue
at run time and bring their own rules; a `.circuit` file can call them but
never define one. This module imports nothing of jax.

>>> CATALOGUE["linear"].signature()
'linear(x, map, bias = True)'
>>> sorted(o.name for o in family("spatial"))
['conv', 'conv_transpose', 'pad', 'pool']
"""
from __future__ import annotations

import functools
import keyword
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CATALOGUE",
    "FAMILIES",
    "REQUIRED",
    "Operation",
    "bind_table",
    "callable_names",
    "family",
    "lookup",
    "register_operation",
    "registrar",
    "unregister_operation",
]


class _Required:
    """The default of a keyword argument that must be given."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()

# what each family groups (the typing rules and the lowerings are split along these)
FAMILIES = {
    "unary": "element-wise functions of one bundle",
    "binary": "element-wise operations on operands aligned by axis name (arithmetic, comparisons, select)",
    "reduction": "fold named axes away",
    "normalisation": "normalise along named axes, same type out",
    "mask": "same type out, some entries masked",
    "linear": "linear maps and contractions",
    "index": "integer indices in or out",
    "shape": "move, rename, join and split axes without arithmetic",
    "spatial": "sliding windows and padding over named axes",
    "source": "values made from nothing: constants, weights, sizes",
    "call": "a nested diagram: a circuit call, a repeat block, a scan",
    "user": "registered from Python with register_operation",
}


@dataclass(frozen=True)
class Operation:
    """One operation, declared once.

    Attributes:
        name: what a `.circuit` file calls it and what `ir.Box.op` holds.
        family: one of FAMILIES.
        params: positional parameter names.
        keywords: (name, default) pairs in declared order; REQUIRED marks one
            that must be given.
        doc: one line.
        owns_weights: the box names weights (its own, or those of its body),
            so a statement's target names the box.
        variadic: takes any number of operands (and reads its own
            arguments); `params` and `keywords` are then left empty.
        callable: a `.circuit` file calls it by name. False for what the
            checker makes from other syntax: `a + b` is `add`, a number is
            `const`, `param` and `repeat` are statements, a circuit call is `call`.
        in_ir: it can appear as `ir.Box.op` (False only for `size`, which the
            checker folds into a constant).
        symbol: the infix operator of an arithmetic or comparison operation.
        result: the dtype rule of an element-wise result: "float", "keep"
            (the operand's, bool becoming float), "same", "promote", "bool",
            "int" (`//` and `%`) or "cast" (`int(x)`, `float(x)`, `bool(x)`: the
            dtype the operation is named after).
        commutative: operands may be swapped (figures write a constant on
            the right of it).
        typing, lower, cost, glyph: the rules of a registered operation (see
            `register_operation`); None for built-in operations, whose rules
            live in the tables.
    """

    name: str
    family: str
    params: tuple[str, ...] = ()
    keywords: tuple[tuple[str, Any], ...] = ()
    doc: str = ""
    owns_weights: bool = False
    variadic: bool = False
    callable: bool = True
    in_ir: bool = True
    symbol: str | None = None
    result: str | None = None
    commutative: bool = False
    typing: Callable | None = field(default=None, compare=False, repr=False)
    lower: Callable | None = field(default=None, compare=False, repr=False)
    cost: Callable | None = field(default=None, compare=False, repr=False)
    glyph: Any = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def keyword_dict(self) -> dict[str, Any]:
        """The keywords as a dict, in declared order (built once: the checker reads it at every call)."""
        return dict(self.keywords)

    @property
    def user(self) -> bool:
        """True for an operation registered from Python."""
        return self.family == "user"

    def signature(self) -> str:
        """How a call is written, e.g. `layernorm(x, over = ..., eps = 1e-05)`."""
        if self.variadic:
            return f"{self.name}(...)"
        kws = [f"{k} = ..." if v is REQUIRED else f"{k} = {v}" for k, v in self.keywords]
        return f"{self.name}(" + ", ".join(list(self.params) + kws) + ")"


def _declare(*ops: Operation) -> dict[str, Operation]:
    out: dict[str, Operation] = {}
    for op in ops:
        assert op.name not in out and op.family in FAMILIES, op.name
        out[op.name] = op
    return out


def _unary(name: str, result: str, doc: str) -> Operation:
    return Operation(name, "unary", ("x",), doc=doc, result=result)


def _arith(name: str, symbol: str, result: str, doc: str, commutative: bool = False) -> Operation:
    return Operation(name, "binary", ("a", "b"), doc=doc, callable=False, symbol=symbol, result=result,
                     commutative=commutative)


def _reduce(name: str, doc: str) -> Operation:
    return Operation(name, "reduction", ("x",), (("over", None),), doc=doc)


def _norm(name: str, doc: str, eps: float | None = None) -> Operation:
    keywords = (("over", REQUIRED),) + ((("eps", eps),) if eps is not None else ())
    return Operation(name, "normalisation", ("x",), keywords, doc=doc, owns_weights=eps is not None)


_BUILT_IN = _declare(
    # -- unary (element-wise)
    _unary("relu", "keep", "max(x, 0)"),
    _unary("abs", "keep", "|x|"),
    _unary("square", "keep", "x * x"),
    Operation("gelu", "unary", ("x",), (("approximate", True),), result="float",
              doc="GELU: the tanh approximation, or the exact erf form with approximate = false"),
    _unary("silu", "float", "x * sigmoid(x)"),
    _unary("tanh", "float", "hyperbolic tangent"),
    _unary("sigmoid", "float", "1 / (1 + exp(-x))"),
    _unary("softplus", "float", "log(1 + exp(x))"),
    _unary("exp", "float", "e to the x"),
    _unary("log", "float", "natural logarithm"),
    _unary("sqrt", "float", "square root"),
    _unary("erf", "float", "the error function"),
    _unary("sin", "float", "sine (radians)"),
    _unary("cos", "float", "cosine (radians)"),
    *(Operation(t, "unary", ("x",), doc=f"{t}(x): the same axes as {t}", callable=False, result="cast")
      for t in ("int", "float", "bool")),
    Operation("neg", "unary", ("x",), doc="-x, written with a minus sign", callable=False, result="same"),
    # -- binary (element-wise, operands aligned by axis name)
    _arith("add", "+", "promote", "a + b", commutative=True),
    _arith("sub", "-", "promote", "a - b"),
    _arith("mul", "*", "promote", "a * b", commutative=True),
    _arith("div", "/", "float", "a / b, always float"),
    _arith("floordiv", "//", "int", "a // b of ints, rounded toward minus infinity (as Python)"),
    _arith("mod", "%", "int", "a % b of ints, with the sign of b (as Python)"),
    _arith("lt", "<", "bool", "a < b"),
    _arith("le", "<=", "bool", "a <= b"),
    _arith("gt", ">", "bool", "a > b"),
    _arith("ge", ">=", "bool", "a >= b"),
    _arith("eq", "==", "bool", "a == b", commutative=True),
    Operation("maximum", "binary", ("a", "b"), doc="the larger of a and b", result="promote", commutative=True),
    Operation("minimum", "binary", ("a", "b"), doc="the smaller of a and b", result="promote", commutative=True),
    Operation("where", "binary", ("cond", "a", "b"), doc="a where cond is true, else b", result="promote"),
    # -- reductions
    _reduce("sum", "sum over axes (all without over)"),
    _reduce("mean", "mean over axes"),
    _reduce("max", "largest entry over axes"),
    _reduce("min", "smallest entry over axes"),
    _reduce("logsumexp", "log of the sum of exponentials over axes"),
    Operation("argmax", "reduction", ("x",), (("over", REQUIRED),), doc="int position of the largest entry"),
    # -- normalisations
    _norm("softmax", "exp(x) / sum(exp(x)) over axes"),
    _norm("log_softmax", "x - logsumexp(x) over axes"),
    _norm("layernorm", "centre and scale over axes, learnable scale and bias", 1e-5),
    _norm("rmsnorm", "scale by the root mean square over axes, learnable scale", 1e-6),
    Operation("batchnorm", "normalisation", ("x",), (("over", None), ("momentum", 0.9), ("eps", 1e-5)),
              doc="normalise with batch statistics (running averages in eval), learnable scale and bias",
              owns_weights=True),
    # -- masks
    Operation("causal", "mask", ("s", "q", "k"), doc="scores with k > q set to minus infinity"),
    Operation("dropout", "mask", ("x", "rate"), doc="zero entries at random while training"),
    # -- linear maps and contractions
    Operation("linear", "linear", ("x", "map"), (("bias", True),), doc="a learnable map IN -> OUT",
              owns_weights=True),
    Operation("dot", "linear", ("a", "b"), (("over", REQUIRED),), doc="sum of products over shared axes"),
    Operation("einsum", "linear", doc="sum of products, every axis not in `-> [axes]` summed", variadic=True),
    # -- indices
    Operation("onehot", "index", ("i", "a"), doc="int indices to one-hot floats along a new axis"),
    Operation("embed", "index", ("i", "map"), doc="a learnable table looked up by int indices",
              owns_weights=True),
    Operation("arange", "index", ("a",), doc="the positions 0..n-1 of an axis, as int"),
    Operation("gather", "index", ("x", "i"), (("along", REQUIRED),), doc="pick positions along an axis"),
    Operation("take", "index", ("x", "a", "k"), doc="one fixed position along an axis"),
    Operation("slice", "index", ("x", "map", "start"), doc="a range of positions along an axis: slice(x, a -> b, start)"),
    Operation("topk", "index", ("x",), (("over", REQUIRED),),
              doc="the k largest entries along an axis and their int positions: (values, indices)"),
    Operation("scatter_add", "index", ("x", "i"), (("along", REQUIRED),),
              doc="sum entries into the positions the int indices name (the transpose of gather)"),
    # -- shape
    Operation("rename", "shape", ("x", "map"), doc="rename axes of the same sizes"),
    Operation("merge", "shape", ("x", "map"), doc="flatten axes into one, row-major"),
    Operation("split", "shape", ("x", "map"), doc="unflatten one axis into several"),
    Operation("stack", "shape", doc="operands of one type along a new axis", variadic=True),
    Operation("concat", "shape", doc="operands joined along an axis", variadic=True),
    # -- spatial
    Operation("conv", "spatial", ("x", "map"),
              (("over", REQUIRED), ("kernel", REQUIRED), ("padding", "same"), ("bias", True), ("stride", 1),
               ("dilation", 1), ("groups", 1)),
              doc="a learnable convolution over named axes, channels cin -> cout", owns_weights=True),
    Operation("pool", "spatial", ("x",), (("over", REQUIRED), ("window", REQUIRED), ("op", "max"), ("stride", None),
                                          ("padding", "valid")),
              doc="max or mean over windows of named axes"),
    Operation("conv_transpose", "spatial", ("x", "map"),
              (("over", REQUIRED), ("kernel", REQUIRED), ("stride", 1), ("padding", 0), ("output_padding", 0),
               ("bias", True)),
              doc="a learnable transposed convolution (PyTorch's ConvTranspose), channels cin -> cout",
              owns_weights=True),
    Operation("pad", "spatial", ("x",), (("over", REQUIRED), ("padding", REQUIRED), ("value", 0)),
              doc="extend named axes by a constant at either end"),
    # -- sources
    Operation("size", "source", ("a",), doc="the size of an axis, as a constant", in_ir=False),
    Operation("const", "source", doc="a number folded at check time", callable=False),
    Operation("full", "source", ("axes", "value"), doc="a float bundle of the listed axes, every element one constant"),
    Operation("param", "source", doc="a learnable weight (the param statement)", callable=False, owns_weights=True),
    # -- nested diagrams
    Operation("call", "call", doc="a circuit called by name, broadcast over extra axes", callable=False,
              owns_weights=True),
    Operation("repeat", "call", doc="N copies of a block, each with its own weights", callable=False,
              owns_weights=True),
    Operation("scan", "call", doc="a step circuit run along an axis, carrying a state", variadic=True,
              owns_weights=True),
    Operation("dispatch", "call", doc="each position run through the expert its int index chooses, "
              "among stacked copies", variadic=True, owns_weights=True),
)

# Every operation by name: the built-in ones, then those registered from Python.
CATALOGUE: dict[str, Operation] = dict(_BUILT_IN)


def lookup(name: str) -> Operation | None:
    """The operation called `name`, or None."""
    return CATALOGUE.get(name)


def family(name: str) -> list[Operation]:
    """The operations of one family, in declared order."""
    return [o for o in CATALOGUE.values() if o.family == name]


def callable_names() -> list[str]:
    """Every operation a `.circuit` file can call, registered ones included, sorted."""
    return sorted(o.name for o in CATALOGUE.values() if o.callable)


# ---------------------------------------------------------------- the tables of earlier versions, derived

UNARY_FLOAT = {o.name for o in _BUILT_IN.values() if o.family == "unary" and o.result == "float"}
UNARY_KEEP = {o.name for o in _BUILT_IN.values() if o.family == "unary" and o.result == "keep"}
UNARY = UNARY_FLOAT | UNARY_KEEP
REDUCTIONS = {o.name for o in _BUILT_IN.values() if o.family == "reduction" and o.name != "argmax"}
ELEMENTWISE_BINARY = {o.name: o.symbol for o in _BUILT_IN.values() if o.symbol is not None}
COMPARISONS = {o.name for o in _BUILT_IN.values() if o.result == "bool"}
VARIADIC = {o.name for o in _BUILT_IN.values() if o.variadic and o.callable}
SIGNATURES: dict[str, tuple[list[str], dict[str, Any]]] = {
    o.name: (list(o.params), o.keyword_dict) for o in _BUILT_IN.values() if o.callable and not o.variadic}
OPERATIONS = sorted(o.name for o in _BUILT_IN.values() if o.callable)
OWNS_WEIGHTS = {o.name for o in _BUILT_IN.values() if o.owns_weights}


# ---------------------------------------------------------------- operations registered from Python

# Names a registered operation may not take: the language's keywords and the words with a meaning of their own.
RESERVED = frozenset({"use", "axis", "circuit", "param", "return", "repeat", "int", "bool", "float",
                      "inf", "true", "false", "zeros", "ones", "normal", "uniform", "lecun", "glorot",
                      "same", "valid"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TABLES: list[tuple[dict, Callable[[Operation], Any]]] = []


def registrar(table: dict):
    """The decorator that fills one stage's rule table: `@rule("sum", "mean")` files a function under each name."""
    def rule(*names: str):
        def register(fn):
            for name in names:
                if name in table:
                    raise ValueError(f"two rules for {name}")
                table[name] = fn
            return fn
        return register
    return rule


def bind_table(table: dict, make_rule: Callable[[Operation], Any]) -> None:
    """Keep `table` holding a rule for every registered operation.

    A stage calls this once, when its module loads, with its rule table and a
    function that builds its rule from a registered `Operation`; operations
    registered before or after are put into the table by name, like every
    built-in one.
    """
    _TABLES.append((table, make_rule))
    for op in CATALOGUE.values():
        if op.user:
            table[op.name] = make_rule(op)


def register_operation(name: str, *, params: Iterable[str], keywords: dict[str, Any] | None = None,
                       typing: Callable, lower: Callable, cost: Callable, glyph: Any = None,
                       doc: str = "") -> Operation:
    """Add an operation that `.circuit` files can call, with its rule for every stage.

    Args:
        name: the name a `.circuit` file calls it by; not a built-in
            operation, a keyword of the language or an operation already
            registered.
        params: positional parameter names; each takes a bundle (a number is
            a float scalar).
        keywords: keyword arguments and their defaults (REQUIRED for one that
            must be given). A keyword's value is a number known when checking
            (passed as a float) or a bare name (passed as a string, e.g. an
            axis name). They reach every rule below as keyword arguments and
            are kept in the IR box's attributes.
        typing: `typing(*input_types, **keywords) -> ir.TensorType`, the
            result's type from the inputs' `ir.TensorType`s. Raise ValueError
            or TypeError to report a mistake; its message reaches the user at
            the call. Every axis of the result must be on an input or
            declared, with the same size.
        lower: `lower(*arrays, **keywords) -> array`, a JAX function. Each
            array is laid out as its input's type is written (axes in that
            order, nothing else); the Flax backend vmaps it over every batch
            axis. It returns one array laid out as the result's type. If it
            has a parameter named `axes`, it also gets the axis names of each
            input (a tuple of tuples), for work that depends on where an axis is.
        cost: `cost(out, *ins, **keywords)`, the forward FLOPs: `out` and
            `ins` are the element counts (`ir.Size`, in axis names, batch
            included) of the result and each input. Return an int or Size
            (element-wise FLOPs), or a dict with any of "elementwise",
            "transcendental", "matmul" and "backward".
        glyph: how figures draw it: None (a tag on the wire with its name),
            a shape name ("mark" or "box") drawn with its name, any other
            text drawn on a tag, or a (shape, text) pair.
        doc: one line for the catalogue.

    Returns:
        The new `Operation`.

    Raises:
        ValueError: the name is taken or not a name, or an argument is malformed.
        TypeError: a rule is not a function, or the glyph is neither a text
            nor a (shape, text) pair.

    Example:
        >>> import diagrammar
        >>> op = register_operation(
        ...     "softsign", params=["x"], typing=lambda x: x,
        ...     lower=lambda x: x / (1 + abs(x)), cost=lambda out, x: out * 3)
        >>> program = diagrammar.parse("axis d = 4\\ncircuit F(x: [d]) -> [d]:\\n    return softsign(x)\\n")
        >>> program["F"].boxes[0].op
        'softsign'
        >>> unregister_operation("softsign")
    """
    if not isinstance(name, str) or not _NAME.match(name) or keyword.iskeyword(name):
        raise ValueError(f"{name!r} is not a name a .circuit file can call")
    if name in _BUILT_IN:
        raise ValueError(f"{name} is a built-in operation; pick another name")
    if name in CATALOGUE:
        raise ValueError(f"an operation {name} is already registered")
    if name in RESERVED:
        raise ValueError(f"{name} is a word of the language; pick another name")
    params = tuple(params)
    keywords = dict(keywords or {})
    for p in params + tuple(keywords):
        if not isinstance(p, str) or not _NAME.match(p):
            raise ValueError(f"{name}: argument name {p!r} is not a name")
    if len(set(params + tuple(keywords))) != len(params) + len(keywords):
        raise ValueError(f"{name}: an argument name appears twice")
    if "axes" in keywords:
        raise ValueError(f"{name}: `axes` is the name under which lower gets the inputs' axis names")
    for k, v in keywords.items():
        if not (v is REQUIRED or v is None or isinstance(v, (bool, int, float, str))):
            raise ValueError(f"{name}: the default of {k} must be a number, a text, None or REQUIRED")
    for what, fn in (("typing", typing), ("lower", lower), ("cost", cost)):
        if not callable(fn):
            raise TypeError(f"{name}: {what} must be a function")
    op = Operation(name, "user", params, tuple(keywords.items()), doc=doc or f"registered from Python: {name}",
                   typing=typing, lower=lower, cost=cost, glyph=_glyph(name, glyph))
    CATALOGUE[name] = op
    for table, make_rule in _TABLES:
        table[name] = make_rule(op)
    return op


def unregister_operation(name: str) -> None:
    """Remove a registered operation and its rules (built-in operations stay)."""
    op = CATALOGUE.get(name)
    if op is None or not op.user:
        raise ValueError(f"no registered operation {name!r}")
    del CATALOGUE[name]
    for table, _ in _TABLES:
        table.pop(name, None)


_USER_SHAPES = ("mark", "box")


def _glyph(name: str, glyph) -> tuple[str, str]:
    """A registered operation's glyph as (shape, text)."""
    if glyph is None:
        return "mark", name
    if isinstance(glyph, str):
        return (glyph, name) if glyph in _USER_SHAPES else ("mark", glyph)
    if isinstance(glyph, tuple) and len(glyph) == 2 and glyph[0] in _USER_SHAPES and isinstance(glyph[1], str):
        return glyph
    raise TypeError(f"{name}: glyph is a label, one of the shapes {', '.join(_USER_SHAPES)}, or (shape, label)")
