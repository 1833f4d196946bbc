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
    assert re.fullmatch(r"4/4 - \d+s - \d+(us|ms|s)/step - loss: \S+ - mae: \S+\n", out)
    # on a terminal: a bar with samples per second, then the summary line
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    m.fit(X, Y, epochs=1, batch_size=8, verbose=1)
    out = capsys.readouterr().out
    assert "samples_per_s" in out and "4/4" in out and "loss" in out
