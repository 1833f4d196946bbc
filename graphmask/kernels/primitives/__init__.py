"""numba kernels of the primitive ops (``graphmask/ops/primitives``)."""
