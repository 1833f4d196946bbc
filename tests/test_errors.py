"""Bad input meets a clear graphmask error, raised before any state changes."""
import numpy as np
import pytest

import graphmask as gm
from graphmask import LSTM, Dense, Embedding, Input, Model
from graphmask.errors import (
    ConfigError,
    GraphError,
    GraphmaskError,
    IdRangeError,
    InputError,
    InputTypeError,
    NumericalError,
    ShapeError,
)


@pytest.fixture
def model():
    x = Input(shape=(4,), dtype="int32")
    e = Embedding(5, 3, mask_zero=True)(x)
    r = LSTM(2, return_sequences=True)(e)
    d = Dense(3, activation="softmax")(r)
    m = Model(x, d)
    m.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return m


IDS = np.array([[1, 2, 0, 0], [3, 4, 1, 0]])
Y = np.array([[1, 2, 0, 0], [0, 1, 2, 0]])


def test_hierarchy_subclasses_builtins():
    assert issubclass(IdRangeError, IndexError) and issubclass(ShapeError, ValueError)
    assert issubclass(InputTypeError, TypeError) and issubclass(NumericalError, GraphmaskError)


@pytest.mark.parametrize("ids, exc, words", [
    ([[1, 7, 0, 0]], IdRangeError, ["layer 'embedding'", "id 7", "sample 0", "position 1",
                                    "input_dim=5"]),
    ([[1, 2, 0, 0], [1, -1, 0, 0]], IdRangeError, ["id -1", "sample 1", "position 1"]),
    ([[1.5, 1, 0, 0]], InputError, ["whole numbers", "1.5", "(0, 0)"]),
    ([["a", "b", "c", "d"]], InputTypeError, ["must hold numbers", "<U1"]),
    (np.array([[1, None, 0, 0]], dtype=object), InputTypeError, ["object"]),
    ([1, 2, 0, 0], ShapeError, ["rank 2", "(4,)"]),
    ([[1, 2, 0]], ShapeError, ["(None, 4)", "(1, 3)", "axis 1"]),
    (np.zeros((0, 4), int), InputError, ["batch is empty"]),
])
def test_predict_rejects_bad_ids(model, ids, exc, words):
    with pytest.raises(exc) as e:
        model.predict(np.asarray(ids) if not isinstance(ids, np.ndarray) else ids)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("call, exc, words", [
    (lambda m: m.predict(IDS, batch_size=0), ConfigError, ["batch_size", "0"]),
    (lambda m: m.fit(IDS, Y, batch_size=-1, verbose=0), ConfigError, ["batch_size", "-1"]),
    (lambda m: m.fit(IDS, Y, epochs=-2, verbose=0), ConfigError, ["epochs", "-2"]),
    (lambda m: m.evaluate(IDS, np.full((2, 4), 5)), InputError, ["class id 5", "(0, 0)", "[0, 3)"]),
    (lambda m: m.evaluate(IDS, np.ones((2, 3))), ShapeError, ["(None, 4)", "(2, 3)"]),
    (lambda m: m.evaluate(IDS, np.ones((3, 4))), ShapeError, ["3 samples", "x has 2"]),
    (lambda m: m.train_on_batch(IDS, np.full((2, 4), np.nan)), InputError, ["nan", "(0, 0)"]),
    (lambda m: m.train_on_batch(IDS, Y, sample_weight=np.ones(3)), ShapeError,
     ["sample_weight", "2 samples"]),
    (lambda m: m.compile(loss="msee"), ConfigError, ["'msee'", "did you mean 'mse'"]),
    (lambda m: m.compile(loss="mse", optimizer="adamm"), ConfigError, ["did you mean 'adam'"]),
    (lambda m: m.set_weights([np.zeros(1)] * 6), ShapeError, ["embedding/embeddings", "(5, 3)"]),
    (lambda m: m.set_weights([np.zeros(1)]), ShapeError, ["expected 6 arrays", "got 1"]),
])
def test_entry_points_reject_bad_arguments(model, call, exc, words):
    before = model.get_weights()
    with pytest.raises(exc) as e:
        call(model)
    for w in words:
        assert w in str(e.value)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # nothing changed


def test_set_weights_is_all_or_nothing(model):
    before = model.get_weights()
    bad = [w + 1 for w in before]
    bad[-1] = np.zeros(7)  # last array wrong: the first four must not be applied
    with pytest.raises(ShapeError):
        model.set_weights(bad)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_layer_construction_errors():
    with pytest.raises(ConfigError, match="did you mean 'relu'"):
        Dense(3, activation="rellu")
    with pytest.raises(ConfigError, match="units must be a positive int, got 0"):
        Dense(0)
    with pytest.raises(ConfigError, match="input_dim must be a positive int, got -3"):
        Embedding(-3, 2)
    with pytest.raises(ConfigError, match=r"LSTM 'lstm(_\d+)?': dropout must be a number in "
                                          r"\[0, 1\) \(the fraction of units dropped while "
                                          r"training\), got 1.0"):
        LSTM(3, dropout=1.0)
    with pytest.raises(ShapeError, match=r"LSTM 'lstm(_1)?': input must be"):
        LSTM(3)(Input(shape=(3,)))


def test_layer_reused_on_incompatible_input():
    layer = Dense(2)
    layer(Input(shape=(3,)))
    with pytest.raises(ShapeError, match="5 features .* kernel expects 3"):
        layer(Input(shape=(5,)))


def test_model_outputs_must_depend_on_inputs():
    a = Input(shape=(3,))
    other = Input(shape=(3,), name="other")
    with pytest.raises(GraphError, match="'other'"):
        Model(a, Dense(2)(other))
    b = Input(shape=(3,), name="unused")
    with pytest.raises(GraphError, match="do not depend on input.*'unused'"):
        Model([a, b], Dense(2)(a))


def test_all_masked_batch_trains_with_zero_loss(model):
    before = model.get_weights()
    loss, acc = model.train_on_batch(np.zeros((2, 4), int), np.zeros((2, 4)))
    assert loss == 0.0 and acc == 0.0
    # Adam with an all-zero gradient moves nothing on its first step
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fit_stops_at_first_non_finite_loss_and_keeps_weights():
    x = Input(shape=(3,))
    m = Model(x, Dense(1)(x))
    m.compile(loss="mse", optimizer="sgd")
    m.set_weights([np.full((3, 1), 1e30, np.float32), np.zeros(1, np.float32)])
    before = m.get_weights()
    xs = np.full((4, 3), 1e30, np.float32)
    with pytest.raises(NumericalError, match=r"epoch 1, step 1: the loss is inf"):
        m.fit(xs, np.zeros((4, 1)), batch_size=2, verbose=0)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_nonfinite_inputs_switch(monkeypatch):
    x = Input(shape=(2, 3))
    m = Model(x, Dense(1)(x))
    bad = np.array([[[1.0, np.inf, 0.0], [0.0, 0.0, 0.0]]])
    with pytest.raises(InputError, match="inf at position"):
        m.predict(bad)
    monkeypatch.setattr(gm.training.data, "ALLOW_NONFINITE", True)
    assert not np.all(np.isfinite(m.predict(bad)))


def test_uncompiled_model_cannot_train():
    x = Input(shape=(3,))
    m = Model(x, Dense(1)(x))
    with pytest.raises(ConfigError, match="must be compiled first"):
        m.train_on_batch(np.ones((1, 3)), np.ones((1, 1)))


def test_fit_checks_every_batch_before_the_first_step(model):
    ids = np.ones((6, 4), int)
    ids[5, 2] = 9  # the last batch is bad: no step may run before the error
    before = model.get_weights()
    with pytest.raises(IdRangeError, match="id 9 at sample 5, position 2"):
        model.fit(ids, np.ones((6, 4), int), batch_size=2, verbose=0)
    y = np.ones((6, 4), int)
    y[5, 0] = -1
    with pytest.raises(InputError, match="class id -1 at position \\(5, 0\\)"):
        model.fit(np.ones((6, 4), int), y, batch_size=2, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_keras_arguments_that_would_be_ignored_are_refused(model):
    with pytest.raises(ConfigError, match="steps_per_epoch must be a positive int or None"):
        model.fit(IDS, Y, steps_per_epoch=0, verbose=0)
    with pytest.raises(ConfigError, match="evaluate: steps must be a positive int or None"):
        model.evaluate(IDS, Y, steps=0)
    with pytest.raises(ConfigError, match="callbacks must be a list of Callback instances"):
        model.predict(IDS, callbacks=print)
    with pytest.raises(ConfigError, match="validation_freq must be a positive int"):
        model.fit(IDS, Y, validation_freq=0, verbose=0)


# ---- class ids at masked positions ---------------------------------------------------
def _same_results(model, x, y_a, y_b):
    assert model.evaluate(x, y_a, return_dict=True) == model.evaluate(x, y_b, return_dict=True)
    la, ga = model.loss_and_gradients(x, y_a)
    lb, gb = model.loss_and_gradients(x, y_b)
    assert la == lb
    for name in ga:
        np.testing.assert_array_equal(ga[name], gb[name])


@pytest.mark.parametrize("pad", [99, -1, -100, 2**40])
def test_class_ids_at_padded_positions_are_not_checked(model, pad):
    kept = IDS != 0
    y_pad, y_zero = np.where(kept, Y, pad), np.where(kept, Y, 0)
    _same_results(model, IDS, y_pad, y_zero)
    weights = model.get_weights()
    model.train_on_batch(IDS, y_pad)
    after_pad = model.get_weights()
    model.set_weights(weights)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam",
                  metrics=["accuracy"])  # a fresh optimizer, as before the first step
    model.train_on_batch(IDS, y_zero)
    for a, b in zip(after_pad, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.fit(np.tile(IDS, (3, 1)), np.tile(y_pad, (3, 1)), batch_size=2, verbose=0)


def test_class_ids_at_kept_positions_are_checked_first_one_named(model):
    y = np.where(IDS != 0, Y, 99)
    y[1, 2] = 3    # kept (id 1): outside [0, 3)
    y[0, 1] = -1   # kept, and first in row-major order
    before = model.get_weights()
    for call in (lambda: model.evaluate(IDS, y), lambda: model.train_on_batch(IDS, y),
                 lambda: model.fit(IDS, y, verbose=0)):
        with pytest.raises(InputError) as e:
            call()
        assert str(e.value) == ("target for output 'dense': class id -1 at position (0, 1) is "
                                "outside [0, 3) (the output has 3 classes)")
    y = np.ones((6, 4), int)
    y[:, 3] = 50      # padded everywhere below: fine
    y[5, 1] = 7       # kept, in the last batch: refused before the first step
    ids = np.ones((6, 4), int)
    ids[:, 3] = 0
    with pytest.raises(InputError, match=r"class id 7 at position \(5, 1\)"):
        model.fit(ids, y, batch_size=2, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_class_ids_at_steps_masked_by_masking_are_not_checked():
    x = Input(shape=(3, 2))
    out = Dense(4, activation="softmax")(LSTM(2, return_sequences=True)(gm.Masking()(x)))
    m = Model(x, out)
    m.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
    xs = np.array([[[1.0, 2.0], [0.0, 0.0], [3.0, 0.0]]], np.float32)
    _same_results(m, xs, np.array([[1, 99, 2]]), np.array([[1, 0, 2]]))
    with pytest.raises(InputError, match=r"class id 99 at position \(0, 2\)"):
        m.evaluate(xs, np.array([[1, 0, 99]]))


def test_ignore_class_labels_are_not_checked_unless_a_reader_counts_them():
    x = Input(shape=(4,), dtype="int32")
    out = Dense(3, activation="softmax")(Embedding(5, 3, mask_zero=True)(x))
    m = Model(x, out)
    m.compile(loss=gm.losses.SparseCategoricalCrossentropy(ignore_class=-1), optimizer="sgd",
              metrics=["accuracy"])
    y = np.array([[1, -1, 0, 0], [-1, 2, 1, 0]])
    m.evaluate(IDS, y)   # -1 is ignored at kept positions; accuracy compares, never indexes
    with pytest.raises(InputError, match=r"class id -2 at position \(0, 1\)"):
        m.evaluate(IDS, np.where(y == -1, -2, y))
    # a crossentropy metric without ignore_class reads every kept id: -1 there is an error
    m.compile(loss=gm.losses.SparseCategoricalCrossentropy(ignore_class=-1), optimizer="sgd",
              metrics=["sparse_categorical_crossentropy"])
    before = m.get_weights()
    with pytest.raises(InputError, match=r"class id -1 at position \(0, 1\)"):
        m.fit(IDS, y, verbose=0)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
