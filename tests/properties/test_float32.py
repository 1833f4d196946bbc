"""The masking checks on the float32 path at production sizes: multi-threaded and
multi-chunk LSTM kernels (H >= 64 units in chunks of 16, B >= 32 rows per step).

The rest of the property suite uses tiny models, where the LSTM runs on one thread and
one chunk, and float64 copies (``dtype="float64"``). Here the checks run the model's own
float32 kernels (``dtype=None``) with their float32 default tolerances, rtol=1e-4 and
atol=1e-5. Why those are right for float32: results that should be equal come from
differently blocked float32 arithmetic (a sample alone runs one row per step on one
thread, in the batch it shares GEMMs and threads with 31 others), so they differ by
rounding. Measured on these models (T = 50..70): kept LSTM outputs differ by at most
2.7e-7 (a few float32 ulps), and the whole batch-independence check passes at rtol=3e-6,
atol=3e-7; the defaults leave a 30x margin, and still catch a relative error of 1e-3
(test_float32_tolerances_catch_a_relative_error_of_1e_3). The weights are Glorot-scaled
(``build_model``): with 0.6-wide uniform weights a 96-unit LSTM is chaotic, and rounding
differences grow exponentially along the sequence, in any implementation.
"""
import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphmask.kernels import lstm as K
from graphmask.ops import get_op
from graphmask.testing import (
    build_model,
    check_all,
    check_batch_independence,
    check_padding_invariance,
    make_targets,
    models,
)

B, T = 32, 50
ARCHS = {
    # two stacked sequence LSTMs of 64 units, the second with zero_output_for_mask
    "ids-seq": ("ids", 20, 8, 0.0, 0, ((64, True, False, False), (64, True, False, True)),
                3, "sparse_categorical_crossentropy", False),
    # Masking -> Dense -> LSTM(96) -> LSTM(64, go_backwards) final state
    "floats-final": ("floats", 4, 8, -1.0, 16,
                     ((96, True, False, False), (64, False, True, False)), 2, "mse", False),
}

pytestmark = pytest.mark.skipif(
    numba.get_num_threads() < 2,
    reason="numba runs a single thread here (NUMBA_NUM_THREADS=1 or one core), so the "
           "multi-threaded LSTM kernels these tests are about cannot run")


def _mask(rng, b, t):
    """Rows cycling through right padding, left padding, holes and full rows; row 5
    empty (every masked-step rule of check_masked_steps is exercised)."""
    m = np.zeros((b, t), bool)
    for i in range(b):
        n = int(rng.integers(t // 2, t + 1))
        kind = i % 4
        if kind == 0:
            m[i, :n] = True
        elif kind == 1:
            m[i, t - n:] = True
        elif kind == 2:
            m[i] = rng.random(t) < 0.7
        else:
            m[i] = True
    m[5] = False
    return m


def _case(arch, seed=0, t=T):
    spec = ARCHS[arch]
    model, loss = build_model(spec, seed)
    rng = np.random.default_rng(seed)
    m = _mask(rng, B, t)
    if spec[0] == "ids":
        x = np.where(m, rng.integers(1, spec[1], (B, t)), 0).astype(np.int32)
    else:
        x = np.where(m[..., None], rng.uniform(-1, 1, (B, t, spec[1])), spec[3])
        x = x.astype(np.float32)
    y = make_targets(model, loss, x, seed)
    sequence = spec[5][-1][1]
    w = rng.uniform(0, 2, (B, t) if sequence else (B,)).astype(np.float32)
    w[rng.random(w.shape) < 0.2] = 0.0  # zero weights too
    return model, x, y, w


@pytest.fixture
def lstm_launches(monkeypatch):
    """(dtype, rows of the widest step, units, numba threads) of every LSTM kernel launch:
    the op asks ``K.drivers`` for its kernels inside ``K.threads_for``, which sets the
    thread count of the launch (1 below ``K.PARALLEL_MIN_WORK``)."""
    log, sizes = [], {}
    drivers, threads_for = K.drivers, K.threads_for

    class SpyThreads(threads_for):
        def __init__(self, n, H):
            super().__init__(n, H)
            sizes["last"] = (n, H)

    def spy_drivers(dtype):
        log.append((np.dtype(dtype).name, *sizes["last"], numba.get_num_threads()))
        return drivers(dtype)
    monkeypatch.setattr(K, "threads_for", SpyThreads)
    monkeypatch.setattr(K, "drivers", spy_drivers)
    return log


@pytest.mark.parametrize("arch", ARCHS)
def test_float32_threaded_path_passes_every_check(arch, lstm_launches):
    model, x, y, w = _case(arch)
    report = check_all(model, x, y, w, dtype=None)
    report.assert_complete()  # every part ran: padding of every kind, an empty row, losses
    # forward and backward of every LSTM ran the threaded float32 kernels (float64 runs,
    # from check_grads, have one-thread twins), with 64+ units: 4+ chunks of 16
    threaded = [(n, h) for d, n, h, th in lstm_launches if d == "float32" and th > 1]
    assert len(threaded) >= 2 * len(ARCHS[arch][5]), lstm_launches
    assert K.UNIT_CHUNK == 16 and min(h for _, h in threaded) >= 64
    assert min(n for n, _ in threaded) >= 16


@pytest.mark.parametrize("arch", ARCHS)
def test_float32_tolerances_catch_a_relative_error_of_1e_3(arch, monkeypatch):
    """A fault only the batched, threaded run has (one sample's LSTM output off by a
    relative 1e-3, as a race between chunks would give) is caught at the float32
    tolerances, although rounding differences are not."""
    model, x, y, w = _case(arch)
    check_batch_independence(model, x, y, w, dtype=None)
    op = get_op("lstm")
    forward = op.forward

    def off_in_batches(attrs, inputs):
        outs = forward(attrs, inputs)
        if inputs["x"].shape[0] > 1:
            outs[0] = outs[0].copy()
            outs[0][-1] *= np.float32(1 + 1e-3)
        return outs
    monkeypatch.setattr(op, "forward", off_in_batches)
    with pytest.raises(AssertionError, match=rf"layer 'lstm_0' \(lstm\) output 0 at a kept "
                                             rf"position: sample {B - 1}"):
        check_batch_independence(model, x, y, w, dtype=None)


def test_float32_padding_invariance_catches_an_lstm_ignoring_its_mask(monkeypatch):
    model, x, y, w = _case("ids-seq")
    op = get_op("lstm")
    forward = op.forward
    monkeypatch.setattr(op, "forward", lambda attrs, inputs: forward(
        attrs, {k: v for k, v in inputs.items() if k != "mask"}))
    with pytest.raises(AssertionError, match=r"layer 'lstm_0' \(lstm\) output 0 at a kept "
                                             r"position"):
        check_padding_invariance(model, x, y, w, dtype=None)


@pytest.mark.slow
@settings(max_examples=10)
@given(models(lstm_units=st.sampled_from([64, 80]), max_lstms=2), st.data())
def test_float32_threaded_path_on_generated_models(case, data):
    x, y, w = data.draw(case.batch(sample_weight=True, batch_size=st.integers(32, 40),
                                   min_len=50, max_len=64))
    check_all(case.model, x, y, w, dtype=None)
