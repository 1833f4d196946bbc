"""A custom layer whose ``call`` depends on ``training`` (``if training:``), as Keras 3 runs
it: ``training=True`` in ``fit``/``train_on_batch``, ``False`` in ``predict``/``evaluate``.

The front end traces such a call twice and joins differing traces with a
``training_switch``; the ``branches`` pass keeps one branch per compiled graph.
"""
import numpy as np
import pytest

import graphmask as gm
from graphmask import Dense, Embedding, Input, Model, ops
from graphmask.errors import ConfigError, ShapeError

X = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]], np.float32)
Y = np.zeros((2, 1), np.float32)


class DoubleWhileTraining(gm.layers.Layer):
    def call(self, x, training=None):
        return x * 2.0 if training else x


class DropoutOnly(gm.layers.Layer):
    """``training`` only reaches a built-in layer: one trace suffices."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.drop = gm.Dropout(0.5)

    def call(self, x, training=None):
        return self.drop(x, training=training)


def _ones_dense(x, name=None):
    return Dense(1, kernel_initializer="ones", bias_initializer="zeros", name=name)(x)


def _model(layer):
    x = Input((3,))
    m = Model(x, _ones_dense(layer(x)))
    m.compile(optimizer=gm.optimizers.SGD(0.01), loss="mse")
    return m


def test_fit_runs_the_training_branch_predict_and_evaluate_the_other():
    m = _model(DoubleWhileTraining())
    np.testing.assert_array_equal(m.predict(X, verbose=0).ravel(), [6.0, 1.0])
    assert m.evaluate(X, Y, verbose=0) == pytest.approx((6.0**2 + 1.0) / 2)
    # the loss of the step is computed before the update, on the doubled inputs
    assert m.train_on_batch(X, Y) == pytest.approx((12.0**2 + 2.0**2) / 2)
    # d/dk mean((2 x.k)^2) = mean(8 (x.k) x): the gradient of the training branch
    k = m.get_weights()[0].ravel()
    expected = 1.0 - 0.01 * (8 * (X.sum(1)[:, None] * X)).mean(0)
    np.testing.assert_allclose(k, expected, rtol=1e-6)


def test_the_two_graphs_hold_one_branch_each_and_no_switch():
    m = _model(DoubleWhileTraining())
    for g in (m.graph, m.inference_graph):
        assert g.nodes_by_op("training_switch") == []
        assert g.meta["passes"][0] == "branches"
    train_ops = [m.graph.node(n)["op"] for n in m.graph.order()
                 if m.graph.node(n)["phase"] == "forward"]
    infer_ops = [m.inference_graph.node(n)["op"] for n in m.inference_graph.order()]
    assert "prim.multiply" in train_ops and "prim.multiply" not in infer_ops
    assert m.inference_graph is not m.graph
    # the forward graph before compiling keeps both branches, joined by the switch
    assert len(m._forward.nodes_by_op("training_switch")) == 1


def test_identical_traces_make_no_switch_and_one_graph():
    m = _model(DropoutOnly())
    assert m._forward.nodes_by_op("training_switch") == []
    assert m.inference_graph is m.graph
    assert [m.graph.node(n)["op"] for n in m.graph.nodes_by_op("dropout")] == ["dropout"]
    out = m.predict(np.ones((4, 3), np.float32), verbose=0)
    np.testing.assert_array_equal(out, np.full((4, 1), 3.0, np.float32))


def test_weights_used_by_one_branch_only_get_gradients_only_in_fit():
    class Noisy(gm.layers.Layer):
        def build(self, shape):
            self.shift = self.add_weight(shape=(shape[-1],), initializer="zeros", name="shift")

        def call(self, x, training=None):
            return x + self.shift if training else x

    m = _model(Noisy(name="noisy"))
    before = m.get_weights()
    m.train_on_batch(X, Y)
    after = m.get_weights()
    assert after[0].shape == (3,) and not np.array_equal(before[0], after[0])
    # predict reads no shift at all: a big shift changes nothing there
    m.set_weights([np.full(3, 100.0, np.float32)] + after[1:])
    np.testing.assert_allclose(m.predict(X, verbose=0).ravel(), X @ after[1].ravel() + after[2],
                               rtol=1e-6)


def test_nested_custom_layers_see_the_outer_training():
    class Outer(gm.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = DoubleWhileTraining()

        def call(self, x, training=None):
            return self.inner(x) + 1.0  # training not passed: Keras hands it down

    m = _model(Outer())
    np.testing.assert_array_equal(m.predict(X, verbose=0).ravel(), [9.0, 4.0])
    assert m.train_on_batch(X, Y) == pytest.approx((15.0**2 + 5.0**2) / 2)


def test_explicit_training_wins_over_the_traces():
    x = Input((3,))
    m = Model(x, _ones_dense(DoubleWhileTraining()(x, training=True)))
    m.compile(optimizer="sgd", loss="mse")
    assert m._forward.nodes_by_op("training_switch") == []
    np.testing.assert_array_equal(m.predict(X, verbose=0).ravel(), [12.0, 2.0])


def test_explicit_dropout_training_false_is_off_in_fit():
    x = Input((200,))
    m = Model(x, gm.Dropout(0.9)(x, training=False))
    m.compile(optimizer="sgd", loss="mse")
    ones = np.ones((2, 200), np.float32)
    assert m.train_on_batch(ones, ones) == 0.0


def test_eager_calls_use_the_given_training_or_the_default():
    layer = DoubleWhileTraining()
    np.testing.assert_array_equal(layer(X, training=True), 2 * X)
    np.testing.assert_array_equal(layer(X), X)


def test_masks_pass_through_both_branches():
    class MaskedScale(gm.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, x, training=None):
            return x * 3.0 if training else x

    ids = Input((4,), dtype="int32")
    e = Embedding(5, 2, mask_zero=True, embeddings_initializer="ones")(ids)
    h = MaskedScale()(e)
    assert h.keras_mask is e.keras_mask
    out = gm.GlobalAveragePooling1D()(h)
    m = Model(ids, _ones_dense(out))
    m.compile(optimizer="sgd", loss="mse")
    batch = np.array([[1, 2, 0, 0], [3, 0, 0, 0]], np.int32)
    np.testing.assert_allclose(m.predict(batch, verbose=0).ravel(), [2.0, 2.0])
    assert m.train_on_batch(batch, np.zeros((2, 1), np.float32)) == pytest.approx(36.0)


def test_branches_of_different_shapes_are_an_error_naming_the_layer():
    class Bad(gm.layers.Layer):
        def call(self, x, training=None):
            return ops.concatenate([x, x], axis=-1) if training else x

    with pytest.raises(ShapeError, match=r"layer 'bad' \(Bad\): call\(\) returns a float32 "
                                         r"tensor of shape \(None, 6\) with training=True but "
                                         r"a float32 tensor of shape \(None, 3\) with "
                                         r"training=False"):
        Bad(name="bad")(Input((3,)))


def test_branches_returning_different_numbers_of_tensors_are_an_error():
    class Bad(gm.layers.Layer):
        def call(self, x, training=None):
            return [x, x] if training else [x]

    with pytest.raises(ConfigError, match=r"layer 'bad2' \(Bad\): call\(\) returns 2 tensor\(s\) "
                                          r"with training=True but 1 with training=False"):
        Bad(name="bad2")(Input((3,)))


def test_summary_shows_one_row_and_saving_round_trips(tmp_path):
    m = _model(DoubleWhileTraining(name="dbl"))
    assert sum(" dbl " in line for line in m.summary(return_string=True).splitlines()) == 1
    path = tmp_path / "m.gmz"
    m.save(path)
    back = gm.load_model(path, custom_objects={"DoubleWhileTraining": DoubleWhileTraining})
    np.testing.assert_array_equal(back.predict(X, verbose=0), m.predict(X, verbose=0))
    back.compile(optimizer=gm.optimizers.SGD(0.01), loss="mse")
    assert back.train_on_batch(X, Y) == pytest.approx((12.0**2 + 2.0**2) / 2)


def test_training_given_to_a_custom_layer_pins_the_dropout_inside_it():
    x = Input((200,))
    m = Model(x, DropoutOnly()(x, training=True))  # Keras: dropout in predict too
    out = m.predict(np.ones((2, 200), np.float32), verbose=0)
    assert set(np.unique(out)) <= {0.0, 2.0} and 0 < (out == 0).sum() < out.size
    m2 = Model(x, DropoutOnly()(x))  # not given: fit drops, predict does not
    np.testing.assert_array_equal(m2.predict(np.ones((2, 200), np.float32), verbose=0),
                                  np.ones((2, 200), np.float32))


def test_passing_training_on_to_recurrent_dropout_is_the_keras_idiom_not_a_pin():
    class Encoder(gm.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.rnn = gm.Bidirectional(gm.LSTM(4, dropout=0.5, name="l"), name="bi")

        def call(self, x, training=None):
            return self.rnn(x, training=training)

    x = Input((5, 3))
    m = Model(x, Encoder(name="enc")(x))
    m.compile(optimizer="sgd", loss="mse")
    assert m._forward.nodes_by_op("training_switch") == []
    batch = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(m.predict(batch, verbose=0), m.predict(batch, verbose=0))
    with pytest.raises(ConfigError, match=r"Bidirectional 'bd': training=True at call time is "
                                          r"not supported"):
        gm.Bidirectional(gm.LSTM(4, dropout=0.5), name="bd")(x, training=True)
