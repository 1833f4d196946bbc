"""1-D convolution kernels: im2col / col2im around one GEMM (``kernels/dense.py``).

``x`` is (B, L, C) channels_last, C-contiguous. For an output step ``t`` and tap ``k``
the input step read is ``t * stride - pad_left + k * dilation``; steps outside
``[0, L)`` read zeros (the convolution's zero padding). A channel range
``[c0, c0 + cg)`` selects one group of a grouped convolution.
"""
from __future__ import annotations

import numpy as np

from graphmask.kernels import jit


@jit
def im2col(x, c0, cg, k_size, stride, dilation, pad_left, l_out):
    """(B * l_out, k_size * cg) patches: row ``b * l_out + t``, column ``k * cg + c``."""
    b_n, length, _ = x.shape
    cols = np.zeros((b_n * l_out, k_size * cg), dtype=x.dtype)
    for b in range(b_n):
        for t in range(l_out):
            row = b * l_out + t
            start = t * stride - pad_left
            for k in range(k_size):
                s = start + k * dilation
                if s < 0 or s >= length:
                    continue
                base = k * cg
                for c in range(cg):
                    cols[row, base + c] = x[b, s, c0 + c]
    return cols


@jit
def col2im_add(dcols, dx, c0, cg, k_size, stride, dilation, pad_left, l_out):
    """Adds the patch gradients ``dcols`` back into ``dx[:, :, c0:c0 + cg]`` (in place)."""
    b_n, length, _ = dx.shape
    for b in range(b_n):
        for t in range(l_out):
            row = b * l_out + t
            start = t * stride - pad_left
            for k in range(k_size):
                s = start + k * dilation
                if s < 0 or s >= length:
                    continue
                base = k * cg
                for c in range(cg):
                    dx[b, s, c0 + c] += dcols[row, base + c]
