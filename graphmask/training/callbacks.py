"""Callbacks for ``fit`` / ``evaluate`` / ``predict``, with Keras 3's hooks and arguments.

``History``, ``EarlyStopping``, ``ModelCheckpoint``, ``ReduceLROnPlateau``,
``LearningRateScheduler``, ``CSVLogger``, ``TerminateOnNaN``, ``LambdaCallback``,
``BackupAndRestore`` and the progress display (``ProgressBar``, added by ``verbose``).
Callbacks run in Keras's order: the user's, then History, then the progress display.
"""
from __future__ import annotations

import csv
import functools
import json
import math
import os
import sys
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext

import numpy as np

from graphmask.errors import ConfigError

HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
         "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
         "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
         "on_predict_batch_begin", "on_predict_batch_end")


class Callback:
    """Base class; ``self.model`` and ``self.params`` are set before training begins."""

    model = None
    params: dict = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
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


# ---- the progress display ------------------------------------------------------------------
COMPILING = "compiling kernels, first run only"


def _fmt_value(v) -> str:
    v = float(np.mean(v))  # a metric with several thresholds shows their mean, as Keras
    return f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"


def _fmt_step(seconds: float) -> str:
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def _fmt_eta(seconds: float) -> str:
    """Keras's ETA format: ``1:02:03`` over an hour, ``2:03`` over a minute, else ``7s``."""
    s = int(seconds)
    if seconds > 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    if seconds > 60:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s}s"


def _interactive() -> bool:
    return hasattr(sys.stdout, "isatty") and sys.stdout.isatty()


class StepTimes:
    """The durations of one pass's steps, and the time per step estimated from them.

    A step during which numba compiled a kernel is not representative (the first run on
    a machine compiles for seconds), so estimates use only the steps that did not compile;
    like Keras's progress bar, the pass's first step is left out as soon as a later clean
    step exists (it may load kernels from the cache or warm the allocator). The estimate
    is ``None`` while no clean step has finished.
    """

    def __init__(self):
        self.first = None  # (seconds, samples) of the first step if it was clean
        self.time, self.samples, self.steps = 0.0, 0, 0  # clean steps after the first
        self.count = 0

    def add(self, seconds: float, samples: int, compiled: bool) -> None:
        self.count += 1
        if compiled:
            return
        if self.count == 1:
            self.first = (seconds, samples)
        else:
            self.time, self.samples, self.steps = (self.time + seconds,
                                                   self.samples + samples, self.steps + 1)

    def _clean(self):
        if self.steps:
            return self.time, self.samples, self.steps
        if self.first is not None:
            return self.first[0], self.first[1], 1
        return None

    def per_step(self):
        """Seconds per step (``None`` until a step without compilation has finished)."""
        clean = self._clean()
        return None if clean is None else clean[0] / clean[2]

    def samples_per_s(self):
        """Samples per second over the clean steps (``None`` as ``per_step``)."""
        clean = self._clean()
        return None if clean is None else clean[1] / max(clean[0], 1e-9)


@functools.cache
def _listener_class():
    """numba's ``Listener`` subclass for :meth:`ProgressBar.watching` (numba is imported
    only when a progress display runs a step)."""
    from numba.core import event

    from graphmask.kernels.launch import BACKGROUND_THREAD

    class CompileWatch(event.Listener):
        """Calls ``started()`` once, when the thread that installed it (the step's) or one
        of the runtime's helper threads (named ``graphmask-*``, running the other half of
        side-by-side steps or a share of a launch) starts compiling; other threads of the
        user's are not heard, nor the thread that compiles the parallel drivers in the
        background (no step waits for it: ``kernels/launch.py``)."""

        def __init__(self, started):
            self.started, self.thread, self.compiled = started, threading.get_ident(), False

        def on_start(self, ev):
            if self.compiled:
                return
            name = threading.current_thread().name
            if threading.get_ident() == self.thread or (
                    name.startswith("graphmask") and name != BACKGROUND_THREAD):
                self.compiled = True
                self.started()

        def on_end(self, ev):
            pass

    return CompileWatch


class ProgressBar(Callback):
    """What ``verbose`` shows. On a terminal, ``verbose=1`` draws a bar per epoch (steps,
    the estimated time left, the time per step, samples per second, the running loss);
    when stdout is not a terminal (a log file, a CI job) it prints one line per epoch
    instead of redrawing. ``verbose=2`` prints one line per epoch:
    ``"4/4 - 0s - 3ms/step - loss: 0.1234"`` (steps, epoch time, time per step, the
    epoch's logs). ``evaluate`` and ``predict`` show the same for their pass.

    While numba compiles kernels during a step (the first run on a machine, or a new
    dtype), the display says ``"compiling kernels, first run only"``: the bar shows it
    while the step compiles, a log gets the line once. Steps that compiled are left out
    of the time per step, the samples per second and the time left (see
    :class:`StepTimes`); compilation is detected from numba's ``numba:compile`` events,
    listened to only while a step runs (:meth:`watching`).
    """

    clock = staticmethod(time.perf_counter)  # seconds (a test may substitute its own)
    refresh = 0.05  # the least seconds between two redraws of the bar (Keras's interval)

    def __init__(self, verbose: int, epochs: int, steps):
        self.verbose, self.epochs, self.steps = verbose, epochs, steps
        self.bar, self.in_fit, self.told = None, False, False
        self.compiling = False  # a compilation started during the running step

    @contextmanager
    def watching(self):
        """Listen for numba compilations while the body (one step) runs."""
        from numba.core import event
        self.compiling = False
        watch = _listener_class()(self._compile_started)
        with event.install_listener("numba:compile", watch):
            yield
        if self.bar is not None and self.compiling:
            self.bar.set_description_str("", refresh=False)

    def _compile_started(self):
        self.compiling = True
        if self.bar is not None:
            self.bar.set_description_str(COMPILING, refresh=True)
        elif not self.told:
            print(COMPILING, file=sys.stdout, flush=True)
        self.told = True

    def _start(self):
        self.t0 = self.last = self.clock()
        self.seen, self.times = 0, StepTimes()
        if self.verbose == 1 and _interactive():
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.steps, unit="step", leave=False, file=sys.stdout,
                            dynamic_ncols=True, mininterval=self.refresh,
                            bar_format="{n_fmt}/{total_fmt} |{bar:20}| {desc}")

    def _step(self, batch, logs, size):
        now = self.clock()
        self.times.add(now - self.last, size or 0, self.compiling)
        self.seen, self.last = batch + 1, now
        if self.bar is not None:
            self.bar.set_description_str(self._status(logs), refresh=False)
            self.bar.update(1)  # tqdm redraws at most every `refresh` seconds
            if self.seen == 1:
                self.bar.refresh()  # the first step's figures at once

    def _status(self, logs) -> str:
        """The bar's text: time left, time per step, samples per second, the logs."""
        parts = []
        per = self.times.per_step()
        if per is not None:
            if self.steps:
                parts.append(f"ETA {_fmt_eta(per * max(self.steps - self.seen, 0))}")
            parts.append(_fmt_step(per))
            parts.append(f"samples_per_s: {self.times.samples_per_s():.0f}")
        parts += [f"{k}: {_fmt_value(v)}" for k, v in (logs or {}).items() if k != "outputs"]
        return " - ".join(parts)

    def _finish(self, logs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        secs = self.clock() - self.t0
        steps = self.steps or self.seen
        width = len(str(steps))
        per = self.times.per_step()
        if per is None:  # every step compiled: the plain mean
            per = secs / self.seen if self.seen else 0.0
        line = f"{self.seen:>{width}}/{steps} - {secs:.0f}s - {_fmt_step(per)}"
        for k, v in (logs or {}).items():
            line += f" - {k}: {_fmt_value(v)}"
        print(line, file=sys.stdout, flush=True)

    def on_train_begin(self, logs=None):
        self.in_fit = True

    def on_epoch_begin(self, epoch, logs=None):
        print(f"Epoch {epoch + 1}/{self.epochs}", file=sys.stdout)  # Keras: only if epochs > 1
        self._start()

    def on_train_batch_end(self, batch, logs=None, size=None):
        self._step(batch, logs, size)

    def on_epoch_end(self, epoch, logs=None):
        self._finish(logs)

    def on_test_begin(self, logs=None):
        if not self.in_fit:
            self._start()

    def on_test_batch_end(self, batch, logs=None, size=None):
        if not self.in_fit:
            self._step(batch, logs, size)

    def on_test_end(self, logs=None):
        if not self.in_fit:
            self._finish(logs)

    def on_predict_begin(self, logs=None):
        self._start()

    def on_predict_batch_end(self, batch, logs=None, size=None):
        self._step(batch, None, size)

    def on_predict_end(self, logs=None):
        self._finish(None)


class CallbackList:
    """The callbacks of one ``fit`` / ``evaluate`` / ``predict`` call, in Keras's order."""

    def __init__(self, callbacks, model, verbose, epochs, steps, history=None):
        callbacks = [] if callbacks is None else callbacks
        if not isinstance(callbacks, (list, tuple)):
            raise ConfigError(f"callbacks must be a list of Callback instances, got "
                              f"{type(callbacks).__name__}")
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise ConfigError(f"callbacks must be Callback instances, got {cb!r}")
        if history is not None:
            self.callbacks.append(history)
        self.progress = ProgressBar(verbose, epochs, steps) if verbose else None
        if self.progress is not None:
            self.callbacks.append(self.progress)
        params = {"verbose": verbose, "epochs": epochs, "steps": steps}
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)

    def watching(self):
        """A context for one step: the progress display (if any) listens for kernel
        compilations while it runs (see :meth:`ProgressBar.watching`)."""
        return self.progress.watching() if self.progress is not None else nullcontext()

    def handles_nan(self) -> bool:
        return any(isinstance(cb, TerminateOnNaN) for cb in self.callbacks)

    def _call(self, hook, *args):
        # every hook gets its logs argument (None when there are none), as in Keras
        want = 2 if ("epoch" in hook or "batch" in hook) else 1
        args = args + (None,) * (want - len(args))
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def _batch_end(self, hook, step, logs, size):
        for cb in self.callbacks:
            if cb is self.progress:
                getattr(cb, hook)(step, logs, size=size)
            else:
                getattr(cb, hook)(step, logs)

    def on_train_batch_end(self, step, logs=None, size=None):
        self._batch_end("on_train_batch_end", step, logs, size)

    def on_test_batch_end(self, step, logs=None, size=None):
        self._batch_end("on_test_batch_end", step, logs, size)

    def on_predict_batch_end(self, step, logs=None, size=None):
        self._batch_end("on_predict_batch_end", step, logs, size)

    def __getattr__(self, hook):
        if hook not in HOOKS:
            raise AttributeError(hook)

        def call(*args):
            self._call(hook, *args)
        return call


# ---- monitoring -----------------------------------------------------------------------------
_UP = ("acc", "auc", "precision", "recall")


def _mode(monitor, mode, who):
    if mode not in ("auto", "min", "max"):
        raise ConfigError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        name = str(monitor).removeprefix("val_")
        mode = "max" if any(k in name for k in _UP) else "min"
    return mode


class _Monitor(Callback):
    """Keras's MonitorCallback: is ``current`` better than ``reference`` by min_delta."""

    def __init__(self, monitor, mode, min_delta, who):
        self.monitor = monitor
        self.mode = _mode(monitor, mode, who)
        delta = _nonneg(who, "min_delta", min_delta, float)
        self.min_delta = abs(delta) * (1 if self.mode == "max" else -1)

    def _better(self, current, reference):
        if reference is None:
            return True
        if self.mode == "max":
            return current - self.min_delta > reference
        return current - self.min_delta < reference


def _nonneg(who, arg, value, kind=int):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not math.isfinite(value) or value < 0 or (kind is int and value != int(value)):
        what = "a non-negative int" if kind is int else "a finite number >= 0"
        raise ConfigError(f"{who}: {arg} must be {what}, got {value!r}")
    return kind(value)


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    As Keras 3: with ``restore_best_weights`` the weights of the best epoch are restored
    when training ends (stopped early or not), and ``verbose`` prints
    ``"Restoring model weights from the end of the best epoch: N."``.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta, "EarlyStopping")
        self.patience = _nonneg("EarlyStopping", "patience", patience)
        self.verbose = verbose
        self.baseline, self.restore_best_weights = baseline, bool(restore_best_weights)
        self.start_from_epoch = _nonneg("EarlyStopping", "start_from_epoch", start_from_epoch)
        self.stopped_epoch = 0

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_weights, self.best_epoch = 0, 0, None, 0
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            raise ConfigError(f"EarlyStopping: monitor {self.monitor!r} is not among the "
                              f"logged values {sorted(logs or {})}")
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
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
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
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


# ---- learning rate -------------------------------------------------------------------------
def _current_lr(model) -> float:
    """The optimizer's learning rate as Keras reports it (its float32 value)."""
    return float(np.float32(model.optimizer.current_learning_rate()))


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by ``factor`` when ``monitor`` stalls for ``patience``
    epochs (Keras 3's rule: never below ``min_lr``, then ``cooldown`` epochs of rest).
    Adds ``learning_rate`` to the epoch logs."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        who = "ReduceLROnPlateau"
        super().__init__(monitor, mode, min_delta, who)
        factor = _nonneg(who, "factor", factor, float)
        if not 0 < factor < 1:
            raise ConfigError(f"{who}: factor must be in (0, 1), got {factor!r}")
        self.factor, self.min_lr = factor, _nonneg(who, "min_lr", min_lr, float)
        self.patience, self.cooldown = _nonneg(who, "patience", patience), \
            _nonneg(who, "cooldown", cooldown)
        self.verbose = verbose
        self._reset()

    def _reset(self):
        self.best, self.cooldown_counter, self.wait = None, 0, 0

    def on_train_begin(self, logs=None):
        self._reset()
        self.model.optimizer.learning_rate_settable("ReduceLROnPlateau")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = _current_lr(self.model)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"ReduceLROnPlateau: monitor {self.monitor!r} is not among the "
                          f"logged values {sorted(logs)}", stacklevel=2)
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = _current_lr(self.model)
                if old > np.float32(self.min_lr):
                    new = max(old * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new
                    if self.verbose:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning "
                              f"rate to {new}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch, lr)`` (or
    ``schedule(epoch)``), as Keras; adds ``learning_rate`` to the epoch logs."""

    def __init__(self, schedule, verbose=0):
        if not callable(schedule):
            raise ConfigError(f"LearningRateScheduler: schedule must be callable, got "
                              f"{schedule!r}")
        self.schedule, self.verbose = schedule, verbose

    def on_train_begin(self, logs=None):
        self.model.optimizer.learning_rate_settable("LearningRateScheduler")

    def on_epoch_begin(self, epoch, logs=None):
        lr = _current_lr(self.model)
        try:
            new = self.schedule(epoch, lr)
        except TypeError:  # a schedule of the epoch only, as Keras allows
            new = self.schedule(epoch)
        if isinstance(new, bool) or not isinstance(new, (int, float, np.floating)) \
                or not math.isfinite(new) or new <= 0:
            raise ConfigError(f"LearningRateScheduler: schedule({epoch}) must return a "
                              f"positive finite float, got {new!r}")
        self.model.optimizer.learning_rate = float(new)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                  f"{float(new)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _current_lr(self.model)


# ---- files and control -----------------------------------------------------------------------
class CSVLogger(Callback):
    """Write the epoch logs to a CSV file (``epoch`` then the log names, sorted), as Keras.

    With ``append=True`` rows are added to an existing file (the header is written only
    to an empty or new file).
    """

    def __init__(self, filename, separator=",", append=False):
        if not isinstance(separator, str) or len(separator) != 1:
            raise ConfigError(f"CSVLogger: separator must be one character, got "
                              f"{separator!r}")
        self.filename, self.sep, self.append = os.fspath(filename), separator, bool(append)
        self.keys, self.writer, self.file = None, None, None

    def on_train_begin(self, logs=None):
        header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename) as f:
                header = not f.readline()
        self.file = open(self.filename, "a" if self.append else "w", newline="")
        self.header, self.keys, self.writer = header, None, None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            self.writer = csv.DictWriter(self.file, fieldnames=["epoch", *self.keys],
                                         delimiter=self.sep)
            if self.header:
                self.writer.writeheader()
        row = {"epoch": epoch, **{k: _csv_value(logs.get(k, "NA")) for k in self.keys}}
        self.writer.writerow(row)
        self.file.flush()

    def on_train_end(self, logs=None):
        if self.file is not None:
            self.file.close()
            self.file = None


def _csv_value(v):
    """Keras's CSVLogger cell: a sequence (a metric at several thresholds) as "[a, b]"."""
    if isinstance(v, str) or np.ndim(v) == 0:
        return v
    return f"\"[{', '.join(map(str, np.asarray(v).reshape(-1)))}]\""


class TerminateOnNaN(Callback):
    """Stop training at the first batch whose loss is NaN or infinite.

    graphmask never applies such a step (the weights stay as they were before it); with
    this callback ``fit`` stops there and returns instead of raising ``NumericalError``.
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from plain functions, as Keras: ``LambdaCallback(on_epoch_end=f, ...)``
    (any hook name; epoch and batch hooks get ``(epoch_or_batch, logs)``, the others
    ``(logs)``)."""

    def __init__(self, **hooks):
        for name, fn in hooks.items():
            if name not in HOOKS:
                raise ConfigError(f"LambdaCallback: unknown hook {name!r}; hooks: "
                                  f"{list(HOOKS)}")
            if fn is not None and not callable(fn):
                raise ConfigError(f"LambdaCallback: {name} must be callable, got {fn!r}")
            if fn is not None:
                setattr(self, name, fn)


class BackupAndRestore(Callback):
    """Back up weights, optimizer state and the epoch at the end of every epoch, and
    resume from the backup when ``fit`` starts again after an interruption (as Keras).

    The backup lives in ``backup_dir`` (``weights.gmz``, ``optimizer.npz``,
    ``training_metadata.json``); it is deleted when training ends normally unless
    ``delete_checkpoint=False``.
    """

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False,
                 delete_checkpoint=True):
        if not backup_dir:
            raise ConfigError("BackupAndRestore: backup_dir is required")
        if save_freq != "epoch":
            raise ConfigError(f"BackupAndRestore: only save_freq='epoch' is supported, got "
                              f"{save_freq!r}")
        if double_checkpoint:
            raise ConfigError("BackupAndRestore: double_checkpoint=True is not supported")
        self.backup_dir, self.delete_checkpoint = os.fspath(backup_dir), bool(delete_checkpoint)

    def _path(self, name):
        return os.path.join(self.backup_dir, name)

    def on_train_begin(self, logs=None):
        meta = self._path("training_metadata.json")
        if not os.path.exists(meta):
            return
        with open(meta) as f:
            epoch = int(json.load(f)["epoch"])
        self.model.load_weights(self._path("weights.gmz"))
        with np.load(self._path("optimizer.npz"), allow_pickle=False) as z:
            state = [z[f"state_{i}"] for i in range(len(z.files))]
        if len(state) > 1 and not self.model.optimizer.built:
            self.model.optimizer.build([v.value for v in self.model.trainable_weights])
        self.model.optimizer.set_state(state)
        self.model._initial_epoch = epoch + 1

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        self.model.save_weights(self._path("weights.gmz"))
        state = self.model.optimizer.get_state()
        np.savez(self._path("optimizer.npz"), **{f"state_{i}": a for i, a in enumerate(state)})
        with open(self._path("training_metadata.json"), "w") as f:
            json.dump({"epoch": epoch}, f)

    def on_train_end(self, logs=None):
        if self.delete_checkpoint:  # only reached when fit ends without an error
            for name in ("weights.gmz", "optimizer.npz", "training_metadata.json"):
                if os.path.exists(self._path(name)):
                    os.remove(self._path(name))
