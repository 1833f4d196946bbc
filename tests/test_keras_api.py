"""Keras-shaped API surface: module aliases, wrappers and accepted-but-default arguments."""
import numpy as np
import pytest

import graphmask as gm
from graphmask.errors import ConfigError, MaskError


def test_keras_module_names_exist():
    assert gm.layers.Dense is gm.Dense and gm.models.Model is gm.Model
    assert gm.models.Sequential is gm.Sequential and gm.models.load_model is gm.load_model
    assert gm.callbacks.EarlyStopping is gm.EarlyStopping
    assert gm.utils.set_random_seed is gm.set_random_seed


def test_regularizer_arguments_at_default_are_accepted_others_refused():
    gm.Dense(2, kernel_regularizer=None, bias_constraint=None)
    gm.Embedding(5, 2, input_length=4)  # Keras 2 argument, ignored as by Keras 3
    with pytest.raises(ConfigError, match="kernel_regularizer.*not supported"):
        gm.Dense(2, kernel_regularizer="l2")


def test_time_distributed_dense_equals_dense_and_passes_mask():
    x = gm.Input(shape=(5,), dtype="int32")
    e = gm.Embedding(7, 3, mask_zero=True)(x)
    td = gm.TimeDistributed(gm.Dense(4))
    y = td(e)
    m = gm.Model(x, y)
    ids = np.array([[1, 2, 0, 0, 0]])
    emb, kernel, bias = m.get_weights()
    np.testing.assert_allclose(m.predict(ids)[0], emb[ids[0]] @ kernel + bias, rtol=1e-6)
    assert [layer.name for layer in m.layers] == ["input_layer", "embedding", "time_distributed"]
    g = m.graph
    assert g.node(g.nodes_by_op("dense")[0])["masks"] == g.nodes_by_op("mask_not_equal")
    assert td.output is y and td.input is e
    with pytest.raises(ConfigError, match="can wrap"):
        gm.TimeDistributed(gm.LSTM(2))


def test_global_max_pooling_refuses_a_mask():
    x = gm.Input(shape=(5,), dtype="int32")
    p = gm.GlobalMaxPooling1D()(gm.Embedding(7, 3, mask_zero=True)(x))
    with pytest.raises(MaskError, match="global_max_pooling1d"):
        _ = gm.Model(x, p).graph
    x2 = gm.Input(shape=(5, 3))
    m = gm.Model(x2, gm.GlobalMaxPooling1D()(x2))
    a = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(m.predict(a), a.max(axis=1))


def test_time_distributed_saves_and_loads(tmp_path):
    x = gm.Input(shape=(5, 2))
    m = gm.Model(x, gm.TimeDistributed(gm.Dense(3, activation="relu"))(x))
    a = np.random.default_rng(1).normal(size=(2, 5, 2)).astype(np.float32)
    m.save(tmp_path / "td.gmz")
    np.testing.assert_array_equal(gm.load_model(tmp_path / "td.gmz").predict(a), m.predict(a))


def test_layer_order_follows_keras_depth_then_walk_from_outputs():
    x = gm.Input(shape=(4,), dtype="int32")
    e = gm.Embedding(5, 3, mask_zero=True)(x)
    h = gm.LSTM(4, return_sequences=True)(e)
    last = gm.LSTM(2)(h)             # created before the Dense, but Keras lists it after:
    seq = gm.Dense(3)(h)             # both have depth 0 and the walk reaches Dense first
    m = gm.Model(x, [seq, last])
    assert [layer.name for layer in m.layers] == ["input_layer", "embedding", "lstm", "dense",
                                                  "lstm_1"]
    assert [w.shape for w in m.get_weights()][-5:] == [(4, 3), (3,), (4, 8), (2, 8), (8,)]


# ---- Keras 3's model attributes about metrics, shapes, variables, JSON ----------------------

def _tiny(metrics=("mae",)):
    gm.clear_session()
    gm.set_random_seed(0)
    i = gm.Input((4,))
    m = gm.Model(i, gm.Dense(2, name="d")(i))
    return m, lambda: m.compile(optimizer="sgd", loss="mse", metrics=list(metrics))


def test_metrics_names_as_keras():
    m, compile_ = _tiny()
    assert m.metrics_names == []
    compile_()
    assert m.metrics_names == ["loss", "compile_metrics"]
    bare, compile_bare = _tiny(metrics=())
    compile_bare()
    assert bare.metrics_names == ["loss"]


def test_history_and_metrics_result_follow_the_last_call():
    m, compile_ = _tiny()
    compile_()
    x, y = np.ones((4, 4), "float32"), np.ones((4, 2), "float32")
    h = m.fit(x, y, epochs=2, verbose=0)
    assert m.history is h
    assert m.get_metrics_result() == {k: v[-1] for k, v in h.history.items()}
    h = m.fit(x, y, verbose=0, validation_data=(x, 3 * y))  # validation ran last: its values
    assert m.get_metrics_result() == {"loss": h.history["val_loss"][-1],
                                      "mae": h.history["val_mae"][-1]}
    loss, mae = m.evaluate(x, 2 * y, verbose=0)
    assert m.get_metrics_result() == {"loss": loss, "mae": mae}
    assert m.train_on_batch(x, y, return_dict=True) == m.get_metrics_result()
    assert m.test_on_batch(x, y) == [m.get_metrics_result()["loss"],
                                     m.get_metrics_result()["mae"]]
    m.reset_metrics()
    assert m.get_metrics_result() == {"loss": 0.0, "mae": 0.0}


def test_shapes_variables_and_losses():
    a, b = gm.Input((3, 4)), gm.Input((5,))
    d = gm.Dense(2)(a)
    bn = gm.BatchNormalization()(b)
    m = gm.Model([a, b], [d, bn])
    assert m.input_shape == [(None, 3, 4), (None, 5)]
    assert m.output_shape == [(None, 3, 2), (None, 5)]
    assert m.variables == m.weights and m.trainable_variables == m.trainable_weights
    assert [v.name for v in m.non_trainable_variables] == [
        "batch_normalization/moving_mean", "batch_normalization/moving_variance"]
    assert m.losses == []
    single = gm.Model(a, d)
    assert single.input_shape == (None, 3, 4) and single.output_shape == (None, 3, 2)


def test_to_json_round_trip_and_compile_config():
    m, compile_ = _tiny()
    assert m.get_compile_config() is None
    compile_()
    cfg = m.get_compile_config()
    assert cfg["loss"] == "mse" and cfg["metrics"] == ["mae"]
    again = gm.models.model_from_json(m.to_json())
    assert not again.compiled and again.count_params() == m.count_params()
    assert [v.name for v in again.weights] == [v.name for v in m.weights]
    import json
    assert "compile_config" not in json.loads(m.to_json())
    from graphmask.errors import FileFormatError
    with pytest.raises(FileFormatError, match="model_from_json: not a JSON model config"):
        gm.models.model_from_json("{not json")
