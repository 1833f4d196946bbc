"""Large Dense products run as two halves of rows (graphmask/kernels/dense.py,
SPLIT_WORK): on two threads once the split kernel is compiled, one half after the other
before that or with one thread. Both ways give the same bits, and the results are the
layer's (NumPy in float64 as the reference)."""
import numba
import numpy as np
import pytest

import graphmask.kernels.dense as KD
from graphmask.kernels import launch
from graphmask.kernels.activations import CODES

N, D, U = 3200, 128, 32  # W1's output layer: 13M multiply-adds, above SPLIT_WORK


def _data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    w = (rng.normal(size=(D, U)) / np.sqrt(D)).astype(np.float32)
    b = rng.normal(size=U).astype(np.float32)
    dy = rng.normal(size=(n, U)).astype(np.float32)
    return x, w, b, dy


def _both_ways(monkeypatch, fn):
    """``fn()`` with the halves one after the other, then with the split kernel."""
    monkeypatch.setattr(KD, "tiered", lambda kernel, args: False)
    first = fn()
    monkeypatch.undo()
    fn()  # asks for the split kernel (compiled in the background)
    launch.wait_background()
    return first, fn()


def test_the_cut_depends_on_the_shapes_only():
    assert KD._cut(N, N * D * U) == 1600
    assert KD._cut(N, KD.SPLIT_WORK - 1) is None
    assert KD._cut(63, 1 << 40) is None
    assert KD._cut(100, KD.SPLIT_WORK) == 48  # a multiple of 8


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                    reason="one numba thread: the halves always run one after the other")
@pytest.mark.parametrize("name", ["linear", "relu", "softmax", "gelu"])
@pytest.mark.parametrize("keep_z", [False, True])
def test_split_forward_and_backward_give_the_same_bits_either_way(monkeypatch, name, keep_z):
    code = CODES[name]
    x, w, b, dy = _data()

    def forward():
        return KD.dense_forward(x, w, b, code, keep_z)

    (y0, z0), (y1, z1) = _both_ways(monkeypatch, forward)
    assert KD._for_code(KD._forward_split, code).overloads  # the second run was split
    np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(z0, z1)
    y, z = (y0, z0) if keep_z else (y0, y0)

    def backward():
        return KD.dense_backward(x, w, y, z, dy, code, True, True, True)

    (dx0, dw0, db0), (dx1, dw1, db1) = _both_ways(monkeypatch, backward)
    assert KD._for_code(KD._backward_split, code).overloads
    for got, want in ((dx0, dx1), (dw0, dw1), (db0, db1)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["linear", "relu"])
def test_split_results_are_the_layers(name):
    """Against float64 NumPy: z = x w + b, y = f(z); dz = dy f'(z); dx = dz w.T,
    dw = x.T dz, db = sum of dz."""
    code = CODES[name]
    x, w, b, dy = _data(1)
    y, z = KD.dense_forward(x, w, b, code, True)
    z64 = x.astype(np.float64) @ w + b
    y64 = np.maximum(z64, 0) if name == "relu" else z64
    np.testing.assert_allclose(z, z64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=1e-5)
    dx, dw, db = KD.dense_backward(x, w, y, z, dy, code, True, True, True)
    dz = dy * (z64 > 0) if name == "relu" else dy.astype(np.float64)
    np.testing.assert_allclose(dx, dz @ w.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, x.T @ dz, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(db, dz.sum(0), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("need", [(True, False, False), (False, True, False),
                                  (False, False, True), (False, True, True)])
def test_split_backward_returns_empty_arrays_for_what_was_not_asked(need):
    x, w, b, dy = _data(2)
    y, _ = KD.dense_forward(x, w, b, CODES["linear"], False)
    dx, dw, db = KD.dense_backward(x, w, y, y, dy, CODES["linear"], *need)
    full = KD.dense_backward(x, w, y, y, dy, CODES["linear"], True, True, True)
    for got, want, asked, empty in zip((dx, dw, db), full, need, ((0, 0), (0, 0), (0,))):
        if asked:
            np.testing.assert_array_equal(got, want)
        else:
            assert got.shape == empty


def test_a_small_product_runs_whole():
    """Below SPLIT_WORK one call over all rows: bit-equal to the unsplit kernels."""
    x, w, b, dy = _data(3, n=200)
    assert KD._cut(200, 200 * D * U) is None
    y, _ = KD.dense_forward(x, w, b, CODES["linear"], False)
    z = np.empty_like(y)
    KD._for_code(KD._forward, CODES["linear"])(x, w, b, z, np.empty((0, 0), np.float32),
                                               False)
    np.testing.assert_array_equal(y, z)
