"""Keras 3's own LSTM test cases for ``initial_state``, masking and
``zero_output_for_mask`` (``keras/src/layers/rnn/lstm_test.py``: ``test_pass_initial_state``
and ``test_masking``), with Keras's expected numbers, run through graphmask's eager calls
(``layer(np_array, initial_state=..., mask=...)``).

The expected numbers are Keras's, copied from its tests; they need no Keras here. The
last test runs the same cases through Keras 3 itself (skipped, naming what is missing,
without the oracle) to show the copied numbers are what Keras computes today.

Not taken over: the cases of ``rnn_test.py`` (``test_passing_initial_state_*``,
``test_masking``) build ``keras.layers.RNN`` on hand-written cells, a layer graphmask does
not have; ``bidirectional_test.py``'s ``Bidirectional`` likewise.
"""
import numpy as np
import pytest

import graphmask as gm

#: Keras's tolerances in these tests (CPU).
TOL = {"rtol": 1e-5, "atol": 1e-5}

SEQUENCE = np.arange(24).reshape((2, 4, 3)).astype("float32")
INITIAL_STATE = [np.arange(4).reshape((2, 2)).astype("float32"),
                 np.arange(4).reshape((2, 2)).astype("float32")]
MASK = np.array([[True, True, True, False], [True, True, False, False]])
BACKWARDS_MASK = np.array([[False, True, True, True], [False, False, True, True]])

#: (name, LSTM keyword arguments, call keyword arguments, expected output)
CASES = [
    ("pass_initial_state", {}, {"initial_state": INITIAL_STATE},
     np.array([[0.20574439, 0.3558822], [0.64930826, 0.66276]])),
    ("pass_initial_state_go_backwards", {"go_backwards": True},
     {"initial_state": INITIAL_STATE},
     np.array([[0.13281618, 0.2790356], [0.5839337, 0.5992567]])),
    ("masking_unroll", {"unroll": True}, {"mask": MASK},
     np.array([[0.11755939, 0.11755939], [0.28556206, 0.28556206]])),
    ("masking_return_sequences", {"return_sequences": True}, {"mask": MASK},
     np.array([[[0.01588910, 0.01588910], [0.05552048, 0.05552048],
                [0.11755939, 0.11755939], [0.11755939, 0.11755939]],
               [[0.14185596, 0.14185596], [0.28556206, 0.28556206],
                [0.28556206, 0.28556206], [0.28556206, 0.28556206]]])),
    ("masking_zero_output_for_mask", {"return_sequences": True, "zero_output_for_mask": True},
     {"mask": MASK},
     np.array([[[0.01588910, 0.01588910], [0.05552048, 0.05552048],
                [0.11755939, 0.11755939], [0.0, 0.0]],
               [[0.14185596, 0.14185596], [0.28556206, 0.28556206],
                [0.0, 0.0], [0.0, 0.0]]])),
    ("masking_go_backwards", {"go_backwards": True}, {"mask": BACKWARDS_MASK},
     np.array([[0.15341201, 0.15341201], [0.3844719, 0.3844719]])),
]


@pytest.fixture(autouse=True)
def _fresh_layer_names():
    """Leave graphmask's automatic layer names as a fresh session has them (the eager
    calls make Inputs and LSTMs Keras does not see), so that other modules' graphmask and
    Keras twins still get the same automatic names."""
    gm.clear_session()
    yield
    gm.clear_session()


def _layer(module, **kw):
    init = module.initializers
    return module.layers.LSTM(2, kernel_initializer=init.Constant(0.01),
                              recurrent_initializer=init.Constant(0.02),
                              bias_initializer=init.Constant(0.03), **kw)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_keras_lstm_case_through_graphmask_eager_call(case):
    _, layer_kw, call_kw, expected = case
    out = _layer(gm, **layer_kw)(SEQUENCE, **call_kw)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, **TOL)


def test_masking_zero_output_for_mask_is_zero_exactly_at_masked_steps():
    """The zeros of Keras's expected output are exact zeros in graphmask, and the kept
    steps are those of zero_output_for_mask=False."""
    zero = _layer(gm, return_sequences=True, zero_output_for_mask=True)(SEQUENCE, mask=MASK)
    plain = _layer(gm, return_sequences=True)(SEQUENCE, mask=MASK)
    np.testing.assert_array_equal(zero, np.where(MASK[..., None], plain, 0.0))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_copied_numbers_are_what_keras_computes(case):
    from tests.conformance.oracle import import_keras

    keras = import_keras()
    _, layer_kw, call_kw, expected = case
    try:
        out = _layer(keras, **layer_kw)(SEQUENCE, **call_kw)
    finally:
        keras.backend.clear_session()  # Keras's automatic names: fresh again, as graphmask's
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), expected, **TOL)
