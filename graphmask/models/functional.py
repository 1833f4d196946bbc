"""``Model``: builds the graph from layer calls, compiles it, and runs it.

The forward graph is built once from the symbolic tensors. ``compile`` adds target,
sample-weight, loss and metric nodes and runs the pass pipeline (shapes, masks, losses,
autodiff); plans for predict, evaluate and train are scheduled from that one compiled
graph, each fetching only what it needs. Training loops live in ``graphmask.training``.
"""
from __future__ import annotations

import weakref

import numpy as np

from graphmask import passes
from graphmask.errors import ConfigError, GraphError, ShapeError
from graphmask.ir.graph import Graph
from graphmask.layers.base import InputLayer, Layer, SymbolicTensor, calls_of
from graphmask.layers.order import keras_layer_order
from graphmask.layers.tensors import attach_mask, flatten, layer_nodes_of, map_structure
from graphmask.runtime import release_workspaces_on_gc, run
from graphmask.training import losses as losses_mod
from graphmask.training import metrics as metrics_mod
from graphmask.training import optimizers as optimizers_mod
from graphmask.training.callbacks import Callback
from graphmask.training.data import prepare_inputs, prepare_targets, prepare_weights
from graphmask.training.loop import TrainingMixin


def _unsupported(who: str, **given) -> None:
    """Keras arguments graphmask accepts only at their default: never silently ignored."""
    bad = sorted(k for k, v in given.items() if v is not None)
    if bad:
        raise ConfigError(f"{who}: {bad} not supported for array data (leave at None)")


def _distributed(strategy, method, model, *args, **kwargs):
    """Hand a ``fit``/``evaluate``/``predict`` call to a distribution strategy."""
    from graphmask.distribute.strategy import DaskStrategy
    if not isinstance(strategy, DaskStrategy):
        raise ConfigError(f"{method}: distribute must be a graphmask.distribute.DaskStrategy "
                          f"or None, got {strategy!r}")
    stateful = [la.name for la in model.layers if getattr(la, "stateful", False)]
    if stateful:
        raise ConfigError(f"{method}: layer {stateful[0]!r} is stateful; its state is carried "
                          f"batch to batch in this process, which shards on Dask workers "
                          f"cannot share: call {method} without distribute=")
    return getattr(strategy, method)(model, *args, **kwargs)


def _as_list(x, what):
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    for t in items:
        if not isinstance(t, SymbolicTensor):
            raise ConfigError(f"Model: {what} must be symbolic tensors (from Input or a layer "
                              f"call), got {type(t).__name__}")
    if not items:
        raise ConfigError(f"Model: {what} is empty")
    return items


def forward_graph(calls, inputs, outputs, trainable: set) -> Graph:
    """The forward graph of ``calls`` (from :func:`calls_of`): one node per call, one
    ``variable`` node per weight (trainable if its id is in ``trainable``)."""
    g = Graph()
    node_of, var_node, groups, named = {}, {}, {}, {}
    for c in calls:
        ports, kinds = {}, {}
        for port, v in c.inputs.items():
            if isinstance(v, SymbolicTensor):
                ports[port] = (node_of[id(v.call)], v.index)
                if port == "mask" and c.op == "attach_mask":
                    kinds[port] = "mask"
            else:
                if id(v) not in var_node:
                    _check_unique_name(v, c, named)
                    var_node[id(v)] = g.add("variable", {
                        "var": v.name, "shape": list(v.shape), "dtype": str(v.value.dtype),
                        "trainable": id(v) in trainable}, layer=c.layer.name)
                    if c.scope:
                        g.node(var_node[id(v)])["scope"] = [layer.name for layer in c.scope]
                ports[port] = (var_node[id(v)], 0)
        nid = g.add(c.op, c.attrs, ports, layer=c.layer.name, kinds=kinds)
        if c.scope:
            g.node(nid)["scope"] = [layer.name for layer in c.scope]
        if c.groups:
            g.node(nid)["groups"] = [grp.id for grp in c.groups]
            for grp in c.groups:
                groups.setdefault(grp.id, grp)
        node_of[id(c)] = nid
    g.meta["inputs"] = [node_of[id(t.call)] for t in inputs]
    g.meta["outputs"] = [(node_of[id(t.call)], t.index) for t in outputs]

    def node_id(t):
        return None if t is None else node_of.get(id(t.call))

    g.meta["groups"] = {gid: {
        "layer": grp.layer.name, "class": type(grp.layer).__name__,
        "takes_mask": grp.takes_mask, "how": grp.how,
        "mask_in": [node_id(m) for m in grp.mask_in],
        "mask_out": [node_id(m) for m in grp.mask_out],
        "outputs": [[node_id(t), t.index] for t in grp.outputs]}
        for gid, grp in sorted(groups.items())}
    return g


def _check_unique_name(v, call, named: dict) -> None:
    """Weights are fed and updated by name: two different weights with one name would
    silently share one value (e.g. two custom blocks that each hold a ``Dense(name=
    "proj")``; Keras tells them apart by their path, graphmask by name)."""
    other = named.setdefault(v.name, (v, call.owner.name))
    if other[0] is not v:
        raise ConfigError(f"two different weights are named {v.name!r}: one in layer "
                          f"{other[1]!r}, one in layer {call.owner.name!r}; give the "
                          f"layers inside them distinct names (e.g. name=self.name + "
                          f"'_proj')")


def _top_level(calls, ordered) -> list:
    """The layers a model lists (Keras's ``model.layers``): no functional ops, and layers
    nested in a custom layer stand for that layer."""
    owner = {id(c.layer): c.owner for c in calls}
    out, seen = [], set()
    for layer in ordered:
        top = owner.get(id(layer), layer)
        if getattr(top, "is_op", False) or id(top) in seen:
            continue
        seen.add(id(top))
        out.append(top)
    return out


class _LastEpochLogs(Callback):
    """A callback keeping the last epoch's logs (for ``get_metrics_result``)."""

    def __init__(self):
        super().__init__()
        self.logs = {}

    def on_epoch_end(self, epoch, logs=None):
        self.logs = dict(logs or {})

    def result(self) -> dict:
        val = {k[4:]: v for k, v in self.logs.items() if k.startswith("val_")}
        return val or {k: v for k, v in self.logs.items() if not k.startswith("val_")}


class Model(TrainingMixin, Layer):
    """A functional model: ``Model(inputs, outputs)``, as in Keras.

    A model is also a layer: called on symbolic tensors it applies its layers to them
    (weights shared, masks flowing through), and it appears as one layer, with all its
    weights, in the model that uses it.
    """

    def __init__(self, inputs, outputs, name: str | None = None):
        if "_layers" not in self.__dict__:
            Layer.__init__(self, name=name or "functional")
        self._single_input = not isinstance(inputs, (list, tuple))
        self._single_output = not isinstance(outputs, (list, tuple))
        self.inputs = _as_list(inputs, "inputs")
        self.outputs = _as_list(outputs, "outputs")
        if name is not None:
            self.name = name
        self._build_forward_graph()
        self.built = True
        self.compiled = False
        self.optimizer = None
        self.loss = None
        self._graph = None          # compiled graph (after the pipeline)
        self._plans: dict = {}
        self.stop_training = False
        # the LSTM's per-thread scratch buffers are released when a model is collected
        weakref.finalize(self, release_workspaces_on_gc).atexit = False

    # ---- graph construction ----------------------------------------------------------
    def _build_forward_graph(self) -> None:
        for t in self.inputs:
            if not isinstance(t.call.layer, InputLayer):
                raise ConfigError(f"Model: inputs must come from Input(...), got a tensor from "
                                  f"layer {t.call.layer.name!r}")
        if len({id(t) for t in self.inputs}) != len(self.inputs):
            raise ConfigError("Model: the same Input is listed twice in inputs")
        calls = calls_of(self.outputs)
        input_calls = {id(t.call) for t in self.inputs}
        stray = [c.layer.name for c in calls
                 if isinstance(c.layer, InputLayer) and id(c) not in input_calls]
        if stray:
            raise GraphError(f"Model: the outputs depend on Input(s) {stray} that are not in "
                             f"the model's inputs")
        used = {id(c) for c in calls}
        unused = [t.call.layer.name for t in self.inputs if id(t.call) not in used]
        if unused:
            raise GraphError(f"Model: the outputs do not depend on input(s) {unused}")
        self.layers = _top_level(calls, keras_layer_order(self.inputs, self.outputs))
        trainable = {id(v) for v in self.trainable_weights}
        g = forward_graph(calls, self.inputs, self.outputs, trainable)
        self._forward = g
        names = [layer.name for layer in self.layers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"Model: layer names must be unique, found {dup} more than once")

    @property
    def graph(self) -> Graph:
        """The compiled graph (forward, masks, losses and backward once compiled): the
        graph ``fit`` runs. Where a custom layer's ``call`` depends on ``training``, the
        inference branch that ``predict`` and ``evaluate`` run is ``inference_graph``."""
        if self._graph is None:
            self._graph = passes.run_pipeline(self._forward, upto="masks")
        return self._graph

    @property
    def inference_graph(self) -> Graph:
        """The graph ``predict`` and ``evaluate`` run: ``graph`` itself unless a custom
        layer's ``call`` computes something else with ``training=True``."""
        if self.compiled:
            return self._infer_graph
        return self.graph

    @property
    def output_names(self) -> list[str]:
        return [t.call.layer.name for t in self.outputs]

    # ---- weights -----------------------------------------------------------------------
    @property
    def weights(self):
        return [v for layer in self.layers for v in layer.weights]

    @property
    def trainable_weights(self):
        return [v for layer in self.layers for v in layer.trainable_weights]

    def _variables(self) -> dict:
        return {v.name: v.value for v in self.weights}

    def get_weights(self) -> list[np.ndarray]:
        """Copies of all weights, layer by layer, each layer in Keras's order."""
        return [v.value.copy() for v in self.weights]

    def set_weights(self, weights) -> None:
        """Set all weights; checks every array first so a bad list changes nothing."""
        weights = list(weights)
        own = self.weights
        if len(weights) != len(own):
            raise ShapeError(f"Model.set_weights: expected {len(own)} arrays "
                             f"({[v.name for v in own]}), got {len(weights)}")
        by_layer, i = [], 0
        for layer in self.layers:
            n = len(layer.weights)
            by_layer.append((layer, weights[i:i + n]))
            i += n
        for layer, ws in by_layer:  # validate everything before changing anything
            for var, w in zip(layer.weights, ws):
                arr = np.asarray(w)
                if arr.shape != var.shape:
                    raise ShapeError(f"Model.set_weights: weight {var.name!r} of layer "
                                     f"{layer.name!r} has shape {var.shape}, got {arr.shape}")
                if arr.dtype.kind not in "fiub" or not np.all(np.isfinite(arr)):
                    raise ShapeError(f"Model.set_weights: weight {var.name!r} must be finite "
                                     f"numbers")
        for layer, ws in by_layer:
            if ws:
                layer.set_weights(ws)

    def get_layer(self, name: str | None = None, index: int | None = None):
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ConfigError(f"Model.get_layer: no layer named {name!r}; layers: "
                          f"{[layer.name for layer in self.layers]}")

    def count_params(self) -> int:
        return int(sum(v.value.size for v in self.weights))

    # ---- compile -----------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True):
        """Attach an optimizer, losses and metrics, then run the pass pipeline.

        As in Keras 3, ``metrics`` see the mask only, ``weighted_metrics`` also the
        ``sample_weight``. With several outputs, results are named ``<output>_loss`` and
        ``<output>_<metric>``. ``run_eagerly``, ``steps_per_execution``, ``jit_compile``
        and ``auto_scale_loss`` are accepted for Keras compatibility and have no effect
        (graphmask always runs its compiled graph on the CPU).
        """
        opt = optimizers_mod.get(optimizer)
        n_out = len(self.outputs)
        loss_list = self._per_output(loss, "loss")
        if loss is not None and all(x is None for x in loss_list):
            raise ConfigError("compile: loss matches no output")
        loss_objs = [None if x is None else losses_mod.get(x) for x in loss_list]
        if loss_weights is None:
            lw = [1.0] * n_out
        else:
            lw = self._per_output(loss_weights, "loss_weights")
            lw = [1.0 if w is None else float(w) for w in lw]
        metric_list = self._per_output(metrics, "metrics", listy=True)
        weighted_list = self._per_output(weighted_metrics, "weighted_metrics", listy=True)
        metric_list, weighted_list = ([[metrics_mod.standardize(m) for m in per] for per in lst]
                                      for lst in (metric_list, weighted_list))
        g = self._forward.copy()
        loss_nodes, loss_w, metric_nodes, host = [], [], [], []
        g.meta["targets"], g.meta["weights"] = {}, {}
        for k, ((onode, oout), lobj) in enumerate(zip(g.meta["outputs"], loss_objs)):
            needs_target = lobj is not None or metric_list[k] or weighted_list[k]
            if not needs_target:
                continue
            oshape = self.outputs[k].shape
            lname = self.outputs[k].call.layer.name
            sparse = lobj is not None and lobj.fn == "sparse_categorical_crossentropy"
            tshape = list(oshape[:-1]) if sparse else list(oshape)
            fdtype = self.outputs[k].dtype if self.outputs[k].dtype == "float64" else "float32"
            tdtype = "int32" if sparse else fdtype
            tid = g.add("target", {"shape": tshape, "dtype": tdtype, "output": k},
                        layer=f"{lname}:target")
            wid = g.add("sample_weight", {"shape": list(oshape[:-1]), "dtype": fdtype,
                                          "output": k}, layer=f"{lname}:sample_weight")
            g.meta["targets"][k], g.meta["weights"][k] = tid, wid
            if lobj is not None:
                lid = g.add("loss", lobj.attrs(), {"y_pred": (onode, oout), "y_true": tid,
                                                   "weight": wid}, layer=f"{lname}:loss")
                g.node(lid)["loss_of"] = k
                loss_nodes.append(lid)
                loss_w.append(lw[k])
            prefix = f"{lname}_" if n_out > 1 else ""
            for mname, weighted in ([(m, False) for m in metric_list[k]]
                                    + [(m, True) for m in weighted_list[k]]):
                shown = metrics_mod.name_of(mname)
                shown = f"weighted_{shown}" if weighted and mname in metric_list[k] else shown
                if metrics_mod.is_host(mname):  # updated from the outputs after each step
                    host.append([len(metric_nodes) + len(host), k, prefix + shown, weighted,
                                 mname])
                    continue
                mattrs = metrics_mod.get(mname, lobj, y_true_shape=tshape, y_pred_shape=oshape)
                sid = g.add("metric_score", mattrs, {"y_pred": (onode, oout), "y_true": tid},
                            layer=f"{lname}:{shown}")
                ports = {"score": sid, "weight": wid} if weighted else {"score": sid}
                rid = g.add("weighted_average", {}, ports, layer=f"{lname}:{shown}")
                metric_nodes.append((k, prefix + shown, rid))
        g.meta["losses"], g.meta["loss_weights"] = loss_nodes, loss_w
        g.meta["metrics"], g.meta["host_metrics"] = metric_nodes, host
        upto = "autodiff" if loss_nodes else "losses"
        self._graph = passes.run_pipeline(g, upto=upto, training=True)
        # predict/evaluate run the same graph unless a custom layer's call depends on
        # training (a training_switch): then the inference branch gets its own graph
        self._infer_graph = (passes.run_pipeline(g, upto="losses", training=False)
                             if g.nodes_by_op("training_switch") else self._graph)
        self.optimizer, self.loss, self.loss_objects = opt, loss, loss_objs
        self.compiled_metrics = {"metrics": metric_list, "weighted_metrics": weighted_list}
        self._compile_args = {"loss": loss, "loss_weights": loss_weights}
        self.compiled = True
        self._plans = {}

    def _per_output(self, value, what, listy=False):
        n = len(self.outputs)
        names = self.output_names
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(names))
            if unknown:
                raise ConfigError(f"compile: {what} names unknown output(s) {unknown}; "
                                  f"outputs: {names}")
            out = [value.get(nm) for nm in names]
        elif isinstance(value, (list, tuple)) and not (listy and n == 1):
            if len(value) != n:
                raise ConfigError(f"compile: {what} has {len(value)} entries for {n} outputs")
            out = list(value)
        else:
            out = [value] * n
        if listy:
            out = [[] if v is None else ([v] if isinstance(v, str) else list(v)) for v in out]
        return out

    # ---- plans --------------------------------------------------------------------------
    def _plan(self, kind: str):
        if kind not in self._plans:
            g = self.graph if kind == "train" or not self.compiled else self._infer_graph
            outs = list(g.meta["outputs"])
            losses = [(n, 0) for n in g.meta["losses"]]
            mets = [(r, i) for _, _, r in g.meta["metrics"] for i in (0, 1)]
            if kind == "predict":
                fetches = outs
            elif kind == "evaluate":
                fetches = losses + mets
            else:  # train
                names = [v.name for v in self.trainable_weights if v.name in g.meta["grads"]]
                fetches = losses + mets + [g.meta["grads"][nm] for nm in names]
                self._grad_names = names
            self._plans[kind] = passes.make_plan(g, fetches, training=(kind == "train"))
        return self._plans[kind]

    def _require_compiled(self, what):
        if not self.compiled:
            raise ConfigError(f"{what}: the model must be compiled first; call "
                              f"model.compile(optimizer=..., loss=...)")
        if not self.graph.meta["losses"] and what != "evaluate":
            raise ConfigError(f"{what}: the model was compiled without a loss")

    def _feeds(self, xs, ys=None, sws=None):
        g = self.graph
        feeds = dict(zip(g.meta["inputs"], xs))
        if ys is not None:
            for k, tid in g.meta.get("targets", {}).items():
                feeds[tid] = ys[k]
                feeds[g.meta["weights"][k]] = sws[k]
        return feeds

    # ---- inference -----------------------------------------------------------------------
    def predict_on_batch(self, x):
        xs = prepare_inputs(self, x)
        return self._predict_arrays(xs)

    def _predict_arrays(self, xs):
        outs = run(self._plan("predict"), self._feeds(xs), self._variables())
        return outs[0] if self._single_output else outs

    def predict(self, x, batch_size=None, verbose=0, steps=None, callbacks=None,
                distribute=None):
        """Outputs for ``x`` (an array, or a list for several inputs), batch by batch;
        ``distribute``: a ``graphmask.distribute.DaskStrategy`` shards every batch."""
        if distribute is not None:
            return _distributed(distribute, "predict", self, x, batch_size=batch_size,
                                verbose=verbose, steps=steps, callbacks=callbacks)
        # the loop (arrays, PyDataset, generators, steps, verbose, callbacks) is
        # graphmask.training.loop.TrainingMixin.predict
        return TrainingMixin.predict(self, x, batch_size=batch_size, verbose=verbose,
                                     steps=steps, callbacks=callbacks)

    def _evaluate_batch(self, xs, ys, sws):
        plan = self._plan("evaluate")
        vals = run(plan, self._feeds(xs, ys, sws), self._variables())
        return self._split_results(vals)

    def _split_results(self, vals):
        """(losses, metric pairs, the rest): losses = [total] (+ one per output if several),
        a metric pair = (sum of score * mask * weight, sum of mask * weight)."""
        g = self.graph
        nl = len(g.meta["losses"])
        losses = [float(v) for v in vals[:nl]]
        total = float(sum(w * v for w, v in zip(g.meta["loss_weights"], losses)))
        mets = vals[nl:nl + 2 * len(g.meta["metrics"])]
        pairs = [(float(mets[2 * i]), float(mets[2 * i + 1]))
                 for i in range(len(g.meta["metrics"]))]
        per_output = losses if len(self.outputs) > 1 else []
        return [total, *per_output], pairs, vals[nl + 2 * len(g.meta["metrics"]):]

    def _result_names(self) -> list[str]:
        g = self.graph
        names = ["loss"]
        if len(self.outputs) > 1:
            names += [f"{self.output_names[g.node(n)['loss_of']]}_loss"
                      for n in g.meta["losses"]]
        return names + [name for _, name, _ in g.meta["metrics"]]

    def _prepare_xy(self, x, y, sample_weight):
        xs = prepare_inputs(self, x)
        ys = prepare_targets(self, y, len(xs[0]), xs)
        sws = prepare_weights(self, sample_weight, ys)
        return xs, ys, sws

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False, distribute=None):
        """Loss (and metrics) over ``x, y``: Keras's batch-size-weighted mean of batch losses.

        Metrics accumulate their kept positions over all batches, as Keras metrics do.
        ``distribute``: a ``graphmask.distribute.DaskStrategy`` shards every batch.
        """
        if distribute is not None:
            logs = _distributed(distribute, "evaluate", self, x, y, batch_size=batch_size,
                                verbose=verbose, sample_weight=sample_weight, steps=steps,
                                callbacks=callbacks, return_dict=True)
        else:
            logs = TrainingMixin.evaluate(self, x, y, batch_size=batch_size, verbose=verbose,
                                          sample_weight=sample_weight, steps=steps,
                                          callbacks=callbacks, return_dict=True)
        self._metrics_result = dict(logs)
        return self._returned(logs, return_dict)

    def fit(self, *args, distribute=None, callbacks=None, **kwargs):
        """Train as ``keras.Model.fit`` (see ``TrainingMixin.fit``); ``distribute``: a
        ``graphmask.distribute.DaskStrategy`` runs every step data-parallel on Dask.
        The returned ``History`` is also ``model.history``, as in Keras."""
        last = _LastEpochLogs()
        callbacks = [*(callbacks or []), last]
        if distribute is not None:
            history = _distributed(distribute, "fit", self, *args, callbacks=callbacks,
                                   **kwargs)
        else:
            history = TrainingMixin.fit(self, *args, callbacks=callbacks, **kwargs)
        self.history = history
        self._metrics_result = last.result()
        return history

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        logs = TrainingMixin.train_on_batch(self, x, y, sample_weight, class_weight,
                                            return_dict=True)
        self._metrics_result = dict(logs)
        return self._returned(logs, return_dict)

    train_on_batch.__doc__ = TrainingMixin.train_on_batch.__doc__

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        logs = TrainingMixin.test_on_batch(self, x, y, sample_weight, return_dict=True)
        self._metrics_result = dict(logs)
        return self._returned(logs, return_dict)

    test_on_batch.__doc__ = TrainingMixin.test_on_batch.__doc__

    # ---- Keras's model attributes about metrics ----------------------------------------
    @property
    def metrics_names(self) -> list[str]:
        """Keras 3's names of the model's metric objects: ``[]`` before ``compile``, then
        ``["loss"]``, plus ``"compile_metrics"`` when metrics were compiled (Keras groups
        them in one object; the per-metric names are the keys of ``return_dict=True``)."""
        if not self.compiled:
            return []
        cm = self.compiled_metrics
        has = any(per for lst in (cm["metrics"], cm["weighted_metrics"]) for per in lst)
        return ["loss", "compile_metrics"] if has else ["loss"]

    def get_metrics_result(self) -> dict:
        """The results of the last ``fit`` epoch (its validation, when it ran last, as
        Keras's trackers then hold it), ``evaluate`` or ``*_on_batch`` call, by name."""
        return dict(getattr(self, "_metrics_result", {}))

    def reset_metrics(self) -> None:
        """Zero every result :meth:`get_metrics_result` reports (as Keras's reset)."""
        self._metrics_result = {k: 0.0 for k in getattr(self, "_metrics_result", {})}

    def _format(self, values, return_dict):
        """Keras's return value: a float, a list, or a dict of the named results."""
        if return_dict:
            return dict(zip(self._result_names(), values))
        return values[0] if len(values) == 1 else list(values)

    # ---- a model as a layer ---------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        """On symbolic tensors: apply the model as a layer. On arrays: the outputs for
        one batch (as ``predict_on_batch``)."""
        if any(isinstance(t, SymbolicTensor) for t in flatten((list(args), kwargs))):
            return Layer.__call__(self, *args, **kwargs)
        if len(args) != 1:
            raise ConfigError(f"Model {self.name!r}: call it on the input array(s), e.g. "
                              f"model(x) or model([x1, x2])")
        if kwargs.get("mask") is not None or kwargs.get("training"):
            return Layer.__call__(self, *args, **kwargs)  # eager, as any layer
        return self.predict_on_batch(args[0])

    def call(self, inputs, training=None, mask=None):
        """Re-apply every layer call of the model to new symbolic ``inputs``."""
        given = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(given) != len(self.inputs):
            raise ConfigError(f"Model {self.name!r}: expects {len(self.inputs)} input(s), got "
                              f"{len(given)}")
        masks = mask if isinstance(mask, (list, tuple)) else [mask] * len(given)
        mapping = {}
        for inner, outer, m in zip(self.inputs, given, masks):
            if not isinstance(outer, SymbolicTensor):
                raise ConfigError(f"Model {self.name!r}: inputs must be symbolic tensors, got "
                                  f"{type(outer).__name__}")
            want, got = inner.shape[1:], outer.shape[1:]
            if len(want) != len(got) or any(a is not None and b is not None and a != b
                                            for a, b in zip(want, got)):
                raise ShapeError(f"Model {self.name!r}: input {inner.call.layer.name!r} "
                                 f"expects shape {inner.shape}, got {outer.shape}")
            if m is not None and m is not outer.keras_mask:
                outer = attach_mask(self, outer, m)
            mapping[id(inner)] = outer

        def swap(x):
            return mapping.get(id(x), x) if isinstance(x, SymbolicTensor) else x

        for node in layer_nodes_of(self.outputs):
            if isinstance(node.layer, InputLayer):
                continue
            out = node.layer(*map_structure(swap, node.args), **map_structure(swap, node.kwargs))
            for old, new in zip(node.outputs, flatten(out)):
                mapping[id(old)] = new
        outs = [mapping[id(t)] for t in self.outputs]
        return outs[0] if self._single_output else outs

    @property
    def supports_masking(self) -> bool:
        return False  # its outputs carry the masks its own layers give them

    @property
    def output(self):
        return self.outputs[0] if self._single_output else list(self.outputs)

    @property
    def input_shape(self):
        """The input's shape with ``None`` for the batch (a list with several inputs)."""
        shapes = [tuple(t.shape) for t in self.inputs]
        return shapes[0] if self._single_input else shapes

    @property
    def output_shape(self):
        """The output's shape with ``None`` for the batch (a list with several outputs)."""
        shapes = [tuple(t.shape) for t in self.outputs]
        return shapes[0] if self._single_output else shapes

    # Keras 3's names for the weight lists
    @property
    def variables(self):
        return self.weights

    @property
    def trainable_variables(self):
        return self.trainable_weights

    @property
    def non_trainable_variables(self):
        return self.non_trainable_weights

    @property
    def losses(self) -> list:
        """Keras's added losses (``add_loss``, activity regularisers): graphmask has none."""
        return []

    def to_json(self, **kwargs) -> str:
        """The model's Keras 3 config as JSON (``keras.models.model_from_json`` reads it;
        so does ``graphmask.models.model_from_json``); ``kwargs`` go to ``json.dumps``."""
        import json

        from graphmask.io.keras_format import keras_config
        config = keras_config(self)
        config.pop("compile_config", None)
        return json.dumps(config, **kwargs)

    def get_compile_config(self) -> dict | None:
        """The ``compile`` arguments as Keras 3 serialises them (None before compile)."""
        from graphmask.io.keras_format import compile_to_keras
        return compile_to_keras(self) if self.compiled else None

    @property
    def input(self):
        return self.inputs[0] if self._single_input else list(self.inputs)

    # ---- inspection and files (implemented in their own modules) -----------------------
    def summary(self, print_fn=None, line_length=None, return_string=False):
        """Table of layers with output shape, mask in/out and parameters (see inspect)."""
        from graphmask.inspect.summary import summary
        return summary(self, print_fn=print_fn, line_length=line_length,
                       return_string=return_string)

    def _repr_svg_(self):
        from graphmask.viz import to_svg
        return to_svg(self)

    def _repr_html_(self):
        """The interactive mask-flow explorer (``graphmask.viz.to_html``) in an iframe:
        notebooks show it in place of the static picture."""
        from graphmask.viz.html import iframe, to_html
        return iframe(to_html(self))

    def save(self, filepath, overwrite=True):
        """Write graph config, weights and optimizer state to one file (no pickle)."""
        from graphmask.io.saving import save_model
        save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath, overwrite=True):
        from graphmask.io.saving import save_weights
        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath):
        from graphmask.io.saving import load_weights
        load_weights(self, filepath)

    def __repr__(self) -> str:
        return f"<Model {self.name!r}: {len(self.layers)} layers, {self.count_params()} params>"
