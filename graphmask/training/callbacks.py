"""Callbacks for ``fit``: History, EarlyStopping, ModelCheckpoint and the progress display.

The hooks and arguments follow Keras's: ``on_train_begin/end``,
``on_epoch_begin/end(epoch, logs)``, ``on_train_batch_end(step, logs)``.
"""
from __future__ import annotations

import math
import sys

import numpy as np

from graphmask.errors import ConfigError


class Callback:
    """Base class; ``self.model`` is set by ``fit`` before training begins."""

    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass


class History(Callback):
    """``history.history[name]`` is the list of per-epoch values, as in Keras."""

    def __init__(self):
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.history, self.epoch = {}, []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


class ProgressBar(Callback):
    """verbose=1: a tqdm bar per epoch with loss and throughput; verbose=2: one line."""

    def __init__(self, verbose: int, epochs: int, steps: int):
        self.verbose, self.epochs, self.steps = verbose, epochs, steps
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.verbose == 1:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.steps, desc=f"Epoch {epoch + 1}/{self.epochs}",
                            unit="batch", leave=True, file=sys.stdout, dynamic_ncols=True)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            secs = max(logs.get("seconds", 0.0), 1e-9)
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}",
                                 samples_per_s=f"{logs['samples'] / secs:.0f}")
            self.bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        text = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            print(f"  {text}", file=sys.stdout)
        elif self.verbose == 2:
            print(f"Epoch {epoch + 1}/{self.epochs} - {text}", file=sys.stdout)


class CallbackList:
    def __init__(self, callbacks, model, verbose, epochs, steps):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise ConfigError(f"fit: callbacks must be Callback instances, got {cb!r}")
        if verbose:
            self.callbacks.append(ProgressBar(verbose, epochs, steps))
        for cb in self.callbacks:
            cb.set_model(model)

    def __getattr__(self, hook):
        def call(*args):
            for cb in self.callbacks:
                getattr(cb, hook)(*args)
        return call


def _mode(monitor, mode, who):
    if mode not in ("auto", "min", "max"):
        raise ConfigError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.mode = _mode(monitor, mode, "EarlyStopping")
        self.min_delta = abs(float(min_delta)) * (1 if self.mode == "max" else -1)
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = int(start_from_epoch)
        self.stopped_epoch = 0

    def _better(self, current, reference):
        if self.mode == "max":
            return current - self.min_delta > reference
        return current - self.min_delta < reference

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_weights, self.best_epoch = 0, 0, None, 0
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            raise ConfigError(f"EarlyStopping: monitor {self.monitor!r} is not among the "
                              f"logged values {sorted(logs or {})}")
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._better(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._better(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None and self.stopped_epoch:
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (``model.save``) after each epoch, or only when ``monitor`` improves.

    ``filepath`` may contain ``{epoch}`` and log names, e.g. ``"ckpt-{epoch:02d}.gmz"``.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        if save_freq != "epoch":
            raise ConfigError(f"ModelCheckpoint: only save_freq='epoch' is supported, "
                              f"got {save_freq!r}")
        self.filepath, self.monitor, self.verbose = str(filepath), monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.mode = _mode(monitor, mode, "ModelCheckpoint")
        self.best = initial_value_threshold if initial_value_threshold is not None else (
            math.inf if self.mode == "min" else -math.inf)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None or not np.isfinite(current):
                return
            better = current < self.best if self.mode == "min" else current > self.best
            if not better:
                return
            self.best = current
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved model to {path}")
