"""The LSTM's per-thread scratch buffers: capped, reused, dropped when idle, released by
``graphmask.clear_workspaces()``, when their thread ends and when a model is collected."""
from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

import graphmask as gm
from graphmask.kernels import lstm as K

F32 = np.dtype(np.float32)


@pytest.fixture(autouse=True)
def _empty():
    K.clear_workspaces()
    yield
    K.clear_workspaces()


def lstm_model(units=8, seed=2):
    gm.set_random_seed(seed)
    x = gm.Input(shape=(6,), dtype="int32")
    h = gm.LSTM(units, return_sequences=True)(gm.Embedding(20, 5, mask_zero=True)(x))
    return gm.Model(x, gm.Dense(2)(h))


def ids(n=4, t=6):
    r = np.random.default_rng(0)
    x = r.integers(1, 20, size=(n, t))
    x[:, t - 2:] = 0
    return x


def test_size_classes_round_up_by_at_most_a_quarter():
    for n in (1, 2, 7, 8, 9, 100, 1000, 1064512, 1783984):
        c = K._size_class(n)
        assert n <= c <= max(1, n * 5 // 4 + 1)
    assert [K._size_class(n) for n in (100, 112, 113)] == [112, 112, 128]


def test_reuse_within_a_size_class_and_per_dtype():
    a = K.workspace(1000, np.float32)
    assert a.size == 1000 and a.dtype == F32
    assert np.shares_memory(a, K.workspace(1000, np.float32))
    assert np.shares_memory(a, K.workspace(600, np.float32))  # fits, not twice too big
    assert not np.shares_memory(a, K.workspace(400, np.float32))  # own (smaller) buffer
    assert K.workspace(1000, np.float64).dtype == np.float64
    assert K.workspace_bytes() == (1024 + 448) * 4 + 1024 * 8


def test_cap_on_what_a_thread_keeps(monkeypatch):
    monkeypatch.setattr(K, "WORKSPACE_MAX_BYTES", 4096)
    big = K.workspace(2000, np.float32)  # 8 KB > cap: fresh and not kept
    assert big.size == 2000 and K.workspace_bytes() == 0
    assert not np.shares_memory(big, K.workspace(2000, np.float32))
    a = K.workspace(512, np.float32)  # 2 KB each: two fit, a third evicts the oldest
    b = K.workspace(256, np.float64)
    assert K.workspace_bytes() == 4096
    c = K.workspace(500, np.int32)
    assert K.workspace_bytes() == 4096
    assert np.shares_memory(c, K.workspace(500, np.int32))
    assert np.shares_memory(b, K.workspace(256, np.float64))
    assert not np.shares_memory(a, K.workspace(512, np.float32))  # a was evicted


def test_default_cap_is_far_below_the_old_one_and_fits_w1():
    assert K.WORKSPACE_MAX_BYTES <= 32 << 20  # was 256 MB per thread and dtype
    # W1 (benchmarks/bench_lstm.py): B=32, T=100, D=64, H=128; the worst case keeps
    # every position (N = 3200): the inference and the training workspace both fit.
    N, B, D, H = 3200, 32, 64, 128
    for n in (K.forward_workspace_size(N, B, D, H), N * (4 * H + D) + B * H):
        assert K._size_class(n) * 4 <= K.WORKSPACE_MAX_BYTES


def test_unused_buffers_are_dropped(monkeypatch):
    monkeypatch.setattr(K, "WORKSPACE_IDLE_CALLS", 3)
    K.workspace(4000, np.float32)  # used once, then idle
    for _ in range(3):
        K.workspace(100, np.float32)
    assert K.workspace_bytes() == (4096 + 112) * 4  # still within 3 requests
    K.workspace(100, np.float32)
    assert K.workspace_bytes() == 112 * 4


def test_clear_releases_every_threads_buffers():
    K.workspace(1000, np.float32)
    ready, done = threading.Event(), threading.Event()

    def other():
        K.workspace(3000, np.float64)
        ready.set()
        done.wait(30)

    t = threading.Thread(target=other)
    t.start()
    try:
        assert ready.wait(30)
        assert K.workspace_bytes() == 1024 * 4 + 3072 * 8
        gm.clear_workspaces()
        assert K.workspace_bytes() == 0
    finally:
        done.set()
        t.join()


def test_a_finished_thread_releases_its_buffers():
    t = threading.Thread(target=lambda: K.workspace(3000, np.float32))
    t.start()
    t.join()
    gc.collect()
    assert K.workspace_bytes() == 0


def test_predict_uses_and_reuses_the_workspace():
    m = lstm_model()
    x = ids()
    first = m.predict(x)
    held = K.workspace_bytes()
    assert held > 0
    np.testing.assert_array_equal(m.predict(x), first)
    assert K.workspace_bytes() == held  # reused: nothing new kept
    gm.clear_workspaces()
    np.testing.assert_array_equal(m.predict(x), first)  # allocates afresh, same result
    assert K.workspace_bytes() == held


def test_training_reuses_the_workspace_and_gives_the_same_steps():
    x = ids()
    y = np.random.default_rng(1).normal(size=(4, 6, 2)).astype(np.float32)
    runs = []
    for clear_between in (False, True):
        m = lstm_model()
        m.compile(optimizer="adam", loss="mse")
        losses = []
        for _ in range(3):
            losses.append(m.train_on_batch(x, y))
            if clear_between:
                gm.clear_workspaces()
                assert K.workspace_bytes() == 0
        runs.append((losses, m.get_weights()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


def test_collecting_a_model_releases_the_workspaces():
    m = lstm_model()
    m.predict(ids())
    assert K.workspace_bytes() > 0
    del m
    gc.collect()
    assert K.workspace_bytes() == 0


def test_release_on_gc_never_waits_for_a_busy_thread():
    K.workspace(1000, np.float32)
    pool = K._local.pool
    acquired, release = threading.Event(), threading.Event()

    def hold():
        with pool.lock:
            acquired.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert acquired.wait(30)
        K.release_workspaces_on_gc()  # returns at once, leaving the busy pool alone
        assert K.workspace_bytes() == 1024 * 4
    finally:
        release.set()
        t.join()
    K.release_workspaces_on_gc()
    assert K.workspace_bytes() == 0
