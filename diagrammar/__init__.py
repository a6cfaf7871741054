"""diagrammar: neural networks as typed neural circuit diagrams.

One `.circuit` file is checked like a program, drawn as a figure and compiled
to a JAX/Flax module. Importing this package does not import jax.

>>> import diagrammar
>>> program = diagrammar.parse('''
... axis d = 8
... circuit Scale(x: [d]) -> [d]:
...     param s: [d] = ones
...     return x * s
... ''')
>>> program["Scale"].parameter_count().value
8
"""
from .check import DEFAULT_MAX_WEIGHT_ELEMENTS as DEFAULT_MAX_WEIGHT_ELEMENTS
from .check import Program as Program
from .check import load as load
from .check import parse as parse
from .errors import CircuitError as CircuitError
from .errors import CircuitSyntaxError as CircuitSyntaxError
from .errors import ShapeMismatch as ShapeMismatch
from .errors import Span as Span
from .ir import Diagram as Diagram
from .ir import Size as Size
from .ops import register_operation as register_operation

__version__ = "0.1.0"

__all__ = ["load", "parse", "Program", "Diagram", "Size", "Span", "CircuitError",
           "CircuitSyntaxError", "ShapeMismatch", "DEFAULT_MAX_WEIGHT_ELEMENTS", "register_operation"]
