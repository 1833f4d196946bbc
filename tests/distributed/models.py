"""The models and data of the distributed tests (float64, so equality is tight)."""
from __future__ import annotations

import numpy as np

import graphmask as gm

V, T = 12, 10
F64 = {"dtype": "float64"}


def lstm_model(optimizer="adam"):
    """Embedding(mask_zero) -> LSTM -> Dense, masked mse and a masked mae metric."""
    gm.clear_session()
    gm.set_random_seed(7)
    x = gm.Input((T,), dtype="int32")
    h = gm.LSTM(5, return_sequences=True, **F64)(gm.Embedding(V, 4, mask_zero=True, **F64)(x))
    m = gm.Model(x, gm.Dense(3, **F64)(h))
    opt = gm.optimizers.Adam(0.05) if optimizer == "adam" else gm.optimizers.SGD(0.1)
    m.compile(optimizer=opt, loss="mse", metrics=["mae"])
    return m


def three_loss_model():
    """Three outputs whose losses count different positions: a masked mse, a masked sparse
    crossentropy that also ignores class 0, an unmasked mse on the last state."""
    gm.clear_session()
    gm.set_random_seed(8)
    x = gm.Input((T,), dtype="int32")
    h = gm.LSTM(5, return_sequences=True, **F64)(gm.Embedding(V, 4, mask_zero=True, **F64)(x))
    seq = gm.Dense(3, name="seq", **F64)(h)
    cls = gm.Dense(4, activation="softmax", name="cls", **F64)(h)
    last = gm.Dense(2, name="last", **F64)(gm.LSTM(3, **F64)(h))
    m = gm.Model(x, [seq, cls, last])
    m.compile(optimizer=gm.optimizers.Adam(0.05),
              loss=["mse", gm.losses.SparseCategoricalCrossentropy(ignore_class=0), "mse"],
              loss_weights=[1.0, 0.5, 2.0], metrics=[[], ["accuracy"], []])
    return m


def uneven_batch(seed=0):
    """8 rows of ids: the first four keep 30 positions, the last four keep 10."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, V, size=(8, T)).astype("int32")
    for row, n in zip(ids, [10, 9, 6, 5, 4, 3, 2, 1]):
        row[n:] = 0
    return ids


def targets(ids, seed=1):
    rng = np.random.default_rng(seed)
    n = len(ids)
    return (rng.normal(size=(n, T, 3)), rng.integers(0, 4, size=(n, T)),
            rng.normal(size=(n, 2)))


def warm_up():
    """Compile every kernel these tests use into numba's cache (before workers start)."""
    ids = uneven_batch()
    seq, cls, last = targets(ids)
    for make, y in ((lstm_model, seq), (three_loss_model, [seq, cls, last])):
        m = make()
        m.fit(ids, y, batch_size=4, epochs=1, verbose=0)
        m.evaluate(ids, y, verbose=0)
        m.predict(ids)
