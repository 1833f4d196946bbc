"""Conv1D, MaxPooling1D, AveragePooling1D and SpatialDropout1D layers: Keras 3's
arguments, defaults, weights, configs; the mask refusal (naming both layers) and the
documented way to drop a mask; training-only, seeded spatial dropout; save and load;
the summary. Numbers against Keras 3 are in tests/conformance/test_keras_conv.py."""
import numpy as np
import pytest

import graphmask as gm
from graphmask.errors import ConfigError, MaskError, ShapeError


def _seq(*layers, shape=(8, 4)):
    inp = gm.Input(shape)
    h = inp
    for layer in layers:
        h = layer(h)
    return gm.Model(inp, h)


def test_conv1d_defaults_weights_and_config():
    conv = gm.Conv1D(6, 3, name="c")
    model = _seq(conv)
    assert [v.name for v in conv.weights] == ["c/kernel", "c/bias"]
    assert conv.kernel.shape == (3, 4, 6) and conv.bias.shape == (6,)
    np.testing.assert_array_equal(conv.bias.value, 0.0)
    limit = np.sqrt(6 / (3 * 4 + 3 * 6))  # glorot_uniform fans of a (3, 4, 6) kernel
    assert np.abs(conv.kernel.value).max() <= limit
    assert model.outputs[0].shape == (None, 6, 6)
    cfg = conv.get_config()
    assert {k: cfg[k] for k in ("filters", "kernel_size", "strides", "padding", "data_format",
                                "dilation_rate", "groups", "activation", "use_bias",
                                "kernel_initializer", "bias_initializer")} == {
        "filters": 6, "kernel_size": (3,), "strides": (1,), "padding": "valid",
        "data_format": "channels_last", "dilation_rate": (1,), "groups": 1,
        "activation": "linear", "use_bias": True, "kernel_initializer": "glorot_uniform",
        "bias_initializer": "zeros"}
    again = gm.Conv1D.from_config({**cfg, "kernel_size": [3], "name": "c2"})
    assert (again.kernel_size, again.strides, again.dilation_rate) == (3, 1, 1)


@pytest.mark.parametrize("kwargs,shape", [
    ({"padding": "same", "strides": 2}, (None, 4, 5)),
    ({"padding": "causal", "dilation_rate": 2}, (None, 8, 5)),
    ({"padding": "valid", "strides": 3}, (None, 2, 5)),
    ({"padding": "SAME"}, (None, 8, 5)),
])
def test_conv1d_output_shapes(kwargs, shape):
    model = _seq(gm.Conv1D(5, 3, **kwargs))
    assert model.outputs[0].shape == shape
    assert model.predict(np.ones((2, 8, 4), np.float32)).shape == (2,) + shape[1:]


def test_conv1d_groups_and_no_bias_match_separate_convolutions():
    gm.set_random_seed(1)
    conv = gm.Conv1D(4, 2, groups=2, use_bias=False, activation="tanh")
    model = _seq(conv)
    assert [v.shape for v in conv.weights] == [(2, 2, 4)]
    x = np.random.default_rng(0).standard_normal((3, 8, 4)).astype(np.float32)
    k = conv.kernel.value
    want = np.zeros((3, 7, 4), np.float32)
    for g in range(2):
        for t in range(7):
            want[:, t, 2 * g:2 * g + 2] = (x[:, t, 2 * g:2 * g + 2] @ k[0, :, 2 * g:2 * g + 2]
                                           + x[:, t + 1, 2 * g:2 * g + 2]
                                           @ k[1, :, 2 * g:2 * g + 2])
    np.testing.assert_allclose(model.predict(x), np.tanh(want), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    ({"filters": 0, "kernel_size": 3}, "filters must be a positive int"),
    ({"filters": 4, "kernel_size": (3, 3)}, "kernel_size must be a positive int"),
    ({"filters": 4, "kernel_size": 3, "padding": "full"}, "padding must be one of"),
    ({"filters": 4, "kernel_size": 3, "strides": 2, "dilation_rate": 2},
     "strides > 1 is not supported with dilation_rate > 1"),
    ({"filters": 5, "kernel_size": 3, "groups": 2}, r"filters \(5\) must be divisible"),
    ({"filters": 4, "kernel_size": 3, "data_format": "channels_first"}, "channels_last"),
    ({"filters": 4, "kernel_size": 3, "activation": "relux"}, "unknown activation"),
    ({"filters": 4, "kernel_size": 3, "kernel_regularizer": "l2"}, "not supported"),
])
def test_conv1d_argument_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        gm.Conv1D(name="bad", **kwargs)


def test_conv1d_build_errors_name_the_layer():
    with pytest.raises(ShapeError, match="Conv1D 'c': the input's 5 channels are not "
                                         "divisible by groups=2"):
        _seq(gm.Conv1D(4, 2, groups=2, name="c"), shape=(8, 5))
    with pytest.raises(ShapeError, match="Conv1D 'c2': input must be"):
        _seq(gm.Conv1D(4, 2, name="c2"), shape=(8,))
    with pytest.raises(ShapeError, match="shorter than the kernel's span 5"):
        _seq(gm.Conv1D(4, 5, name="c3"), shape=(3, 2)).compile(loss="mse")


def test_pooling_defaults_and_configs():
    mp, ap = gm.MaxPooling1D(), gm.AveragePooling1D(3, strides=1, padding="same")
    assert (mp.pool_size, mp.strides, mp.padding) == (2, 2, "valid")
    model = _seq(mp, ap)
    assert model.outputs[0].shape == (None, 4, 4)
    assert mp.get_config()["pool_size"] == (2,) and mp.get_config()["strides"] == (2,)
    assert ap.get_config() | {"name": "x"} == {
        "name": "x", "trainable": True, "dtype": "float32", "pool_size": (3,),
        "strides": (1,), "padding": "same", "data_format": "channels_last"}
    with pytest.raises(ConfigError, match="MaxPooling1D 'p': padding must be one of"):
        gm.MaxPooling1D(2, padding="causal", name="p")
    with pytest.raises(ConfigError, match="AveragePooling1D 'p': pool_size must be a positive"):
        gm.AveragePooling1D(0, name="p")
    with pytest.raises(TypeError, match="pool_size"):
        gm.AveragePooling1D()  # required, as in Keras 3


def test_pooling_values():
    x = np.array([[[1.0], [4.0], [2.0], [3.0], [9.0]]], np.float32)
    np.testing.assert_array_equal(_seq(gm.MaxPooling1D(2), shape=(5, 1)).predict(x)[0, :, 0],
                                  [4.0, 3.0])
    np.testing.assert_allclose(
        _seq(gm.AveragePooling1D(2, padding="same"), shape=(5, 1)).predict(x)[0, :, 0],
        [2.5, 2.5, 9.0])


@pytest.mark.parametrize("layer", [
    lambda: gm.Conv1D(2, 2, name="conv"), lambda: gm.MaxPooling1D(name="conv"),
    lambda: gm.AveragePooling1D(2, name="conv")])
def test_a_mask_reaching_conv_or_pooling_is_a_compile_time_error_naming_both(layer):
    ids = gm.Input((6,), dtype="int32")
    h = gm.Embedding(9, 3, mask_zero=True, name="tokens")(ids)
    model = gm.Model(ids, gm.GlobalMaxPooling1D()(layer()(h)))
    with pytest.raises(MaskError, match="the mask created by layer 'tokens' .* reaches layer "
                                        "'conv'") as caught:
        model.compile(loss="mse")
    assert "drop it on purpose with a layer whose compute_mask returns None" in \
        str(caught.value)


def test_dropping_the_mask_on_purpose_before_a_convolution():
    ids = gm.Input((6,), dtype="int32")
    h = gm.Embedding(9, 3, mask_zero=True, name="tokens")(ids)
    unmasked = gm.Lambda(lambda t: t * 1.0, mask=lambda inputs, mask: None)(h)
    assert unmasked.keras_mask is None
    model = gm.Model(ids, gm.Conv1D(2, 3, padding="same")(unmasked))
    model.compile(loss="mse")
    assert model.predict(np.array([[1, 2, 0, 0, 0, 0]])).shape == (1, 6, 2)


def test_spatial_dropout_drops_whole_channels_while_training_only():
    layer = gm.SpatialDropout1D(0.5)
    x = np.ones((64, 5, 8), np.float32)
    np.testing.assert_array_equal(layer(x), x)               # inference: the identity
    gm.set_random_seed(3)
    y = layer(x, training=True)
    assert set(np.unique(y)) == {0.0, 2.0}
    assert (y == y[:, :1, :]).all()                           # the same for every step
    dropped = (y[:, 0, :] == 0).mean()
    assert 0.35 < dropped < 0.65                              # 512 channels at rate 0.5
    gm.set_random_seed(3)
    np.testing.assert_array_equal(layer(x, training=True), y)  # seeded: repeats


def test_spatial_dropout_in_fit_passes_mask_and_gradient():
    gm.set_random_seed(0)
    ids = gm.Input((5,), dtype="int32")
    h = gm.SpatialDropout1D(0.3, name="sd")(gm.Embedding(9, 4, mask_zero=True)(ids))
    assert h.keras_mask is not None
    model = gm.Model(ids, gm.Dense(1)(gm.LSTM(3)(h)))
    model.compile("sgd", "mse")
    x = np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0]])
    before = model.get_weights()
    model.fit(x, np.ones((2, 1)), epochs=1, verbose=0)
    assert not np.array_equal(before[0], model.get_weights()[0])
    with pytest.raises(ConfigError, match=r"rate must be in \[0, 1\), got 1"):
        gm.SpatialDropout1D(1)
    assert gm.SpatialDropout1D(0.2, seed=4).get_config()["rate"] == 0.2


def test_save_and_load_every_layer(tmp_path):
    gm.set_random_seed(0)
    model = _seq(gm.Conv1D(6, 3, padding="causal", dilation_rate=2, activation="relu"),
                 gm.SpatialDropout1D(0.2), gm.MaxPooling1D(2, strides=1, padding="same"),
                 gm.Conv1D(4, 2, groups=2, strides=2, padding="same", use_bias=False),
                 gm.AveragePooling1D(2))
    x = np.random.default_rng(0).standard_normal((3, 8, 4)).astype(np.float32)
    model.save(tmp_path / "conv.gmz")
    back = gm.load_model(tmp_path / "conv.gmz")
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    assert [type(layer).__name__ for layer in back.layers] == [
        "InputLayer", "Conv1D", "SpatialDropout1D", "MaxPooling1D", "Conv1D",
        "AveragePooling1D"]


def test_summary_shows_the_layers():
    model = _seq(gm.Conv1D(6, 3, name="conv"), gm.MaxPooling1D(name="pool"))
    text = model.summary(return_string=True)
    assert "conv (Conv1D)" in text and "(None, 6, 6)" in text and "78" in text
    assert "pool (MaxPooling1D)" in text and "(None, 3, 6)" in text
