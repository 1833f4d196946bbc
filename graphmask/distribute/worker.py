"""What runs inside a Dask worker: one shard of a global batch through a :class:`ShardProgram`.

Nothing here talks to Dask; the functions take and return plain arrays, so they run the
same in a worker process and in the driver. A worker receives the program once per
``fit``/``evaluate``/``predict`` and the weights once per step (both scattered by the
driver; see ``strategy.py``), and the shard's arrays with each task.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager

import numpy as np

from graphmask.runtime import run


def worker_env(threads: int = 1) -> dict:
    """Environment for worker processes: numba, OpenMP and BLAS on ``threads`` threads.

    Pass it as ``LocalCluster(..., env=worker_env())`` or export it before
    ``dask worker``: numba reads ``NUMBA_NUM_THREADS`` when it starts, so the worker never
    launches more threads than it may use.
    """
    n = str(int(threads))
    return {"NUMBA_NUM_THREADS": n, "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
            "MKL_NUM_THREADS": n}


@contextmanager
def pinned_threads(threads: int = 1):
    """Run numba's parallel kernels on at most ``threads`` threads in this thread.

    ``numba.set_num_threads`` is thread-local: a Dask task runs in one of the worker's
    executor threads, so the setting is made (and undone) around each shard. BLAS is
    held to one thread by the runtime while a plan runs.
    """
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def thread_report(threads: int = 1) -> dict:
    """numba's and BLAS's thread counts while a shard runs (for checks)."""
    import numba
    from threadpoolctl import threadpool_info

    from graphmask.runtime import single_threaded_blas

    with pinned_threads(threads), single_threaded_blas():
        blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        return {"numba": numba.get_num_threads(), "blas": blas, "pid": os.getpid(),
                "numba_pool": numba.config.NUMBA_NUM_THREADS}


def sparse_rows(grad: np.ndarray) -> dict:
    """An Embedding table's gradient as ``{"ids": rows with a nonzero gradient, "rows"}``.

    Only the ids the shard looked up can have a nonzero row, so this is at most one row
    per distinct id in the shard; adding the rows into zeros gives the dense gradient back
    exactly.
    """
    ids = np.flatnonzero(np.any(grad != 0, axis=tuple(range(1, grad.ndim))))
    return {"ids": ids.astype(np.int64), "rows": np.ascontiguousarray(grad[ids])}


def run_shard(program, weights: dict, feeds: dict, seeds: list | None = None,
              random_seed: int | None = None, threads: int = 1) -> dict:
    """Run one shard; the sums the driver adds up (see :mod:`graphmask.distribute.program`).

    Returns ``{"losses": [(numerator, count)], "metrics": [(total, count)],
    "grads": {name: array or {"ids", "rows"}}}`` (train/evaluate) or ``{"outputs": [...]}``
    (predict), and ``"seconds"``: how long the plan ran.
    """
    if random_seed is not None:  # dropout draws: one stream per step and shard
        from graphmask.utils import set_random_seed
        set_random_seed(int(random_seed))
    fed = dict(feeds)
    for node, dtype, value in zip(program.seed_nodes, program.seed_dtypes, seeds or []):
        if node is not None:
            fed[node] = np.asarray(value, dtype=dtype)
    t0 = time.perf_counter()
    with pinned_threads(threads):
        vals = run(program.plan, fed, weights)
    seconds = time.perf_counter() - t0
    if program.kind == "predict":
        return {"outputs": vals, "seconds": seconds}
    nl, nm = program.n_losses, program.n_metrics
    losses = [(float(vals[2 * k]), float(vals[2 * k + 1])) for k in range(nl)]
    mets = vals[2 * nl:2 * nl + 2 * nm]
    metrics = [(float(mets[2 * i]), float(mets[2 * i + 1])) for i in range(nm)]
    grads = {}
    for name, g in zip(program.grad_names, vals[2 * nl + 2 * nm:]):
        grads[name] = sparse_rows(g) if name in program.sparse else g
    return {"losses": losses, "metrics": metrics, "grads": grads, "seconds": seconds}
