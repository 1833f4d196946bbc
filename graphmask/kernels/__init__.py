"""numba kernels. Every kernel is compiled with :data:`jit` (on-disk cache, no GIL).

The cache lives next to the source unless that folder is read-only, in which case it
goes to ``$XDG_CACHE_HOME/graphmask/numba`` (set ``NUMBA_CACHE_DIR`` to choose another).
numba keys its cache on the source file, so an edited kernel is recompiled.
"""
from __future__ import annotations

import os


def _choose_cache_dir() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = os.path.dirname(os.path.abspath(__file__))
    if os.access(here, os.W_OK):
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(base, "graphmask", "numba")


_choose_cache_dir()

import numba  # noqa: E402  (after the cache dir is chosen)

# numba's default "workqueue" threading layer aborts the process when two Python
# threads run parallel kernels at once (concurrent predict). Ask for a thread-safe
# layer (OpenMP or TBB) unless the user chose one.
if not os.environ.get("NUMBA_THREADING_LAYER"):
    numba.config.THREADING_LAYER = "threadsafe"

#: Decorator for every kernel: ``@jit`` or ``@jit(parallel=True)`` style is not used;
#: kernels that want threads call numba.prange inside a ``@jit_parallel`` function.
jit = numba.njit(cache=True, nogil=True)
jit_parallel = numba.njit(cache=True, nogil=True, parallel=True)
