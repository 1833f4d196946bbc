"""The compiled variants kernels are split into for a short cold start give the same
results as the kernels they stand for (graphmask/kernels/lstm.py ``drivers``,
graphmask/kernels/dense.py per-activation copies)."""
import numpy as np
import pytest

import graphmask.kernels.dense as KD
import graphmask.kernels.lstm as K
from graphmask.kernels.activations import CODES, activation_forward, activation_grad

B, T, D, H = 48, 7, 6, 40  # three unit chunks (the last ragged); 48 rows: two tasks a step


def _problem(act, ract, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    mask = rng.random((B, T)) < 0.7
    mask[0] = False  # a sample with no kept step
    uoff = K.unit_chunks(H)
    offsets, rows = K.lstm_schedule(mask, False)
    k = (rng.normal(size=(D, 4 * H)) * 0.3).astype(np.float32)
    rk = (rng.normal(size=(H, 4 * H)) * 0.3).astype(np.float32)
    bp = (rng.normal(size=(1, 4 * H)) * 0.1).astype(np.float32)
    gy = rng.normal(size=(B, T, H)).astype(np.float32)
    return x, mask, uoff, offsets, rows, k, rk, bp, gy


def _run(forward, backward, weight_grads, act, ract, nthreads):
    """Forward, backward and weight gradients of one problem through the given kernels."""
    x, mask, uoff, offsets, rows, k, rk, bp, gy = _problem(act, ract)
    y = np.empty((B, T, H), np.float32)
    h = np.zeros((B, H), np.float32)
    c = np.zeros((B, H), np.float32)
    Xc, Hp, A, Cp, Tc = forward(
        x, K.pack(k, uoff), K.pack(bp, uoff), K.pack(rk, uoff), uoff, offsets, rows, mask,
        False, act, ract, True, False, y, h, c, np.empty(0, np.float32), nthreads)
    N = Xc.shape[0]
    dh = np.zeros((B, H), np.float32)
    dc = np.zeros((B, H), np.float32)
    ws = np.full(N * (4 * H + D) + B * H, np.nan, np.float32)  # stale reads show
    rkT = np.ascontiguousarray(K.permute(rk, uoff).T)
    dZ = backward(A, Cp, Tc, rkT, uoff, offsets, rows, mask, False, act, ract, True, False,
                  gy, dh, dc, ws, nthreads).copy()
    dXc = ws[N * 4 * H + B * H:].reshape(N, D)
    grads = weight_grads(dZ, Xc, Hp, K.permute(k, uoff), offsets, rows, False, B, dXc,
                         nthreads)
    return [y, h, c, A, Tc, dZ, dh, dc, *grads]


def _assert_same(a, b):
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b)):
        assert u.dtype == v.dtype and u.shape == v.shape, i
        np.testing.assert_array_equal(u, v, err_msg=f"result {i}")


def test_one_thread_twin_matches_the_threaded_driver_bit_for_bit():
    """Given the same ``nthreads``, the twin runs the same tasks one after another."""
    threaded = _run(K._FORWARD[True, True], K._BACKWARD[True, True], K._WEIGHT_GRADS[True],
                    1, 2, 2)
    twin = _run(K._FORWARD[True, False], K._BACKWARD[True, False], K._WEIGHT_GRADS[False],
                1, 2, 2)
    _assert_same(threaded, twin)


def test_default_activation_kernels_match_the_general_ones_bit_for_bit():
    general = _run(K._FORWARD[False, False], K._BACKWARD[False, False],
                   K._WEIGHT_GRADS[False], 1, 2, 2)
    default = _run(K._FORWARD[True, False], K._BACKWARD[True, False],
                   K._WEIGHT_GRADS[False], 1, 2, 2)
    _assert_same(general, default)


@pytest.mark.parametrize("dtype,act,ract,nthreads,expected", [
    (np.float32, 1, 2, 2, (True, True)),   # Keras defaults, threads: the usual case
    (np.float32, 1, 2, 1, (True, False)),  # one thread: no parallel driver compiled
    (np.float32, 3, 4, 2, (False, True)),  # relu / hard_sigmoid: the general kernels
    (np.float32, 1, 4, 2, (False, True)),
    (np.float64, 1, 2, 2, (True, False)),  # float64: one-thread twins
    (np.float64, 3, 2, 1, (False, False)),
])
def test_drivers_pick_the_variant_a_launch_needs(monkeypatch, dtype, act, ract, nthreads,
                                                  expected):
    calls = []
    for table, name in ((K._FORWARD, "forward"), (K._BACKWARD, "backward")):
        for key in list(table):
            monkeypatch.setitem(table, key, lambda *a, _k=key, _n=name: calls.append((_n, _k)))
    for key in list(K._WEIGHT_GRADS):
        monkeypatch.setitem(K._WEIGHT_GRADS, key,
                            lambda *a, _k=key: calls.append(("weight_grads", _k)))
    forward, backward, weight_grads = K.drivers(dtype)
    args = [None] * 9 + [act, ract] + [None] * 6 + [nthreads]
    forward(*args)
    backward(*args)
    weight_grads(*([None] * 9), nthreads)
    assert calls == [("forward", expected), ("backward", expected),
                     ("weight_grads", expected[1])]


@pytest.mark.parametrize("name", sorted(CODES))
def test_dense_per_activation_copies_match_the_activation_kernels(name):
    """Each activation's copy of the Dense kernels applies exactly the shared activation
    kernels (a linear Dense skips them: its gradient is the incoming one)."""
    code = CODES[name]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    w = rng.normal(size=(5, 4)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    dy = rng.normal(size=(6, 4)).astype(np.float32)
    y, z = KD.dense_forward(x, w, b, code, True)
    np.testing.assert_array_equal(y, activation_forward(z, code))
    y2, empty = KD.dense_forward(x, w, b, code, False)
    np.testing.assert_array_equal(y2, y)
    assert empty.shape == (0, 0)
    dx, dw, db = KD.dense_backward(x, w, y, z, dy, code, True, True, True)
    dz = activation_grad(dy, y, z, code)
    np.testing.assert_array_equal(dx, KD._gemm(dz, np.ascontiguousarray(w.T)))
    np.testing.assert_array_equal(dw, KD._gemm(np.ascontiguousarray(x.T), dz))
    np.testing.assert_allclose(db, dz.sum(axis=0), rtol=1e-6)
    assert KD._for_code(KD._forward, code) is KD._for_code(KD._forward, code)
    assert KD._for_code(KD._forward, code).py_func.__qualname__ == f"_forward_a{code}"


def test_dense_with_no_inputs_or_no_rows_gives_the_bias_and_zero_gradients():
    w = np.zeros((0, 3), np.float32)
    b = np.array([1.0, -2.0, 0.5], np.float32)
    y, _ = KD.dense_forward(np.zeros((4, 0), np.float32), w, b, CODES["relu"], False)
    np.testing.assert_array_equal(y, np.tile([1.0, 0.0, 0.5], (4, 1)).astype(np.float32))
    x = np.zeros((0, 2), np.float32)
    w = np.ones((2, 3), np.float32)
    dx, dw, db = KD.dense_backward(x, w, np.zeros((0, 3), np.float32),
                                   np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32),
                                   CODES["linear"], True, True, True)
    assert dx.shape == (0, 2)
    np.testing.assert_array_equal(dw, np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(db, np.zeros(3, np.float32))


def _run_gru(after, nthreads, threaded, default, act=1, ract=2):
    """GRU forward, backward and weight gradients of one problem through the drivers."""
    import graphmask.kernels.gru as KG

    x, mask, uoff, offsets, rows, _, _, _, gy = _problem(act, ract, seed=3)
    rng = np.random.default_rng(4)
    k = (rng.normal(size=(D, 3 * H)) * 0.3).astype(np.float32)
    rk = (rng.normal(size=(H, 3 * H)) * 0.3).astype(np.float32)
    bp = (rng.normal(size=(1, 3 * H)) * 0.1).astype(np.float32)
    f32 = np.float32
    if after:
        rkp, rkhp, brh = KG.pack(rk, uoff, 3), np.empty(0, f32), bp[0, 2 * H:].copy()
    else:
        rkp = KG.pack(np.ascontiguousarray(rk[:, :2 * H]), uoff, 2)
        rkhp, brh = KG.pack(np.ascontiguousarray(rk[:, 2 * H:]), uoff, 1), np.empty(0, f32)
    y = np.empty((B, T, H), f32)
    h = np.zeros((B, H), f32)
    kw = {"threaded": threaded, "default": default}
    res = KG.gru_forward(x, KG.pack(k, uoff, 3), KG.pack(bp, uoff, 3), rkp, rkhp, brh, uoff,
                         offsets, rows, mask, False, act, ract, after, True, False, y, h,
                         np.empty(0, f32), nthreads, **kw)
    Xc, Hp, Z, R, HH, RH = res
    N = Xc.shape[0]
    rk0 = rk.copy()
    if not after:
        rk0[:, 2 * H:] = 0
    rkT = np.ascontiguousarray(KG.permute(rk0, uoff, 3).T)
    rkhT = np.ascontiguousarray(rk[:, 2 * H:].T) if not after else np.empty((0, 0), f32)
    dh = np.zeros((B, H), f32)
    ws = np.full(KG.backward_workspace_size(N, B, D, H, after), np.nan, f32)
    dZx, dZh, dAh = (a.copy() for a in KG.gru_backward(
        Z, R, HH, RH, Hp, rkT, rkhT, uoff, offsets, rows, mask, False, act, ract, after, True,
        False, gy, dh, ws, nthreads, **kw))
    at = N * 3 * H + (N * 3 * H if after else N * H)
    dXc = ws[at + 3 * B * H:at + 3 * B * H + N * D].reshape(N, D)
    grads = KG.gru_weight_grads(dZx, dZh if after else dZx, Xc, Hp, KG.permute(k, uoff, 3),
                                offsets, rows, False, B, dXc, nthreads, threaded=threaded)
    return [y, h, *res, dZx, dZh, dAh, dh, *grads]


@pytest.mark.parametrize("after", [True, False])
def test_gru_one_thread_twin_and_default_kernels_match_bit_for_bit(after):
    """GRU drivers: the threaded and one-thread variants, and the default-activation step
    kernels and the general ones, give the same results bit for bit."""
    threaded = _run_gru(after, 2, True, True)
    _assert_same(threaded, _run_gru(after, 2, False, True))
    _assert_same(threaded, _run_gru(after, 2, False, False))
    relu = _run_gru(after, 2, True, False, act=3, ract=4)
    _assert_same(relu, _run_gru(after, 2, False, False, act=3, ract=4))
    assert not np.array_equal(relu[0], threaded[0])  # the activations are applied


@pytest.mark.parametrize("dtype,nthreads,threaded", [
    (np.float32, 2, True), (np.float32, 1, False), (np.float64, 2, False)])
def test_gru_drivers_pick_the_threaded_variant_for_float32_with_threads(
        monkeypatch, dtype, nthreads, threaded):
    import graphmask.kernels.gru as KG

    calls = []
    for name in ("gru_forward", "gru_backward", "gru_weight_grads"):
        monkeypatch.setattr(KG, name, lambda *a, _n=name, **kw: calls.append((_n, kw)))
    for f in KG.drivers(dtype):
        f(*([None] * 5), nthreads)
    assert calls == [(n, {"threaded": threaded}) for n in
                     ("gru_forward", "gru_backward", "gru_weight_grads")]


def test_task_kernels_are_compiled_once_per_dtype_as_c_callbacks():
    """Drivers receive their tasks as function pointers (numba cfuncs, made on first use
    and kept): one compiled copy per task and float dtype, typed as a first-class
    function of the task's signature."""
    import numba

    f32 = K._task("dh", np.float32)
    assert K._task("dh", np.float32) is f32
    assert K._task("dh", np.float64) is not f32
    ftype = numba.typeof(f32)
    assert isinstance(ftype, numba.types.FunctionType)
    assert ftype.signature == K._task_signatures(numba.types.float32)["dh"]
    assert numba.typeof(f32) is ftype  # made once, not at every driver call
    assert f32.address > 0
