"""Training: ``train_on_batch``, ``fit``, ``evaluate`` and ``predict`` (mixed into
:class:`graphmask.Model`).

One step runs the ``train`` plan (forward, masked losses, backward graph) and hands
the gradients to the optimizer, which updates the weights in place. A non-finite loss
stops before the update, so the weights stay as they were.

Data comes as arrays (checked in full before the first step), a
:class:`graphmask.utils.PyDataset` or a Python generator (each batch checked when it
arrives, so each may have its own sequence length); see ``sources.py`` for how
``steps_per_epoch`` / ``validation_steps`` / ``steps`` walk them, as Keras 3 does.
"""
from __future__ import annotations

import math
from contextlib import nullcontext

import numpy as np

from graphmask import passes
from graphmask.errors import ConfigError, GraphmaskError, InputError, NumericalError, ShapeError
from graphmask.kernels.launch import deferring
from graphmask.ops import state
from graphmask.runtime import run
from graphmask.training.callbacks import CallbackList, History
from graphmask.training.data import (
    check_class_weight,
    class_weights,
    prepare_inputs,
    prepare_targets,
    prepare_weights,
)
from graphmask.training.sources import ArraySource, Epochs, is_batch_source, source_for
from graphmask.training.tracking import Tracker


def _verbose(verbose, who: str) -> int:
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ConfigError(f"{who}: verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
    return int(verbose)


class TrainingMixin:
    # ---- host metrics (metric objects the graph has no score for) ------------------------
    def _host_entries(self) -> list:
        """``[(position, output, name, weighted, config)]`` recorded by ``compile``."""
        return self.graph.meta.get("host_metrics", []) if self.compiled else []

    def _host_plan(self, kind):
        """The ``kind`` plan also fetching the outputs (and their masks) that host metrics
        read: ``(plan, [(output, "pred"|"mask")])``."""
        key = ("host", kind)
        if key not in self._plans:
            base = self._plan(kind)
            g = self.graph if kind == "train" else getattr(self, "inference_graph", self.graph)
            extra, keys = [], []
            for k in sorted({e[1] for e in self._host_entries()}):
                onode, oout = g.meta["outputs"][k]
                extra.append((onode, oout))
                keys.append((k, "pred"))
                mask = g.node(onode)["masks"][oout]
                if mask is not None:
                    extra.append((mask, 0))
                    keys.append((k, "mask"))
            plan = passes.make_plan(g, list(base.fetches) + extra, training=(kind == "train"))
            self._plans[key] = (plan, keys)
        return self._plans[key]

    def _run(self, kind, xs, ys, sws):
        """Run the ``kind`` plan; ``(values, {(output, "pred"|"mask"): array})``."""
        feeds = self._feeds(xs, ys, sws)
        if not self._host_entries():
            return run(self._plan(kind), feeds, self._variables()), {}
        plan, keys = self._host_plan(kind)
        vals = run(plan, feeds, self._variables())
        n = len(vals) - len(keys)
        return vals[:n], dict(zip(keys, vals[n:]))

    def _new_host_metrics(self) -> list:
        from graphmask.training.metrics import deserialize
        return [deserialize(cfg) for _, _, _, _, cfg in self._host_entries()]

    def _update_host(self, objs, got, ys, sws) -> None:
        for obj, (_, k, _, weighted, _) in zip(objs, self._host_entries()):
            mask = got.get((k, "mask"))
            sw = None if mask is None else mask.astype(np.float32)
            if weighted:
                sw = sws[k] if sw is None else sws[k] * sw
            obj.update_state(ys[k], got[(k, "pred")], sample_weight=sw)

    def _named(self, values, objs) -> dict:
        """The logs: losses and graph metrics, with host metrics at their compile position."""
        names = list(self._result_names())
        values = list(values)
        n_loss = len(names) - len(self.graph.meta["metrics"])
        for (pos, _, name, _, _), obj in zip(self._host_entries(), objs):
            res = obj.result()
            names.insert(n_loss + pos, name)
            values.insert(n_loss + pos, float(res) if np.ndim(res) == 0 else np.asarray(res))
        return dict(zip(names, values))

    def _gradients(self, xs, ys, sws, got=None):
        """Run the train plan: (total loss, metric pairs, {weight name: gradient})."""
        vals, extra = self._run("train", xs, ys, sws)
        if got is not None:
            got.update(extra)
        total, pairs, grads = self._split_results(vals)
        return total, pairs, dict(zip(self._grad_names, grads))

    def _train_step(self, xs, ys, sws):
        # kernels compiled in the background wait for the end of the step, optimizer
        # included (graphmask/kernels/launch.py)
        with deferring():
            return self._train_step_now(xs, ys, sws)

    def _train_step_now(self, xs, ys, sws):
        got = self._host_got = {}  # outputs and masks for host metrics (see _update_host)
        with state.collecting() as updates:  # moving statistics (BatchNormalization)
            losses, pairs, by_name = self._gradients(xs, ys, sws, got)
        total = losses[0]
        if not np.isfinite(total):
            raise NumericalError(f"the loss is {total}; the weights were left as they were "
                                 f"before this step")
        for name, g in by_name.items():
            if not np.all(np.isfinite(g)):
                raise NumericalError(f"the gradient of {name!r} is not finite (loss {total}); "
                                     f"the weights were left as they were before this step")
        params = [var.value for var in self.trainable_weights]
        grads = [by_name[var.name] if var.name in by_name else np.zeros_like(var.value)
                 for var in self.trainable_weights]
        self.optimizer.apply(params, grads)
        state.apply_updates(updates, self.weights)
        return losses, pairs

    def _host_step(self, host, ys, sws) -> None:
        """Update host metrics from the step that just ran."""
        if not host:
            return
        if "_train_step" in self.__dict__:  # a distribution strategy runs the steps
            raise ConfigError(f"metric {host[0].name!r} is computed from the outputs after "
                              f"each step, which a distributed call does not return; use it "
                              f"without distribute=")
        self._update_host(host, self._host_got, ys, sws)

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
        xs, ys, sws = self._xy_weighted(x, y, sample_weight,
                                        check_class_weight(self, class_weight,
                                                           "train_on_batch"),
                                        "train_on_batch")
        tracker, host = Tracker(), self._new_host_metrics()
        tracker.add(*self._train_step(xs, ys, sws), 1)
        self._host_step(host, ys, sws)
        return self._returned(self._named(tracker.values(), host), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Loss and metrics of one batch, no update."""
        self._require_compiled("test_on_batch")
        xs, ys, sws = self._prepare_xy(x, y, sample_weight)
        tracker, host = Tracker(), self._new_host_metrics()
        tracker.add(*self._eval_step(xs, ys, sws, host), 1)
        return self._returned(self._named(tracker.values(), host), return_dict)

    def _returned(self, logs: dict, return_dict):
        """Keras's return value: a float, a list, or a dict of the named results."""
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def _eval_step(self, xs, ys, sws, host=None):
        if not host:  # the model's batch function (a distribution strategy may bind it)
            return self._evaluate_batch(xs, ys, sws)[:2]
        if "_evaluate_batch" in self.__dict__:
            raise ConfigError(f"metric {host[0].name!r} is computed from the outputs after "
                              f"each step, which a distributed call does not return; use it "
                              f"without distribute=")
        vals, got = self._run("evaluate", xs, ys, sws)
        losses, pairs, _ = self._split_results(vals)
        self._update_host(host, got, ys, sws)
        return losses, pairs

    # ---- data ---------------------------------------------------------------------------
    def _xy_weighted(self, x, y, sample_weight, class_weight, who, whole=False):
        """``_prepare_xy`` plus sample weights from ``class_weight`` (Keras refuses both);
        ``whole``: a data set cut into batches later (see ``prepare_inputs``)."""
        if class_weight is not None and sample_weight is not None:
            raise ConfigError(f"{who}: give class_weight or sample_weight, not both")
        if whole:
            xs = prepare_inputs(self, x, whole=True)
            ys = prepare_targets(self, y, len(xs[0]), xs)
            sws = prepare_weights(self, sample_weight, ys)
        else:
            xs, ys, sws = self._prepare_xy(x, y, sample_weight)
        if class_weight is not None:
            sws = class_weights(self, ys, class_weight)
        return xs, ys, sws

    def _source(self, x, y, sample_weight, batch_size, shuffle, class_weight, who):
        """A batch source for ``x`` (arrays are checked in full here)."""
        if is_batch_source(x):
            return source_for(x, y, sample_weight, who, shuffle, batch_size, class_weight)
        xs, ys, sws = self._xy_weighted(x, y, sample_weight, class_weight, who, whole=True)
        return self._arrays(xs, ys, sws, batch_size, shuffle, who)

    def _arrays(self, xs, ys, sws, batch_size, shuffle, who):
        """An ArraySource whose every batch fits the inputs' fixed batch sizes (checked
        before anything runs)."""
        source = ArraySource(xs, ys, sws, batch_size, shuffle, who)
        for t in self.inputs:
            fixed = t.shape[0]
            sizes = sorted({sl.stop - sl.start for sl in source.slices})
            if fixed is not None and sizes != [fixed]:
                raise ShapeError(f"{who}: input {t.call.layer.name!r} has a fixed batch size "
                                 f"of {fixed}, but {source.n} samples in batches of "
                                 f"{batch_size or 32} give batches of {sizes}; use "
                                 f"batch_size={fixed} with a multiple of {fixed} samples, "
                                 f"or a batch size of None in the Input")
        return source

    def _batch(self, source, raw, class_weight, who, step):
        """One batch as checked arrays ``(xs, ys, sws)``."""
        if source.prepared:
            return raw
        x, y, sw = raw
        try:
            return self._xy_weighted(x, y, sw, class_weight, who)
        except GraphmaskError as e:
            raise type(e)(f"{who}: batch {step}: {e}") from None

    # ---- fit ----------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Train for ``epochs`` epochs, as ``keras.Model.fit``; returns a :class:`History`.

        ``x`` is arrays (with ``y``), a :class:`graphmask.utils.PyDataset` or a generator of
        ``(x, y[, sample_weight])`` batches. The reported epoch loss is the
        batch-size-weighted mean of the batch losses and metrics accumulate kept positions
        over the epoch (Keras's trackers).
        """
        self._require_compiled("fit")
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
        verbose = _verbose(verbose, "fit")
        cw = check_class_weight(self, class_weight, "fit")
        val = None
        if validation_split:
            if is_batch_source(x):
                raise ConfigError("fit: validation_split needs array data; give "
                                  "validation_data for a PyDataset or generator")
            xs, ys, sws = self._xy_weighted(x, y, sample_weight, cw, "fit", whole=True)
            n = len(xs[0])
            cut = int(n * (1 - validation_split))
            if cut == 0 or cut == n:
                raise ConfigError(f"fit: validation_split={validation_split} leaves an empty "
                                  f"training or validation set for {n} samples")
            head = [[None if a is None else a[:cut] for a in part] for part in (xs, ys, sws)]
            tail = [[None if a is None else a[cut:] for a in part] for part in (xs, ys, sws)]
            train = self._arrays(*head, batch_size, shuffle, "fit")
            val = self._arrays(*tail, validation_batch_size or batch_size, False, "fit")
        else:
            train = self._source(x, y, sample_weight, batch_size, shuffle, cw, "fit")
            if validation_data is not None:
                val = self._validation_source(validation_data,
                                              validation_batch_size or batch_size)
        epochs_it = Epochs(train, steps_per_epoch, "fit")
        val_it = None if val is None else Epochs(val, validation_steps, "fit",
                                                 "validation_steps")
        history = History()
        cbs = CallbackList(callbacks, model=self, verbose=verbose, epochs=epochs,
                           steps=epochs_it.num_batches, history=history)
        self.stop_training, self._initial_epoch = False, None
        cbs.on_train_begin()
        if self._initial_epoch is not None:  # resumed by BackupAndRestore, as in Keras
            initial_epoch, self._initial_epoch = max(initial_epoch, self._initial_epoch), None
        done, logs = 0, {}
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            tracker, host = Tracker(), self._new_host_metrics()
            logs = {}
            for step, raw in epochs_it.epoch():
                cbs.on_train_batch_begin(step)
                xs, ys, sws = self._batch(train, raw, cw, "fit", step)
                try:
                    with cbs.watching():
                        losses, pairs = self._train_step(xs, ys, sws)
                    self._host_step(host, ys, sws)
                except NumericalError as e:
                    if not cbs.handles_nan():
                        raise NumericalError(f"fit: epoch {epoch + 1}, step {step + 1}: {e}") \
                            from None
                    cbs.on_train_batch_end(step, {**logs, "loss": math.nan}, size=len(xs[0]))
                    break  # TerminateOnNaN: the step was not applied; stop here
                tracker.add(losses, pairs, len(xs[0]))
                logs = self._named(tracker.values(), host)
                cbs.on_train_batch_end(step, logs, size=len(xs[0]))
                if self.stop_training:
                    break
            if tracker.n == 0:
                if done == 0 and not self.stop_training:
                    raise InputError("fit: the training data gave no batches")
                break
            done += 1
            if val_it is not None and (epoch + 1) % validation_freq == 0:
                val_it.restart()
                with cbs.watching():
                    vres = self._evaluate_epoch(val_it, "fit: validation", None)
                logs.update({f"val_{k}": v for k, v in vres.items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training or epochs_it.ran_out:
                break
        cbs.on_train_end(logs if done else None)
        return history

    def _validation_source(self, validation_data, batch_size):
        if is_batch_source(validation_data):
            return source_for(validation_data, None, None, "fit: validation_data", False)
        if not isinstance(validation_data, (list, tuple)) or len(validation_data) not in (2, 3):
            raise ConfigError("fit: validation_data must be (x_val, y_val), "
                              "(x_val, y_val, sample_weight_val), a PyDataset or a generator")
        vx, vy, *vw = validation_data
        xs, ys, sws = self._xy_weighted(vx, vy, vw[0] if vw else None, None, "fit",
                                        whole=True)
        return self._arrays(xs, ys, sws, batch_size, False, "fit")

    # ---- evaluate / predict --------------------------------------------------------------
    def _evaluate_epoch(self, epochs_it, who, cbs):
        tracker, host = Tracker(), self._new_host_metrics()
        source = epochs_it.source
        for step, raw in epochs_it.epoch():
            if cbs is not None:
                cbs.on_test_batch_begin(step)
            xs, ys, sws = self._batch(source, raw, None, who, step)
            with nullcontext() if cbs is None else cbs.watching():
                result = self._eval_step(xs, ys, sws, host)
            tracker.add(*result, len(xs[0]))
            if cbs is not None:
                cbs.on_test_batch_end(step, self._named(tracker.values(), host),
                                      size=len(xs[0]))
        if tracker.n == 0:
            raise InputError(f"{who}: the data gave no batches")
        return self._named(tracker.values(), host)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """Loss (and metrics) over ``x, y``: Keras's batch-size-weighted mean of batch losses.

        ``x`` may also be a PyDataset or a generator (then ``steps`` batches, or all).
        Metrics accumulate their kept positions over all batches, as Keras metrics do.
        """
        self._require_compiled("evaluate")
        verbose = _verbose(verbose, "evaluate")
        source = self._source(x, y, sample_weight, batch_size, False, None, "evaluate")
        it = Epochs(source, steps, "evaluate", "steps")
        cbs = CallbackList(callbacks, model=self, verbose=verbose, epochs=1,
                           steps=it.num_batches)
        cbs.on_test_begin()
        logs = self._evaluate_epoch(it, "evaluate", cbs)
        cbs.on_test_end(logs)
        return self._returned(logs, return_dict)

    def predict(self, x, batch_size=None, verbose=0, steps=None, callbacks=None):
        """Outputs for ``x`` (an array, a list for several inputs, a PyDataset or a
        generator of input batches), batch by batch."""
        verbose = _verbose(verbose, "predict")
        if is_batch_source(x):
            source = source_for(x, None, None, "predict", False, batch_size)
        else:
            xs = prepare_inputs(self, x, whole=True)
            source = self._arrays(xs, None, None, batch_size, False, "predict")
        it = Epochs(source, steps, "predict", "steps")
        cbs = CallbackList(callbacks, model=self, verbose=verbose, epochs=1,
                           steps=it.num_batches)
        cbs.on_predict_begin()
        parts = []
        for step, raw in it.epoch():
            cbs.on_predict_batch_begin(step)
            xs = raw[0] if source.prepared else self._inputs_of(raw, step)
            with cbs.watching():
                outs = self._predict_arrays(xs)
            parts.append([outs] if self._single_output else list(outs))
            cbs.on_predict_batch_end(step, {"outputs": outs}, size=len(xs[0]))
        cbs.on_predict_end()
        if not parts:
            raise InputError("predict: the data gave no batches")
        result = [_stack([p[k] for p in parts], k) for k in range(len(parts[0]))]
        return result[0] if self._single_output else result

    def _inputs_of(self, raw, step):
        try:
            return prepare_inputs(self, raw[0])
        except GraphmaskError as e:
            raise type(e)(f"predict: batch {step}: {e}") from None


def _stack(arrays, k):
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        seen = ", ".join(f"batch {i}: {a.shape}" for i, a in enumerate(arrays[:3]))
        raise ShapeError(f"predict: output {k} has different shapes in different batches "
                         f"({seen}, ...) and cannot be stacked; pad every batch to the same "
                         f"length or call predict_on_batch on each")
    return np.concatenate(arrays, axis=0)
