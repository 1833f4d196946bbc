"""All ops, registered by name in :data:`OPS` (see ``base.py`` for the contract).

Adding an op: write ``ops/<name>.py`` declaring an :class:`Op` subclass with
``@register``, put its numba kernels in ``kernels/<name>.py``, import the module here,
and give it a test module in ``tests/ops/`` that runs the shared harness.
"""
from graphmask.ops.base import OPS, MaskRule, Op, OpError, Spec, get_op, register

# Importing a module registers its ops.
from graphmask.ops import (  # noqa: F401,E402
    sources,
    vjp,
    activation,
    dense,
    embedding,
    masking,
    flatten,
    mask_ops,
    structural,
    pooling,
    merge,
    lstm,
    losses,
    reductions,
)

__all__ = ["OPS", "MaskRule", "Op", "OpError", "Spec", "get_op", "register"]
