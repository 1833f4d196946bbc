"""Predictions do not depend on the thread count: a model's predict with one numba
thread equals its predict with all of them, bit for bit, at sizes where the recurrent
kernels split their work into several tasks (the input projection's row blocks and the
per-step unit chunks are fixed grids the tasks share out, so every GEMM call is the same
whatever the split). The same holds for a Bidirectional layer whose directions run side
by side (one thread each) or one after the other (all threads each)."""
import numba
import numpy as np
import pytest

import graphmask as gm
from graphmask import runtime

pytestmark = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                reason="one numba thread: nothing to compare")

B, T, V = 32, 60, 300


def _ids():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, V, (B, T)).astype("int32")
    lengths = rng.integers(5, T + 1, B)
    ids[np.arange(T)[None] >= lengths[:, None]] = 0
    ids[3] = 0  # an empty row
    return ids


def _model(layer):
    gm.clear_session()
    gm.set_random_seed(4)
    x = gm.Input(shape=(None,), dtype="int32")
    h = layer(gm.Embedding(V, 48, mask_zero=True)(x))
    return gm.Model(x, gm.Dense(5)(h))


LAYERS = {
    "lstm": lambda: gm.LSTM(96, return_sequences=True),
    "gru": lambda: gm.GRU(96, return_sequences=True),
    "gru_reset_before": lambda: gm.GRU(96, return_sequences=True, reset_after=False),
    "simple_rnn": lambda: gm.SimpleRNN(96, return_sequences=True),
    "bilstm": lambda: gm.Bidirectional(gm.LSTM(96, return_sequences=True)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_predict_with_one_thread_equals_predict_with_all(name):
    m = _model(LAYERS[name]())
    ids = _ids()
    many = m.predict_on_batch(ids)
    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = m.predict_on_batch(ids)
    finally:
        numba.set_num_threads(saved)
    np.testing.assert_array_equal(one, many)


def test_bidirectional_side_by_side_equals_one_after_the_other():
    m = _model(gm.Bidirectional(gm.GRU(96, return_sequences=True)))
    ids = _ids()
    side = m.predict_on_batch(ids)
    runtime.SIDE_BY_SIDE = False
    try:
        seq = m.predict_on_batch(ids)
    finally:
        runtime.SIDE_BY_SIDE = True
    np.testing.assert_array_equal(side, seq)
