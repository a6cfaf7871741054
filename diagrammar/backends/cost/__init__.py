"""Backend: the cost of a diagram (parameters, FLOPs and memory), per box and in total.

Pure Python over the IR (never imports jax). Every figure is computed twice:
as a **formula** in the axis NAMES (`2*d*dk*heads*seq`, a `Size` whose symbols
are axis names, `batch` for the batch size) and as a **value** (the axes'
sizes, the `bindings` for free sizes and the batch size substituted; an `int`
once everything is known).

How we count (the README quotes this):

- A box is broadcast over the wires that pass by it, so its work is counted
  over the full iteration space of its inputs and outputs, including the batch
  and the extra axes a circuit call or scan is broadcast over. A wire carries
  the batch (and call broadcast axes) only when it depends on an input; values
  computed from weights and constants alone are computed once, as `jax.vmap`
  does.
- **matmul**: linear, dot, einsum and conv, two FLOPs per multiply-add (a
  multiply-add is one point of the contraction's iteration space: the product
  of all its axes). A conv counts only the kernel taps that land inside the
  (padded) input, as XLA does. An einsum first sums away the axes only one
  operand has (element-wise work, as jnp.einsum does) and then contracts left
  to right; a product that sums nothing costs one FLOP per element. A bias add
  is element-wise.
- **elementwise**: one FLOP per output element for `+ - * /`, negation,
  comparisons, maximum, minimum, where, relu, abs, square (plus one per
  element of an operand whose dtype must be converted); reductions cost one
  FLOP per element folded (`n_in - n_out`; `mean` adds one division per result).
  Composite functions count what jax.nn's definitions cost in XLA: sigmoid 3
  (+1 transcendental), gelu (tanh form) 8 (+1), silu 4 (+1), softplus 6 (+2),
  softmax `4n - m` (+n exp; `m` elements after reducing), log_softmax `4n - 2m`
  (+n + m), logsumexp `3n + 2m` (+n + m), layernorm `7n + 2m` (+m rsqrt),
  rmsnorm `4n + m` (+m), causal `2n` (compare positions, select), onehot
  `2n` (compare, convert), argmax `9(n - m)`, pool `window - 1` per output
  (+1 for mean), and a lookup (embed, gather) `n + 6` per index: the
  bounds-checked indexing of `jnp.take` (wrap negative indices, test the
  range, fill what falls outside).
- **transcendental**: exp, log, tanh, sigmoid, sqrt, and the exponentials and
  reciprocal square roots inside gelu, silu, softplus, softmax and the norms:
  one per element (XLA reports these separately as `transcendentals`).
- Data movement costs nothing: rename, merge, split, stack, concat, take
  (a static index), arange, const, param. Dropout counts as the
  identity: the figures describe the forward pass at inference.
- `repeat N` multiplies its body by N (N copies, N sets of weights); `scan`
  multiplies its step by the scan length (weights shared); a circuit call is
  the sum of its body.

Backward-pass FLOPs (the gradient of a scalar loss with respect to every
weight, i.e. one training step minus its forward pass) follow per-operation
rules, calibrated against XLA's count of `jax.vjp` for jax.nn's definitions.
An operand gets a gradient only if it depends on a weight (data inputs,
indices and masks do not):

- matmuls: one forward's worth of multiply-adds per operand that needs a
  gradient: 2x forward for a linear map on an activation (input and weight
  gradients), 1x on raw data (weight gradient only), 2x for dot(q, k) of two
  activations. A bias gradient is a sum over the output: `n_out`.
- add: a sum over broadcast axes per operand (`n_out - n_operand`); sub: the
  same plus a negation; mul: `n_out` + the sum; div: 1 and 5 per element for
  the two operands; maximum/minimum 6 per operand; where 2 per branch; neg 1.
- unary, per element: relu 2, abs 5, square 2, exp 1, log 1, sqrt 2, tanh 4,
  sigmoid 3, gelu 16, silu 6, softplus 7.
- softmax 6n, log_softmax 3n, logsumexp n, mean n, max/min 5n, sum 0,
  layernorm 20n, rmsnorm 10n, causal n, pool 8 (max) or 3 (mean) per
  input element, gather/embed a scatter-add of `n_out`; data movement 0.

Activation bytes: 4 per element for float and int wires, 1 for bool. The peak
memory is that of the forward pass run box by box in topological order: every
input is live at the start, a box's outputs are allocated while it runs and a
wire is freed after its last consumer (the circuit's outputs live to the end);
inside a call the caller's wires that are still needed later stay live. A
`repeat` runs its copies one after another; a `scan` holds its stacked outputs
while the step runs. Weights are counted separately (`weight_bytes`); the
`peak_bytes` figure adds them. The peak is a maximum, so its formula is the
polynomial of the live set at the peak for the sizes given (sizes still free
are taken as 512 to find where the peak is).

Where the code lives: report.py (figures, the report, its table), analyser.py
(the analysis and the entry points below), rules.py (the cost rule of every
operation, in one table COST).
"""
from .analyser import analyse as analyse
from .analyser import box_annotations as box_annotations
from .analyser import check_budget as check_budget
from .report import CATEGORIES as CATEGORIES
from .report import DTYPE_BYTES as DTYPE_BYTES
from .report import BoxCost as BoxCost
from .report import CostReport as CostReport
from .report import Figure as Figure
from .report import format_table as format_table
from .report import human_bytes as human_bytes
from .report import human_count as human_count
from .report import human_flops as human_flops
from .report import subst as subst
from .rules import COST as COST

__all__ = ["CATEGORIES", "COST", "DTYPE_BYTES", "BoxCost", "CostReport", "Figure", "analyse", "box_annotations",
           "check_budget", "format_table", "human_bytes", "human_count", "human_flops", "subst"]
