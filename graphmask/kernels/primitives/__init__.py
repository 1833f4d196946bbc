"""numba kernels of the primitive ops (``graphmask/ops/primitives``).

They compile with :data:`jit`: :data:`graphmask.kernels.jit` (on-disk cache, no GIL)
plus NumPy's floating-point error model, so ``x / 0`` gives inf/NaN as ``keras.ops`` does
instead of raising ``ZeroDivisionError`` (and divisions vectorise without the check).
"""
from __future__ import annotations

import numba

import graphmask.kernels  # noqa: F401  (chooses the cache folder and threading layer first)

jit = numba.njit(cache=True, nogil=True, error_model="numpy")
