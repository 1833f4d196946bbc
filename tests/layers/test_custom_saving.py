"""Saving models with custom layers, Lambda layers and nested models (no pickle)."""
import numpy as np
import pytest

import graphmask as gm
from graphmask import LSTM, Dense, Embedding, Input, Model, ops
from graphmask.errors import ConfigError, FileFormatError
from graphmask.io.saving import get_registered_name, register_serializable

IDS = np.array([[3, 1, 4, 0, 0], [0, 0, 2, 5, 1], [1, 0, 3, 0, 4], [0, 0, 0, 0, 0]])


@register_serializable(package="tests")
class ScaledMean(gm.layers.Layer):
    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, x, mask=None):
        m = ops.expand_dims(ops.cast(mask, x.dtype), -1)
        return ops.sum(x * m * self.w, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0) \
            * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def double(x):
    return x * 2.0


def keep(inputs, mask):
    return mask


@pytest.fixture
def path(tmp_path):
    return tmp_path / "m.gmz"


def test_registered_custom_layer_round_trips(path):
    assert get_registered_name(ScaledMean) == "tests>ScaledMean"
    x = Input((5,), dtype="int32")
    out = ScaledMean(factor=3.0, name="pool")(Embedding(7, 3, mask_zero=True)(x))
    model = Model(x, Dense(2)(out))
    model.get_layer("pool").set_weights([np.array([1.0, 2.0, 3.0])])
    model.compile(loss="mse", optimizer="adam")
    model.train_on_batch(IDS, np.ones((4, 2)))
    model.save(path)
    back = gm.load_model(path)
    assert back.get_layer("pool").factor == 3.0
    np.testing.assert_array_equal(back.predict(IDS), model.predict(IDS))
    # training continues exactly where it stopped
    a = model.train_on_batch(IDS, np.ones((4, 2)))
    b = back.train_on_batch(IDS, np.ones((4, 2)))
    assert a == b


def test_register_refuses_a_bad_package_and_a_clash():
    with pytest.raises(ConfigError, match="package must be a non-empty str without '>'"):
        register_serializable(package="a>b")
    with pytest.raises(ConfigError, match=r"'tests>ScaledMean' is already registered"):
        @register_serializable(package="tests", name="ScaledMean")
        class Other(gm.layers.Layer):
            pass


def test_lambda_is_refused_in_safe_mode_and_loads_from_custom_objects(path):
    x = Input((5,), dtype="int32")
    e = Embedding(7, 3, mask_zero=True)(x)
    y = gm.Lambda(double, mask=keep, name="dbl")(e)
    model = Model(x, LSTM(2)(y))
    model.save(path)
    with pytest.raises(ConfigError, match=r"Lambda 'dbl' holds the Python function "
                                          r"\S*test_custom_saving.double, .*refused in safe "
                                          r"mode.*custom_objects=\{'double': fn\}"):
        gm.load_model(path)
    with pytest.raises(ConfigError, match=r"never loads code from a file, even with "
                                          r"safe_mode=False"):
        gm.load_model(path, safe_mode=False)
    back = gm.load_model(path, custom_objects={"double": double, "keep": keep})
    np.testing.assert_array_equal(back.predict(IDS), model.predict(IDS))


def test_a_lambda_with_a_fixed_mask_tensor_cannot_be_saved(path):
    x = Input((5,), dtype="int32")
    e = Embedding(7, 3, mask_zero=True)(x)
    y = gm.Lambda(double, mask=e.keras_mask, name="fixed")(e)
    model = Model(x, LSTM(2)(y))
    with pytest.raises(ConfigError, match="a fixed mask tensor cannot be saved"):
        model.save(path)
    assert not path.exists()


def test_nested_model_round_trips_with_shared_weights(path):
    inner_in = Input((5,), dtype="int32")
    inner = Model(inner_in, LSTM(3, return_sequences=True, name="enc")(
        Embedding(7, 4, mask_zero=True, name="emb")(inner_in)), name="encoder")
    x = Input((5,), dtype="int32")
    model = Model(x, Dense(2, name="head")(LSTM(2, name="top")(inner(x))))
    assert [layer.name for layer in model.layers] == ["input_layer_1", "encoder", "top", "head"]
    assert model.weights[:4] == inner.weights
    model.save(path)
    back = gm.load_model(path)
    np.testing.assert_array_equal(back.predict(IDS), model.predict(IDS))
    assert [layer.name for layer in back.layers] == [layer.name for layer in model.layers]


def test_a_call_argument_that_json_cannot_hold_is_refused_at_save(path):
    class Takes(gm.layers.Layer):
        def call(self, x, scale=None):
            return x

    x = Input((3,))
    model = Model(x, Takes(name="t")(x, scale=object()))
    with pytest.raises(ConfigError, match=r"the call of layer 't' passes object"):
        model.save(path)


def test_a_custom_layer_whose_config_misses_arguments_is_a_clear_load_error(path):
    @register_serializable(package="tests_bad")
    class NeedsArg(gm.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def call(self, x):
            return x * 1.0

    x = Input((3,))
    Model(x, NeedsArg(4, name="n")(x)).save(path)
    with pytest.raises(FileFormatError, match=r"layer 'n' \(NeedsArg\): .*units.*a custom "
                                              r"layer must rebuild from"):
        gm.load_model(path)
