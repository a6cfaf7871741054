"""Analysis: what the wires of a trained circuit represent, and how two layers or two networks compare.

`metrics` holds the measures on (examples x features) arrays (CKA, RSA, SVCCA,
Procrustes, unit matching, kernel analysis, HSIC), `streaming` the
bounded-memory accumulators they run on over large data sets, and `capture`
streams named wires of a compiled circuit (or of a checkpoint) over a task's
examples. Importing this package does not import jax; `capture` does.
"""
from __future__ import annotations

from .metrics import (
    hsic,
    kernel_analysis,
    linear_cka,
    match_units,
    procrustes_distance,
    rbf_cka,
    rdm,
    rsa,
    svcca,
)

__all__ = ["linear_cka", "rbf_cka", "hsic", "rdm", "rsa", "svcca", "procrustes_distance", "match_units",
           "kernel_analysis"]
