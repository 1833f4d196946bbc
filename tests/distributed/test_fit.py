"""Distributed fit/evaluate/predict equal one-process training (2 worker processes)."""
import numpy as np
import pytest

import graphmask as gm
from tests.distributed.models import lstm_model, targets, three_loss_model, uneven_batch

pytestmark = pytest.mark.timeout(120)


def _close(a, b, rtol=1e-10):
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=1e-13)


def test_three_steps_with_uneven_shards_equal_local_training(strategy):
    ids = uneven_batch()
    y = targets(ids)[0]
    # the two shards keep 30 and 10 positions: a mean of shard means would be wrong
    assert [int(np.count_nonzero(ids[sl])) for sl in (slice(0, 4), slice(4, 8))] == [30, 10]
    local, dist = lstm_model(), lstm_model()
    h1 = local.fit(ids, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    h2 = dist.fit(ids, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
                  distribute=strategy)
    _close(local.get_weights(), dist.get_weights())
    _close(local.optimizer.get_state(), dist.optimizer.get_state())
    assert dist.optimizer.iterations == 3
    for key in ("loss", "mae"):
        np.testing.assert_allclose(h2.history[key], h1.history[key], rtol=1e-12)


def test_the_loss_is_the_global_masked_mean_not_a_mean_of_shard_means(strategy):
    ids = uneven_batch()
    y = targets(ids)[0]
    model = lstm_model()
    pred = model.predict(ids)
    sq = ((pred - y) ** 2).mean(-1)
    keep = ids != 0
    exact = sq[keep].sum() / keep.sum()
    shard_means = [sq[:4][keep[:4]].mean(), sq[4:][keep[4:]].mean()]
    got = model.evaluate(ids, y, batch_size=8, verbose=0, distribute=strategy)
    np.testing.assert_allclose(got[0], exact, rtol=1e-12)
    assert abs(np.mean(shard_means) - exact) > 1e-3 * exact


def test_several_losses_with_different_counts_equal_local_training(strategy):
    ids = uneven_batch(3)
    seq, cls, last = targets(ids, 4)
    cls[0, :3] = 0  # ignored class: the second loss keeps fewer positions than the first
    local, dist = three_loss_model(), three_loss_model()
    h1 = local.fit(ids, [seq, cls, last], batch_size=8, epochs=3, shuffle=False, verbose=0)
    h2 = dist.fit(ids, [seq, cls, last], batch_size=8, epochs=3, shuffle=False, verbose=0,
                  distribute=strategy)
    _close(local.get_weights(), dist.get_weights())
    assert sorted(h2.history) == sorted(h1.history)
    for key in h1.history:
        np.testing.assert_allclose(h2.history[key], h1.history[key], rtol=1e-12)


def test_epochs_of_several_batches_shuffled_equal_local_training(strategy):
    ids = np.concatenate([uneven_batch(5), uneven_batch(6), uneven_batch(7)[:3]])
    y = targets(ids)[0]
    local, dist = lstm_model("sgd"), lstm_model("sgd")
    gm.set_random_seed(11)
    h1 = local.fit(ids, y, batch_size=8, epochs=2, verbose=0)
    gm.set_random_seed(11)
    h2 = dist.fit(ids, y, batch_size=8, epochs=2, verbose=0, distribute=strategy)
    _close(local.get_weights(), dist.get_weights())
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-12)


def test_evaluate_and_predict_equal_local(strategy):
    ids = np.concatenate([uneven_batch(1), uneven_batch(2)[:5]])
    seq, cls, last = targets(ids)
    model = three_loss_model()
    want = model.evaluate(ids, [seq, cls, last], batch_size=6, verbose=0, return_dict=True)
    got = model.evaluate(ids, [seq, cls, last], batch_size=6, verbose=0, return_dict=True,
                         distribute=strategy)
    assert list(got) == list(want)
    np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=1e-12)
    _close(model.predict(ids, batch_size=5, distribute=strategy),
           model.predict(ids, batch_size=5), rtol=1e-14)


def test_a_batch_with_nothing_kept_changes_nothing(strategy):
    ids = uneven_batch()
    ids[:] = 0
    model = lstm_model()
    before = model.get_weights()
    hist = model.fit(ids, targets(ids)[0], batch_size=8, epochs=2, verbose=0,
                     distribute=strategy)
    assert hist.history["loss"] == [0.0, 0.0]
    _close(model.get_weights(), before, rtol=0)
    assert model.optimizer.iterations == 0


class _Batches(gm.Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append((batch, logs["loss"]))


def test_callbacks_history_early_stopping_and_validation_as_local(strategy, capsys):
    ids = np.concatenate([uneven_batch(1), uneven_batch(2)])
    y = targets(ids)[0]
    val = (uneven_batch(9), targets(uneven_batch(9), 3)[0])
    runs = []
    for dist in (None, strategy):
        model = lstm_model("sgd")
        log = _Batches()
        stop = gm.callbacks.EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0)
        hist = model.fit(ids, y, batch_size=8, epochs=5, shuffle=False, verbose=2,
                         validation_data=val, callbacks=[stop, log], distribute=dist)
        out = capsys.readouterr().out
        runs.append((hist, log.seen, stop.stopped_epoch, model.get_weights(), out))
    (h1, s1, e1, w1, o1), (h2, s2, e2, w2, o2) = runs
    assert sorted(h2.history) == ["loss", "mae", "val_loss", "val_mae"]
    assert h2.epoch == h1.epoch == [0, 1] and e2 == e1 == 1
    for key in h1.history:
        np.testing.assert_allclose(h2.history[key], h1.history[key], rtol=1e-12)
    assert [b for b, _ in s2] == [b for b, _ in s1] == [0, 1, 0, 1]
    np.testing.assert_allclose([v for _, v in s2], [v for _, v in s1], rtol=1e-11)
    _close(w1, w2)

    def shape(text):  # the progress lines without their timings
        import re
        return re.sub(r" - \d+s - [\d.]+\w+/step", "", text)
    assert shape(o2) == shape(o1) and o1.count("\n") == 4


def test_validation_split_and_sample_weight_as_local(strategy):
    ids = np.concatenate([uneven_batch(1), uneven_batch(2)])
    y = targets(ids)[0]
    w = np.linspace(0.5, 2.0, len(ids))
    runs = []
    for dist in (None, strategy):
        model = lstm_model()
        h = model.fit(ids, y, sample_weight=w, batch_size=5, epochs=2, shuffle=False,
                      validation_split=0.25, verbose=0, distribute=dist)
        runs.append((h.history, model.get_weights()))
    for key in runs[0][0]:
        np.testing.assert_allclose(runs[1][0][key], runs[0][0][key], rtol=1e-12)
    _close(runs[0][1], runs[1][1])


def test_dropout_draws_repeat_with_the_same_seed(strategy):
    """Shards draw their dropout masks from streams the driver seeds per step and shard."""
    def run():
        gm.clear_session()
        gm.set_random_seed(3)
        x = gm.Input((10,), dtype="int32")
        h = gm.Embedding(12, 4, mask_zero=True, dtype="float64")(x)
        h = gm.Dropout(0.5)(gm.LSTM(5, return_sequences=True, dtype="float64")(h))
        m = gm.Model(x, gm.Dense(3, dtype="float64")(h))
        m.compile(optimizer="sgd", loss="mse")
        ids = uneven_batch()
        m.fit(ids, targets(ids)[0], batch_size=8, epochs=2, verbose=0, distribute=strategy)
        return m.get_weights()
    first, second = run(), run()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
