"""Executes a :class:`~passes.schedule.Plan`: one kernel call per node, values freed early.

Values live in a dict keyed by ``(node, output)`` that belongs to one ``run`` call, so
several threads may run plans of the same model at once. Errors raised by an op are
re-raised with the layer's name; anything unexpected from a kernel becomes a
:class:`~graphmask.errors.GraphmaskError` instead of leaking numba or NumPy internals.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager

import numba
import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (numba's np.dot BLAS: loaded before the scan)
from threadpoolctl import ThreadpoolController

from graphmask import allocator
from graphmask.errors import GraphmaskError, ShapeError
from graphmask.kernels import serial_launches
from graphmask.kernels.launch import deferring
from graphmask.kernels.lstm import (  # noqa: F401  (the memory API lives here)
    clear_workspaces,
    release_workspaces_on_gc,
    workspace_bytes,
)
from graphmask.ops import OpError, get_op

# While a plan runs, BLAS is kept on the calling thread: the kernels parallelise with
# numba's own threads, and a multithreaded BLAS call beside them leaves BLAS threads
# spinning on the same 2 cores (measured: W1 predict 8.0 ms -> 2.2 ms). The limit is
# reference-counted so concurrent runs restore the user's setting only when the last
# one ends.
allocator.tune()  # glibc: large per-step arrays reuse heap memory (graphmask/allocator.py)
_blas = ThreadpoolController()
_lock = threading.Lock()
_active = {"runs": 0, "limiter": None}


@contextmanager
def single_threaded_blas():
    with _lock:
        if _active["runs"] == 0:
            _active["limiter"] = _blas.limit(limits=1, user_api="blas")
        _active["runs"] += 1
    try:
        yield
    finally:
        with _lock:
            _active["runs"] -= 1
            if _active["runs"] == 0:
                _active["limiter"].restore_original_limits()
                _active["limiter"] = None


#: Run independent long-running steps side by side, one thread each (see
#: ``passes/schedule.py``); only when numba has more than one thread. Results do not
#: depend on it for inference; training differs only by the rounding of the recurrent
#: weight gradients, which are summed over one share of rows per thread.
SIDE_BY_SIDE = True


class KernelError(GraphmaskError, RuntimeError):
    """A kernel failed in a way validation should have prevented (a graphmask bug)."""


def run(plan, feeds: dict, variables: dict) -> list[np.ndarray]:
    """Run ``plan``; ``feeds``: source node -> array; ``variables``: name -> array.
    Background compilations the run asks for start when it ends (``kernels/launch.py``)."""
    with deferring(), single_threaded_blas():
        return _run(plan, feeds, variables)


def _run(plan, feeds: dict, variables: dict) -> list[np.ndarray]:
    values: dict[tuple, np.ndarray] = {}
    for nid in plan.feeds:
        values[(nid, 0)] = feeds[nid]
    for nid, name in plan.variables.items():
        values[(nid, 0)] = variables[name]
    steps = plan.steps
    # (serial_launches first: it starts numba's threads, falling back when it must)
    side_by_side = SIDE_BY_SIDE and not serial_launches() and numba.get_num_threads() > 1
    i = 0
    while i < len(steps):
        st = steps[i]
        group = steps[i:i + 2] if st.with_next and side_by_side else [st]
        inputs = [{p: values[key] for p, key in s.ports.items()} for s in group]
        if len(group) == 2 and not all(_pays_side_by_side(s, v) for s, v in zip(group, inputs)):
            group, inputs = group[:1], inputs[:1]
        if len(group) == 1:
            results = [_call(st, inputs[0])]
        else:  # two independent long-running steps at once, one thread each
            other = _worker().submit(_call_on_one_thread, group[1], inputs[1])
            try:
                first = _call_on_one_thread(group[0], inputs[0])
            except BaseException:
                wait([other])  # never return while the worker still runs on our arrays
                raise
            results = [first, other.result()]  # re-raises the worker's error, if any
        for s, outs in zip(group, results):
            for k, v in enumerate(outs):
                values[(s.node, k)] = v
        for s in group:
            for key in s.free:
                values.pop(key, None)
        i += len(group)
    return [values[key] for key in plan.fetches]


def _pays_side_by_side(st, inputs: dict) -> bool:
    """Whether ``st`` (a ``side_by_side`` op or its VJP) gains from running beside its
    partner at this batch size (``Op.side_by_side_max_batch``)."""
    op = get_op(st.attrs["op"]) if st.op.name == "vjp" else st.op
    limit = op.side_by_side_max_batch
    x = inputs.get("x", inputs.get("in:x"))
    return limit is None or x is None or x.shape[0] < limit


def _call(st, inputs: dict) -> list:
    """``st.op.forward`` with the errors re-raised naming the layer."""
    try:
        return st.op.forward(st.attrs, inputs)
    except GraphmaskError as e:
        raise type(e)(f"layer {st.label!r}: {e}") from None
    except OpError as e:
        raise ShapeError(f"layer {st.label!r} ({st.op.name}): {e}") from None
    except Exception as e:  # a bug, never the user's fault: say so, keep the cause
        raise KernelError(f"layer {st.label!r} ({st.op.name}): kernel failed with "
                          f"{type(e).__name__}: {e}") from e


def _call_on_one_thread(st, inputs: dict) -> list:
    """:func:`_call` with numba's thread count (per calling thread) set to one."""
    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return _call(st, inputs)
    finally:
        numba.set_num_threads(saved)


_pool: dict = {}
_pool_lock = threading.Lock()


def _worker() -> ThreadPoolExecutor:
    """The threads that run the second step of side-by-side pairs (created on first use;
    two, so two user threads running plans at once do not wait for each other)."""
    with _pool_lock:
        if "pool" not in _pool:
            _pool["pool"] = ThreadPoolExecutor(2, thread_name_prefix="graphmask-side")
        return _pool["pool"]
