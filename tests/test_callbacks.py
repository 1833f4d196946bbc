"""fit's callbacks and display: History, EarlyStopping, ModelCheckpoint, verbose levels."""
import re
import sys

import numpy as np
import pytest

import graphmask as gm
from graphmask import Dense, EarlyStopping, Input, Model, ModelCheckpoint
from graphmask.errors import ConfigError
from graphmask.training.callbacks import Callback

X = np.linspace(-1, 1, 64, dtype=np.float32).reshape(32, 2)
Y = (X @ np.array([[2.0], [-1.0]], np.float32)) + 0.5


def _model(lr=0.1):
    x = Input(shape=(2,))
    m = Model(x, Dense(1)(x))
    m.compile(optimizer=gm.optimizers.SGD(learning_rate=lr), loss="mse", metrics=["mae"])
    return m


def test_history_has_keras_keys_per_epoch():
    h = _model().fit(X, Y, epochs=3, batch_size=8, validation_split=0.25, verbose=0)
    assert sorted(h.history) == ["loss", "mae", "val_loss", "val_mae"]
    assert all(len(v) == 3 for v in h.history.values())
    assert h.epoch == [0, 1, 2]
    assert h.history["loss"][2] < h.history["loss"][0]


class _Record(Callback):
    def __init__(self):
        self.events = []

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch", epoch, round(logs["loss"], 6)))


def test_early_stopping_stops_and_restores_best_weights():
    m = _model(lr=3.0)  # too large: the loss grows from the first epoch on
    rec = _Record()
    stop = EarlyStopping(monitor="loss", patience=2, restore_best_weights=True)
    weights_after = {}

    class Snap(Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights_after[epoch] = (logs["loss"], self.model.get_weights())

    h = m.fit(X, Y, epochs=20, batch_size=32, shuffle=False, verbose=0,
              callbacks=[rec, Snap(), stop])
    n = len(h.history["loss"])
    assert n < 20 and stop.stopped_epoch == n - 1
    best_epoch = int(np.argmin(h.history["loss"]))
    assert n == best_epoch + 3  # patience 2: two epochs without improvement, then stop
    for a, b in zip(m.get_weights(), weights_after[best_epoch][1]):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_unknown_monitor_is_a_clear_error():
    with pytest.raises(ConfigError, match="monitor 'val_acc' is not among"):
        _model().fit(X, Y, epochs=2, verbose=0, callbacks=[EarlyStopping("val_acc")])


def test_model_checkpoint_best_only(tmp_path):
    m = _model()
    path = str(tmp_path / "ckpt-{epoch:02d}.gmz")
    m.fit(X, Y, epochs=4, batch_size=8, validation_split=0.25, verbose=0,
          callbacks=[ModelCheckpoint(path, monitor="val_loss", save_best_only=True)])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files and files[0] == "ckpt-01.gmz"
    last = gm.load_model(tmp_path / files[-1])
    assert last.predict(X).shape == (32, 1)


def test_verbose_levels(capsys, monkeypatch):
    m = _model()
    m.fit(X, Y, epochs=2, batch_size=8, verbose=0)
    assert capsys.readouterr().out == ""
    m.fit(X, Y, epochs=2, batch_size=8, verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln[:9] for ln in lines[::2]] == ["Epoch 1/2", "Epoch 2/2"]
    # Keras's verbose=2 line: steps, epoch time, time per step, the logs
    assert re.fullmatch(r"4/4 - \d+s - \d+(us|ms|s)/step - loss: \S+ - mae: \S+", lines[1])
    assert len(lines) == 4
    # verbose=1 when stdout is not a terminal (a log): the same line, no bar redrawn
    m.fit(X, Y, epochs=1, batch_size=8, verbose=1)
    out = capsys.readouterr().out
    assert re.fullmatch(r"Epoch 1/1\n4/4 - \d+s - \d+(us|ms|s)/step - loss: \S+ - mae: \S+\n",
                        out)
    # on a terminal: a bar with samples per second, then the summary line
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    m.fit(X, Y, epochs=1, batch_size=8, verbose=1)
    out = capsys.readouterr().out
    assert "samples_per_s" in out and "4/4" in out and "loss" in out


# ---- the Keras callbacks added later --------------------------------------------------------
from graphmask.callbacks import (  # noqa: E402
    BackupAndRestore,
    CSVLogger,
    LambdaCallback,
    LearningRateScheduler,
    ReduceLROnPlateau,
    TerminateOnNaN,
)


def test_early_stopping_prints_keras_messages_and_restores_without_stopping(capsys):
    m = _model(lr=3.0)
    stop = EarlyStopping(monitor="loss", patience=1, restore_best_weights=True, verbose=1)
    h = m.fit(X, Y, epochs=20, batch_size=32, shuffle=False, verbose=0, callbacks=[stop])
    out = capsys.readouterr().out.splitlines()
    best = int(np.argmin(h.history["loss"]))
    assert out == [f"Epoch {len(h.epoch)}: early stopping",
                   f"Restoring model weights from the end of the best epoch: {best + 1}."]
    # as Keras 3: the best weights come back even when training was not stopped early
    m = _model(lr=0.05)
    snaps = {}
    rec = LambdaCallback(on_epoch_end=lambda e, logs: snaps.update({e: m.get_weights()}))
    h = m.fit(X, Y, epochs=3, batch_size=8, shuffle=False, verbose=0,
              callbacks=[rec, EarlyStopping(monitor="loss", patience=5,
                                            restore_best_weights=True)])
    best = int(np.argmin(h.history["loss"]))
    for a, b in zip(m.get_weights(), snaps[best]):
        np.testing.assert_array_equal(a, b)


def test_reduce_lr_on_plateau_as_keras(capsys):
    m = _model(lr=0.5)
    losses = iter([1.0, 0.9, 0.95, 0.96, 0.97, 0.80, 0.85, 0.86])

    class Fake(gm.callbacks.Callback):  # feed a known monitored series
        def on_epoch_end(self, epoch, logs=None):
            logs["fake"] = next(losses)

    cb = ReduceLROnPlateau(monitor="fake", factor=0.5, patience=2, cooldown=1, min_lr=0.1,
                           verbose=1)
    h = m.fit(X, Y, epochs=8, batch_size=32, verbose=0, callbacks=[Fake(), cb])
    # epochs 3-4 stall -> 0.25 after epoch 4; cooldown epoch 5; 0.80 improves; 7-8 stall
    # -> 0.125 after epoch 8 (not below min_lr 0.1)
    assert h.history["learning_rate"] == [0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]
    assert m.optimizer.learning_rate == 0.125
    out = capsys.readouterr().out
    assert "\nEpoch 4: ReduceLROnPlateau reducing learning rate to 0.25.\n" in out
    assert "\nEpoch 8: ReduceLROnPlateau reducing learning rate to 0.125.\n" in out
    with pytest.raises(ConfigError, match=r"ReduceLROnPlateau: factor must be in \(0, 1\)"):
        ReduceLROnPlateau(factor=1.0)


def test_learning_rate_scheduler_sets_and_logs_the_rate():
    m = _model(lr=0.1)
    seen = []
    sched = LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr)
    rec = LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(m.optimizer.learning_rate))
    h = m.fit(X, Y, epochs=3, verbose=0, callbacks=[sched, rec])
    assert seen == [float(np.float32(0.1)), float(np.float32(0.1)) * 0.5,
                    float(np.float32(float(np.float32(0.1)) * 0.5)) * 0.5]
    assert h.history["learning_rate"] == [float(np.float32(v)) for v in seen]
    one_arg = LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))
    m.fit(X, Y, epochs=2, verbose=0, callbacks=[one_arg])
    assert m.optimizer.learning_rate == 0.02
    with pytest.raises(ConfigError, match=r"schedule\(0\) must return a positive finite "
                                          r"float, got -1"):
        m.fit(X, Y, epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda e: -1)])
    s = _model()
    s.compile(gm.optimizers.SGD(gm.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5)), "mse")
    with pytest.raises(ConfigError, match="LearningRateScheduler: the optimizer's learning "
                                          "rate is the schedule"):
        s.fit(X, Y, verbose=0, callbacks=[LearningRateScheduler(lambda e: 0.1)])


def test_csv_logger_writes_keras_rows(tmp_path):
    path = tmp_path / "log.csv"
    m = _model()
    h = m.fit(X, Y, epochs=2, batch_size=8, validation_split=0.25, verbose=0,
              callbacks=[CSVLogger(path)])
    rows = path.read_text().splitlines()
    assert rows[0] == "epoch,loss,mae,val_loss,val_mae"
    assert rows[1] == ",".join(["0"] + [str(h.history[k][0]) for k in
                                        ("loss", "mae", "val_loss", "val_mae")])
    m.fit(X, Y, epochs=1, verbose=0, callbacks=[CSVLogger(path, append=True, separator=",")])
    assert len(path.read_text().splitlines()) == 4  # no second header
    m.fit(X, Y, epochs=1, verbose=0, callbacks=[CSVLogger(path, separator=";")])
    assert path.read_text().splitlines()[0] == "epoch;loss;mae"


def test_terminate_on_nan_stops_before_the_bad_step(capsys):
    m = _model(lr=0.1)
    x = X.copy()
    gm.training.data.ALLOW_NONFINITE = True
    try:
        x[20, 0] = np.inf  # the third batch of 8 (no shuffle) gives an infinite loss
        before = {}
        rec = LambdaCallback(on_train_batch_end=lambda b, logs: before.update(
            {b: m.get_weights()}))
        h = m.fit(x, Y, epochs=3, batch_size=8, shuffle=False, verbose=0,
                  callbacks=[rec, TerminateOnNaN()])
    finally:
        gm.training.data.ALLOW_NONFINITE = False
    assert "Batch 2: Invalid loss, terminating training" in capsys.readouterr().out
    assert h.epoch == [0] and np.isfinite(h.history["loss"][0])
    for a, b in zip(m.get_weights(), before[1]):  # the bad step was never applied
        np.testing.assert_array_equal(a, b)
    with pytest.raises(gm.errors.NumericalError, match="fit: epoch 1, step 3"):
        gm.training.data.ALLOW_NONFINITE = True
        try:
            _model().fit(x, Y, epochs=1, batch_size=8, shuffle=False, verbose=0)
        finally:
            gm.training.data.ALLOW_NONFINITE = False


def test_lambda_callback_hooks_and_errors():
    calls = []
    cb = LambdaCallback(on_train_begin=lambda logs: calls.append("begin"),
                        on_train_batch_end=lambda b, logs: calls.append(b),
                        on_train_end=lambda logs: calls.append("end"))
    _model().fit(X, Y, epochs=1, batch_size=16, verbose=0, callbacks=[cb])
    assert calls == ["begin", 0, 1, "end"]
    with pytest.raises(ConfigError, match="LambdaCallback: unknown hook 'on_batch'"):
        LambdaCallback(on_batch=print)


def test_backup_and_restore_resumes_after_an_interruption(tmp_path):
    gm.set_random_seed(0)
    ref = _model(lr=0.05)
    ref.compile(gm.optimizers.Adam(0.05), "mse")
    w0 = ref.get_weights()
    ref.fit(X, Y, epochs=4, batch_size=8, shuffle=False, verbose=0)

    class Crash(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    m = _model()
    m.compile(gm.optimizers.Adam(0.05), "mse")
    m.set_weights(w0)
    backup = BackupAndRestore(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted"):
        m.fit(X, Y, epochs=4, batch_size=8, shuffle=False, verbose=0,
              callbacks=[backup, Crash()])
    fresh = _model()  # a new process: new model and optimizer, same code
    fresh.compile(gm.optimizers.Adam(0.05), "mse")
    h = fresh.fit(X, Y, epochs=4, batch_size=8, shuffle=False, verbose=0, callbacks=[backup])
    assert h.epoch == [2, 3]  # the backup of epoch 1 ran before the crash (callback order)
    assert fresh.optimizer.iterations == ref.optimizer.iterations
    for a, b in zip(fresh.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not any((tmp_path / "backup").iterdir())  # deleted after a normal end


def test_metrics_with_several_thresholds_in_the_display_and_the_csv(tmp_path, capsys):
    m = _model()
    m.compile(gm.optimizers.SGD(0.1), "mse",
              metrics=[gm.metrics.Recall(thresholds=[0.0, 1.0], name="rec")])
    y = (Y > 0).astype(np.float32)
    h = m.fit(X, y, epochs=1, batch_size=8, verbose=2, callbacks=[CSVLogger(tmp_path / "l.csv")])
    rec = h.history["rec"][0]
    assert rec.shape == (2,)
    assert f" - rec: {np.mean(rec):.4f}" in capsys.readouterr().out  # the mean, as Keras shows
    row = (tmp_path / "l.csv").read_text().splitlines()[1]
    assert row.endswith(f'"""[{str(rec[0])}, {str(rec[1])}]"""')  # Keras's cell


def test_evaluate_and_predict_call_their_hooks():
    m = _model()
    calls = []
    cb = LambdaCallback(on_test_begin=lambda logs: calls.append("test_begin"),
                        on_test_batch_end=lambda b, logs: calls.append(("test", b,
                                                                        sorted(logs))),
                        on_test_end=lambda logs: calls.append(("test_end", sorted(logs))),
                        on_predict_batch_end=lambda b, logs: calls.append(("predict", b)),
                        on_predict_end=lambda logs: calls.append("predict_end"))
    m.evaluate(X, Y, batch_size=16, verbose=0, callbacks=[cb])
    m.predict(X, batch_size=16, callbacks=[cb])
    assert calls == ["test_begin", ("test", 0, ["loss", "mae"]), ("test", 1, ["loss", "mae"]),
                     ("test_end", ["loss", "mae"]), ("predict", 0), ("predict", 1),
                     "predict_end"]
