"""Workers: thread pinning, a worker that raises, argument errors, lost workers.

The lost-worker cases come last in the session (this module runs after the others), so
the nanny restarts the killed worker while the cluster shuts down, not while later tests
wait for it."""
import os
import signal

import numpy as np
import pytest

import graphmask as gm
from graphmask.errors import ConfigError, IdRangeError
from tests.distributed.models import lstm_model, targets, uneven_batch

pytestmark = pytest.mark.timeout(180)


class _AfterFirstStep(gm.Callback):
    def __init__(self, action):
        self.action, self.done = action, False

    def on_train_batch_end(self, batch, logs=None):
        if not self.done:
            self.done = True
            self.action()


def _fit_with(strategy, action):
    ids = np.concatenate([uneven_batch(1), uneven_batch(2)])
    y = targets(ids)[0]
    local, dist = lstm_model(), lstm_model()
    h1 = local.fit(ids, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    h2 = dist.fit(ids, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
                  callbacks=[_AfterFirstStep(action)], distribute=strategy)
    for a, b in zip(local.get_weights(), dist.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-12)


def test_workers_run_numba_and_blas_on_one_thread(client):
    from graphmask.distribute.worker import thread_report
    client.wait_for_workers(2, timeout=120)
    reports = client.run(thread_report)
    assert len(reports) == 2 and len({r["pid"] for r in reports.values()}) == 2
    for r in reports.values():
        assert r["numba"] == 1 and r["numba_pool"] == 1
        assert r["blas"] and set(r["blas"]) == {1}


def test_a_worker_error_is_the_local_error_and_changes_nothing(strategy):
    model = lstm_model()
    ids = uneven_batch()
    ids[6, 0] = 99  # in the second shard: its worker sees it as sample 2
    y = targets(ids)[0]
    xs, ys, sws = [ids], [y], [np.ones((8, 10))]
    with pytest.raises(IdRangeError) as local:
        type(model)._train_step(model, xs, ys, sws)
    before, iters = model.get_weights(), model.optimizer.iterations
    with strategy._bound(model), pytest.raises(IdRangeError) as dist:
        model._train_step(xs, ys, sws)
    assert str(dist.value) == str(local.value)
    assert "sample 6, position 0" in str(dist.value)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.iterations == iters


def test_bad_arguments_are_config_errors_before_anything_runs(client):
    from graphmask.distribute import DaskStrategy
    with pytest.raises(ConfigError, match=r"DaskStrategy: client must be a "
                                          r"distributed.Client, got object"):
        DaskStrategy(object())
    with pytest.raises(ConfigError, match=r"DaskStrategy: n_shards must be a positive int, "
                                          r"got 0"):
        DaskStrategy(client, n_shards=0)
    with pytest.raises(ConfigError, match=r"threads_per_shard must be a positive int"):
        DaskStrategy(client, threads_per_shard=True)
    model = lstm_model()
    before = model.get_weights()
    ids = uneven_batch()
    with pytest.raises(ConfigError, match=r"fit: distribute must be a "
                                          r"graphmask.distribute.DaskStrategy or None, "
                                          r"got 'dask'"):
        model.fit(ids, targets(ids)[0], distribute="dask")
    with pytest.raises(ConfigError, match=r"predict: distribute must be"):
        model.predict(ids, distribute=client)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_stateful_model_is_refused_before_anything_runs(strategy):
    import graphmask as gm
    x = gm.Input(batch_shape=(4, None), dtype="int32")
    h = gm.GRU(3, stateful=True, name="carry")(gm.Embedding(9, 2, mask_zero=True)(x))
    model = gm.Model(x, gm.Dense(1)(h))
    model.compile(optimizer="sgd", loss="mse")
    ids = np.array([[1, 2, 0], [3, 0, 0], [4, 5, 6], [7, 0, 0]], "int32")
    for method, args in (("fit", (ids, np.zeros((4, 1), "float32"))),
                         ("evaluate", (ids, np.zeros((4, 1), "float32"))),
                         ("predict", (ids,))):
        with pytest.raises(ConfigError, match=rf"{method}: layer 'carry' is stateful; its "
                                              rf"state is carried batch to batch"):
            getattr(model, method)(*args, distribute=strategy)
    assert model.optimizer.iterations == 0
    np.testing.assert_array_equal(model.get_layer("carry").states[0], 0)


def test_a_non_finite_shard_is_the_local_numerical_error(strategy, monkeypatch):
    import graphmask.training.data as data
    monkeypatch.setattr(data, "ALLOW_NONFINITE", True)
    ids = uneven_batch()
    y = targets(ids)[0]
    y[5, 0, 1] = np.nan  # a kept position of the second shard
    errors = []
    for dist in (None, strategy):
        model = lstm_model()
        before = model.get_weights()
        with pytest.raises(gm.errors.NumericalError) as e:
            model.fit(ids, y, batch_size=8, verbose=0, distribute=dist)
        errors.append(str(e.value))
        for a, b in zip(before, model.get_weights()):
            np.testing.assert_array_equal(a, b)
        assert model.optimizer.iterations == 0
    assert errors[0] == errors[1]
    assert errors[0].startswith("fit: epoch 1, step 1: the loss is nan")


def test_a_worker_killed_between_steps(client, strategy):
    """Its process dies after step 1: the next steps run on the other worker (the nanny
    restarts the dead one meanwhile) and the result is one-process training's."""
    client.wait_for_workers(2, timeout=120)
    pid = client.run(os.getpid)[sorted(client.scheduler_info()["workers"])[0]]
    _fit_with(strategy, lambda: os.kill(pid, signal.SIGKILL))
    assert strategy.stats["steps"] == 4
    assert pid not in client.run(os.getpid).values()


@pytest.mark.slow
def test_a_worker_restarted_between_steps(client, strategy):
    client.wait_for_workers(2, timeout=120)
    first = sorted(client.scheduler_info()["workers"])[0]
    _fit_with(strategy, lambda: client.restart_workers([first]))
    assert strategy.stats["steps"] == 4


@pytest.mark.slow
def test_every_worker_killed_between_steps_the_step_is_resent(client, strategy):
    """Killing both processes loses the scattered program and weights: the driver sends
    them again and recomputes the step."""
    client.wait_for_workers(2, timeout=120)
    pids = client.run(os.getpid)

    def kill():
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
    _fit_with(strategy, kill)
    assert strategy.stats["resent"] >= 1
