"""numba kernels. Every kernel is compiled with :data:`jit` (on-disk cache, no GIL); the
recurrent drivers' task kernels are compiled as C callbacks with the same options and
passed to the drivers by pointer (``graphmask.kernels.lstm.TaskTable``).

The cache lives next to the source unless that folder is read-only, in which case it
goes to ``$XDG_CACHE_HOME/graphmask/numba`` (set ``NUMBA_CACHE_DIR`` to choose another).
numba keys its cache on a function's own source file; :mod:`cache_keys` adds a digest
of every kernel source, so editing any kernel file (say a helper that ``gru.py`` inlines
from ``lstm.py``) recompiles every kernel instead of reusing stale machine code.

Threads: parallel kernels need a thread-safe numba threading layer (TBB or OpenMP) for
several Python threads to run them at once. :func:`parallel_launch` starts numba's
threads on first use; when neither layer loads (or ``NUMBA_THREADING_LAYER`` names a
layer that is not thread-safe) it falls back to numba's ``workqueue`` layer and runs one
parallel kernel at a time, with one :class:`ThreadingLayerWarning` per process.
"""
from __future__ import annotations

import os
import threading
import warnings
from contextlib import contextmanager


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
from numba.core.cpu_options import ParallelOptions  # noqa: E402

from graphmask.kernels import cache_keys  # noqa: E402

cache_keys.install()  # a kernel's cache entry is stale once any kernel source changes

# numba's default "workqueue" threading layer aborts the process when two Python
# threads run parallel kernels at once (concurrent predict). Ask for a thread-safe
# layer (OpenMP or TBB) unless the user chose one.
if not os.environ.get("NUMBA_THREADING_LAYER"):
    numba.config.THREADING_LAYER = "threadsafe"

#: numba threading layers that let several Python threads launch parallel kernels at once.
THREADSAFE_LAYERS = ("tbb", "omp")


class ThreadingLayerWarning(RuntimeWarning):
    """No thread-safe numba threading layer could be loaded: parallel kernels run one at a
    time (concurrent ``predict`` calls wait for each other's LSTM kernels)."""


_threads = {"layer": None, "serial": False}
_start_lock = threading.Lock()
#: held around every parallel kernel launch in the serial (fallback) mode
_launch_lock = threading.RLock()


def _start_threads() -> tuple[str, str | None]:
    """Start numba's thread pool; on failure fall back to ``workqueue``, which always
    loads. Returns the layer in use and why the requested one did not load (or None)."""
    try:
        numba.get_num_threads()  # loads the configured layer and launches its threads
        return numba.threading_layer(), None
    except ValueError as e:  # "No threading layer could be loaded", an unknown name
        reason = str(e).strip().splitlines()[0]
    numba.config.THREADING_LAYER = "workqueue"
    numba.get_num_threads()
    return numba.threading_layer(), reason


def threading_layer() -> str:
    """The numba threading layer parallel kernels use, starting numba's threads if needed.

    Never raises for a missing layer: when no thread-safe layer (:data:`THREADSAFE_LAYERS`)
    is in use, parallel kernel launches are serialised and one
    :class:`ThreadingLayerWarning` is emitted for the process.

    Returns
    -------
    str
        ``"tbb"``, ``"omp"`` or ``"workqueue"``.
    """
    if _threads["layer"] is None:
        with _start_lock:
            if _threads["layer"] is None:
                layer, reason = _start_threads()
                _threads["serial"] = layer not in THREADSAFE_LAYERS
                _threads["layer"] = layer
                if _threads["serial"]:
                    why = (f"numba could not load a thread-safe threading layer ({reason})"
                           if reason else f"numba's threading layer is {layer!r} (chosen "
                           f"by NUMBA_THREADING_LAYER), which is not thread-safe")
                    warnings.warn(
                        f"graphmask: {why}; parallel kernels run one at a time, so "
                        f"concurrent predict calls wait for each other. Install TBB "
                        f"(pip install tbb) or an OpenMP runtime for concurrent kernels.",
                        ThreadingLayerWarning, stacklevel=2)
    return _threads["layer"]


def serial_launches() -> bool:
    """True when parallel kernels are launched one at a time (no thread-safe layer)."""
    threading_layer()
    return _threads["serial"]


@contextmanager
def parallel_launch():
    """Context for code that launches parallel kernels (or sets numba's thread count):
    starts numba's threads, and in the serial mode holds the process-wide launch lock."""
    if serial_launches():
        with _launch_lock:
            yield
    else:
        yield


#: Decorator for every kernel: ``@jit`` or ``@jit(parallel=True)`` style is not used;
#: kernels that want threads call numba.prange inside a ``@jit_parallel`` function.
jit = numba.njit(cache=True, nogil=True)
#: Successive prange loops are never fused into one: a driver's task launches depend on
#: each other through memory numba cannot see (tasks called by address).
jit_parallel = numba.njit(cache=True, nogil=True,
                          parallel=ParallelOptions({"fusion": False}))
