"""Sequential: the same numbers as the equivalent functional model."""
import numpy as np
import pytest

import graphmask as gm
from graphmask import LSTM, Dense, Embedding, Input, Model, Sequential
from graphmask.errors import ConfigError

IDS = np.array([[1, 2, 0, 0], [3, 1, 4, 0]])
Y = np.arange(24, dtype=np.float32).reshape(2, 4, 3) / 24


def _functional():
    x = Input(shape=(4,), dtype="int32")
    return Model(x, Dense(3)(LSTM(5, return_sequences=True)(Embedding(6, 4, mask_zero=True)(x))))


@pytest.mark.parametrize("how", ["input", "input_shape", "deferred"])
def test_sequential_matches_functional(how):
    ref = _functional()
    layers = [Embedding(6, 4, mask_zero=True), LSTM(5, return_sequences=True), Dense(3)]
    if how == "input":
        seq = Sequential([Input(shape=(4,), dtype="int32"), *layers])
    elif how == "input_shape":
        layers[0] = Embedding(6, 4, mask_zero=True, input_shape=(4,))
        seq = Sequential(layers)
    else:
        seq = Sequential()
        for layer in layers:
            seq.add(layer)
    seq.compile(optimizer="sgd", loss="mse")
    ref.compile(optimizer="sgd", loss="mse")
    out = seq.predict(IDS)  # builds the deferred model from the data
    seq.set_weights(ref.get_weights())
    np.testing.assert_allclose(seq.predict(IDS), ref.predict(IDS), rtol=1e-6)
    assert out.shape == (2, 4, 3)
    assert [layer.name for layer in seq.layers] == [layer.name for layer in layers]
    np.testing.assert_allclose(seq.train_on_batch(IDS, Y), ref.train_on_batch(IDS, Y),
                               rtol=1e-6)
    for a, b in zip(seq.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_sequential_errors():
    with pytest.raises(ConfigError, match="expected a layer"):
        Sequential([3])
    with pytest.raises(ConfigError, match="no layers"):
        Sequential().predict(IDS)
    gm.clear_session()
