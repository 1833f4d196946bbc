"""Models (functional and Sequential) called on symbolic tensors nest as layers."""
import numpy as np
import pytest

import graphmask as gm
from graphmask import LSTM, Dense, Embedding, Input, Model
from graphmask.errors import ConfigError, ShapeError

IDS = np.array([[3, 1, 4, 0, 0], [0, 0, 2, 5, 1], [1, 0, 3, 0, 4], [0, 0, 0, 0, 0]])


def _encoder():
    x = Input((5,), dtype="int32", name="enc_in")
    h = LSTM(3, return_sequences=True, name="enc_lstm")(
        Embedding(7, 4, mask_zero=True, name="enc_emb")(x))
    return Model(x, h, name="encoder")


def test_a_nested_model_equals_the_flat_model_and_its_mask_flows_through():
    enc = _encoder()
    x = Input((5,), dtype="int32")
    h = enc(x)
    assert h.keras_mask is not None           # the Embedding's mask leaves the nested model
    nested = Model(x, LSTM(2, name="top")(h))
    y = Input((5,), dtype="int32")
    flat = Model(y, LSTM(2, name="top2")(LSTM(3, return_sequences=True, name="l2")(
        Embedding(7, 4, mask_zero=True, name="e2")(y))))
    flat.set_weights(nested.get_weights())
    np.testing.assert_allclose(nested.predict(IDS), flat.predict(IDS), rtol=1e-6, atol=1e-7)
    assert [layer.name for layer in nested.layers][1:] == ["encoder", "top"]
    assert nested.weights[:4] == enc.weights


def test_training_the_outer_model_trains_the_shared_inner_weights():
    enc = _encoder()
    x = Input((5,), dtype="int32")
    outer = Model(x, Dense(1)(LSTM(2)(enc(x))))
    outer.compile(loss="mse", optimizer="sgd")
    before = enc.get_weights()
    outer.train_on_batch(IDS, np.ones((4, 1)))
    after = enc.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    np.testing.assert_array_equal(enc.predict(IDS), enc.predict(IDS))


def test_a_model_called_twice_shares_its_weights():
    enc = _encoder()
    a, b = Input((5,), dtype="int32"), Input((5,), dtype="int32")
    two = Model([a, b], [enc(a), enc(b)])
    assert len(two.weights) == len(enc.weights)
    pa, pb = two.predict([IDS, IDS[::-1]])
    np.testing.assert_array_equal(pa, enc.predict(IDS))
    np.testing.assert_array_equal(pb, enc.predict(IDS[::-1]))


def test_sequential_as_a_layer_builds_from_the_tensor_it_is_called_on():
    class Pool(gm.layers.Layer):
        def call(self, x, mask=None):
            m = gm.ops.expand_dims(gm.ops.cast(mask, x.dtype), -1)
            return gm.ops.sum(x * m, axis=1)

    sub = gm.Sequential([Embedding(7, 4, mask_zero=True), LSTM(3, return_sequences=True)],
                        name="sub")
    x = Input((5,), dtype="int32")
    out = Dense(1)(Pool()(sub(x)))
    model = Model(x, out)
    assert sub.inputs[0].dtype == "int32"
    assert [layer.name for layer in model.layers][1:3] == ["sub", "pool"]
    assert model.predict(IDS).shape == (4, 1)


def test_wrong_number_or_shape_of_inputs_is_a_clear_error():
    enc = _encoder()
    with pytest.raises(ConfigError, match=r"Model 'encoder': expects 1 input\(s\), got 2"):
        enc([Input((5,), dtype="int32"), Input((5,), dtype="int32")])
    with pytest.raises(ShapeError, match=r"Model 'encoder': input 'enc_in' expects shape "
                                         r"\(None, 5\), got \(None, 6\)"):
        enc(Input((6,), dtype="int32"))


def test_calling_a_model_on_arrays_predicts_one_batch():
    enc = _encoder()
    np.testing.assert_array_equal(enc(IDS), enc.predict(IDS))
