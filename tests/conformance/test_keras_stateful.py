"""``LSTM(stateful=True)`` (alone and in ``Bidirectional``) against Keras 3 (torch
backend): a sequence of batches with right, left, holes and empty-row padding carried
from one to the next (predictions and the carried states), ``reset_states()``, and the
loss and weights over SGD and Adam ``train_on_batch`` steps. Tolerances are those of
``test_keras_bidirectional.py``.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

import graphmask as gm  # noqa: E402
from tests.conformance import twin as tw  # noqa: E402

B, T, V, E, H = 6, 5, 7, 3, 4
PADDINGS = ("right", "left", "holes", "rows")


def _model(lib, bidi, go_backwards=False):
    L = lib.layers if lib is keras else gm
    Input, Model = (keras.Input, keras.Model) if lib is keras else (gm.Input, gm.Model)
    ids = Input(batch_shape=(B, T), dtype="int32", name="ids")
    lstm = L.LSTM(H, stateful=True, return_sequences=True, go_backwards=go_backwards,
                  name="lstm")
    h = (L.Bidirectional(lstm, name="bidi") if bidi else lstm)(
        L.Embedding(V, E, mask_zero=True, name="emb")(ids))
    return Model(ids, L.Dense(2, name="head")(h))


def _twin(bidi, go_backwards=False):
    g, k = _model(gm, bidi, go_backwards), _model(keras, bidi, go_backwards)
    rng = np.random.default_rng(0)
    k.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                   for w in k.get_weights()])
    g.set_weights(k.get_weights())
    return g, k


def _inner(model, bidi):
    if bidi:
        b = model.get_layer("bidi")
        return [b.forward_layer, b.backward_layer]
    return [model.get_layer("lstm")]


def _states(model, bidi):
    return [keras.ops.convert_to_numpy(s) if not isinstance(s, np.ndarray) else s
            for layer in _inner(model, bidi) for s in layer.states]


CASES = {"lstm": (False, False), "lstm_backwards": (False, True),
         "bidirectional": (True, False)}


@pytest.mark.parametrize("case", CASES)
def test_predictions_and_states_carried_over_batches(case):
    bidi, back = CASES[case]
    g, k = _twin(bidi, back)
    rng = np.random.default_rng(1)
    for rnd in range(2):
        for padding in PADDINGS:
            x = tw.ids_for(tw.mask_pattern(padding, B, T, rng), V, rng)
            tw.assert_close(g.predict(x, batch_size=B), tw.keras_predict(k, x),
                            what=f"{case} round {rnd} {padding}")
            tw.assert_close(_states(g, bidi), _states(k, bidi),
                            what=f"{case} states round {rnd} {padding}")
        for model in (g, k):
            (model.get_layer("bidi") if bidi else model.get_layer("lstm")).reset_states()
        assert not any(np.any(s) for s in _states(g, bidi))


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
@pytest.mark.parametrize("case", CASES)
def test_train_steps_carry_the_state(case, optimizer):
    bidi, back = CASES[case]
    g, k = _twin(bidi, back)
    cfg = {"learning_rate": 0.1 if optimizer == "SGD" else 0.01}

    def batch(_, padding, rng):
        return tw.ids_for(tw.mask_pattern(padding, B, T, rng), V, rng)

    def targets(_, rng):
        return rng.standard_normal((B, T, 2)).astype(np.float32)

    tw.check_train_steps(g, k, optimizer, cfg, PADDINGS, batch, targets, case, 1e-3)
    tw.assert_close(_states(g, bidi), _states(k, bidi), tw.TRAIN_RTOL, 1e-4,
                    what=f"{case} states after training")
