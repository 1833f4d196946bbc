"""Launching a kernel's tasks on several threads, and compiling the parallel kernels in
two tiers.

A kernel that needs one fork/join per call (the LSTM's sample groups, its input
projection, its weight gradients; a large Dense product's two halves) runs either as a
numba ``prange`` loop (TBB threads) or as one-thread ``@jit`` kernels over its tasks (on
shares of them, :func:`run_shares`, or one after the other). Both run the same tasks, so
both give the same bits.

- The ``prange`` kernels are the fast tier: TBB's threads spin between launches and
  start a share in a few microseconds. They are also the costliest kernels to compile
  (a gufunc per prange loop: 0.4 to 0.8 s each; W1's three LSTM drivers took 1.6 s of a
  9 s cold first step on a 2-core machine).
- :func:`run_shares` hands shares to a pool of Python threads. A hand-off to a thread
  that sleeps costs 100-150 us on a virtual machine (the pool's queue, then the GIL, each
  wake a descheduled virtual CPU), so this tier is slower at every step; its one-thread
  kernels compile in a fraction of the time.

:func:`tiered` picks: the ``prange`` driver once it has machine code in this process,
else the one-thread tier (:func:`run_shares` for the LSTM's sample groups; for the
drivers that fork and join at every step, the GRU's and the LSTM's below 32 samples,
:func:`pick` takes their one-thread twin on the calling thread), while the ``prange``
driver is compiled (or loaded from numba's cache) on a background thread. That thread
starts when the outermost :func:`deferring` block of the calling thread ends (the
runtime wraps a plan run and a training step in one), so it never holds numba's
compiler lock while the first step still compiles its own kernels. A new user's first
step thus pays for the cheap tier only, and the fast tier takes over a few steps later.
The thread is not a daemon: the process waits for a compilation in progress at exit
(LLVM must not be torn down under it).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import numba

_pool: dict = {}
_pool_lock = threading.Lock()


def _share_threads() -> ThreadPoolExecutor:
    with _pool_lock:
        if "pool" not in _pool:
            n = max(1, numba.config.NUMBA_NUM_THREADS - 1)
            _pool["pool"] = ThreadPoolExecutor(n, thread_name_prefix="graphmask-share")
        return _pool["pool"]


def run_shares(run, n: int, nthreads: int) -> None:
    """Call ``run(a, b)`` for contiguous shares ``[a, b)`` that cover ``range(n)``, at once
    on up to ``nthreads`` threads (the first share on the calling thread, the others on a
    pool of Python threads); return when every share is done, re-raising the first error.

    ``run`` calls a one-thread ``@jit`` (nogil) kernel over tasks ``a`` to ``b - 1``; a
    task is the same whichever thread runs it, so results do not depend on ``nthreads``.
    """
    k = max(1, min(int(nthreads), int(n)))
    if k == 1:
        run(0, n)
        return
    cuts = [i * n // k for i in range(k + 1)]
    others = [_share_threads().submit(run, cuts[i], cuts[i + 1]) for i in range(1, k)]
    try:
        run(cuts[0], cuts[1])
    finally:
        wait(others)  # never return while a share still writes
    for f in others:
        f.result()  # re-raises a share's error, if any


#: The name of the thread that compiles the parallel drivers. The progress display does
#: not announce its compilations: no step waits for them.
BACKGROUND_THREAD = "graphmask-compile"

_lock = threading.Lock()
_state: dict = {"requested": set(), "pending": [], "failed": set(), "thread": None}
_local = threading.local()


def tiered(driver, args: tuple) -> bool:
    """Whether to launch the ``prange`` ``driver`` with ``args`` now: True once it has
    machine code in this process (or its background compilation failed: the launch then
    compiles it and raises the error where the user sees it). Otherwise asks for it in
    the background (first time only) and returns False: the caller runs its one-thread
    tier (the same tasks)."""
    if driver.overloads:
        return True
    with _lock:
        if driver in _state["failed"]:
            return True
        if driver not in _state["requested"]:
            _state["requested"].add(driver)
            sig = tuple(numba.typeof(a) for a in args)
            _state["pending"].append((driver, sig))
    if getattr(_local, "depth", 0) == 0:
        _start()
    return False


def pick(parallel, one_thread, threaded: bool, args: tuple):
    """The driver to call with ``args``: ``parallel`` (a ``prange`` driver) for a threaded
    launch once :func:`tiered` allows it, else ``one_thread``, its one-thread twin (the
    same tasks on the calling thread, so the same bits: the drivers that fork and join
    at every step have no cheaper threaded tier)."""
    return parallel if threaded and tiered(parallel, args) else one_thread


@contextmanager
def deferring():
    """Hold back background compilations until the outermost block of this thread ends
    (a training step, a plan run): they would otherwise take numba's compiler lock while
    the step still compiles what it runs."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        if _local.depth == 0 and _state["pending"]:
            _start()


def _start() -> None:
    with _lock:
        if _state["thread"] is not None or not _state["pending"]:
            return
        t = threading.Thread(target=_compile_pending, name=BACKGROUND_THREAD)
        _state["thread"] = t
    t.start()


def _compile_pending() -> None:
    while True:
        with _lock:
            if not _state["pending"]:
                _state["thread"] = None
                return
            driver, sig = _state["pending"].pop(0)
        try:
            driver.compile(sig)
        except Exception:  # noqa: BLE001  (re-raised by the next launch, see tiered)
            with _lock:
                _state["failed"].add(driver)


def wait_background() -> None:
    """Block until every background compilation asked for so far is done (tests,
    benchmarks)."""
    while True:
        with _lock:
            t = _state["thread"]
            pending = bool(_state["pending"])
        if t is None:
            if not pending:
                return
            _start()
            continue
        t.join()
