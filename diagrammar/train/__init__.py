"""Train stage: tasks, an optax loop fusing steps with lax.scan, checkpoints, metrics and plots.

Names are loaded lazily so that importing ``diagrammar.train`` (as the
command line's ``diagrammar.cli.train`` does to build its parser) never
imports jax.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Task": "loop",
    "TrainResult": "loop",
    "TrainingDiverged": "loop",
    "train": "loop",
    "default_optimizer": "loop",
    "batch_at": "loop",
    "CheckpointMismatch": "checkpoint",
    "ModAdd": "modadd",
    "ModAddMLP": "modadd",
    "fourier_spectrum": "modadd",
    "find_input_weight": "modadd",
    "PointerTask": "pointer",
    "WorkspaceAdd": "workspace",
    "train_seeds": "seeds",
    "SeedsResult": "seeds",
    "GeometryTask": "geometry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
