"""Front end, stage 2: resolve `use`, axis sizes and every wire's type; build the IR.

The package splits the checker along its seams:

    program.py      files, `use`, circuits and the entry points `load` and `parse`
    sizes.py        axis sizes: declared ones and those written in a circuit
    values.py       the values an expression gives and the diagram under construction
    circuit.py      one circuit body: helpers, expressions, and calls through TYPING
    statements.py   assign, param, return, repeat
    hints.py        close names, types side by side, the fix
    rules/          the typing rule of every operation, by family, in one table TYPING

Which operations exist is the catalogue's business (diagrammar/ops.py); the
tables below are derived from it and kept here for the modules that import
them from diagrammar.check.
"""
from ..ops import COMPARISONS as COMPARISONS
from ..ops import ELEMENTWISE_BINARY as ELEMENTWISE_BINARY
from ..ops import OPERATIONS as OPERATIONS
from ..ops import OWNS_WEIGHTS as OWNS_WEIGHTS
from ..ops import REDUCTIONS as REDUCTIONS
from ..ops import REQUIRED as REQUIRED
from ..ops import SIGNATURES as SIGNATURES
from ..ops import UNARY as UNARY
from ..ops import UNARY_FLOAT as UNARY_FLOAT
from ..ops import UNARY_KEEP as UNARY_KEEP
from ..ops import VARIADIC as VARIADIC
from .hints import mismatch_hint as mismatch_hint
from .hints import type_table as type_table
from .program import DEFAULT_MAX_WEIGHT_ELEMENTS as DEFAULT_MAX_WEIGHT_ELEMENTS
from .program import Checker as Checker
from .program import Program as Program
from .program import load as load
from .program import parse as parse
from .rules import TYPING as TYPING
from .statements import INITIALISERS as INITIALISERS
from .values import C as C
from .values import T as T
from .values import Tup as Tup
