"""Front end, checker: constants folded at check time that become ints.

The rule itself (`bounds.int_value`) is shared with the backends, which
apply it once the free sizes are bound to a constant that reads them.
"""
from __future__ import annotations

from ..bounds import int_value
from .values import _has_free


def check_int32(ck, tree, span) -> None:
    """Refuse, when checking, a constant made int that has no int value or that int32 cannot hold
    (one reading a free size is checked when the sizes are bound)."""
    if not _has_free(tree):
        int_value(tree, None, span)
