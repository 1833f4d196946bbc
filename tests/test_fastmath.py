"""The kernels' activation math (graphmask/kernels/fastmath.py): the float32 exp polynomial
and sigmoid / tanh over whole arrays in explicit vectors (16 lanes on AVX-512 hosts, a
reciprocal estimate refined by a Newton step; 8 lanes and a division elsewhere)."""
import numpy as np
import pytest
from numba import njit

from graphmask.kernels.fastmath import _exp, sigmoid_inplace, tanh_inplace


@njit(cache=False)
def _sig(v):
    sigmoid_inplace(v)


@njit(cache=False)
def _tanh(v):
    tanh_inplace(v)


@njit(cache=False)
def _exp_all(v):
    out = np.empty_like(v)
    for k in range(v.size):
        out[k] = _exp(v[k])
    return out


def _inputs(n=20011, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(scale=5.0, size=n), np.linspace(-12, 12, 2001),
                           [0.0, -0.0, 1e-30, -1e-30, 80.0, -80.0]]).astype(np.float32)


def _sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


@pytest.mark.parametrize("f,truth,abs_tol", [(_sig, _sigmoid64, 1.2e-7),
                                             (_tanh, lambda x: np.tanh(x.astype(np.float64)),
                                              2.4e-7)])
def test_float32_activations_are_within_a_few_ulps_of_float64(f, truth, abs_tol):
    x = _inputs()
    y = x.copy()
    f(y)
    assert y.dtype == np.float32
    err = np.abs(y - truth(x))
    assert err.max() <= abs_tol
    # relative accuracy away from 0 (tanh's 1 - 2/(e+1) form loses relative digits as
    # the result nears 0: its error stays absolute, as above)
    big = np.abs(truth(x)) > 0.5
    assert (err[big] / np.abs(truth(x)[big])).max() <= 4e-7


@pytest.mark.parametrize("f", [_sig, _tanh])
def test_an_elements_result_does_not_depend_on_its_position_or_the_length(f):
    """The last elements (fewer than a vector) go through the same lane operations."""
    x = _inputs(300, seed=1)
    full = x.copy()
    f(full)
    for lo, hi in [(0, 1), (0, 7), (1, 18), (5, 40), (17, 300), (3, x.size)]:
        part = x[lo:hi].copy()
        f(part)
        np.testing.assert_array_equal(part, full[lo:hi], err_msg=f"{lo}:{hi}")


def test_saturation_and_special_values():
    x = np.array([np.inf, -np.inf, 100.0, -100.0, 0.0, np.nan], np.float32)
    s = x.copy()
    _sig(s)
    t = x.copy()
    _tanh(t)
    np.testing.assert_array_equal(s[[0, 2, 4]], [1.0, 1.0, 0.5])
    assert 0.0 <= s[1] < 1e-37 and 0.0 <= s[3] < 1e-37  # exp(-x) clamped at exp(88)
    np.testing.assert_array_equal(t[:5], [1.0, -1.0, 1.0, -1.0, 0.0])
    assert np.isnan(s[5]) and np.isnan(t[5])


@pytest.mark.parametrize("f", [_sig, _tanh])
def test_strided_float32_arrays_give_the_bits_of_contiguous_ones(f):
    """A kernel may apply an activation to a row slice or a strided view: the same vector
    code, so the same bits (the default-activation and general kernels agree)."""
    x = _inputs(1000, seed=2)
    contiguous = x.copy()
    f(contiguous)
    for step in (2, 3):
        strided = np.repeat(x, step)[::step]  # a float32 view that is not contiguous
        assert not strided.flags.c_contiguous
        f(strided)
        np.testing.assert_array_equal(strided, contiguous)
    empty = np.zeros(0, np.float32)[::2]
    f(empty)


def test_float64_takes_the_element_loop():
    x = _inputs(1000, seed=2)
    d = x.astype(np.float64)
    _sig(d)
    np.testing.assert_allclose(d, _sigmoid64(x), rtol=1e-15, atol=0)


def test_float32_exp_polynomial():
    x = np.linspace(-87, 88, 100001).astype(np.float32)
    y = _exp_all(x).astype(np.float64)
    rel = np.abs(y / np.exp(x.astype(np.float64)) - 1)
    assert rel.max() <= 4e-7
