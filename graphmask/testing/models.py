"""Small random models built from graphmask layers, as a hypothesis strategy.

``models()`` draws an architecture (Embedding(mask_zero=True) or Masking input, an
optional time-distributed Dense, an optional BatchNormalization (its batch moments over
kept steps only), one or more stacked LSTMs, GRUs or SimpleRNNs, a Dense head), a loss, and
a weight seed; it returns a compiled :class:`ModelCase`. Everything about the model is
a function of the drawn values, so hypothesis can replay and shrink failing cases.
:meth:`ModelCase.batch` draws inputs, targets and (``sample_weight=True``) Keras sample
weights fitting the model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from graphmask import layers as layers_mod
from graphmask.layers import (
    GRU,
    LSTM,
    RNN,
    AdditiveAttention,
    Attention,
    BatchNormalization,
    Bidirectional,
    Dense,
    Dropout,
    Embedding,
    GRUCell,
    Input,
    LayerNormalization,
    LSTMCell,
    Masking,
    MultiHeadAttention,
    SimpleRNN,
    SimpleRNNCell,
    SpatialDropout1D,
)
from graphmask.models.functional import Model
from graphmask.testing import strategies as gst
from graphmask.training import losses as losses_mod

LOSSES = ("mse", "mae", "binary_crossentropy", "categorical_crossentropy",
          "sparse_categorical_crossentropy")
_HEAD = {"mse": "linear", "mae": "linear", "binary_crossentropy": "sigmoid",
         "categorical_crossentropy": "softmax", "sparse_categorical_crossentropy": "softmax"}

_BATCH = st.integers(1, 3)
_SEED = st.integers(0, 2**16)

#: the extra layers ``models(layers=...)`` may draw, in the order they are applied
LAYERS = ("layer_norm", "attention", "additive_attention", "residual", "dropout",
          "spatial_dropout")
#: the recurrent layers ``models(recurrent=...)`` may draw
RECURRENT = ("LSTM", "GRU", "SimpleRNN", "RNN(LSTMCell)", "RNN(GRUCell)",
             "RNN(SimpleRNNCell)")

__all__ = ["LAYERS", "LOSSES", "RECURRENT", "ModelCase", "build_model", "make_targets",
           "models"]


@dataclass(repr=False)
class ModelCase:
    """A compiled model plus how to feed it.

    Attributes
    ----------
    model : graphmask.Model
        Compiled with ``optimizer="sgd"`` and ``loss``.
    kind : str
        ``"ids"`` (int32 input of shape (B, T) feeding ``Embedding(mask_zero=True)``) or
        ``"floats"`` (float32 (B, T, F) feeding ``Masking(mask_value)``).
    pad : float
        The padding value of the input (0 for ids, ``mask_value`` for floats).
    vocab_size, features : int or None
        Input vocabulary (ids) or feature count (floats).
    loss : graphmask.losses.Loss
    sequence_output : bool
        True when the model output has a time axis (B, T, units) carrying the mask.
    seed : int
        Seed of the weights and of :meth:`targets`.
    spec : tuple
        The drawn architecture, for :func:`build_model` (and a readable repr).
    """

    model: Model
    kind: str
    pad: float
    vocab_size: int | None
    features: int | None
    loss: object
    sequence_output: bool
    seed: int
    spec: tuple

    def inputs(self, batch_size=_BATCH, min_len: int = 1, max_len: int = 5,
               padding="any", allow_empty_rows: bool = True):
        """A strategy of input batches for this model."""
        if self.kind == "ids":
            return gst.padded_ids(self.vocab_size, batch_size, min_len, max_len, padding,
                                  allow_empty_rows)
        return gst.float_sequences(self.features, self.pad, batch_size, min_len, max_len,
                                   padding, allow_empty_rows)

    def targets(self, x) -> np.ndarray:
        """Targets for input ``x``: deterministic given the seed and ``x``'s shape."""
        return make_targets(self.model, self.loss, x, self.seed)

    def sample_weights(self, x, kind="any", max_weight: float = 4.0):
        """A strategy of ``sample_weight`` arrays for input ``x`` (see
        :func:`graphmask.testing.strategies.sample_weights`).

        Per sample ``(B,)`` always fits; per position ``(B, T)`` only when the output
        has a time axis (``sequence_output``), so ``kind="any"`` draws either there and
        per sample otherwise, and ``kind="position"`` on a model without a time axis is
        a ``ValueError``.
        """
        x = np.asarray(x)
        if kind == "position" and not self.sequence_output:
            raise ValueError(f"ModelCase.sample_weights: kind='position' needs an output "
                             f"with a time axis; {self!r} returns one vector per sample")
        t = x.shape[1] if self.sequence_output else None
        return gst.sample_weights(x.shape[0], t, kind, max_weight)

    def batch(self, sample_weight: bool = False, **kwargs):
        """A strategy of ``(x, y)`` pairs, or ``(x, y, sample_weight)`` triples with
        ``sample_weight=True`` (weights from :meth:`sample_weights`); other keyword
        arguments go to :meth:`inputs`."""
        pairs = self.inputs(**kwargs).map(lambda x: (x, self.targets(x)))
        if not sample_weight:
            return pairs
        return pairs.flatmap(lambda xy: self.sample_weights(xy[0]).map(lambda w: (*xy, w)))

    def __repr__(self) -> str:
        return f"ModelCase({describe(self.spec)}, seed={self.seed})"


def describe(spec) -> str:
    kind, size, width, pad, pre, lstms, head, loss, logits, *norm = spec
    parts = [f"Embedding({size}, {width}, mask_zero=True)" if kind == "ids"
             else f"Input(F={size}) -> Masking({pad})"]
    if pre:
        parts.append(f"Dense({pre}, tanh)")
    if True in norm:
        parts.append("BatchNormalization()")
    for heads, key_dim, causal in [e[1:] for e in _entries(norm, "mha")]:
        parts.append(f"MultiHeadAttention({heads}, {key_dim}"
                     f"{', use_causal_mask' * causal})")
    for entry in _extra_layers(norm):
        parts.append(_describe_extra(entry))
    for units, seq, back, zero, *rest in lstms:
        flags = "".join([", return_sequences" * seq, ", go_backwards" * back,
                         ", zero_output_for_mask" * zero])
        kind = _rnn_kind(rest)
        layer = (f"RNN({kind[4:-1]}({units}){flags})" if kind.startswith("RNN(")
                 else f"{kind}({units}{flags})")
        parts.append(f"Bidirectional({layer})" if rest and rest[0] else layer)
    parts.append(f"Dense({head}, {'linear' if logits else _HEAD[loss]})")
    return " -> ".join(parts) + f"; loss={loss!r}" + (", from_logits" if logits else "")


def _entries(norm, kind: str) -> list:
    """The trailing ``spec`` entries of one kind (tuples starting with ``kind``)."""
    return [e for e in norm if isinstance(e, tuple) and e[0] == kind]


def _extra_layers(norm) -> list:
    """The ``layers=`` entries of a ``spec``, in the order they are applied."""
    return sorted((e for e in norm if isinstance(e, tuple) and e[0] in LAYERS),
                  key=lambda e: LAYERS.index(e[0]))


def _describe_extra(entry) -> str:
    kind, *args = entry
    if kind == "layer_norm":
        return "LayerNormalization()"
    if kind == "attention":
        mode, causal = args
        return f"Attention(score_mode={mode!r})([h, h]{', use_causal_mask' * causal})"
    if kind == "additive_attention":
        return f"AdditiveAttention()([h, h]{', use_causal_mask' * args[0]})"
    if kind == "residual":
        return f"{_merge(args)}()([h, Dense(h)])"
    if kind == "dropout":
        return f"Dropout({args[0]})"
    return f"SpatialDropout1D({args[0]})"


#: the merges a ``"residual"`` entry draws (its second item; ``Add`` without one)
MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


def _merge(args) -> str:
    return args[0] if args else "Add"


def _cell_rnn(cell):
    def make(units, **kwargs):
        return RNN(cell(units), **kwargs)
    return make


#: the recurrent layers ``models()`` draws: constructor and name prefix
_RNN = {"LSTM": (LSTM, "lstm"), "GRU": (GRU, "gru"), "SimpleRNN": (SimpleRNN, "simple_rnn"),
        "RNN(LSTMCell)": (_cell_rnn(LSTMCell), "rnn_lstm_cell"),
        "RNN(GRUCell)": (_cell_rnn(GRUCell), "rnn_gru_cell"),
        "RNN(SimpleRNNCell)": (_cell_rnn(SimpleRNNCell), "rnn_simple_rnn_cell")}


def _rnn_kind(rest) -> str:
    """The recurrent layer of a ``spec`` entry: its sixth item, LSTM without one."""
    return rest[1] if len(rest) > 1 else "LSTM"


def _loss_object(loss: str, logits: bool):
    if logits:
        cls = losses_mod.ALIASES[loss]
        return cls(from_logits=True)
    return losses_mod.get(loss)


def build_model(spec, seed: int = 0) -> tuple[Model, object]:
    """Build and compile the model described by ``spec``; weights drawn from ``seed``."""
    kind, size, width, pad, pre, lstms, head, loss, logits, *norm = spec
    if kind == "ids":
        x = Input(shape=(None,), dtype="int32", name="ids")
        h = Embedding(size, width, mask_zero=True, name="embedding")(x)
    else:
        x = Input(shape=(None, size), name="x")
        h = Masking(mask_value=pad, name="masking")(x)
    if pre:
        h = Dense(pre, activation="tanh", name="dense_in")(h)
    if True in norm:
        h = BatchNormalization(name="batch_norm")(h)
    for heads, key_dim, causal in [e[1:] for e in _entries(norm, "mha")]:
        h = MultiHeadAttention(heads, key_dim, name="attention")(
            h, h, use_causal_mask=causal)
    for entry in _extra_layers(norm):
        h = _apply_extra(entry, h)
    for i, (units, seq, back, zero, *rest) in enumerate(lstms):
        cls, prefix = _RNN[_rnn_kind(rest)]
        lstm = cls(units, return_sequences=seq, go_backwards=back, zero_output_for_mask=zero,
                   name=f"{prefix}_{i}")
        h = (Bidirectional(lstm, name=f"bidirectional_{i}") if rest and rest[0] else lstm)(h)
    out = Dense(head, activation="linear" if logits else _HEAD[loss], name="head")(h)
    model = Model(x, out, name="case")
    lobj = _loss_object(loss, logits)
    model.compile(optimizer="sgd", loss=lobj)
    rng = np.random.default_rng(seed)
    ws = []
    for v in model.weights:
        scale = _scale(v)
        if v.name.endswith("moving_variance"):  # a variance is positive
            ws.append(rng.uniform(0.5, 1.5, v.shape).astype(v.value.dtype))
            continue
        ws.append(rng.uniform(-scale, scale, v.shape).astype(v.value.dtype))
    model.set_weights(ws)
    return model, lobj


def _apply_extra(entry, h):
    """One ``layers=`` entry applied to ``h`` (each keeps the incoming mask)."""
    kind, *args = entry
    if kind == "layer_norm":
        return LayerNormalization(name="layer_norm")(h)
    if kind == "attention":
        mode, causal = args
        return Attention(score_mode=mode, name="dot_attention")([h, h],
                                                                use_causal_mask=causal)
    if kind == "additive_attention":
        return AdditiveAttention(name="additive_attention")([h, h], use_causal_mask=args[0])
    if kind == "residual":
        merge = getattr(layers_mod, _merge(args))
        return merge(name="residual")([h, Dense(h.shape[-1], name="residual_dense")(h)])
    if kind == "dropout":
        return Dropout(args[0], name="dropout")(h)
    return SpatialDropout1D(args[0], name="spatial_dropout")(h)


def _scale(v) -> float:
    """Half-width of the uniform weights: 1 for embeddings, 0.6 for small layers, and
    ``sqrt(2 / fan_in)`` once that is smaller (fan-in above 5), as Glorot-style
    initializers do, so wide LSTMs (64+ units) stay out of the chaotic regime where
    float32 rounding differences grow exponentially along the sequence."""
    if v.name.endswith("embeddings"):
        return 1.0
    fan_in = v.shape[0] if len(v.shape) == 2 else 1
    return min(0.6, float(np.sqrt(2.0 / fan_in)))


def make_targets(model: Model, loss, x, seed: int = 0) -> np.ndarray:
    """Random targets fitting ``model``'s single output for ``x`` and ``loss``."""
    x = np.asarray(x)
    shape = (x.shape[0],) + tuple(model.outputs[0].shape[1:])
    if shape[1:] and shape[1] is None:
        shape = (shape[0], x.shape[1]) + shape[2:]
    rng = np.random.default_rng([seed, *x.shape])
    fn = getattr(loss, "fn", loss)
    k = shape[-1]
    if fn == "sparse_categorical_crossentropy":
        return rng.integers(0, k, shape[:-1]).astype(np.int32)
    if fn == "categorical_crossentropy":
        return np.eye(k, dtype=np.float32)[rng.integers(0, k, shape[:-1])]
    if fn == "binary_crossentropy":
        return rng.integers(0, 2, shape).astype(np.float32)
    return rng.normal(size=shape).astype(np.float32)


@st.composite
def models(draw, inputs=("ids", "floats"), losses=LOSSES, max_lstms: int = 2,
           max_units: int = 3, sequence_output=None, go_backwards: bool = True,
           seed=_SEED, lstm_units=None, batch_norm: bool = True,
           attention: bool = False,
           bidirectional: bool = False,
           recurrent=("LSTM", "GRU", "SimpleRNN"), layers=()) -> ModelCase:
    """Compiled random models (see the module docstring).

    Parameters
    ----------
    inputs : tuple
        Input kinds to draw from: ``"ids"`` (Embedding with mask_zero) and/or
        ``"floats"`` (Masking).
    losses : tuple
        Loss names to draw from (crossentropies also come with ``from_logits=True``).
    max_lstms, max_units : int
        Depth of the LSTM stack and width of every layer.
    sequence_output : bool or None
        Force the last LSTM's ``return_sequences`` (None: draw it).
    go_backwards : bool
        Allow ``go_backwards=True`` on the last LSTM when it returns only its final
        state (with ``return_sequences=True`` Keras returns outputs in reversed order
        against an unreversed mask, which is not padding-invariant by design).
    seed : int or strategy of int
        Seed of the weights and targets.
    lstm_units : int, strategy of int or None
        Units of every LSTM (None: drawn in ``1..max_units``). Use e.g. 64 or more to
        reach the multi-threaded, multi-chunk float32 LSTM kernels.
    batch_norm : bool
        Allow a ``BatchNormalization`` after the input (and the optional Dense).
    attention : bool
        Also draw a self-attention ``MultiHeadAttention(heads, key_dim)(h, h)`` (1-2
        heads, key_dim 1-3, optionally causal) before the LSTMs; it reads the input's
        mask and passes it on. Its entry at the end of ``spec`` is ``("mha", heads,
        key_dim, causal)``; without it ``spec`` is as before.
    bidirectional : bool
        Also draw, for each LSTM that does not go backwards, whether it is wrapped in
        ``Bidirectional`` (concat). Its entry in ``spec`` then has a fifth item, the
        flag; without it every entry has four, as before.
    recurrent : tuple
        The recurrent layers to draw from (names in :data:`RECURRENT`: ``"LSTM"``,
        ``"GRU"``, ``"SimpleRNN"`` and ``RNN`` over a cell, ``"RNN(LSTMCell)"`` ...);
        an entry of ``spec`` for a layer other than the LSTM has a fifth item (the
        Bidirectional flag, False) and a sixth, the layer's name.
    layers : tuple
        Extra mask-passing layers that may be drawn (names in :data:`LAYERS`), each
        included or not, applied in :data:`LAYERS` order after the attention and before
        the recurrent stack: ``"layer_norm"`` (LayerNormalization), ``"attention"``
        (``Attention([h, h])``, dot or concat scores, optionally causal),
        ``"additive_attention"``, ``"residual"`` (``Add()([h, Dense(h)])`` or another
        elementwise merge of :data:`MERGES`),
        ``"dropout"`` and ``"spatial_dropout"`` (rate 0.1-0.5; identity outside training,
        which is what the checks run). Each adds a tuple entry to ``spec``.
    """
    bad = [n for n in tuple(recurrent) if n not in RECURRENT] + [
        n for n in tuple(layers) if n not in LAYERS]
    if bad:
        raise ValueError(f"models: unknown recurrent layer or layer name(s) {bad}; "
                         f"recurrent takes {RECURRENT}, layers takes {LAYERS}")
    units = st.integers(1, max_units) if lstm_units is None else lstm_units
    kind = draw(st.sampled_from(tuple(inputs)))
    if kind == "ids":
        size, pad = draw(st.integers(3, 8)), 0.0
    else:
        size, pad = draw(st.integers(1, 3)), draw(st.sampled_from((0.0, -1.0, 5.0)))
    width = draw(st.integers(1, max_units))
    pre = draw(st.sampled_from((0,) + tuple(range(1, max_units + 1))))
    n = draw(st.integers(1, max_lstms))
    last_seq = draw(st.booleans()) if sequence_output is None else bool(sequence_output)
    lstms = []
    for i in range(n):
        rnn = draw(st.sampled_from(tuple(recurrent)))
        seq = True if i < n - 1 else last_seq
        back = (not seq) and go_backwards and draw(st.booleans())
        zero = seq and draw(st.booleans())
        entry = (int(draw(units) if isinstance(units, st.SearchStrategy) else units),
                 seq, back, zero)
        if bidirectional:
            entry += ((not back) and rnn == "LSTM" and draw(st.booleans()),)
        if rnn != "LSTM":
            entry = entry[:4] + (entry[4] if len(entry) > 4 else False, rnn)
        lstms.append(entry)
    loss = draw(st.sampled_from(tuple(losses)))
    logits = "crossentropy" in loss and draw(st.booleans())
    head = draw(st.integers(2 if "categorical" in loss else 1, max_units))
    spec = (kind, size, width, pad, pre, tuple(lstms), head, loss, logits)
    if batch_norm and draw(st.booleans()):
        spec += (True,)
    if attention and draw(st.booleans()):
        spec += (("mha", draw(st.integers(1, 2)), draw(st.integers(1, 3)),
                  draw(st.booleans())),)
    for name in LAYERS:
        if name not in layers or not draw(st.booleans()):
            continue
        if name == "attention":
            spec += ((name, draw(st.sampled_from(("dot", "concat"))), draw(st.booleans())),)
        elif name == "additive_attention":
            spec += ((name, draw(st.booleans())),)
        elif name == "residual":
            spec += ((name, draw(st.sampled_from(MERGES))),)
        elif name in ("dropout", "spatial_dropout"):
            spec += ((name, draw(st.sampled_from((0.1, 0.5)))),)
        else:
            spec += ((name,),)
    s = int(draw(seed) if isinstance(seed, st.SearchStrategy) else seed)
    model, lobj = build_model(spec, s)
    return ModelCase(model, kind, pad, size if kind == "ids" else None,
                     size if kind == "floats" else None, lobj, last_seq, s, spec)
