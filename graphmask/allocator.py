"""glibc malloc thresholds for array-heavy steps (Linux with glibc only).

A training step allocates the same large arrays every time (an LSTM's residuals, its
outputs, the gradients: megabytes each) and frees them before the next step. With
glibc's defaults, blocks over the *mmap threshold* (128 KiB, raised dynamically after
frees) are mapped and unmapped on every step, and freed memory at the top of a heap is
given back to the kernel as soon as it exceeds the *trim threshold*. Either way each
step touches fresh pages again: a page fault per 4 KiB page, and every unmap interrupts
the other cores running threads of the process (TLB shootdowns). When two threads run
steps at once (the two directions of a ``Bidirectional`` layer side by side, see
``graphmask/runtime.py``), the thread that is not the main one allocates from its own
arena, which glibc trims eagerly: measured on the BiLSTM tagger of
``benchmarks/bench_bilstm.py``, 2,500 to 6,200 page faults and 4.6 to 14 ms of system
time per training step, and 22 to 30 ms a step instead of 16.

:func:`tune` (called when ``graphmask.runtime`` is imported) fixes both thresholds
instead: blocks up to 32 MiB (glibc's largest allowed mmap threshold) come from the
heaps and are reused step after step, and up to :data:`TRIM_THRESHOLD` bytes of freed
memory stay with the process. Measured: no page faults per step, 0.3 ms of system
time, 16 ms a step. The peak resident memory is unchanged (the same arrays are
live at the peak); the process keeps up to that much freed memory afterwards.

It changes the allocator of the whole process, so it is skipped when the user already
set either threshold (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``), and can
be turned off with ``GRAPHMASK_MALLOC=system``. Other C libraries (musl, macOS,
Windows) are left alone.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys

#: glibc's mallopt parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: The largest mmap threshold glibc accepts on 64-bit systems (HEAP_MAX_SIZE / 2).
MMAP_THRESHOLD = 32 << 20
#: Freed memory kept by the process before glibc gives the top of a heap back.
TRIM_THRESHOLD = 128 << 20

_state = {"tuned": None}


def _skip_reason() -> str | None:
    if os.environ.get("GRAPHMASK_MALLOC", "").lower() == "system":
        return "GRAPHMASK_MALLOC=system"
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return "not glibc"
    for var in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        if var in os.environ:
            return f"{var} is set"
    return None


def tune() -> bool:
    """Set glibc's mmap and trim thresholds once per process (see the module doc).

    Returns
    -------
    bool
        True when the thresholds are graphmask's, False when left alone (another C
        library, the user's own settings, ``GRAPHMASK_MALLOC=system``, or mallopt
        refused them).
    """
    if _state["tuned"] is None:
        ok = False
        if _skip_reason() is None:
            try:
                libc = ctypes.CDLL(None)
                ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                    libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            except (OSError, AttributeError):
                ok = False
        _state["tuned"] = ok
    return _state["tuned"]

