"""``Bidirectional``, as Keras 3's ``keras.layers.Bidirectional``, composed of two RNN
layer calls and ``graphmask.ops``.

The wrapper is traced like a custom layer: its ``call`` records the forward layer's op,
the backward layer's op (the same RNN with ``go_backwards=True``), a reversal in time
of the backward output (``x[:, ::-1]``) and the merge. Autodiff differentiates the
composition, and ``summary()`` / ``explain_mask`` show it as one layer.
"""
from __future__ import annotations

import copy

from graphmask import ops as gops
from graphmask.errors import ConfigError, ShapeError
from graphmask.layers.base import Layer
from graphmask.layers.tensors import in_eager_trace, training_pinned

__all__ = ["Bidirectional", "MERGE_MODES"]

#: The merge modes of Keras 3 (``None``: the two outputs are returned as a list).
MERGE_MODES = ("concat", "sum", "mul", "ave", None)
#: What an RNN layer must have to be wrapped (Keras's protocol for ``Bidirectional``).
RNN_ATTRIBUTES = ("go_backwards", "return_sequences", "return_state")


def _describe(layer) -> str:
    return f"{type(layer).__name__} {getattr(layer, 'name', '?')!r}"


def _check_rnn(who: str, arg: str, layer) -> None:
    if not isinstance(layer, Layer):
        raise ConfigError(f"{who}: {arg} must be a recurrent layer instance (LSTM, GRU, "
                          f"SimpleRNN), got {type(layer).__name__} {layer!r}")
    missing = [a for a in RNN_ATTRIBUTES if not hasattr(layer, a)]
    if missing:
        raise ConfigError(f"{who}: {arg} must be a recurrent layer (LSTM, GRU, SimpleRNN, or "
                          f"a layer with attributes {list(RNN_ATTRIBUTES)}), got "
                          f"{_describe(layer)}, which has no {missing}")


def _removeprefix(name: str, prefix: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


def serialize_layer(layer) -> dict:
    """``{"class_name", "config"}`` (plus ``registered_name`` for a registered custom
    class) of a nested layer, as Keras's ``serialize_keras_object``."""
    from graphmask.io import saving
    entry = {"class_name": type(layer).__name__, "config": layer.get_config()}
    if saving.LAYER_CLASSES.get(type(layer).__name__) is not type(layer):
        entry["registered_name"] = saving.get_registered_name(type(layer))
    return entry


def deserialize_layer(entry, who: str, custom_objects=None):
    """The layer an entry of :func:`serialize_layer` describes (built-in layers,
    registered classes and ``custom_objects`` only: nothing else is ever instantiated)."""
    from graphmask.io import saving
    if isinstance(entry, Layer):
        return entry
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise ConfigError(f"{who}: a nested layer must be a Layer or a dict with "
                          f"'class_name' and 'config', got {entry!r}")
    name, registered = entry.get("class_name"), entry.get("registered_name")
    custom = dict(custom_objects or {})
    cls = saving.LAYER_CLASSES.get(name) if registered is None else None
    cls = cls or custom.get(registered) or custom.get(name) or \
        saving._REGISTRY.get(registered)  # the registry of register_serializable
    if cls is None:
        raise ConfigError(f"{who}: unknown layer class {registered or name!r}; register it "
                          f"with graphmask.saving.register_serializable or pass it in "
                          f"custom_objects")
    return cls.from_config(copy.deepcopy(entry["config"]))


def _copy_layer(layer, **changes):
    """A fresh layer of the same class and config (no weights carried over)."""
    config = {**layer.get_config(), **changes}
    return type(layer).from_config(config)


class Bidirectional(Layer):
    """Runs an RNN layer over the sequence in both directions and merges the outputs
    (Keras 3's ``keras.layers.Bidirectional``).

    Parameters
    ----------
    layer : Layer
        A recurrent layer (``LSTM``, ``GRU``, ``SimpleRNN``, or a layer with
        ``go_backwards``, ``return_sequences``, ``return_state`` and ``get_config`` /
        ``from_config``). It is not used itself: a copy named ``forward_<name>`` runs
        forwards, and (unless ``backward_layer`` is given) a copy named
        ``backward_<name>`` with ``go_backwards=True`` runs backwards (so a layer that
        already goes backwards needs a ``backward_layer``). Both have fresh weights.
    merge_mode : {"concat", "sum", "mul", "ave", None}
        How the two outputs are combined; ``None`` returns them as a list
        ``[forward, backward]``. Default ``"concat"``.
    weights : list of arrays, optional
        Initial weights: the first half for the forward layer, the second half for the
        backward layer (Keras's argument).
    backward_layer : Layer, optional
        The layer run backwards, used as given. It must have the opposite
        ``go_backwards`` and the same ``return_sequences``, ``return_state`` and
        ``stateful`` as ``layer``.
    **kwargs
        ``name``, ``dtype``, ``trainable``.

    Notes
    -----
    Called as ``bidi(x, initial_state=None, mask=None)``: the first half of
    ``initial_state`` goes to the forward layer, the second half to the backward one.
    The mask reaches both directions. With ``return_sequences`` the backward output is
    reversed in time so that step ``t`` of both outputs describes input step ``t``, and
    both inner layers output zeros at masked steps (Keras forces their
    ``zero_output_for_mask``); the output carries the input's mask. Without
    ``return_sequences`` the output carries no mask. With ``return_state`` the call
    returns ``[output, *forward_states, *backward_states]`` (``[forward, backward,
    *states]`` with ``merge_mode=None``). Weights: the forward layer's, then the
    backward layer's.
    """

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None,
                 **kwargs):
        super().__init__(**kwargs)
        who = f"Bidirectional {self.name!r}"
        _check_rnn(who, "layer", layer)
        if backward_layer is not None:
            _check_rnn(who, "backward_layer", backward_layer)
        if not (merge_mode is None or (isinstance(merge_mode, str)
                                       and merge_mode in MERGE_MODES)):
            raise ConfigError(f"{who}: merge_mode must be one of {list(MERGE_MODES)}, got "
                              f"{merge_mode!r}")
        if weights is not None and (not isinstance(weights, (list, tuple))
                                    or len(weights) % 2):
            raise ConfigError(f"{who}: weights must be a list of an even number of arrays "
                              f"(the forward layer's, then the backward layer's), got "
                              f"{type(weights).__name__} of "
                              f"{len(weights) if isinstance(weights, (list, tuple)) else 1}")
        if backward_layer is not None:
            _verify_pair(who, layer, backward_layer)
        forward = _copy_layer(layer, name=f"forward_{_removeprefix(layer.name, 'forward_')}")
        if backward_layer is None:
            backward = _copy_layer(  # Keras sets go_backwards=True (it does not flip it)
                layer, go_backwards=True,
                name=f"backward_{_removeprefix(layer.name, 'backward_')}")
        else:
            backward = backward_layer
        _verify_pair(who, forward, backward)
        for inner in (forward, backward):  # Keras: zeros at masked steps of sequences
            if hasattr(inner, "zero_output_for_mask"):
                inner.zero_output_for_mask = bool(inner.return_sequences)
        self.forward_layer = forward
        self.backward_layer = backward
        self.merge_mode = merge_mode
        self._initial_weights = None if weights is None else list(weights)
        self.stateful = bool(getattr(layer, "stateful", False))
        self.return_sequences = bool(layer.return_sequences)
        self.return_state = bool(layer.return_state)
        self.supports_masking = True

    # ---- building ----------------------------------------------------------------------
    def build(self, sequences_shape, initial_state_shape=None):
        """Build both inner layers on the sequence shape (forward weights first)."""
        from graphmask.ops.base import Spec

        shape = tuple(sequences_shape)
        if len(shape) != 3:
            raise ShapeError(f"Bidirectional {self.name!r}: input must be (batch, timesteps, "
                             f"features), got shape {shape}")
        for inner in (self.forward_layer, self.backward_layer):
            if not inner.built:
                inner.build(Spec(shape, self.dtype) if inner._builtin else shape)
                inner.built = True
        if self._initial_weights is not None:
            self._set_initial_weights()

    def _set_initial_weights(self):
        weights, self._initial_weights = self._initial_weights, None
        half = len(weights) // 2
        n_fwd, n_bwd = len(self.forward_layer.weights), len(self.backward_layer.weights)
        if (half, half) != (n_fwd, n_bwd):
            raise ShapeError(f"Bidirectional {self.name!r}: weights has {len(weights)} arrays, "
                             f"the layer has {n_fwd + n_bwd} ({n_fwd} forward, {n_bwd} "
                             f"backward)")
        self.forward_layer.set_weights(weights[:half])
        self.backward_layer.set_weights(weights[half:])

    # ---- calling -----------------------------------------------------------------------
    def call(self, sequences, initial_state=None, mask=None, training=None):
        who = f"Bidirectional {self.name!r}"
        sensitive = [inner.name for inner in (self.forward_layer, self.backward_layer)
                     if getattr(inner, "_training_sensitive", False)]
        if training is not None and sensitive and training_pinned() and not in_eager_trace():
            raise ConfigError(f"{who}: training={training!r} at call time is not supported "
                              f"for {sensitive} (dropout): it is active while fitting and off "
                              f"in predict/evaluate")
        fwd_state = bwd_state = None
        if initial_state is not None:
            if not isinstance(initial_state, (list, tuple)) or not initial_state \
                    or len(initial_state) % 2:
                n = len(initial_state) if isinstance(initial_state, (list, tuple)) else 1
                raise ConfigError(f"{who}: initial_state must be a list of an even number of "
                                  f"tensors (the forward states, then the backward states), "
                                  f"got {n}")
            half = len(initial_state) // 2
            fwd_state, bwd_state = list(initial_state[:half]), list(initial_state[half:])
        y = self._run(self.forward_layer, sequences, fwd_state, mask, training)
        y_rev = self._run(self.backward_layer, sequences, bwd_state, mask, training)
        states = []
        if self.return_state:
            states = list(y[1:]) + list(y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if y.dtype != self.dtype:
            y = gops.cast(y, self.dtype)
        if y_rev.dtype != self.dtype:
            y_rev = gops.cast(y_rev, self.dtype)
        if self.return_sequences:
            y_rev = y_rev[:, ::-1]
        mode = self.merge_mode
        if mode == "concat":
            output = [gops.concatenate([y, y_rev], axis=-1)]
        elif mode == "sum":
            output = [y + y_rev]
        elif mode == "ave":
            output = [(y + y_rev) / 2]
        elif mode == "mul":
            output = [y * y_rev]
        else:
            output = [y, y_rev]
        out = output + states
        return out[0] if len(out) == 1 else out

    @staticmethod
    def _run(layer, sequences, state, mask, training):
        kwargs = {}
        if state is not None:
            kwargs["initial_state"] = state
        if mask is not None:
            kwargs["mask"] = mask
        if training is not None and not layer._builtin:
            kwargs["training"] = training
        return layer(sequences, **kwargs)

    #: compute_mask only picks among the masks it gets (no op): ``layers/order.py``
    _compute_mask_selects = True

    def compute_mask(self, inputs, previous_mask):
        """Keras's: the input mask for each sequence output, None otherwise (and for the
        states)."""
        mask = previous_mask
        if isinstance(mask, (list, tuple)):
            mask = mask[0] if mask else None
        if self.return_sequences:
            return [mask, mask] if self.merge_mode is None else mask
        return [None, None] if self.merge_mode is None else None

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        """Keras's shapes: the output (``concat``: twice the units), then the states."""
        b, t = sequences_shape[0], sequences_shape[1]
        units = self.forward_layer.units
        out = (b, t, units) if self.return_sequences else (b, units)
        if self.merge_mode == "concat":
            out = out[:-1] + (2 * units,)
        outs = [out, out] if self.merge_mode is None else [out]
        if self.return_state:
            outs += [(b, units)] * (2 * _n_states(self.forward_layer))
        return outs[0] if len(outs) == 1 else outs

    # ---- state -------------------------------------------------------------------------
    @property
    def states(self):
        """With stateful layers, the forward layer's carried states then the backward
        layer's (a tuple of copies, as Keras's), else None."""
        fwd = getattr(self.forward_layer, "states", None)
        bwd = getattr(self.backward_layer, "states", None)
        return tuple(fwd + bwd) if fwd and bwd else None

    def reset_states(self):
        """Reset both directions' carried states (``stateful=True`` layers only)."""
        self.reset_state()

    def reset_state(self):
        if not self.stateful:
            raise ConfigError(f"Bidirectional {self.name!r}: reset_state() needs a stateful "
                              f"layer (stateful=True)")
        self.forward_layer.reset_state()
        self.backward_layer.reset_state()

    # ---- config ------------------------------------------------------------------------
    def get_config(self):
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": serialize_layer(self.forward_layer),
                "backward_layer": serialize_layer(self.backward_layer)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = copy.deepcopy(config)
        who = f"Bidirectional {config.get('name')!r}"
        if "layer" not in config:
            raise ConfigError(f"{who}: the config has no 'layer'")
        config["layer"] = deserialize_layer(config["layer"], who, custom_objects)
        if config.get("backward_layer") is not None:
            config["backward_layer"] = deserialize_layer(config["backward_layer"], who,
                                                         custom_objects)
        return cls(**config)


def _n_states(layer) -> int:
    """How many state tensors an RNN layer returns with ``return_state`` (LSTM: h and c;
    GRU, SimpleRNN: h)."""
    return len(getattr(layer, "_state_names", ("h",)))


def _verify_pair(who, forward, backward) -> None:
    """Keras's checks: opposite ``go_backwards``, equal ``stateful``, ``return_sequences``
    and ``return_state``."""
    if bool(forward.go_backwards) == bool(backward.go_backwards):
        raise ConfigError(f"{who}: the forward and backward layers must have different "
                          f"go_backwards, got {bool(forward.go_backwards)} for "
                          f"{_describe(forward)} and {bool(backward.go_backwards)} for "
                          f"{_describe(backward)}"
                          + (" (a layer with go_backwards=True needs a backward_layer with "
                             "go_backwards=False)" if forward.go_backwards else ""))
    for attr in ("stateful", "return_sequences", "return_state"):
        f, b = bool(getattr(forward, attr, False)), bool(getattr(backward, attr, False))
        if f != b:
            raise ConfigError(f"{who}: the forward and backward layers must have the same "
                              f"{attr}, got {f} for {_describe(forward)} and {b} for "
                              f"{_describe(backward)}")

