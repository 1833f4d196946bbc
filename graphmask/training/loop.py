"""Training: ``train_on_batch`` and ``fit`` (mixed into :class:`graphmask.Model`).

One step runs the ``train`` plan (forward, masked losses, backward graph) and hands
the gradients to the optimizer, which updates the weights in place. A non-finite loss
stops before the update, so the weights stay as they were.
"""
from __future__ import annotations

import time

import numpy as np

from graphmask.errors import ConfigError, NumericalError
from graphmask.ops import state
from graphmask.runtime import run
from graphmask.training.callbacks import CallbackList, History
from graphmask.training.tracking import Tracker
from graphmask.utils import rng


class TrainingMixin:
    def _gradients(self, xs, ys, sws):
        """Run the train plan: (total loss, metric pairs, {weight name: gradient})."""
        vals = run(self._plan("train"), self._feeds(xs, ys, sws), self._variables())
        total, pairs, grads = self._split_results(vals)
        return total, pairs, dict(zip(self._grad_names, grads))

    def _train_step(self, xs, ys, sws):
        with state.collecting() as updates:  # moving statistics (BatchNormalization)
            losses, pairs, by_name = self._gradients(xs, ys, sws)
        total = losses[0]
        if not np.isfinite(total):
            raise NumericalError(f"the loss is {total}; the weights were left as they were "
                                 f"before this step")
        for name, g in by_name.items():
            if not np.all(np.isfinite(g)):
                raise NumericalError(f"the gradient of {name!r} is not finite (loss {total}); "
                                     f"the weights were left as they were before this step")
        params = [var.value for var in self.trainable_weights]
        grads = [by_name.get(var.name, np.zeros_like(var.value))
                 for var in self.trainable_weights]
        self.optimizer.apply(params, grads)
        state.apply_updates(updates, self.weights)
        return losses, pairs

    def loss_and_gradients(self, x, y=None, sample_weight=None):
        """The loss of one batch and ``{weight name: gradient}``, without any update.

        Weights that the loss does not depend on get a zero gradient. This is the same
        train plan ``train_on_batch`` runs, stopped before the optimizer.
        """
        self._require_compiled("loss_and_gradients")
        xs, ys, sws = self._prepare_xy(x, y, sample_weight)
        losses, _, by_name = self._gradients(xs, ys, sws)
        return losses[0], {v.name: by_name.get(v.name, np.zeros_like(v.value))
                       for v in self.trainable_weights}

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        """One optimizer step on one batch; returns the loss before the step."""
        self._require_compiled("train_on_batch")
        if class_weight is not None:
            raise ConfigError("train_on_batch: class_weight is not supported; "
                              "use sample_weight")
        xs, ys, sws = self._prepare_xy(x, y, sample_weight)
        tracker = Tracker()
        tracker.add(*self._train_step(xs, ys, sws), 1)
        return self._format(tracker.values(), return_dict)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None,
            validation_batch_size=None, validation_freq=1):
        """Train for ``epochs`` epochs, as ``keras.Model.fit``; returns a :class:`History`.

        The reported epoch loss is the batch-size-weighted mean of the batch losses and
        metrics accumulate kept positions over the epoch (Keras's trackers).
        """
        self._require_compiled("fit")
        if class_weight is not None:
            raise ConfigError("fit: class_weight is not supported; use sample_weight")
        if steps_per_epoch is not None:
            raise ConfigError("fit: steps_per_epoch is not supported for array data; an "
                              "epoch is one pass over x in batches of batch_size")
        if isinstance(validation_freq, bool) or not isinstance(validation_freq, int) \
                or validation_freq < 1:
            raise ConfigError(f"fit: validation_freq must be a positive int, got "
                              f"{validation_freq!r}")
        for arg, val in (("epochs", epochs), ("initial_epoch", initial_epoch)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 0:
                raise ConfigError(f"fit: {arg} must be a non-negative int, got {val!r}")
        if not (isinstance(validation_split, (int, float)) and 0 <= validation_split < 1):
            raise ConfigError(f"fit: validation_split must be in [0, 1), got "
                              f"{validation_split!r}")
        if validation_split and validation_data is not None:
            raise ConfigError("fit: give validation_split or validation_data, not both")
        xs, ys, sws = self._prepare_xy(x, y, sample_weight)
        n = len(xs[0])
        from graphmask.training.data import batches
        batches(n, batch_size, "fit")  # validates batch_size before anything runs
        val = None
        if validation_split:
            cut = int(n * (1 - validation_split))
            if cut == 0 or cut == n:
                raise ConfigError(f"fit: validation_split={validation_split} leaves an empty "
                                  f"training or validation set for {n} samples")
            val = ([a[cut:] for a in xs], [None if a is None else a[cut:] for a in ys],
                   [None if a is None else a[cut:] for a in sws])
            xs, ys, sws = ([a[:cut] for a in xs], [None if a is None else a[:cut] for a in ys],
                           [None if a is None else a[:cut] for a in sws])
            n = cut
        elif validation_data is not None:
            if not isinstance(validation_data, (list, tuple)) or len(validation_data) not in (2, 3):
                raise ConfigError("fit: validation_data must be (x_val, y_val) or "
                                  "(x_val, y_val, sample_weight_val)")
            vx, vy, *vw = validation_data
            val = self._prepare_xy(vx, vy, vw[0] if vw else None)
        verbose = 1 if verbose == "auto" else int(verbose)
        history = History()
        cbs = CallbackList([history, *(callbacks or [])], model=self, verbose=verbose,
                           epochs=epochs, steps=len(batches(n, batch_size, "fit")))
        self.stop_training = False
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            order = rng().permutation(n) if shuffle else np.arange(n)
            tracker = Tracker()
            t0 = time.perf_counter()
            for step, sl in enumerate(batches(n, batch_size, "fit")):
                idx = order[sl]
                try:
                    losses, pairs = self._train_step(
                        [a[idx] for a in xs], [None if a is None else a[idx] for a in ys],
                        [None if a is None else a[idx] for a in sws])
                except NumericalError as e:
                    raise NumericalError(f"fit: epoch {epoch + 1}, step {step + 1}: {e}") from None
                tracker.add(losses, pairs, len(idx))
                logs = dict(zip(self._result_names(), tracker.values()))
                cbs.on_train_batch_end(step, {**logs, "samples": tracker.n,
                                              "seconds": time.perf_counter() - t0})
            logs = dict(zip(self._result_names(), tracker.values()))
            if val is not None and (epoch + 1) % validation_freq == 0:
                vres = self.evaluate(val[0], val[1], batch_size=validation_batch_size or
                                     batch_size, sample_weight=val[2], return_dict=True)
                logs.update({f"val_{k}": v for k, v in vres.items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end()
        return history
