"""Data the Keras way: Input(batch_shape), generators, PyDataset, steps_per_epoch,
validation_steps and class_weight in fit / evaluate / predict."""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphmask as gm
from graphmask.errors import ConfigError


# ---- Input(batch_shape=...) ------------------------------------------------------------
def test_input_batch_shape_is_batch_size_plus_shape():
    assert gm.Input(batch_shape=(None, None), dtype="int32").shape == (None, None)
    x = gm.Input(batch_shape=(4, 3), name="fixed")
    assert x.shape == (4, 3)
    assert x.call.layer.get_config()["batch_size"] == 4
    model = gm.Model(x, gm.Dense(2)(x))
    assert model.predict(np.ones((4, 3), np.float32)).shape == (4, 2)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(batch_shape=(4, 3), shape=(3,)),
     "Input 'x': give batch_shape or shape, not both (got shape=(3,), batch_shape=(4, 3))"),
    (dict(batch_shape=(4, 3), batch_size=4),
     "Input 'x': give batch_shape or batch_size, not both (got batch_size=4, "
     "batch_shape=(4, 3))"),
    (dict(batch_shape=(3,)),
     "Input 'x': batch_shape must be a tuple of the batch size (or None) and at least one "
     "more axis, e.g. (None, 20); got (3,)"),
    (dict(batch_shape=(0, 3)),
     "Input 'x': the batch size must be a positive int or None, got 0"),
])
def test_input_batch_shape_errors(kwargs, msg):
    with pytest.raises(ConfigError) as e:
        gm.Input(name="x", **kwargs)
    assert str(e.value) == msg


# ---- generators and PyDataset ---------------------------------------------------------------
V, C = 8, 3


def _model(seed=0):
    gm.set_random_seed(seed)
    x = gm.Input(shape=(None,), dtype="int32")
    h = gm.Embedding(V, 4, mask_zero=True)(x)
    y = gm.Dense(C, activation="softmax")(gm.LSTM(5, return_sequences=True)(h))
    m = gm.Model(x, y)
    m.compile(optimizer=gm.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


def _batches(n=4, seed=1, lengths=(3, 6, 4, 5)):
    """Batches of different lengths, each padded on its own (right padding)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        seqs = [rng.integers(1, V, size=rng.integers(1, lengths[k % len(lengths)] + 1))
                for _ in range(3)]
        x = gm.utils.pad_sequences(seqs, maxlen=lengths[k % len(lengths)], padding="post")
        out.append((x, rng.integers(0, C, size=x.shape).astype(np.int32)))
    return out


class Data(gm.utils.PyDataset):
    def __init__(self, items, **kwargs):
        super().__init__(**kwargs)
        self.items, self.seen, self.epochs_ended = items, [], 0

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        self.seen.append(i)
        return self.items[i]

    def on_epoch_end(self):
        self.epochs_ended += 1


def _steps_by_hand(model, items):
    """The reference: one train_on_batch per batch, and Keras's epoch averages."""
    losses, sizes = [], []
    for x, y in items:
        losses.append(model.train_on_batch(x, y, return_dict=True)["loss"])
        sizes.append(len(x))
    return float(np.dot(losses, sizes) / np.sum(sizes))


def test_generator_batches_of_different_lengths_train_like_train_on_batch():
    items = _batches()
    ref = _model()
    expected = _steps_by_hand(ref, items)
    m = _model()
    with pytest.warns(UserWarning, match="fit: shuffle=True cannot shuffle a generator"):
        h = m.fit((b for b in items), epochs=1, verbose=0)
    assert h.history["loss"][0] == pytest.approx(expected, rel=1e-6)
    for a, b in zip(m.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_pydataset_epochs_call_on_epoch_end_and_shuffle_the_batch_order():
    items = _batches()
    d = Data(items)
    m = _model()
    m.fit(d, epochs=2, shuffle=False, verbose=0)
    assert d.seen == [0, 1, 2, 3, 0, 1, 2, 3] and d.epochs_ended == 2
    d2 = Data(items)
    gm.set_random_seed(3)
    _model().fit(d2, epochs=2, shuffle=True, verbose=0)
    assert sorted(d2.seen[:4]) == [0, 1, 2, 3] and d2.seen != d.seen
    d3 = Data(items, workers=3, max_queue_size=2)  # threads prepare batches, order kept
    ref = _model()
    _steps_by_hand(ref, items)
    m3 = _model()
    m3.fit(d3, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(m3.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_steps_per_epoch_continues_the_generator_across_epochs():
    items = _batches(6)
    gen = (b for b in items)
    ref = _model()
    e1, e2 = _steps_by_hand(ref, items[:2]), _steps_by_hand(ref, items[2:4])
    h = _model().fit(gen, steps_per_epoch=2, epochs=2, shuffle=False, verbose=0)
    assert h.history["loss"] == pytest.approx([e1, e2], rel=1e-6)
    assert len(list(gen)) == 2  # two batches left: epoch 2 went on where epoch 1 stopped


def test_a_generator_that_runs_out_warns_and_stops():
    items = _batches(3)
    with pytest.warns(UserWarning, match="Your input ran out of data"):
        h = _model().fit((b for b in items), steps_per_epoch=2, epochs=5, shuffle=False,
                         verbose=0)
    assert h.epoch == [0, 1]  # the second epoch got one batch, then training stopped


def test_pydataset_steps_per_epoch_and_validation_steps():
    items = _batches(4)
    d = Data(items)
    val = Data(_batches(3, seed=9))
    with pytest.warns(UserWarning, match="Your input ran out of data"):
        h = _model().fit(d, steps_per_epoch=3, epochs=2, validation_data=val,
                         validation_steps=2, shuffle=False, verbose=0)
    # epoch 1: batches 0,1,2; epoch 2: batch 3, then a new pass gives up (Keras warns)
    assert d.seen == [0, 1, 2, 3]
    assert val.seen == [0, 1, 0, 1]  # validation starts from the first batch, as Keras
    assert sorted(h.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]


def test_bad_generator_batches_name_the_batch_and_change_nothing_more():
    items = _batches(2)
    bad = (items[0], (items[1][0], np.full(items[1][1].shape, 7)))
    m = _model()
    with pytest.raises(gm.errors.InputError, match=r"^fit: batch 1: target for output .* "
                                                   r"class id 7 at position"):
        m.fit((b for b in bad), shuffle=False, verbose=0)
    with pytest.raises(gm.errors.InputError, match=r"fit: batch 0 must be x, \(x,\), \(x, y\) "
                                                   r"or \(x, y, sample_weight\); got tuple of "
                                                   r"length 4"):
        m.fit(iter([(1, 2, 3, 4)]), shuffle=False, verbose=0)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(y=np.zeros(3)), "fit: y must be None when x is a generator (its batches carry y); "
                          "got y=an array of shape (3,)"),
    (dict(batch_size=4), "fit: batch_size must be None when x is a generator (its batches "
                         "carry their size); got batch_size=4"),
    (dict(class_weight={0: 2.0}), "fit: class_weight is not supported when x is a generator "
                                  "(as in Keras); yield (x, y, sample_weight) batches or use a "
                                  "PyDataset"),
    (dict(steps_per_epoch=0), "fit: steps_per_epoch must be a positive int or None, got 0"),
    (dict(validation_split=0.5), "fit: validation_split needs array data; give "
                                 "validation_data for a PyDataset or generator"),
])
def test_generator_argument_errors(kwargs, msg):
    m = _model()
    before = m.get_weights()
    with pytest.raises(ConfigError) as e:
        m.fit((b for b in _batches(2)), verbose=0, shuffle=False, **kwargs)
    assert str(e.value) == msg
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---- class_weight ------------------------------------------------------------------------------
def test_class_weight_is_sample_weight_per_position():
    x, y = _batches(1)[0]
    cw = {0: 0.5, 2: 3.0}
    a, b = _model(), _model()
    a.fit(x, y, class_weight=cw, epochs=2, shuffle=False, verbose=0)
    sw = np.vectorize(lambda c: cw.get(int(c), 1.0))(y).astype(np.float32)
    b.fit(x, y, sample_weight=sw, epochs=2, shuffle=False, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    d = Data([(x, y)])
    c = _model()
    c.fit(d, class_weight=cw, epochs=2, shuffle=False, verbose=0)
    for wa, wc in zip(a.get_weights(), c.get_weights()):
        np.testing.assert_array_equal(wa, wc)


def test_class_weight_per_sample_one_hot_and_binary():
    gm.set_random_seed(0)
    x = gm.Input(shape=(3,))
    m = gm.Model(x, gm.Dense(3, activation="softmax")(x))
    m.compile("sgd", "categorical_crossentropy")
    xs = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    ys = gm.utils.to_categorical([0, 1, 2, 1], 3)
    l_cw = m.loss_and_gradients(xs, ys, sample_weight=np.array([1, 4, 1, 4.0]))[0]
    m.fit(xs, ys, class_weight={1: 4}, epochs=1, batch_size=4, verbose=0, shuffle=False)
    # one step with those weights moved the weights; compare with an explicit weighting
    gm.set_random_seed(0)
    x2 = gm.Input(shape=(3,))
    m2 = gm.Model(x2, gm.Dense(3, activation="softmax")(x2))
    m2.compile("sgd", "categorical_crossentropy")
    assert m2.loss_and_gradients(xs, ys, sample_weight=np.array([1, 4, 1, 4.0]))[0] == l_cw
    m2.fit(xs, ys, sample_weight=np.array([1, 4, 1, 4.0]), epochs=1, batch_size=4,
           verbose=0, shuffle=False)
    for wa, wb in zip(m.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize("cw,extra,msg", [
    ([1.0], {}, "fit: class_weight must be a dict {class id: weight}, got list"),
    ({"a": 1.0}, {}, "fit: class_weight keys must be int class ids, got 'a'"),
    ({0: -1.0}, {}, "fit: class_weight[0] must be a finite number >= 0, got -1.0"),
    ({0: 2.0}, {"sample_weight": np.ones(3)}, "fit: give class_weight or sample_weight, "
                                              "not both"),
])
def test_class_weight_errors(cw, extra, msg):
    x, y = _batches(1)[0]
    with pytest.raises(ConfigError) as e:
        _model().fit(x, y, class_weight=cw, verbose=0, **extra)
    assert str(e.value) == msg


# ---- evaluate / predict on batch sources -------------------------------------------------------
def test_evaluate_and_predict_take_generators_datasets_and_steps():
    items = _batches(4)
    m = _model()
    by_hand = [m.evaluate(x, y, verbose=0, return_dict=True) for x, y in items]
    sizes = [len(x) for x, _ in items]
    got = m.evaluate((b for b in items), verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(np.dot([d["loss"] for d in by_hand], sizes)
                                        / sum(sizes), rel=1e-6)
    assert m.evaluate(Data(items), steps=2, verbose=0) == pytest.approx(
        m.evaluate((b for b in items[:2]), verbose=0), rel=1e-7)
    same_len = [(x[:, :3], y[:, :3]) for x, y in items]
    pred = m.predict(Data([(x,) for x, _ in same_len]))
    np.testing.assert_array_equal(pred, np.concatenate([m.predict(x) for x, _ in same_len]))
    assert m.predict((x for x, _ in same_len), steps=2).shape == (6, 3, C)
    with pytest.raises(gm.errors.ShapeError, match=r"predict: output 0 has different shapes in "
                                                   r"different batches \(batch 0: \(3, 3, 3\), "
                                                   r"batch 1: \(3, 6, 3\)"):
        m.predict(x for x, _ in items)
    with pytest.raises(ConfigError, match="evaluate: sample_weight must be None when x is a "
                                          "PyDataset"):
        m.evaluate(Data(items), sample_weight=np.ones(3))


def test_predict_and_evaluate_verbose_lines(capsys):
    items = _batches(2)
    m = _model()
    m.predict(np.ones((5, 4), np.int32), batch_size=2, verbose=1)
    out = capsys.readouterr().out
    assert re.fullmatch(r"3/3 - \d+s - \d+(us|ms|s)/step\n", out)
    m.evaluate(Data(items))  # verbose="auto" is 1, as in Keras
    out = capsys.readouterr().out
    assert re.fullmatch(r"2/2 - \d+s - \d+(us|ms|s)/step - loss: \S+ - accuracy: \S+\n", out)
    m.predict(np.ones((5, 4), np.int32), verbose=0)
    m.fit(Data(items), validation_data=Data(items), epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_a_fixed_batch_size_is_checked_per_batch_before_anything_runs():
    x = gm.Input(batch_shape=(4, 3), name="fixed")
    model = gm.Model(x, gm.Dense(2)(x))
    model.compile("sgd", "mse")
    xs, ys = np.ones((8, 3), np.float32), np.zeros((8, 2), np.float32)
    assert model.predict(xs, batch_size=4).shape == (8, 2)  # 8 samples, batches of 4
    model.fit(xs, ys, batch_size=4, epochs=1, verbose=0)
    before = model.get_weights()
    with pytest.raises(gm.errors.ShapeError) as e:
        model.fit(xs[:6], ys[:6], batch_size=4, verbose=0)
    assert str(e.value) == ("fit: input 'fixed' has a fixed batch size of 4, but 6 samples "
                            "in batches of 4 give batches of [2, 4]; use batch_size=4 with a "
                            "multiple of 4 samples, or a batch size of None in the Input")
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
