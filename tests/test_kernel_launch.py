"""The two tiers of the recurrent drivers (graphmask/kernels/launch.py): shares of a
driver's tasks on Python threads, and ``prange`` drivers compiled in the background.
Both tiers run the same tasks, so a model's results are the same bits on either."""
import threading

import numba
import numpy as np
import pytest

import graphmask as gm
from graphmask.kernels import launch
from graphmask.kernels import lstm as K


@pytest.mark.parametrize("n, nthreads", [(1, 2), (2, 2), (5, 2), (8, 3), (7, 1), (3, 8)])
def test_run_shares_covers_every_task_once_in_contiguous_shares(n, nthreads):
    seen, threads = [], set()
    lock = threading.Lock()

    def run(a, b):
        with lock:
            seen.append((a, b))
            threads.add(threading.get_ident())

    launch.run_shares(run, n, nthreads)
    shares = sorted(seen)
    assert [t for a, b in shares for t in range(a, b)] == list(range(n))
    assert len(shares) == min(n, nthreads) and all(b > a for a, b in shares)
    # one thread per share (the caller's among them), as many as numba has threads
    assert len(threads) == min(len(shares), numba.config.NUMBA_NUM_THREADS)
    if len(shares) == 1:
        assert threads == {threading.get_ident()}


def test_run_shares_waits_for_every_share_and_reraises_a_share_error():
    done = []

    def run(a, b):
        if a > 0:
            raise ValueError(f"share {a}:{b} failed")
        done.append((a, b))

    with pytest.raises(ValueError, match="share 1:2 failed"):
        launch.run_shares(run, 2, 2)
    assert done == [(0, 1)]


def _fresh_driver():
    """A new ``prange`` kernel (not in any cache: a fresh Python function each call)."""
    def drv(out, n):
        for i in numba.prange(n):
            out[i] = 2.0 * i
    return numba.njit(parallel=True, nogil=True)(drv)


def test_tiered_compiles_the_parallel_driver_in_the_background_after_deferring():
    drv = _fresh_driver()
    out = np.zeros(4)
    with launch.deferring():
        assert not launch.tiered(drv, (out, 4))  # not compiled: use the one-thread tier
        assert not launch.tiered(drv, (out, 4))  # asked for once
        assert not drv.overloads and launch._state["thread"] is None  # held back
    launch.wait_background()
    assert drv.overloads  # compiled on the background thread
    assert launch.tiered(drv, (out, 4))
    drv(out, 4)
    assert out.tolist() == [0.0, 2.0, 4.0, 6.0]


def test_a_driver_that_fails_to_compile_in_the_background_raises_at_its_launch():
    drv = _fresh_driver()
    bad = (np.zeros(4), "four")  # a str count: typing fails
    assert not launch.tiered(drv, bad)
    launch.wait_background()
    assert not drv.overloads
    assert launch.tiered(drv, bad)  # the launch now compiles it in the caller's thread
    with pytest.raises(numba.core.errors.TypingError):
        drv(*bad)


LAYERS = {  # (layer, batch): 32 samples run by sample groups, 16 by per-step drivers
    "lstm_groups": (lambda: gm.LSTM(64, return_sequences=True), 32),
    "lstm_steps": (lambda: gm.LSTM(64, return_sequences=True), 16),
    "gru": (lambda: gm.GRU(64, return_sequences=True), 32),
    "gru_reset_before": (lambda: gm.GRU(64, return_sequences=True, reset_after=False), 32),
}


def _model(layer, B):
    gm.clear_session()
    gm.set_random_seed(3)
    rng = np.random.default_rng(0)
    T, V = 40, 200
    ids = rng.integers(1, V, (B, T)).astype("int32")
    ids[np.arange(T)[None] >= rng.integers(5, T + 1, B)[:, None]] = 0
    x = gm.Input(shape=(T,), dtype="int32")
    h = layer()(gm.Embedding(V, 16, mask_zero=True)(x))
    model = gm.Model(x, gm.Dense(3)(h))
    model.compile(optimizer="adam", loss="mse")
    y = rng.normal(size=(B, T, 3)).astype("float32")
    return model, ids, y


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                    reason="one numba thread: the one-thread drivers run either way")
@pytest.mark.parametrize("case", LAYERS)
def test_both_tiers_give_the_same_bits(case, monkeypatch):
    """predict, the loss and every gradient, once with the parallel drivers and once with
    the one-thread tier (shares on threads for the LSTM's sample groups, the one-thread
    twins for the per-step drivers)."""
    layer, B = LAYERS[case]
    model, ids, y = _model(layer, B)
    if case.startswith("lstm"):  # the GRU always runs per-step drivers
        groups = K.sample_groups(*K.lstm_schedule(ids != 0, False), B, 64)
        assert (groups is not None) == (case == "lstm_groups")
    launched = {"prange": 0, "one-thread": 0}
    real_tiered = launch.tiered

    def spy(use_prange):
        def tiered(driver, args):
            real_tiered(driver, args)
            launched["prange" if use_prange else "one-thread"] += 1
            return use_prange
        return tiered

    results = []
    for use_prange in (False, True):
        if use_prange:
            launch.wait_background()  # the parallel drivers exist now
        monkeypatch.setattr(K, "tiered", spy(use_prange))
        monkeypatch.setattr(launch, "tiered", spy(use_prange))
        pred = model.predict(ids, verbose=0)
        loss, grads = model.loss_and_gradients(ids, y)
        results.append((pred, loss, grads))
    # every launch asked: forward twice (predict, loss), backward, weight gradients
    assert launched["prange"] >= 4 and launched["one-thread"] == launched["prange"]
    (p0, l0, g0), (p1, l1, g1) = results
    np.testing.assert_array_equal(p0, p1)
    assert l0 == l1
    assert sorted(g0) == sorted(g1)
    for name in g0:
        np.testing.assert_array_equal(g0[name], g1[name], err_msg=name)
