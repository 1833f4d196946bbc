"""Primitive ops (``prim.*``): the building blocks of ``graphmask.ops`` (as ``keras.ops``).

Each family module registers its ops on import; every primitive follows the op contract
of ``graphmask/ops/base.py`` and ignores masks (:data:`~graphmask.ops.base.IGNORES_MASK`).
"""
from graphmask.ops.primitives import (  # noqa: F401
    attention,
    binary,
    index,
    join,
    linalg,
    logic,
    nn,
    reduce,
    shape,
    unary,
)
