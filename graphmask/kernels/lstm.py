"""numba kernels of the LSTM op (forward and backward), mask-aware.

Layout: every kept (sample, timestep) pair is one *compact row*. Rows are grouped by
processing step: step ``t`` owns rows ``offsets[t]:offsets[t + 1]`` and ``rows[r]`` is
the sample of row ``r``. Masked pairs have no row at all, so no work is spent on them.
The state ``h, c`` of a sample simply stays put at a step where the sample has no row
(the carry of Keras's masked LSTM). It starts from the arrays the caller passes (zeros,
or an initial state), and the backward pass ends with the gradients w.r.t. them.

Work: the input projection ``x_t @ kernel + bias`` of all kept rows is done up front,
in GEMMs over many rows; each step then only multiplies ``h_{t-1} @ recurrent_kernel``
for its rows, fused with the gate math. The backward pass computes the gate gradients
dZ step by step (with ``dh_{t-1} = dZ_t @ recurrent_kernel.T``), then the weight and
input gradients as big GEMMs over all kept rows: ``x.T @ dZ``, ``h_prev.T @ dZ``,
``dZ @ kernel.T``.

Gate blocks are in Keras order i, f, c (called g here), o. Activation codes are the
indices of :data:`ACTIVATIONS`. Derivatives are taken from activation *outputs*, so the
backward pass needs the gate activations, ``c_{t-1}`` and ``act(c_t)`` of each row.

Threads: the units are cut into chunks of at most :data:`UNIT_CHUNK`; weights with 4H
gate columns are *packed* (chunk q's i, f, g, o columns side by side), and so are the
gate arrays. Each step runs one task per thread under ``prange``, each over a range of
unit chunks: small GEMMs on its own packed slices of the weights fused with the gate
math of its units, in loops over contiguous blocks (these vectorize). float64 and
one-thread launches run one-thread twins of the drivers (same tasks, far cheaper to
compile), and tanh/sigmoid layers step kernels without the other activations' code
(:func:`drivers`). The sample-group drivers come in two tiers (``kernels/launch.py``):
one-thread kernels on shares of the tasks until the ``prange`` driver, compiled in the
background after the first step, is ready. The per-step products are register tiles
(``smallgemm.matmul_into``); every BLAS call is kept at M*N*K <=
``smallgemm.SERIAL_MNK``, under which OpenBLAS runs on the calling thread: its own
thread pool is never woken, since two pools (OpenBLAS's and numba's) spinning on the
same cores slow each other down several times over. The weight
gradients are a few big GEMMs, one share of rows per task; the runtime keeps OpenBLAS
single-threaded while a plan runs (``runtime.single_threaded_blas``).
"""
from __future__ import annotations

import functools
import threading
import types as pytypes
import weakref

import numba
import numpy as np
from numba import types
from numba.core import event
from numba.core.ccallback import CFunc
from numba.extending import typeof_impl

from graphmask.kernels import jit, jit_parallel
from graphmask.kernels.blas import gemm_into
from graphmask.kernels.cells import lstm_cell_backward, lstm_cell_forward
from graphmask.kernels.fastmath import sigmoid_inplace, tanh_inplace
from graphmask.kernels.launch import pick, run_shares, tiered
from graphmask.kernels.smallgemm import matmul_add_into, matmul_into, row_block

#: Small helpers are inlined into their callers at numba's IR level: compiled as kernels
#: of their own, each cost a full compilation (wrappers, machine code) before being
#: linked into its callers anyway.
_inline = numba.njit(cache=True, nogil=True, inline="always")

#: Units per chunk (one task's share of a step).
UNIT_CHUNK = 16

#: Below this many multiply-adds per step (rows x H x 4H), kernels run on one thread:
#: a fork/join per step costs more than it saves on small problems, and on a loaded
#: machine every fork may wait for a descheduled worker. (NUMBA_NUM_THREADS=1 forces
#: one thread everywhere.)
PARALLEL_MIN_WORK = 1 << 18

#: Activation names in code order (kernels receive the index).
ACTIVATIONS = ("linear", "tanh", "sigmoid", "relu", "hard_sigmoid")

#: False in the *default-activation* clones of the step kernels (tanh, sigmoid: Keras's
#: default and nearly every model), whose other-activation paths are pruned at compile
#: time: a model compiles only the gate code it runs (see :func:`drivers`).
_GENERAL = True

@_inline
def _act_inplace(v, code):
    """Apply activation ``code`` to the 1-D array ``v`` in place, one tight loop each."""
    zero = v.dtype.type(0.0)
    if code == 1:
        tanh_inplace(v)
    elif code == 2:
        sigmoid_inplace(v)
    elif code == 3:
        for k in range(v.size):
            v[k] = max(v[k], zero)
    elif code == 4:  # Keras 3: relu6(x + 3) / 6
        three = v.dtype.type(3.0)
        six = v.dtype.type(6.0)
        for k in range(v.size):
            v[k] = np.divide(min(max(v[k] + three, zero), six), six)


@_inline
def _dact(y, code, one, sixth):
    """Derivative of activation ``code`` through its output ``y`` (``one``, ``sixth``
    carry the float type, so float32 math stays float32)."""
    zero = one - one
    if code == 1:
        return one - y * y
    if code == 2:
        return y * (one - y)
    if code == 3:
        return one if y > zero else zero
    if code == 4:
        return sixth if (y > zero and y < one) else zero
    return one


# The layout helpers below are NumPy (index arithmetic and copies, exact): a model's first
# step compiles nothing for them. ``uoff`` is always :func:`unit_chunks` of H: chunks of
# UNIT_CHUNK units, the last one ragged.
def lstm_schedule(mask, backwards):
    """Compact rows of a (B, T) bool mask in processing order: ``(offsets, rows)``
    (int64: ``offsets`` (T + 1,), ``rows`` (N,), samples in increasing order per step)."""
    mask = np.asarray(mask, dtype=bool)
    pm = mask[:, ::-1] if backwards else mask
    offsets = np.zeros(mask.shape[1] + 1, np.int64)
    np.cumsum(pm.sum(axis=0), out=offsets[1:])
    B = mask.shape[0]
    # kept positions step-major, then by sample: flat index t * B + b
    rows = np.flatnonzero(pm.T) % B if B else np.zeros(0, np.int64)
    return offsets, rows


def unit_chunks(H, chunk=UNIT_CHUNK):
    """Unit offsets of the chunks: (Q + 1,) with chunks of ``chunk`` units (last ragged)."""
    H = int(H)
    Q = (H + chunk - 1) // chunk
    return np.minimum(np.arange(Q + 1, dtype=np.int64) * chunk, H)


def _chunk(uoff) -> int:
    """The chunk size of :func:`unit_chunks` offsets (a single ragged chunk counts as
    full: both give the same layout)."""
    return int(uoff[1] - uoff[0]) if uoff.size > 1 else 1


def _gate_views(W, uoff, ng):
    """``W`` (R, ng H) as (R, ng, full, C) over its full chunks of C units and
    (R, ng, ragged) over the ragged last one."""
    W = np.asarray(W)
    R = W.shape[0]
    H = int(uoff[-1])
    C = _chunk(uoff)
    full = H // C * C
    g = W.reshape(R, ng, H)
    return g[:, :, :full].reshape(R, ng, full // C, C), g[:, :, full:]


def permute_gates(W, uoff, ng):
    """The ``ng`` H-wide gate blocks of ``W`` (R, ng H) in *packed order*: chunk q's gate
    columns side by side at columns ``ng * uoff[q]:ng * uoff[q + 1]``."""
    R = W.shape[0]
    full, rag = _gate_views(W, uoff, ng)
    out = np.empty((R, W.shape[1]), W.dtype)
    nf = full.shape[2] * full.shape[3] * ng
    out[:, :nf].reshape(R, full.shape[2], ng, full.shape[3])[...] = full.transpose(0, 2, 1, 3)
    out[:, nf:].reshape(rag.shape)[...] = rag
    return out


def unpermute_gates(P, uoff, ng):
    """Inverse of :func:`permute_gates`: (R, ng H) in Keras column order."""
    P = np.asarray(P)
    R = P.shape[0]
    out = np.empty((R, P.shape[1]), P.dtype)
    full, rag = _gate_views(out, uoff, ng)
    nf = full.shape[2] * full.shape[3] * ng
    full.transpose(0, 2, 1, 3)[...] = P[:, :nf].reshape(R, full.shape[2], ng, full.shape[3])
    rag[...] = P[:, nf:].reshape(rag.shape)
    return out


def pack_gates(W, uoff, ng):
    """:func:`permute_gates` cut into contiguous chunk blocks, flat: chunk q is the
    (R, ng uq) block at ``R * ng * uoff[q]``."""
    R = W.shape[0]
    full, rag = _gate_views(W, uoff, ng)
    out = np.empty(W.size, W.dtype)
    nf = R * full.shape[2] * full.shape[3] * ng
    out[:nf].reshape(full.shape[2], R, ng, full.shape[3])[...] = full.transpose(2, 0, 1, 3)
    out[nf:].reshape(rag.shape)[...] = rag
    return out


def scale_packed_gate(P, R, uoff, gate, factor, ng=4):
    """Multiply gate ``gate``'s columns of the :func:`pack_gates` layout ``P`` (flat, of
    an (R, ng H) matrix) by ``factor``, in place."""
    H = int(uoff[-1])
    C = _chunk(uoff)
    Qf = H // C
    nf = R * Qf * C * ng
    P[:nf].reshape(Qf, R, ng, C)[:, :, gate, :] *= factor
    P[nf:].reshape(R, ng, H - Qf * C)[:, gate, :] *= factor
    return P


def permute(W, uoff):
    """The 4H gate columns of ``W`` (R, 4H) in *packed order*: chunk q's i, f, g, o
    columns side by side at columns ``4 * uoff[q]:4 * uoff[q + 1]``."""
    return permute_gates(W, uoff, 4)


def unpermute(P, uoff):
    """Inverse of :func:`permute`: (R, 4H) in Keras column order."""
    return unpermute_gates(P, uoff, 4)


def pack(W, uoff):
    """:func:`permute` cut into contiguous chunk blocks, flat: chunk q is the
    (R, 4 uq) block at ``R * 4 * uoff[q]``."""
    return pack_gates(W, uoff, 4)


# ---- workspaces -----------------------------------------------------------------------
#: Most bytes of scratch one thread keeps between calls, all sizes and dtypes together.
#: W1/W2 (benchmarks/bench_lstm.py) take 4.1 MB (training) and 6.8 MB (inference), the
#: benchmark sweeps up to 16 MB; a bigger request gets a fresh array that is not kept.
WORKSPACE_MAX_BYTES = 32 << 20
#: A kept buffer its thread has not used in this many workspace requests is dropped.
WORKSPACE_IDLE_CALLS = 64


class _Pool:
    """One thread's kept buffers, each ``[array, request number of its last use]``."""

    __slots__ = ("bufs", "calls", "lock", "__weakref__")

    def __init__(self):
        self.bufs: list[list] = []
        self.calls = 0
        # re-entrant: a model's finalizer (which clears) may run inside a locked section
        self.lock = threading.RLock()

    def take(self, n: int, dtype) -> np.ndarray | None:
        """A kept buffer of ``dtype`` with ``n`` to ``2 n`` elements; drops idle ones."""
        self.calls += 1
        self.bufs = [e for e in self.bufs if self.calls - e[1] <= WORKSPACE_IDLE_CALLS]
        fits = [e for e in self.bufs
                if e[0].dtype == dtype and n <= e[0].size <= 2 * max(n, 1)]
        if not fits:
            return None
        best = min(fits, key=lambda e: e[0].size)
        best[1] = self.calls
        return best[0]

    def keep(self, buf: np.ndarray) -> None:
        """Keep ``buf``, dropping the least recently used buffers beyond the cap."""
        bufs = sorted(self.bufs + [[buf, self.calls]], key=lambda e: -e[1])
        total, kept = 0, []
        for e in bufs:  # most recent first: buf itself always fits (checked by the caller)
            if total + e[0].nbytes <= WORKSPACE_MAX_BYTES:
                kept.append(e)
                total += e[0].nbytes
        self.bufs = kept


_local = threading.local()
_pools: weakref.WeakSet = weakref.WeakSet()  # every live thread's pool, for clearing
_pools_lock = threading.RLock()


def _size_class(n: int) -> int:
    """``n`` rounded up to one of 4 sizes per power of two (at most 25% more)."""
    q = 1 << max(0, int(n).bit_length() - 3)
    return max(1, -(-n // q) * q)


def workspace(n: int, dtype) -> np.ndarray:
    """A flat scratch of ``n`` elements of ``dtype``, kept per thread and reused between
    calls: the vjp's big temporaries (dZ, ...) would otherwise be fresh pages, faulted
    in and zeroed by the OS at every training step. Never part of a returned value.

    A thread keeps at most :data:`WORKSPACE_MAX_BYTES` (a bigger request gets a fresh
    array, not kept); a buffer unused for :data:`WORKSPACE_IDLE_CALLS` requests of its
    thread is dropped; :func:`clear_workspaces` drops them all."""
    dtype = np.dtype(dtype)
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = _Pool()
        with _pools_lock:
            _pools.add(pool)
    with pool.lock:
        buf = pool.take(n, dtype)
    if buf is None:
        buf = np.empty(_size_class(n), dtype)
        if buf.nbytes <= WORKSPACE_MAX_BYTES:
            with pool.lock:
                pool.keep(buf)
    return buf[:n]


def _clear(blocking: bool) -> None:
    with _pools_lock:
        pools = list(_pools)
    for pool in pools:
        if pool.lock.acquire(blocking=blocking):
            try:
                pool.bufs = []
            finally:
                pool.lock.release()


def clear_workspaces() -> None:
    """Release the scratch buffers every thread keeps for the LSTM kernels.

    Buffers a call is using right now are freed when that call ends. Later calls
    allocate afresh. Called when a model is garbage-collected, and by
    ``graphmask.clear_workspaces()``.
    """
    _clear(blocking=True)


def release_workspaces_on_gc() -> None:
    """:func:`clear_workspaces` for finalizers: never waits for a lock (a pool in use
    by its thread right now is left to its idle rule), so it cannot deadlock."""
    _clear(blocking=False)


def workspace_bytes() -> int:
    """Bytes of scratch all threads keep between calls."""
    with _pools_lock:
        pools = list(_pools)
    return sum(e[0].nbytes for pool in pools for e in list(pool.bufs))


class threads_for:
    """Context manager: numba's (thread-local) thread count for a problem whose largest
    step has ``n`` rows: one thread below :data:`PARALLEL_MIN_WORK`. ``as`` gives the
    object, whose ``threads`` is the count to pass to the drivers."""

    def __init__(self, n: int, H: int):
        self.serial = n * H * 4 * H < PARALLEL_MIN_WORK

    def __enter__(self):
        self.saved = numba.get_num_threads()
        if self.serial:
            numba.set_num_threads(1)
        #: tasks a driver may run side by side (its ``nthreads`` argument)
        self.threads = numba.get_num_threads()
        return self

    def __exit__(self, *exc):
        numba.set_num_threads(self.saved)
        return False


@_inline
def _span(task, ntask, n):
    """Part ``task`` of ``ntask`` near-equal parts of ``range(n)``: (start, stop)."""
    return task * n // ntask, (task + 1) * n // ntask


# Each prange body below is a plain @jit task function: parfor analysis of big loop
# bodies is what makes parallel kernels slow to compile.
@jit
def _proj_task(task, ntask, Xc, kb, bp, A, uoff):
    """Input projection of a block of kept rows, ``x_t @ kernel + bias``, for all steps
    at once: per unit chunk, GEMMs of many rows into its contiguous block of A."""
    N, D = Xc.shape
    for q in range(uoff.size - 1):
        u0 = uoff[q]
        w = 4 * (uoff[q + 1] - u0)
        Aq = A[N * 4 * u0:N * 4 * u0 + N * w].reshape(N, w)
        Wq = kb[D * 4 * u0:D * 4 * u0 + D * w].reshape(D, w)
        # the tasks share out whole row blocks of one fixed grid, so every GEMM call
        # (and its rounding) is the same whatever the number of tasks
        mr = row_block(D * w)
        b0, b1 = _span(task, ntask, (N + mr - 1) // mr)
        for blk in range(b0, b1):
            a2 = blk * mr
            e2 = min(N, a2 + mr)
            gemm_into(Xc[a2:e2], Wq, Aq[a2:e2])
            bq = bp[4 * u0:4 * u0 + w]
            for r in range(a2, e2):  # row views: this loop vectorises, Aq[r, k] did not
                row = Aq[r]
                for k in range(w):
                    row[k] += bq[k]


@jit
def _fwd_task(task, ntask, o0, n, uoff, rows, rkb, A, G, Hp, Cp, Tc, h, c, act, ract):
    """One step for a group of unit chunks: per chunk, the recurrent GEMM
    ``h_{t-1} @ recurrent_kernel`` then the gate math of its units.

    Default activations (tanh, sigmoid): the g columns of the weights come scaled by 2
    (``tanh(x) = 2 sigmoid(2x) - 1``) and each row's cell is one vector intrinsic
    (``kernels/cells.py``); other activations run element loops."""
    B, H = h.shape
    N = Hp.shape[0]
    fast = act == 1 and ract == 2
    q0, q1 = _span(task, ntask, uoff.size - 1)
    for q in range(q0, q1):
        u0 = uoff[q]
        uq = uoff[q + 1] - u0
        w = 4 * uq
        Gq = G[B * 4 * u0:B * 4 * u0 + B * w].reshape(B, w)
        Wq = rkb[H * 4 * u0:H * 4 * u0 + H * w].reshape(H, w)
        Aq = A[N * 4 * u0:N * 4 * u0 + N * w].reshape(N, w)[o0:o0 + n]
        # the gate pre-activations: projection (already in A) + h_{t-1} @ recurrent kernel
        matmul_add_into(Hp[o0:o0 + n], Wq, Aq, Gq[:n])
        Cpq = Cp[N * u0:N * (u0 + uq)].reshape(N, uq)[o0:o0 + n]
        Tcq = Tc[N * u0:N * (u0 + uq)].reshape(N, uq)[o0:o0 + n]
        if fast:  # the whole cell in vectors (kernels/cells.py)
            for j in range(n):
                lstm_cell_forward(Aq, j, c, h, rows[o0 + j], u0, Cpq, Tcq, uq)
            continue
        if not _GENERAL:  # the default-activation clone runs the cell above only
            continue
        for j in range(n):
            _act_inplace(Aq[j, :2 * uq], ract)
            _act_inplace(Aq[j, 2 * uq:3 * uq], act)
            _act_inplace(Aq[j, 3 * uq:], ract)
        for j in range(n):
            b = rows[o0 + j]
            z = Aq[j]
            cp = Cpq[j]
            tc = Tcq[j]
            cb = c[b, u0:u0 + uq]
            for k in range(uq):
                cp[k] = cb[k]
            for k in range(uq):
                tc[k] = z[uq + k] * cp[k] + z[k] * z[2 * uq + k]
            for k in range(uq):
                cb[k] = tc[k]
        _act_inplace(Tc[N * u0 + o0 * uq:N * u0 + (o0 + n) * uq], act)
        for j in range(n):
            b = rows[o0 + j]
            z = Aq[j]
            tc = Tcq[j]
            hb = h[b, u0:u0 + uq]
            for k in range(uq):
                hb[k] = z[3 * uq + k] * tc[k]


def _step_times(offsets, backwards: bool, T: int) -> np.ndarray:
    """The time index of every compact row (N,): step ``t`` in processing order is time
    ``T - 1 - t`` when ``backwards``."""
    t = np.repeat(np.arange(T, dtype=np.int64), np.diff(offsets))
    return T - 1 - t if backwards else t


def _fwd_setup(x, offsets, rows, backwards, H, ws):
    """Xc (N, D): the input of every kept row; Hp (N, H); flat A (N 4H), Cp, Tc (N H)
    cut by unit chunks; G scratch. Carved from ``ws`` when it is not empty (inference:
    nothing outlives the call), else fresh (residuals for the VJP). NumPy: copies only,
    nothing to compile."""
    N = rows.size
    B, T, D = x.shape
    dt = x.dtype
    if ws.size > 0:
        # regions start 64 bytes + a cache line apart more each (no 4K aliasing)
        o1 = N * D + 16
        o2 = o1 + N * 4 * H + 32
        o3 = o2 + N * H + 48
        o4 = o3 + N * H + 64
        o5 = o4 + N * H + 80
        Xc = ws[:N * D].reshape(N, D)
        A = ws[o1:o1 + N * 4 * H]
        Hp = ws[o2:o2 + N * H].reshape(N, H)
        Cp = ws[o3:o3 + N * H]
        Tc = ws[o4:o4 + N * H]
        G = ws[o5:o5 + B * 4 * H]
    else:
        Xc = np.empty((N, D), dt)
        A = np.empty(N * 4 * H, dt)
        Hp = np.empty((N, H), dt)
        Cp = np.empty(N * H, dt)
        Tc = np.empty(N * H, dt)
        G = np.empty(B * 4 * H, dt)
    if N:
        np.take(x.reshape(B * T, D), rows * T + _step_times(offsets, backwards, T), axis=0,
                out=Xc)
    return Xc, A, Hp, Cp, Tc, G


def forward_workspace_size(N: int, B: int, D: int, H: int) -> int:
    """Elements of the ``ws`` an inference-only :func:`lstm_forward` takes."""
    return N * (D + 7 * H) + B * 4 * H + 240


@_inline
def _gather_h(Hp, h, rows, o0, n):
    H = h.shape[1]
    for j in range(n):
        b = rows[o0 + j]
        for k in range(H):
            Hp[o0 + j, k] = h[b, k]


@_inline
def _write_y(y, h, mask, t, backwards, zero_masked):
    # kept step: the new h; masked step: the carried h (= the previous output).
    B, T, H = y.shape
    ts = T - 1 - t if backwards else t
    zero = y.dtype.type(0.0)
    for b in range(B):
        if zero_masked and not mask[b, ts]:
            for k in range(H):
                y[b, t, k] = zero
        else:
            for k in range(H):
                y[b, t, k] = h[b, k]


@_inline
def _ntasks(work, Q, nthreads):
    """Tasks for ``work`` multiply-adds over ``Q`` chunks: one per thread when it pays."""
    if work < PARALLEL_MIN_WORK:
        return 1
    return max(1, min(nthreads, Q))


# ---- drivers ------------------------------------------------------------------------
# A driver is a small loop over the steps that launches its tasks (``prange`` in the
# threaded variant) through *function pointers* it receives as arguments (C callbacks
# passed as numba's first-class functions, :class:`TaskTable`): numba links every callee
# it calls by name into the caller's module and optimizes and compiles it again there
# (and once more in each parfor body), so a driver calling its tasks by name cost
# several times the tasks' own compilation. Called through pointers, each task compiles
# once, and a driver compiles as the loop it is, whatever tasks (default or general
# activations) it runs. Setup and finishing are NumPy (copies, exact sums in a fixed
# order): nothing to compile there.
@jit_parallel
def _forward_loop(proj, step, kb, bp, rkb, uoff, offsets, rows, mask, backwards, act, ract,
                  ret_seq, zero_masked, y, h, c, Xc, A, Hp, Cp, Tc, G, nthreads):
    """The steps of :func:`lstm_forward`: input projection, then per step the tasks of
    ``step`` (:func:`_fwd_task` or its default-activation clone)."""
    H = h.shape[1]
    N, D = Xc.shape
    Q = uoff.size - 1
    T = offsets.size - 1
    npj = _ntasks(N * D * 4 * H, 1 << 30, nthreads)
    for task in numba.prange(npj):
        proj(np.int64(task), npj, Xc, kb, bp, A, uoff)
    for t in range(T):
        o0 = offsets[t]
        n = offsets[t + 1] - o0
        _gather_h(Hp, h, rows, o0, n)
        nt = _ntasks(n * H * 4 * H, Q, nthreads)
        for task in numba.prange(nt):
            step(np.int64(task), nt, o0, n, uoff, rows, rkb, A, G, Hp, Cp, Tc, h, c, act, ract)
        if ret_seq:
            _write_y(y, h, mask, t, backwards, zero_masked)


@_inline
def _write_y_range(y, h, mask, t, backwards, zero_masked, b0, b1):
    # :func:`_write_y` for the samples b0:b1 only (one group's)
    T, H = y.shape[1], y.shape[2]
    ts = T - 1 - t if backwards else t
    zero = y.dtype.type(0.0)
    for b in range(b0, b1):
        yt = y[b, t]
        if zero_masked and not mask[b, ts]:
            for k in range(H):
                yt[k] = zero
        else:
            hb = h[b]
            for k in range(H):
                yt[k] = hb[k]


@jit_parallel
def _forward_groups_loop(proj, group, kb, bp, rkb, uoff, offsets, rows, gsplit, goff, mask,
                         backwards, act, ract, ret_seq, zero_masked, y, h, c, Xc, A, Hp, Cp,
                         Tc, G, nthreads):
    """:func:`_forward_loop` with the samples split into groups (``gsplit``: the first
    sample of each group, then B) instead of the units: the input projection as there,
    then one task per group (``group``: :func:`_fwd_group_task` or its default-activation
    clone) runs *every* step over its own samples' rows. A group reads and writes only its
    own samples' state, so the tasks never wait for each other: one fork/join per call
    instead of one per step, and no state crossing between cores at every step."""
    H = h.shape[1]
    N, D = Xc.shape
    npj = _ntasks(N * D * 4 * H, 1 << 30, nthreads)
    for task in numba.prange(npj):
        proj(np.int64(task), npj, Xc, kb, bp, A, uoff)
    for g in numba.prange(gsplit.size - 1):
        group(np.int64(g), offsets, rows, gsplit, goff, uoff, rkb, A, G, Hp, Cp, Tc, h, c, y,
              mask, backwards, act, ract, ret_seq, zero_masked)


@jit
def _proj_range(proj, a, b, npj, Xc, kb, bp, A, uoff):
    """The input-projection tasks ``a`` to ``b - 1`` of ``npj``, on this thread: one share
    of the one-thread tier of :func:`_forward_groups_loop` (``kernels/launch.py``)."""
    for task in range(a, b):
        proj(np.int64(task), npj, Xc, kb, bp, A, uoff)


@jit
def _forward_groups(group, a, b, offsets, rows, gsplit, goff, uoff, rkb, A, G, Hp, Cp, Tc, h,
                    c, y, mask, backwards, act, ract, ret_seq, zero_masked):
    """Sample groups ``a`` to ``b - 1`` of :func:`_forward_groups_loop`, on this thread."""
    for g in range(a, b):
        group(np.int64(g), offsets, rows, gsplit, goff, uoff, rkb, A, G, Hp, Cp, Tc, h, c, y,
              mask, backwards, act, ract, ret_seq, zero_masked)


@jit
def _bwd_task(task, ntask, o0, n, uoff, rows, A, Cp, Tc, dZ, dh, dc, act, ract):
    """Gate gradients of one step for a group of unit chunks."""
    N = dZ.shape[0]
    one = A.dtype.type(1.0)
    sixth = one / A.dtype.type(6.0)
    q0, q1 = _span(task, ntask, uoff.size - 1)
    fast = act == 1 and ract == 2  # the Keras default
    for q in range(q0, q1):
        u0 = uoff[q]
        uq = uoff[q + 1] - u0
        w = 4 * uq
        Aq = A[N * 4 * u0:N * 4 * u0 + N * w].reshape(N, w)
        Cpq = Cp[N * u0:N * (u0 + uq)].reshape(N, uq)
        Tcq = Tc[N * u0:N * (u0 + uq)].reshape(N, uq)
        if fast:  # in vectors (kernels/cells.py)
            for r in range(o0, o0 + n):
                lstm_cell_backward(Aq, Tcq, Cpq, r, dh, dc, rows[r], u0, dZ, uq)
            continue
        if not _GENERAL:  # the default-activation clone runs the cell above only
            continue
        for j in range(n):
            r = o0 + j
            b = rows[r]
            z = Aq[r]
            dz = dZ[r, 4 * u0:4 * u0 + w]
            tcr = Tcq[r]
            cpr = Cpq[r]
            dhb = dh[b, u0:u0 + uq]
            dcb = dc[b, u0:u0 + uq]
            for k in range(uq):
                gi = z[k]
                gf = z[uq + k]
                gg = z[2 * uq + k]
                go = z[3 * uq + k]
                tc = tcr[k]
                dhk = dhb[k]
                dct = dcb[k] + dhk * go * _dact(tc, act, one, sixth)
                dz[k] = dct * gg * _dact(gi, ract, one, sixth)
                dz[uq + k] = dct * cpr[k] * _dact(gf, ract, one, sixth)
                dz[2 * uq + k] = dct * gi * _dact(gg, act, one, sixth)
                dz[3 * uq + k] = dhk * tc * _dact(go, ract, one, sixth)
                dcb[k] = dct * gf


@jit
def _dh_task(task, ntask, o0, n, rows, dZ, rkT, DH, dh):
    """dh_{t-1} = dZ_t @ recurrent_kernel.T for a block of this step's rows."""
    H = dh.shape[1]
    a0, e0 = _span(task, ntask, n)
    matmul_into(dZ[o0 + a0:o0 + e0], rkT, DH[a0:e0])
    for j in range(a0, e0):
        b = rows[o0 + j]
        for k in range(H):
            dh[b, k] = DH[j, k]


@_inline
def _add_gy(dh, gy, mask, t, backwards, zero_masked):
    # y[:, t] is h_t at kept and carried steps alike, so its gradient joins dh.
    B, T, H = gy.shape
    ts = T - 1 - t if backwards else t
    for b in range(B):
        if not (zero_masked and not mask[b, ts]):
            for k in range(H):
                dh[b, k] += gy[b, t, k]


@_inline
def _add_gy_range(dh, gy, mask, t, backwards, zero_masked, b0, b1):
    # :func:`_add_gy` for the samples b0:b1 only (one group's)
    T, H = gy.shape[1], gy.shape[2]
    ts = T - 1 - t if backwards else t
    for b in range(b0, b1):
        if not (zero_masked and not mask[b, ts]):
            d = dh[b]
            g = gy[b, t]
            for k in range(H):
                d[k] += g[k]


@jit_parallel
def _backward_loop(bstep, dhstep, A, Cp, Tc, rkT, uoff, offsets, rows, mask, backwards, act,
                   ract, ret_seq, zero_masked, gy, dh, dc, dZ, DH, nthreads):
    """The steps of :func:`lstm_backward` (``bstep``: :func:`_bwd_task` or its
    default-activation clone; ``dhstep``: :func:`_dh_task`)."""
    H = dh.shape[1]
    T = offsets.size - 1
    Q = uoff.size - 1
    for t in range(T - 1, -1, -1):
        if ret_seq:
            _add_gy(dh, gy, mask, t, backwards, zero_masked)
        o0 = offsets[t]
        n = offsets[t + 1] - o0
        nt = _ntasks(n * H * 4 * H, Q, nthreads)
        for task in numba.prange(nt):
            bstep(np.int64(task), nt, o0, n, uoff, rows, A, Cp, Tc, dZ, dh, dc, act, ract)
        for task in numba.prange(nt):
            dhstep(np.int64(task), nt, o0, n, rows, dZ, rkT, DH, dh)


@jit_parallel
def _backward_groups_loop(group, A, Cp, Tc, rkT, uoff, offsets, rows, gsplit, goff, mask,
                          backwards, act, ract, ret_seq, zero_masked, gy, dh, dc, dZ, DH,
                          nthreads):
    """:func:`_backward_loop` by sample groups (see :func:`_forward_groups_loop`): one
    task per group (``group``: :func:`_bwd_group_task` or its default-activation clone)
    runs every step backwards over its own samples' rows."""
    for g in numba.prange(gsplit.size - 1):
        group(np.int64(g), offsets, rows, gsplit, goff, uoff, A, Cp, Tc, rkT, dZ, DH, dh, dc,
              gy, mask, backwards, act, ract, ret_seq, zero_masked)


@jit
def _backward_groups(group, a, b, A, Cp, Tc, rkT, uoff, offsets, rows, gsplit, goff, mask,
                     backwards, act, ract, ret_seq, zero_masked, gy, dh, dc, dZ, DH):
    """Sample groups ``a`` to ``b - 1`` of :func:`_backward_groups_loop`, on this thread."""
    for g in range(a, b):
        group(np.int64(g), offsets, rows, gsplit, goff, uoff, A, Cp, Tc, rkT, dZ, DH, dh, dc,
              gy, mask, backwards, act, ract, ret_seq, zero_masked)


@jit
def _wgrad_task(task, ntask, dZ, Xc, Hp, kp, dK, dR, db, dXc):
    """Weight, bias and input gradients over a block of kept rows (big GEMMs): this
    task's partial sums ``Xc.T @ dZ``, ``Hp.T @ dZ``, ``sum dZ`` and its rows of
    ``dZ @ kernel.T``."""
    a, e = _span(task, ntask, dZ.shape[0])
    if e == a:  # no rows: no sums (np.dot would not write)
        zero = dK.dtype.type(0.0)
        for i in range(dK.shape[1]):
            for k in range(dK.shape[2]):
                dK[task, i, k] = zero
        for i in range(dR.shape[1]):
            for k in range(dR.shape[2]):
                dR[task, i, k] = zero
        return
    gemm_into(Xc[a:e].T, dZ[a:e], dK[task])
    gemm_into(Hp[a:e].T, dZ[a:e], dR[task])
    gemm_into(dZ[a:e], kp.T, dXc[a:e])
    dbt = db[task]
    for r in range(a, e):
        z = dZ[r]
        for k in range(z.size):
            dbt[k] += z[k]


@jit_parallel
def _weight_grads_loop(wstep, nt, dZ, Xc, Hp, kp, dK, dR, db, dXc):
    """The tasks of :func:`lstm_weight_grads` (``wstep``: :func:`_wgrad_task`)."""
    for task in numba.prange(nt):
        wstep(np.int64(task), nt, dZ, Xc, Hp, kp, dK, dR, db, dXc)


@jit
def _weight_grads_range(wstep, a, b, nt, dZ, Xc, Hp, kp, dK, dR, db, dXc):
    """Tasks ``a`` to ``b - 1`` of :func:`_weight_grads_loop`, on this thread."""
    for task in range(a, b):
        wstep(np.int64(task), nt, dZ, Xc, Hp, kp, dK, dR, db, dXc)


def _clone(kernel, suffix, parallel=False, **names):
    """``kernel`` compiled again as a distinct function: ``parallel`` or not (prange runs as
    range), with the module globals in ``names`` replaced (constants, or the kernels it
    calls). A distinct qualname keeps each clone in its own on-disk cache entry."""
    f = kernel.py_func
    glob = dict(f.__globals__, **names) if names else f.__globals__
    g = pytypes.FunctionType(f.__code__, glob, f.__name__ + suffix, f.__defaults__,
                             f.__closure__)
    g.__qualname__ = f.__qualname__ + suffix
    g.__doc__ = f.__doc__
    return (jit_parallel if parallel else jit)(g)


def _one_thread_twin(parallel_kernel):
    """The same driver compiled without ``parallel`` (prange runs as range).

    float64 (gradient checks) and one-thread launches run these: a twin given the same
    ``nthreads`` splits the work into the same tasks, so its results are bit for bit the
    same, and it compiles in a fraction of the time.
    """
    return _clone(parallel_kernel, "_1t")


_forward_loop_1t = _one_thread_twin(_forward_loop)
_backward_loop_1t = _one_thread_twin(_backward_loop)

# Default activations (tanh, sigmoid): step kernels without the other activations' code.
_fwd_task_dflt = _clone(_fwd_task, "_dflt", _GENERAL=False)
_bwd_task_dflt = _clone(_bwd_task, "_dflt", _GENERAL=False)


def _inline_clone(kernel, suffix, **names):
    """``kernel``'s Python function as an inlined helper (see ``_inline``), with the module
    globals in ``names`` replaced: the group tasks below take the step kernels' code in
    instead of linking compiled copies of them."""
    f = kernel.py_func
    g = pytypes.FunctionType(f.__code__, dict(f.__globals__, **names), f.__name__ + suffix,
                             f.__defaults__, f.__closure__)
    g.__qualname__ = f.__qualname__ + suffix
    return _inline(g)


_fwd_step = _inline_clone(_fwd_task, "_inl")
_bwd_step = _inline_clone(_bwd_task, "_inl")
_dh_step = _inline_clone(_dh_task, "_inl")


@jit
def _fwd_group_task(g, offsets, rows, gsplit, goff, uoff, rkb, A, G, Hp, Cp, Tc, h, c, y,
                    mask, backwards, act, ract, ret_seq, zero_masked):
    """Every step of :func:`_forward_groups_loop` for sample group ``g``: step ``t``'s
    rows ``offsets[t] + goff[t, g]`` to ``offsets[t] + goff[t, g + 1]``, all unit chunks
    at once (the step code of :func:`_fwd_task`); its own (B, 4H) gate scratch in ``G``."""
    B, H = h.shape
    Gg = G[g * B * 4 * H:(g + 1) * B * 4 * H]
    for t in range(offsets.size - 1):
        o0 = offsets[t] + goff[t, g]
        n = goff[t, g + 1] - goff[t, g]
        if n > 0:
            _gather_h(Hp, h, rows, o0, n)
            _fwd_step(np.int64(0), np.int64(1), o0, n, uoff, rows, rkb, A, Gg, Hp, Cp, Tc, h,
                      c, act, ract)
        if ret_seq:
            _write_y_range(y, h, mask, t, backwards, zero_masked, gsplit[g], gsplit[g + 1])


@jit
def _bwd_group_task(g, offsets, rows, gsplit, goff, uoff, A, Cp, Tc, rkT, dZ, DH, dh, dc, gy,
                    mask, backwards, act, ract, ret_seq, zero_masked):
    """Every step of :func:`_backward_groups_loop` for sample group ``g``, last to first
    (the step code of :func:`_bwd_task` and :func:`_dh_task`); its dh scratch is
    ``DH[gsplit[g]:gsplit[g + 1]]``."""
    b0 = gsplit[g]
    b1 = gsplit[g + 1]
    DHg = DH[b0:b1]
    for t in range(offsets.size - 2, -1, -1):
        if ret_seq:
            _add_gy_range(dh, gy, mask, t, backwards, zero_masked, b0, b1)
        o0 = offsets[t] + goff[t, g]
        n = goff[t, g + 1] - goff[t, g]
        if n > 0:
            _bwd_step(np.int64(0), np.int64(1), o0, n, uoff, rows, A, Cp, Tc, dZ, dh, dc, act,
                      ract)
            _dh_step(np.int64(0), np.int64(1), o0, n, rows, dZ, rkT, DHg, dh)


_fwd_group_task_dflt = _clone(_fwd_group_task, "_dflt",
                              _fwd_step=_inline_clone(_fwd_task, "_inl_dflt", _GENERAL=False))
_bwd_group_task_dflt = _clone(_bwd_group_task, "_dflt",
                              _bwd_step=_inline_clone(_bwd_task, "_inl_dflt", _GENERAL=False))


def _task_signatures(f):
    """The signature of each task kernel for float type ``f``."""
    i = types.int64
    iv = types.Array(i, 1, "C")
    im = types.Array(i, 2, "C")
    b = types.boolean
    bm = types.Array(b, 2, "C")
    v, m, a3 = (types.Array(f, nd, "C") for nd in (1, 2, 3))
    return {
        "proj": types.void(i, i, m, v, v, v, iv),
        "fwd": types.void(i, i, i, i, iv, iv, v, v, v, m, v, v, m, m, i, i),
        "bwd": types.void(i, i, i, i, iv, iv, v, v, v, m, m, m, i, i),
        "dh": types.void(i, i, i, i, iv, m, m, m, m),
        "wgrad": types.void(i, i, m, m, m, m, a3, a3, m, m),
        "fgroup": types.void(i, iv, iv, iv, im, iv, v, v, v, m, v, v, m, m, a3, bm, b, i, i, b,
                             b),
        "bgroup": types.void(i, iv, iv, iv, im, iv, v, v, v, m, m, m, m, m, a3, bm, b, i, i, b,
                             b),
    }


class _TaskCallback(CFunc):
    """``numba.cfunc`` whose compilation (not a load from the cache) is announced as
    numba's ``numba:compile`` event, as a jitted function's is (the progress display and
    ``benchmarks/bench_cold_start.py`` listen for it)."""

    def _compile_uncached(self):
        with event.trigger_event("numba:compile", data={
                "dispatcher": self, "args": self._sig.args,
                "return_type": self._sig.return_type}):
            return super()._compile_uncached()

    @functools.cached_property
    def numba_type(self):
        return types.FunctionType(self._sig)

    def __wrapper_address__(self):
        # numba's unboxing asks for the address at every driver call; without this it
        # first compares the signature it typed with this one (~10 us a task)
        return self._wrapper_address


@typeof_impl.register(_TaskCallback)
def _typeof_task(val, c):
    # numba's typeof of a cfunc builds its FunctionType anew at every driver call (25 us)
    return val.numba_type


#: LLVM may fuse a multiply and an add into one FMA in the task kernels ("contract"; no
#: other fast-math liberty): the exp polynomial of the gate activations runs 1.6x faster.
#: The fused results round once instead of twice; every task is compiled the same way
#: for every thread count, so results stay bit-identical across thread counts.
FASTMATH = {"contract"}


class TaskTable:
    """Task kernels compiled as C callbacks (:class:`_TaskCallback`, cached on disk like
    every kernel), one per (name, float dtype), made on first use: a driver receives them
    as first-class functions and calls them through their pointers, without linking their
    code. ``kernels``: name -> ``@jit`` kernel; ``signatures(f)``: name -> signature for
    float type ``f`` (a name's part before ``_`` when variants share one).

    Task kernels are compiled without numba's runtime (``_nrt=False``): they allocate
    nothing (every buffer comes from the driver, BLAS through ``blas.gemm_into``), and
    without the runtime the array views they make at every step and chunk are not
    reference-counted (two atomic operations each)."""

    def __init__(self, kernels: dict, signatures):
        self.kernels = kernels
        self.signatures = signatures
        self.made: dict = {}
        self.lock = threading.Lock()

    def __call__(self, name: str, dtype):
        key = (name, np.dtype(dtype))
        t = self.made.get(key)
        if t is None:
            with self.lock:
                t = self.made.get(key)
                if t is None:
                    f = types.float32 if key[1] == np.float32 else types.float64
                    sig = self.signatures(f)[name.split("_")[0]]
                    t = _TaskCallback(self.kernels[name].py_func, (sig.args, sig.return_type),
                                      locals={}, options={"nogil": True, "fastmath": FASTMATH,
                                                          "_nrt": False})
                    t.enable_caching()
                    t.compile()  # or load from the cache
                    self.made[key] = t
        return t


_task = TaskTable({"proj": _proj_task, "fwd": _fwd_task, "fwd_dflt": _fwd_task_dflt,
                   "bwd": _bwd_task, "bwd_dflt": _bwd_task_dflt, "dh": _dh_task,
                   "wgrad": _wgrad_task, "fgroup": _fwd_group_task,
                   "fgroup_dflt": _fwd_group_task_dflt, "bgroup": _bwd_group_task,
                   "bgroup_dflt": _bwd_group_task_dflt}, _task_signatures)


def lstm_forward(x, kb, bp, rkb, uoff, offsets, rows, mask, backwards, act, ract, ret_seq,
                 zero_masked, y, h, c, ws, nthreads, *, threaded=True, default=None):
    """Forward over kept rows. ``kb, rkb, bp``: :func:`pack` of the kernel, the
    recurrent kernel and the bias (zeros without bias), g columns times 2 for the
    default activations (see :func:`_fwd_task`).
    ``h, c`` (B, H) enter as the initial state (zeros, or the op's ``h0, c0``) and end as
    the final state; ``y`` (B, T, H) is written when ``ret_seq``, with the carried ``h`` at
    masked steps (the op zeroes those before a sample's first kept step when it starts
    from a given state). ``ws``: empty, or (inference) a scratch of
    :func:`forward_workspace_size` elements all the arrays below are carved from. Returns
    the residuals: Xc (N, D) and Hp (N, H), the input and
    ``h_{t-1}`` of every kept row, and flat, cut by unit chunks like the weights: the
    gate activations A (chunk q is (N, 4 uq) at ``N 4 uoff[q]``), c_{t-1} and act(c_t)
    (chunk q is (N, uq) at ``N uoff[q]``).

    ``threaded``: run the tasks of a step on numba's threads (False: one after another
    on this thread, same tasks, same results); ``default``: the default-activation step
    kernels (None: when ``act, ract`` are tanh, sigmoid)."""
    if default is None:
        default = act == 1 and ract == 2
    H = h.shape[1]
    Xc, A, Hp, Cp, Tc, G = _fwd_setup(x, offsets, rows, backwards, H, ws)
    dt = x.dtype
    proj = _task("proj", dt)
    groups = sample_groups(offsets, rows, h.shape[0], H)
    if groups is not None:
        gsplit, goff = groups
        G = np.empty((gsplit.size - 1) * G.size, dt)  # one gate scratch per group
        group = _task("fgroup_dflt" if default else "fgroup", dt)
        mask = np.ascontiguousarray(mask)
        flags = (bool(backwards), int(act), int(ract), bool(ret_seq), bool(zero_masked))
        args = (proj, group, kb, bp, rkb, uoff, offsets, rows, gsplit, goff, mask, *flags, y,
                h, c, Xc, A, Hp, Cp, Tc, G, nthreads)
        if threaded and tiered(_forward_groups_loop, args):
            _forward_groups_loop(*args)
            return Xc, Hp, A, Cp, Tc
        # the one-thread tier (kernels/launch.py): the same tasks, shares on threads
        threads = nthreads if threaded else 1
        npj = _ntasks_py(Xc.size * 4 * H, 1 << 30, nthreads)
        run_shares(lambda a, b: _proj_range(proj, a, b, npj, Xc, kb, bp, A, uoff), npj,
                   threads)
        run_shares(lambda a, b: _forward_groups(
            group, a, b, offsets, rows, gsplit, goff, uoff, rkb, A, G, Hp, Cp, Tc, h, c, y,
            mask, *flags), gsplit.size - 1, threads)
        return Xc, Hp, A, Cp, Tc
    step = _task("fwd_dflt" if default else "fwd", dt)
    args = (proj, step, kb, bp, rkb, uoff, offsets, rows, mask, backwards, act, ract, ret_seq,
            zero_masked, y, h, c, Xc, A, Hp, Cp, Tc, G, nthreads)
    pick(_forward_loop, _forward_loop_1t, threaded, args)(*args)
    return Xc, Hp, A, Cp, Tc


def lstm_backward(A, Cp, Tc, rkT, uoff, offsets, rows, mask, backwards, act, ract,
                  ret_seq, zero_masked, gy, dh, dc, ws, nthreads, *, threaded=True,
                  default=None):
    """Backpropagation through time over kept rows (A, Cp, Tc as left by the forward).

    ``dh, dc`` (B, H) enter as the gradients w.r.t. the final state and are updated in
    place: they leave as the gradients w.r.t. the initial state (``dh0, dc0``). ``gy`` is
    the gradient of the (B, T, H) sequence output when ``ret_seq``.
    ``rkT`` is :func:`permute` of the recurrent kernel, transposed (4H, H), contiguous.
    ``ws``: a scratch of at least N 4H + B H elements (reused between calls, see
    :func:`workspace`). Returns the gate pre-activation gradients dZ (N, 4H), in packed
    order like A: a view of ``ws``. ``threaded``, ``default``: as :func:`lstm_forward`.
    """
    if default is None:
        default = act == 1 and ract == 2
    B, H = dh.shape
    N = A.size // (4 * H)
    dZ = ws[:N * 4 * H].reshape(N, 4 * H)
    DH = ws[N * 4 * H:N * 4 * H + B * H].reshape(B, H)
    dt = A.dtype
    groups = sample_groups(offsets, rows, B, H)
    if groups is not None:
        gsplit, goff = groups
        group = _task("bgroup_dflt" if default else "bgroup", dt)
        mask, gy = np.ascontiguousarray(mask), np.ascontiguousarray(gy)
        flags = (bool(backwards), int(act), int(ract), bool(ret_seq), bool(zero_masked))
        args = (group, A, Cp, Tc, rkT, uoff, offsets, rows, gsplit, goff, mask, *flags, gy, dh,
                dc, dZ, DH, nthreads)
        if threaded and tiered(_backward_groups_loop, args):
            _backward_groups_loop(*args)
            return dZ
        run_shares(lambda a, b: _backward_groups(
            group, a, b, A, Cp, Tc, rkT, uoff, offsets, rows, gsplit, goff, mask, *flags, gy,
            dh, dc, dZ, DH), gsplit.size - 1, nthreads if threaded else 1)
        return dZ
    bstep, dhstep = _task("bwd_dflt" if default else "bwd", dt), _task("dh", dt)
    args = (bstep, dhstep, A, Cp, Tc, rkT, uoff, offsets, rows, mask, backwards, act, ract,
            ret_seq, zero_masked, gy, dh, dc, dZ, DH, nthreads)
    pick(_backward_loop, _backward_loop_1t, threaded, args)(*args)
    return dZ


#: Batches of at least 2 x GROUP_SAMPLES samples run by *sample groups* (see
#: :func:`_forward_groups_loop`): B // GROUP_SAMPLES groups (at most MAX_GROUPS), shared
#: out among the threads; smaller batches split each step's units between the threads.
GROUP_SAMPLES = 16
MAX_GROUPS = 8


def sample_groups(offsets, rows, B: int, H: int):
    """The sample groups of a launch, or None (a small batch, or too little work per step
    to be worth threads: the unit-chunk drivers then run it).

    The groups depend on the batch and its mask only, never on the number of threads:
    every GEMM of a step covers one group's rows whichever thread runs it, so results
    are bit for bit the same for any thread count (OpenBLAS rounds a row differently
    when it is multiplied among a different number of rows).

    Returns ``(gsplit, goff)``: ``gsplit`` (ng + 1,) the first sample of each group then
    B, contiguous ranges chosen so the groups hold near-equal numbers of kept rows;
    ``goff`` (T, ng + 1): group g's rows of step t are ``offsets[t] + goff[t, g]`` to
    ``offsets[t] + goff[t, g + 1]`` (a step's rows are in increasing sample order). NumPy:
    nothing to compile."""
    ng = min(MAX_GROUPS, B // GROUP_SAMPLES)
    T = offsets.size - 1
    N = rows.size
    if ng < 2 or T == 0 or N * 4 * H * H < PARALLEL_MIN_WORK * T:
        return None
    kept = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=B))])
    want = N * np.arange(1, ng) / ng
    hi = np.clip(np.searchsorted(kept, want), 1, B)
    lo = hi - 1
    inner = np.where(want - kept[lo] <= kept[hi] - want, lo, hi)
    gsplit = np.concatenate([[0], np.maximum.accumulate(inner), [B]]).astype(np.int64)
    step = np.repeat(np.arange(T, dtype=np.int64), np.diff(offsets))
    group = np.searchsorted(gsplit, rows, side="right") - 1
    counts = np.bincount(step * ng + group, minlength=T * ng).reshape(T, ng)
    goff = np.zeros((T, ng + 1), np.int64)
    np.cumsum(counts, axis=1, out=goff[:, 1:])
    return gsplit, goff


def _ntasks_py(work: int, Q: int, nthreads: int) -> int:
    """:func:`_ntasks` for the Python side."""
    return 1 if work < PARALLEL_MIN_WORK else max(1, min(nthreads, Q))


def lstm_weight_grads(dZ, Xc, Hp, kp, offsets, rows, backwards, B, dXc, nthreads, *,
                      threaded=True):
    """Gradients of x (B, T, D), of the kernel and recurrent kernel (packed order) and of
    the bias ((1, 4H), packed order) from the gate gradients: sums over all kept rows.
    ``dXc`` (N, D): scratch for the input gradient of each kept row. Each task sums its
    share of the rows; the shares are added in task order."""
    N, D = Xc.shape
    H = Hp.shape[1]
    T = offsets.size - 1
    dt = dZ.dtype
    nt = _ntasks_py(N * (D + H) * 4 * H, 1 << 30, nthreads)
    dK = np.empty((nt, D, 4 * H), dt)
    dR = np.empty((nt, H, 4 * H), dt)
    db = np.zeros((nt, 4 * H), dt)
    wstep = _task("wgrad", dt)
    args = (wstep, nt, dZ, Xc, Hp, kp, dK, dR, db, dXc)
    if threaded and tiered(_weight_grads_loop, args):
        _weight_grads_loop(*args)
    else:
        run_shares(lambda a, b: _weight_grads_range(wstep, a, b, nt, dZ, Xc, Hp, kp, dK, dR,
                                                    db, dXc), nt, nthreads if threaded else 1)
    dx = np.zeros((B, T, D), dt)
    if N:
        dx.reshape(B * T, D)[rows * T + _step_times(offsets, backwards, T)] = dXc
    for p in range(1, nt):  # in place, in task order: the sums of the numba loops before
        np.add(dK[0], dK[p], out=dK[0])
        np.add(dR[0], dR[p], out=dR[0])
        np.add(db[0], db[p], out=db[0])
    return dx, dK[0], dR[0], db[0:1]


def _variant(kernel, default, threaded):
    return lambda *args: kernel(*args, threaded=threaded, default=default)


_FORWARD = {  # (default activations, threaded) -> driver
    (d, th): _variant(lstm_forward, d, th) for d in (False, True) for th in (False, True)}
_BACKWARD = {
    (d, th): _variant(lstm_backward, d, th) for d in (False, True) for th in (False, True)}
_WEIGHT_GRADS = {th: (lambda *args, _th=th: lstm_weight_grads(*args, threaded=_th))
                 for th in (False, True)}


def _threaded(threadable, nthreads):
    return threadable and nthreads > 1


def drivers(dtype):
    """(forward, backward, weight_grads) for a float dtype, each a callable with the
    arguments of :func:`lstm_forward`, :func:`lstm_backward`, :func:`lstm_weight_grads`.

    Each call runs the compiled variant it needs, so a model compiles only those:
    multi-threaded drivers for float32 launches with ``nthreads > 1``, one-thread twins
    otherwise (float64, one thread: same tasks, same results, far cheaper to compile);
    step kernels for the default activations (tanh, sigmoid) or for any activations.
    """
    threadable = np.dtype(dtype) == np.float32

    def forward(*args):
        key = (args[9] == 1 and args[10] == 2, _threaded(threadable, args[-1]))
        return _FORWARD[key](*args)

    def backward(*args):
        key = (args[9] == 1 and args[10] == 2, _threaded(threadable, args[-1]))
        return _BACKWARD[key](*args)

    def weight_grads(*args):
        return _WEIGHT_GRADS[_threaded(threadable, args[-1])](*args)

    return forward, backward, weight_grads
