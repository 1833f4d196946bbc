"""All ops, registered by name in :data:`OPS` (see ``base.py`` for the contract), and the
public ``graphmask.ops`` functions (``api.py``), named and behaving as ``keras.ops``.

Adding an op: write ``ops/<name>.py`` declaring an :class:`Op` subclass with
``@register``, put its numba kernels in ``kernels/<name>.py``, import the module here,
and give it a test module in ``tests/ops/`` that runs the shared harness.
"""
# Importing a module registers its ops.
from graphmask.ops import (  # noqa: F401
    activation,
    batch_norm,
    conv,
    dense,
    dropout,
    embedding,
    flatten,
    fused,
    gru,
    losses,
    lstm,
    mask_ops,
    masking,
    merge,
    metrics,
    pooling,
    pooling1d,
    primitives,
    reductions,
    simple_rnn,
    sources,
    spatial_dropout,
    structural,
    vjp,
)
from graphmask.ops.api import *  # noqa: E402,F403  (the public keras.ops-style functions)
from graphmask.ops.api import __all__ as _api_all  # noqa: E402
from graphmask.ops.base import OPS, MaskRule, Op, OpError, Spec, get_op, register  # noqa: E402

__all__ = ["OPS", "MaskRule", "Op", "OpError", "Spec", "get_op", "register", *_api_all]
