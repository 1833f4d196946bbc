"""More of the API against Keras 3: merges, several outputs, clipping, frozen layers,
label smoothing, validation_split, uneven batches, other activations and LSTM options."""

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

import graphmask as gm
from graphmask.ops.activation import ACTIVATIONS
from tests.conformance import twin as tw

B, T, C, V = 6, 5, 3, 9
EMB = ("embedding", {"input_dim": V, "output_dim": 3, "mask_zero": True})


def _data(seed=0, b=B):
    rng = np.random.default_rng(seed)
    x = tw.ids_for(tw.mask_pattern("mixed", b, T, rng), V, rng)
    return x, tw.targets_for("cce", (b, T, C), rng), rng


def _seq_twin(head="softmax", dtype="int32"):
    return tw.build_twin([EMB, ("lstm", {"units": 4, "return_sequences": True}),
                          ("dense", {"units": C, "activation": head})], (T,), dtype)


def _same_weights(g, k):
    for a, b in zip(g.get_weights(), tw.keras_weights(k)):
        tw.assert_close(a, b, tw.TRAIN_RTOL, tw.TRAIN_ATOL)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_dense_and_activation_layer_activations(act):
    x, _, _ = _data()
    t = tw.build_twin([EMB, ("dense", {"units": 4, "activation": act}),
                       ("activation", {"activation": act})], (T,), "int32")
    tw.assert_close(t.gm.predict(x), tw.keras_predict(t.keras, x))


@pytest.mark.parametrize("cfg", [
    {"activation": "relu"}, {"activation": "sigmoid"}, {"activation": "linear"},
    {"recurrent_activation": "hard_sigmoid"}, {"recurrent_activation": "tanh"},
    {"use_bias": False}, {"unit_forget_bias": False},
    {"return_state": True, "go_backwards": True, "return_sequences": True},
], ids=str)
def test_lstm_options(cfg):
    x, _, _ = _data(1)
    t = tw.build_twin([EMB, ("lstm", {"units": 3, "return_sequences": True, **cfg})],
                      (T,), "int32")
    tw.assert_close(t.gm.predict(x), tw.keras_predict(t.keras, x))


@pytest.mark.parametrize("dtype", ["int64", "uint8", "int16"])
def test_id_dtypes(dtype):
    x, _, _ = _data(2)
    t = tw.build_twin([EMB, ("lstm", {"units": 3})], (T,), dtype)
    tw.assert_close(t.gm.predict(x.astype(dtype)), tw.keras_predict(t.keras, x.astype(dtype)))


def test_variable_length_time_axis():
    t = tw.build_twin([EMB, ("lstm", {"units": 3, "return_sequences": True}),
                       ("dense", {"units": 2})], (None,), "int32")
    rng = np.random.default_rng(3)
    for steps in (1, 4, 7):
        x = tw.ids_for(tw.mask_pattern("holes", 3, steps, rng), V, rng)
        tw.assert_close(t.gm.predict(x), tw.keras_predict(t.keras, x))


def test_predict_and_evaluate_uneven_batches():
    t = _seq_twin()
    t.compile("sgd", "cce")
    x, y, _ = _data(4, b=7)
    tw.assert_close(t.gm.predict(x, batch_size=3),
                    t.keras.predict(x, batch_size=3, verbose=0))
    tw.assert_close(t.gm.evaluate(x, y, batch_size=3), t.keras.evaluate(x, y, batch_size=3,
                                                                        verbose=0))


def test_sparse_targets_with_trailing_axis():
    t = _seq_twin()
    t.compile("sgd", "scce")
    x, y, _ = _data(5)
    ys = y.argmax(-1)[..., None].astype(np.int32)
    tw.assert_close(t.gm.evaluate(x, ys), t.keras.evaluate(x, ys, verbose=0))


@pytest.mark.parametrize("kind", ["bce", "cce"])
def test_label_smoothing_evaluate_and_train(kind):
    t = _seq_twin("sigmoid" if kind == "bce" else "softmax")
    cls = "BinaryCrossentropy" if kind == "bce" else "CategoricalCrossentropy"
    t.gm.compile(gm.optimizers.SGD(learning_rate=0.5),
                 getattr(gm.losses, cls)(label_smoothing=0.2))
    t.keras.compile(keras.optimizers.SGD(learning_rate=0.5),
                    getattr(keras.losses, cls)(label_smoothing=0.2))
    x, y, _ = _data(6)
    tw.assert_close(t.gm.evaluate(x, y), t.keras.evaluate(x, y, verbose=0))
    for _ in range(2):
        t.gm.train_on_batch(x, y)
        t.keras.train_on_batch(x, y)
    _same_weights(t.gm, t.keras)


@pytest.mark.parametrize("clip", [{"clipnorm": 0.01}, {"clipvalue": 0.001},
                                  {"global_clipnorm": 0.01}], ids=str)
@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_gradient_clipping(opt, clip):
    t = _seq_twin()
    t.compile(opt, "cce", learning_rate=0.1, **clip)
    x, y, _ = _data(7)
    for _ in range(3):
        t.gm.train_on_batch(x, y)
        t.keras.train_on_batch(x, y)
    _same_weights(t.gm, t.keras)


def test_frozen_layer():
    t = _seq_twin()
    t.gm.get_layer("lstm_1").trainable = False
    t.keras.get_layer("lstm_1").trainable = False
    t.compile("Adam", "cce", learning_rate=0.1)
    before = t.gm.get_layer("lstm_1").get_weights()
    x, y, _ = _data(8)
    for _ in range(2):
        t.gm.train_on_batch(x, y)
        t.keras.train_on_batch(x, y)
    _same_weights(t.gm, t.keras)
    for a, b in zip(before, t.gm.get_layer("lstm_1").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_float_ids_training():
    t = _seq_twin(dtype="float32")
    t.compile("Adam", "cce", metrics=["accuracy"], learning_rate=0.05)
    x, y, _ = _data(9)
    x = x.astype(np.float32)
    for _ in range(3):
        tw.assert_close(t.gm.train_on_batch(x, y), t.keras.train_on_batch(x, y),
                        tw.TRAIN_RTOL, tw.TRAIN_ATOL)
    _same_weights(t.gm, t.keras)


def test_fit_validation_split():
    t = _seq_twin()
    t.compile("SGD", "cce", learning_rate=0.1)
    x, y, _ = _data(10)
    ours = t.gm.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0,
                    validation_split=1 / 3)
    theirs = t.keras.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0,
                         validation_split=1 / 3)
    for key in ("loss", "val_loss"):
        tw.assert_close(ours.history[key], theirs.history[key], tw.TRAIN_RTOL, tw.TRAIN_ATOL)
    _same_weights(t.gm, t.keras)


def test_fit_validation_data_with_weights():
    """validation_data as a 3-tuple (the pair form: test_keras_regressions.py)."""
    t = _seq_twin()
    t.compile("SGD", "cce", learning_rate=0.1)
    x, y, rng = _data(11)
    sw = rng.random((2, T)).astype(np.float32)
    val = (x[4:], y[4:], sw)
    ours = t.gm.fit(x[:4], y[:4], batch_size=2, epochs=1, shuffle=False, verbose=0,
                    validation_data=val)
    theirs = t.keras.fit(x[:4], y[:4], batch_size=2, epochs=1, shuffle=False, verbose=0,
                         validation_data=val)
    tw.assert_close(ours.history["val_loss"], theirs.history["val_loss"])


def _merge_models(merge):
    out = []
    for lib in (gm, keras):
        layers = gm if lib is gm else keras.layers
        inp = gm.Input if lib is gm else keras.Input
        a = inp(shape=(T,), dtype="int32", name="a")
        b = inp(shape=(T,), dtype="int32", name="b")
        ea = layers.Embedding(V, 3, mask_zero=True, name="ea")(a)
        eb = layers.Embedding(V, 3, mask_zero=True, name="eb")(b)
        m = layers.Add(name="m")([ea, eb]) if merge == "add" else \
            layers.Concatenate(name="m")([ea, eb])
        h = layers.LSTM(3, return_sequences=True, name="l")(m)
        out.append((gm.Model if lib is gm else keras.Model)([a, b], layers.Dense(2, name="d")(h)))
    return out


@pytest.mark.parametrize("merge", ["add", "concatenate"])
def test_merge_of_masked_tensors_ors_masks(merge):
    """Keras 3.4+ ORs the masks of merged inputs; graphmask states the same rule."""
    g, k = _merge_models(merge)
    rng = np.random.default_rng(12)
    g.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(np.float32)
                   for w in g.get_weights()])
    tw.copy_weights(g, k)
    xa = tw.ids_for(tw.mask_pattern("mixed", B, T, rng), V, rng)
    xb = tw.ids_for(tw.mask_pattern("holes", B, T, rng), V, rng)
    tw.assert_close(g.predict([xa, xb]), tw.keras_predict(k, [xa, xb]))
    y = rng.standard_normal((B, T, 2)).astype(np.float32)
    g.compile("sgd", "mse")
    k.compile("sgd", "mse")
    tw.assert_close(g.evaluate([xa, xb], y), k.evaluate([xa, xb], y, verbose=0))


def test_two_outputs_total_loss_and_training():
    """Total and per-output losses (same names and order) and weights with loss_weights."""
    models = []
    for lib in (gm, keras):
        layers = gm if lib is gm else keras.layers
        a = (gm.Input if lib is gm else keras.Input)(shape=(T,), dtype="int32", name="a")
        e = layers.Embedding(V, 3, mask_zero=True, name="e")(a)
        s, h, _ = layers.LSTM(4, return_sequences=True, return_state=True, name="l")(e)
        o1 = layers.Dense(C, activation="softmax", name="seq")(s)
        o2 = layers.Dense(1, name="last")(h)
        models.append((gm.Model if lib is gm else keras.Model)(a, [o1, o2]))
    g, k = models
    tw.copy_weights(g, k)
    x, y, rng = _data(13)
    y2 = rng.standard_normal((B, 1)).astype(np.float32)
    g.compile(gm.optimizers.Adam(learning_rate=0.05), ["categorical_crossentropy", "mse"],
              loss_weights=[0.3, 2.0])
    k.compile(keras.optimizers.Adam(learning_rate=0.05), ["categorical_crossentropy", "mse"],
              loss_weights=[0.3, 2.0])
    ours = g.evaluate(x, [y, y2], return_dict=True)
    theirs = k.evaluate(x, [y, y2], verbose=0, return_dict=True)
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        tw.assert_close(ours[name], theirs[name], what=name)
    for _ in range(2):
        g.train_on_batch(x, [y, y2])
        k.train_on_batch(x, [y, y2])
    _same_weights(g, k)


def test_mask_into_flatten_is_a_compile_error():
    """docs/masking.md: Keras 3 only warns and drops the mask; graphmask refuses, naming both
    layers."""
    i = gm.Input(shape=(T,), dtype="int32")
    e = gm.Embedding(V, 2, mask_zero=True, name="emb")(i)
    m = gm.Model(i, gm.Dense(1)(gm.Flatten(name="flat")(e)))
    with pytest.raises(gm.errors.MaskError, match="emb.*flat"):
        m.compile("sgd", "mse")
