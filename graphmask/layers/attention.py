"""Attention layers as Keras 3's: ``MultiHeadAttention``, ``Attention`` (dot and concat
scores) and ``AdditiveAttention``, written with ``graphmask.ops``.

Each is traced like a custom layer, so a call is one group in the graph (summary,
``explain_mask`` and the pictures show one box). The projections of
``MultiHeadAttention`` are :class:`~graphmask.layers.EinsumDense` layers (``query``,
``key``, ``value``, ``attention_output``, Keras's names and weight order); the scores go
through ``prim.masked_softmax``, which reads only the keys a query keeps.

Masks, as Keras 3:

* the incoming masks of query and value (and key) drop keys and queries: query ``t``
  attends to key ``s`` when the query mask keeps ``t``, the value (and key) masks keep
  ``s``, ``attention_mask[t, s]`` holds, and with ``use_causal_mask`` when ``s <= t``;
* the output carries the query's mask;
* a query that keeps no key (a padded query position, an empty row) gives what Keras 3
  gives there, never NaN: ``MultiHeadAttention`` computes it with Keras's
  ``dot_product_attention`` (``dropout=0`` and no attention scores asked) where such a
  row averages every value uniformly, otherwise with Keras's masked ``Softmax`` where it
  is 0; ``Attention`` / ``AdditiveAttention`` subtract 1e9 from dropped scores, then
  zero the output at padded query positions.
"""
from __future__ import annotations

import math

import numpy as np

from graphmask import ops as gops
from graphmask.errors import ConfigError, MaskError, ShapeError
from graphmask.layers import initializers
from graphmask.layers.base import Layer
from graphmask.layers.einsum_dense import EinsumDense
from graphmask.layers.tensors import SymbolicTensor
from graphmask.ops.api import _apply as _apply_prim

__all__ = ["AdditiveAttention", "Attention", "MultiHeadAttention"]


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _who(layer) -> str:
    return f"{type(layer).__name__} {layer.name!r}"


def _check_rate(who, dropout):
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating)) \
            or not 0 <= dropout < 1:
        raise ConfigError(f"{who}: dropout must be a number in [0, 1), got {dropout!r}")
    return float(dropout)


def _check_seed(who, seed):
    if seed is not None and not _is_int(seed):
        raise ConfigError(f"{who}: seed must be an int or None, got {seed!r}")
    return None if seed is None else int(seed)


def masked_softmax(scores, keep=None, causal=False, window=0, empty="zero"):
    """``prim.masked_softmax`` on the last axis of ``scores`` (see its module)."""
    return _apply_prim("prim.masked_softmax",
                       {"causal": bool(causal), "window": int(window), "empty": empty},
                       x=scores, keep=keep)


def _as_bool(x):
    return x if x.dtype == "bool" else gops.not_equal(x, 0)


def _dropout(layer, x, rate, training):
    """Dropout on the attention probabilities: ``training=None`` follows the plan (active
    in fit, off in predict/evaluate); True/False pins it, as Keras's explicit argument."""
    attrs = {"rate": rate}
    if training is not None:
        attrs["training"] = bool(training)
    return layer._apply("dropout", attrs, {"x": x})


# ---- MultiHeadAttention ----------------------------------------------------------------
class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product attention (Keras 3's ``keras.layers.MultiHeadAttention``).

    Parameters
    ----------
    num_heads : int
        Number of heads (positive). As in Keras, each head has its own ``key_dim``, so
        ``num_heads`` need not divide the features (PyTorch's ``embed_dim // num_heads``
        is ``MultiHeadAttention(num_heads, key_dim=embed_dim // num_heads)`` here).
    key_dim : int
        Size of each head for query and key (positive); scores are scaled by
        ``1 / sqrt(key_dim)``.
    value_dim : int or None
        Size of each head for value (default ``key_dim``).
    dropout : float
        Dropout rate on the attention probabilities while training (seeded by
        ``graphmask.set_random_seed``), in [0, 1).
    use_bias : bool
        Biases in the four projections.
    output_shape : int, tuple or None
        The output's last axes (default: the query's feature size).
    attention_axes : None or the time axis (``1``, ``-2``, ``(1,)``)
        graphmask attends over the time axis of ``(batch, time, features)`` inputs.
    sliding_window : int or None
        Query ``t`` attends only to keys ``s`` with ``|t - s| < sliding_window``.
    flash_attention : None or False
        graphmask has no flash-attention kernel; True is an error.
    kernel_initializer, bias_initializer
        Of the projections (``"glorot_uniform"``, ``"zeros"``).
    kernel_regularizer, bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint
        Accepted at None only.
    use_gate : bool
        Keras 3's gated attention: the heads' output is multiplied by
        ``sigmoid(gate(query))`` (a ``gate`` projection) before the output projection.
    seed : int or None
        Kept in the config (graphmask's dropout draws from ``set_random_seed``'s generator).

    Notes
    -----
    Call as Keras: ``layer(query, value, key=None, attention_mask=None,
    return_attention_scores=False, use_causal_mask=False)`` on ``(batch, time, features)``
    tensors; the masks of ``query``, ``value`` and ``key`` are read automatically. The
    output has the query's shape (last axis ``output_shape``) and the query's mask; the
    attention scores are ``(batch, num_heads, T, S)``.

    Weights in Keras's order: ``query/kernel`` ``(features, num_heads, key_dim)``,
    ``query/bias`` ``(num_heads, key_dim)``, the same for ``key`` and (``value_dim``)
    ``value``, [``gate``], then ``attention_output/kernel`` ``(num_heads, value_dim,
    out)`` and ``attention_output/bias``. The weights are named after the layer
    (``"mha/query/kernel"``), as Keras's paths, so two attention layers never share a
    weight name.
    """

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True,
                 output_shape=None, attention_axes=None, sliding_window=None,
                 flash_attention=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 use_gate=False, seed=None, **kwargs):
        super().__init__(kernel_regularizer=kernel_regularizer,
                         bias_regularizer=bias_regularizer,
                         activity_regularizer=activity_regularizer,
                         kernel_constraint=kernel_constraint, bias_constraint=bias_constraint,
                         **kwargs)
        who = _who(self)
        for arg, value, optional in (("num_heads", num_heads, False),
                                     ("key_dim", key_dim, False),
                                     ("value_dim", value_dim, True),
                                     ("sliding_window", sliding_window, True)):
            if not (optional and value is None) and not (_is_int(value) and value > 0):
                raise ConfigError(f"{who}: {arg} must be a positive int"
                                  f"{' or None' if optional else ''}, got {value!r}")
        self._num_heads = int(num_heads)
        self._key_dim = int(key_dim)
        self._value_dim = int(value_dim) if value_dim else self._key_dim
        self._dropout = _check_rate(who, dropout)
        for arg, value in (("use_bias", use_bias), ("use_gate", use_gate)):
            if not isinstance(value, (bool, np.bool_)):
                raise ConfigError(f"{who}: {arg} must be True or False, got {value!r}")
        self._use_bias = bool(use_bias)
        self._use_gate = bool(use_gate)
        if output_shape is not None and output_shape != ():
            shape = (output_shape,) if _is_int(output_shape) else output_shape
            if not isinstance(shape, (list, tuple)) or len(shape) != 1 or not all(
                    _is_int(d) and d > 0 for d in shape):
                raise ConfigError(f"{who}: output_shape must be a positive int (the "
                                  f"output's last axis), got {output_shape!r}")
            output_shape = (int(shape[0]),)
        else:
            output_shape = None
        self._output_shape = output_shape
        axes = (attention_axes,) if _is_int(attention_axes) else attention_axes
        if axes is not None and (not isinstance(axes, (list, tuple)) or
                                 [a if a >= 0 else a + 3 for a in axes] != [1]):
            raise ConfigError(f"{who}: attention_axes={attention_axes!r} is not supported: "
                              f"graphmask attends over the time axis of (batch, time, "
                              f"features) inputs (attention_axes None, 1 or -2)")
        self._attention_axes = None if axes is None else tuple(int(a) for a in axes)
        self._sliding_window = None if sliding_window is None else int(sliding_window)
        if flash_attention:
            raise ConfigError(f"{who}: flash_attention=True is not supported: graphmask "
                              f"computes attention with its masked-softmax kernel (leave it "
                              f"at None)")
        self._flash_attention = flash_attention
        self._kernel_initializer = initializers.get(kernel_initializer, who,
                                                    "kernel_initializer")
        self._bias_initializer = initializers.get(bias_initializer, who, "bias_initializer")
        self.seed = _check_seed(who, seed)
        self._inverse_sqrt_key_dim = 1.0 / math.sqrt(float(self._key_dim))
        self.supports_masking = True
        self._query_dense = self._key_dense = self._value_dense = None
        self._gate_dense = self._output_dense = None

    num_heads = property(lambda self: self._num_heads)
    key_dim = property(lambda self: self._key_dim)
    value_dim = property(lambda self: self._value_dim)
    dropout = property(lambda self: self._dropout)
    use_bias = property(lambda self: self._use_bias)
    attention_axes = property(lambda self: self._attention_axes)
    query_dense = property(lambda self: self._query_dense)
    key_dense = property(lambda self: self._key_dense)
    value_dense = property(lambda self: self._value_dense)
    output_dense = property(lambda self: self._output_dense)

    # ---- building ----------------------------------------------------------------------
    def _dense(self, equation, shape, bias_axes, name, input_shape, activation=None):
        layer = EinsumDense(equation, output_shape=shape,
                            bias_axes=bias_axes if self._use_bias else None,
                            kernel_initializer=self._kernel_initializer,
                            bias_initializer=self._bias_initializer, activation=activation,
                            name=name, dtype=self.dtype)
        layer.build(input_shape)
        layer.built = True
        for v in layer._own_weights:  # Keras's weight path: unique per attention layer
            v.name = f"{self.name}/{v.name}"
        self._layers.append(layer)  # tracked as Keras tracks its `_query_dense` & co.
        return layer

    def _check_shapes(self, query_shape, value_shape, key_shape):
        for arg, shape in (("query", query_shape), ("value", value_shape), ("key", key_shape)):
            if len(shape) != 3:
                raise ShapeError(f"{_who(self)}: {arg} must have shape (batch, time, "
                                 f"features), got {tuple(shape)}")
            if shape[-1] is None:
                raise ShapeError(f"{_who(self)}: the features axis of {arg} must be known, "
                                 f"got shape {tuple(shape)}")
        if value_shape[1] is not None and key_shape[1] is not None and \
                value_shape[1] != key_shape[1]:
            raise ShapeError(f"{_who(self)}: value and key must have the same length, got "
                             f"value shape {tuple(value_shape)} and key shape "
                             f"{tuple(key_shape)}")

    def build(self, query_shape, value_shape=None, key_shape=None):
        """Create the projections (Keras's ``build(query_shape, value_shape, key_shape)``);
        a first call builds them from its tensors."""
        if value_shape is None:  # the front end passes the query's shape only
            return
        query_shape, value_shape = tuple(query_shape), tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        self._check_shapes(query_shape, value_shape, key_shape)
        nh, kd, vd = self._num_heads, self._key_dim, self._value_dim
        self._query_dense = self._dense("abc,cde->abde", [None, nh, kd], "de", "query",
                                        query_shape)
        self._key_dense = self._dense("abc,cde->abde", [None, nh, kd], "de", "key", key_shape)
        if self._use_gate:
            self._gate_dense = self._dense("abc,cde->abde", [None, nh, vd], "de", "gate",
                                           query_shape, activation="sigmoid")
        self._value_dense = self._dense("abc,cde->abde", [None, nh, vd], "de", "value",
                                        value_shape)
        out = self._output_shape[0] if self._output_shape else query_shape[-1]
        self._output_dense = self._dense("abcd,cde->abe", [None, out], "e",
                                         "attention_output", query_shape[:2] + (nh, vd))
        self._attention_axes = (1,)  # Keras resolves its default when building
        self.built = True

    # ---- calling -----------------------------------------------------------------------
    def _attention_keep(self, query, value, query_mask, value_mask, key_mask, attention_mask):
        """Keras's ``_compute_attention_mask`` without the causal part (an attribute of the
        softmax): a bool tensor broadcastable to the scores (B, N, T, S), or None."""
        t_len, s_len = query.shape[1], value.shape[1]
        keep = None
        for m, axis in ((query_mask, -1), (value_mask, -2), (key_mask, -2)):
            if m is not None:
                m = gops.expand_dims(_as_bool(m), axis)
                keep = m if keep is None else gops.logical_and(keep, m)
        if attention_mask is not None:
            a = attention_mask
            shape = tuple(a.shape)
            want = {2: (t_len, s_len), 3: (query.shape[0], t_len, s_len),
                    4: (query.shape[0], self._num_heads, t_len, s_len)}.get(len(shape))
            ok = want is not None and all(
                d is None or w is None or d == w or (d == 1 and i < len(shape) - 2)
                for i, (d, w) in enumerate(zip(shape, want)))
            if not ok:
                raise ShapeError(f"{_who(self)}: attention_mask must have shape (batch, T, S) "
                                 f"= {(None, t_len, s_len)} (or (T, S), or (batch, num_heads, "
                                 f"T, S)), got {shape}")
            a = _as_bool(a)
            keep = a if keep is None else gops.logical_and(a, keep)
        if keep is not None and len(keep.shape) == 3:
            keep = gops.expand_dims(keep, 1)  # the heads axis
        return keep

    def call(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None,
             attention_mask=None, return_attention_scores=False, training=None,
             use_causal_mask=False):
        for arg, v in (("return_attention_scores", return_attention_scores),
                       ("use_causal_mask", use_causal_mask)):
            if not isinstance(v, (bool, np.bool_)):
                raise ConfigError(f"{_who(self)}: {arg} must be True or False, got {v!r}")
        for arg, v in (("query", query), ("value", value), ("key", key),
                       ("attention_mask", attention_mask)):
            if v is not None and not isinstance(v, SymbolicTensor):
                raise ConfigError(f"{_who(self)}: {arg} must be a tensor, got "
                                  f"{type(v).__name__}")
        if key is None:
            key, key_mask = value, None
        self._check_shapes(query.shape, value.shape, key.shape)
        if self._query_dense is None:
            self.build(query.shape, value.shape, key.shape)
        elif query.shape[-1] != self._query_dense.kernel.shape[0] or \
                value.shape[-1] != self._value_dense.kernel.shape[0] or \
                key.shape[-1] != self._key_dense.kernel.shape[0]:
            raise ShapeError(f"{_who(self)}: was built for query/value/key features "
                             f"{self._query_dense.kernel.shape[0]}/"
                             f"{self._value_dense.kernel.shape[0]}/"
                             f"{self._key_dense.kernel.shape[0]}, got shapes "
                             f"{tuple(query.shape)}, {tuple(value.shape)}, {tuple(key.shape)}")
        keep = self._attention_keep(query, value, query_mask, value_mask, key_mask,
                                    attention_mask)
        # the projections run inside this layer's group (Keras strips the masks first)
        q = self._query_dense.call(query)                      # (B, T, N, H)
        k = self._key_dense.call(key)                          # (B, S, N, H)
        v = self._value_dense.call(value)                      # (B, S, N, Hv)
        q = q * self._inverse_sqrt_key_dim
        scores = gops.einsum("aecd,abcd->acbe", k, q)          # (B, N, T, S)
        # Keras: dot_product_attention (an empty row averages uniformly) unless dropout or
        # the scores are asked for (the masked Softmax layer: an empty row is 0)
        fused = self._dropout == 0 and not return_attention_scores
        probs = masked_softmax(scores, keep, causal=bool(use_causal_mask),
                               window=self._sliding_window or 0,
                               empty="uniform" if fused else "zero")
        dropped = probs
        if self._dropout > 0:
            dropped = _dropout(self, probs, self._dropout, training)
        out = gops.einsum("acbe,aecd->abcd", dropped, v)       # (B, T, N, Hv)
        if self._gate_dense is not None:
            out = out * self._gate_dense.call(query)
        out = self._output_dense.call(out)
        if return_attention_scores:
            return out, probs
        return out

    def get_config(self):
        return {**super().get_config(), "num_heads": self._num_heads,
                "key_dim": self._key_dim, "value_dim": self._value_dim,
                "dropout": self._dropout, "use_bias": self._use_bias,
                "use_gate": self._use_gate,
                "output_shape": None if self._output_shape is None else list(self._output_shape),
                "attention_axes": None if self._attention_axes is None
                else list(self._attention_axes),
                "sliding_window": self._sliding_window,
                "kernel_initializer": initializers.name_of(self._kernel_initializer),
                "bias_initializer": initializers.name_of(self._bias_initializer),
                "kernel_regularizer": None, "bias_regularizer": None,
                "activity_regularizer": None, "kernel_constraint": None,
                "bias_constraint": None, "seed": self.seed}


# ---- Attention / AdditiveAttention -----------------------------------------------------
class Attention(Layer):
    """Dot-product (Luong-style) attention (Keras 3's ``keras.layers.Attention``).

    Parameters
    ----------
    use_scale : bool
        A trainable scalar ``scale`` (initialised to 1) multiplies the scores (``"dot"``)
        or the sum inside the ``tanh`` (``"concat"``).
    score_mode : {"dot", "concat"}
        ``"dot"``: ``query @ key^T``; ``"concat"``: ``concat_score_weight *
        sum(tanh(query + key), -1)`` over every (query, key) pair.
    dropout : float
        Dropout on the attention distribution while training, in [0, 1).
    seed : int or None
        Kept in the config.
    **kwargs
        ``name``, ``dtype``, ``trainable``.

    Notes
    -----
    Called as Keras on a list ``[query, value]`` or ``[query, value, key]`` of
    ``(batch, time, features)`` tensors, with ``return_attention_scores`` and
    ``use_causal_mask``. Masks: the value's mask drops keys (their scores minus 1e9), the
    query's mask zeroes the output at padded query positions and is the output's mask
    (the key's mask is not read, as in Keras). The scores returned are the distribution
    after dropout (Keras's). Weights: ``scale`` (with ``use_scale``), then
    ``concat_score_weight`` (``"concat"``), both scalars.
    """

    _modes = ("dot", "concat")

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        who = _who(self)
        if not isinstance(use_scale, (bool, np.bool_)):
            raise ConfigError(f"{who}: use_scale must be True or False, got {use_scale!r}")
        if score_mode not in self._modes:
            raise ConfigError(f"{who}: score_mode must be one of {list(self._modes)}, got "
                              f"{score_mode!r}")
        self.use_scale = bool(use_scale)
        self.score_mode = score_mode
        self.dropout = _check_rate(who, dropout)
        self.seed = _check_seed(who, seed)
        self.scale = self.concat_score_weight = None
        self.supports_masking = True

    def _check_inputs(self, inputs, mask=None):
        who = _who(self)
        if not isinstance(inputs, (list, tuple)) or not 2 <= len(inputs) <= 3:
            raise ConfigError(f"{who}: must be called on a list [query, value] or [query, "
                              f"value, key], got {inputs!r}")
        if mask is not None and (not isinstance(mask, (list, tuple)) or
                                 not 2 <= len(mask) <= 3):
            raise MaskError(f"{who}: mask must be a list [query_mask, value_mask] (or with "
                            f"key_mask), got {mask!r}")
        return self._check_shapes([tuple(getattr(t, "shape", ())) for t in inputs])

    def _check_shapes(self, shapes):
        who = _who(self)
        if not 2 <= len(shapes) <= 3:
            raise ConfigError(f"{who}: must be called on a list [query, value] or [query, "
                              f"value, key], got {len(shapes)} tensor(s)")
        if any(len(s) != 3 for s in shapes):
            raise ShapeError(f"{who}: query, value and key must have shape (batch, time, "
                             f"features), got shapes {shapes}")
        q, v = shapes[0], shapes[1]
        k = shapes[2] if len(shapes) > 2 else v
        if q[-1] is not None and k[-1] is not None and q[-1] != k[-1]:
            raise ShapeError(f"{who}: query and key must have the same features size, got "
                             f"shapes {q} and {k}")
        if v[1] is not None and k[1] is not None and v[1] != k[1]:
            raise ShapeError(f"{who}: value and key must have the same length, got shapes "
                             f"{v} and {k}")
        return shapes

    def _build_shapes(self, input_shape) -> list:
        if not isinstance(input_shape, (list, tuple)) or not all(
                isinstance(s, (list, tuple)) for s in input_shape):
            raise ConfigError(f"{_who(self)}: must be called on a list [query, value] or "
                              f"[query, value, key], got input shape {input_shape!r}")
        return self._check_shapes([tuple(s) for s in input_shape])

    def build(self, input_shape):
        self._build_shapes(input_shape)
        if self.use_scale:
            self.scale = self.add_weight(name="scale", shape=(), initializer="ones")
        if self.score_mode == "concat":
            self.concat_score_weight = self.add_weight(name="concat_score_weight", shape=(),
                                                       initializer="ones")

    def _scores(self, query, key):
        if self.score_mode == "dot":
            scores = gops.matmul(query, gops.transpose(key, (0, 2, 1)))
            return scores * self.scale if self.scale is not None else scores
        pairs = gops.expand_dims(query, -2) + gops.expand_dims(key, -3)
        if self.scale is not None:
            pairs = self.scale * pairs
        return self.concat_score_weight * gops.sum(gops.tanh(pairs), axis=-1)

    def call(self, inputs, mask=None, training=None, return_attention_scores=False,
             use_causal_mask=False):
        self._check_inputs(inputs, mask)
        for arg, v in (("return_attention_scores", return_attention_scores),
                       ("use_causal_mask", use_causal_mask)):
            if not isinstance(v, (bool, np.bool_)):
                raise ConfigError(f"{_who(self)}: {arg} must be True or False, got {v!r}")
        q, v = inputs[0], inputs[1]
        k = inputs[2] if len(inputs) > 2 else v
        q_mask = mask[0] if mask else None
        v_mask = mask[1] if mask else None
        scores = self._scores(q, k)
        keep = None if v_mask is None else gops.expand_dims(_as_bool(v_mask), -2)
        weights = masked_softmax(scores, keep, causal=bool(use_causal_mask), empty="shift")
        if self.dropout > 0:
            weights = _dropout(self, weights, self.dropout, training)
        out = gops.matmul(weights, v)
        if q_mask is not None:
            out = gops.where(gops.expand_dims(_as_bool(q_mask), -1), out, 0.0)
        if return_attention_scores:
            return out, weights
        return out

    def compute_mask(self, inputs, previous_mask):
        if previous_mask is None or not isinstance(previous_mask, (list, tuple)):
            return None
        return previous_mask[0]

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale,
                "score_mode": self.score_mode, "dropout": self.dropout, "seed": self.seed}


class AdditiveAttention(Attention):
    """Additive (Bahdanau-style) attention (Keras 3's ``keras.layers.AdditiveAttention``).

    Scores are ``sum(scale * tanh(query + key), -1)`` over every (query, key) pair, with a
    trainable ``scale`` of shape ``(features,)`` (glorot-uniform) when ``use_scale``
    (default True), else 1. Masks, call arguments, dropout and outputs are
    :class:`Attention`'s.
    """

    def __init__(self, use_scale=True, dropout=0.0, **kwargs):
        if "score_mode" in kwargs:
            raise ConfigError("AdditiveAttention: unexpected argument(s) ['score_mode']")
        super().__init__(use_scale=use_scale, dropout=dropout, **kwargs)

    def build(self, input_shape):
        shapes = self._build_shapes(input_shape)
        if self.use_scale:
            self.scale = self.add_weight(name="scale", shape=(shapes[0][-1],),
                                         initializer="glorot_uniform")

    def _scores(self, query, key):
        pairs = gops.tanh(gops.expand_dims(query, -2) + gops.expand_dims(key, -3))
        if self.scale is not None:
            pairs = self.scale * pairs
        return gops.sum(pairs, axis=-1)

    def get_config(self):
        config = super().get_config()
        del config["score_mode"]
        return config
