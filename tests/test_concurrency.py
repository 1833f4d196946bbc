"""Several threads calling predict on one model get the sequential results."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from graphmask import LSTM, Dense, Embedding, Input, Model


def test_concurrent_predict_matches_sequential():
    x = Input(shape=(30,), dtype="int32")
    h = LSTM(32, return_sequences=True)(Embedding(50, 16, mask_zero=True)(x))
    m = Model(x, Dense(8)(LSTM(16)(h)))
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(8):
        ids = rng.integers(1, 50, size=(24, 30))
        for row, n in zip(ids, rng.integers(0, 31, size=24)):
            row[n:] = 0
        batches.append(ids)
    expected = [m.predict(b) for b in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            got = list(pool.map(m.predict, batches))
            for e, g in zip(expected, got):
                np.testing.assert_array_equal(g, e)


def test_clearing_workspaces_while_threads_predict():
    """clear_workspaces() (and collecting other models) while threads predict: a running
    call keeps its buffer, the next allocates afresh, every result stays exact."""
    import gc
    import threading

    import graphmask as gm

    x = Input(shape=(20,), dtype="int32")
    m = Model(x, Dense(4)(LSTM(24, return_sequences=True)(Embedding(30, 8, mask_zero=True)(x))))
    rng = np.random.default_rng(1)
    batches = []
    for _ in range(4):
        ids = rng.integers(1, 30, size=(16, 20))
        for row, n in zip(ids, rng.integers(1, 21, size=16)):
            row[n:] = 0
        batches.append(ids)
    expected = [m.predict(b) for b in batches]
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            gm.clear_workspaces()
            throwaway = Model(x, Dense(2)(Embedding(30, 2)(x)))
            del throwaway
            gc.collect()

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            for _ in range(5):
                got = list(pool.map(m.predict, batches))
                for e, g in zip(expected, got):
                    np.testing.assert_array_equal(g, e)
    finally:
        stop.set()
        churner.join()
