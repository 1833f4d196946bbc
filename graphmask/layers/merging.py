"""Merge layers as Keras 3's: ``Subtract``, ``Multiply``, ``Average``, ``Maximum``,
``Minimum`` and ``Dot``, written with ``graphmask.ops``.

Each is traced like a custom layer (its primitives are differentiated by autodiff). The
masks follow Keras 3's ``Merge``:

* the output mask is the OR of the input masks, and there is none as soon as one input
  is unmasked (``compute_mask``, as graphmask's ``Add``);
* ``Subtract`` and ``Average`` compute over every position, masked or not;
* ``Multiply`` takes a masked input's padded positions as 1; when every input is masked,
  positions no input keeps are 0;
* ``Maximum`` / ``Minimum`` take the extreme over the inputs that keep a position (a
  position no input keeps holds the first input's value);
* inputs of lower rank get axes of size 1 inserted after the batch axis; as in Keras,
  ``Multiply`` / ``Maximum`` / ``Minimum`` then do not see those inputs' masks.

``Dot`` ignores masks in Keras 3 and gives its output none, without a warning: padded
positions count in the products and the mask is lost. graphmask refuses a masked input
at model-building time (a :class:`MaskError` naming both layers); pass ``mask=[None,
None]`` to compute over every position on purpose, as Keras does.
"""
from __future__ import annotations

import numpy as np

from graphmask import ops as gops
from graphmask.errors import ConfigError, MaskError, ShapeError
from graphmask.layers.base import Layer
from graphmask.layers.tensors import SymbolicTensor, flatten, mask_creator

__all__ = ["Average", "Dot", "Maximum", "Minimum", "Multiply", "Subtract"]


def _who(layer) -> str:
    return f"{type(layer).__name__} {layer.name!r}"


def cast_floats(layer, x):
    """``x`` cast to the layer's dtype when it is a float of another dtype (Keras casts
    float arguments to a layer's compute dtype before ``call``)."""
    if np.dtype(x.dtype).kind == "f" and x.dtype != layer.dtype \
            and np.dtype(layer.dtype).kind == "f":
        return gops.cast(x, layer.dtype)
    return x


def _elementwise_shape(layer, a, b):
    """Keras's ``_compute_elemwise_op_output_shape`` (shapes without the batch axis,
    aligned at the end); a :class:`ShapeError` naming the layer when they do not fit."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return a
    out = list(a[:len(a) - len(b)])
    for i, j in zip(a[len(a) - len(b):], b):
        if i is None or j is None:
            out.append(None)
        elif i == 1 or j == 1 or i == j:
            out.append(j if i == 1 else i)
        else:
            raise ShapeError(f"{_who(layer)}: inputs have incompatible shapes {a} and {b} "
                             f"(without the batch axis)")
    return tuple(out)


class _Merge(Layer):
    """Keras 3's ``Merge``: a list of tensors, merged elementwise."""

    #: (fewest, most) inputs
    arity = (1, None)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def _check(self, inputs) -> list:
        """The input list, checked (a list of symbolic tensors of the right count, equal
        batch sizes, shapes that broadcast) and cast to the layer's dtype."""
        lo, hi = self.arity
        count = "exactly 2" if hi == 2 else f"at least {lo}"
        if not isinstance(inputs, (list, tuple)) or not all(
                isinstance(t, SymbolicTensor) for t in inputs):
            raise ConfigError(f"{_who(self)}: must be called on a list of {count} tensors, "
                              f"got {inputs!r}")
        if len(inputs) < lo or (hi is not None and len(inputs) > hi):
            raise ConfigError(f"{_who(self)}: must be called on a list of {count} tensors, "
                              f"got {len(inputs)}")
        batches = {t.shape[0] for t in inputs if t.shape} - {None}
        if len(batches) > 1:
            raise ShapeError(f"{_who(self)}: cannot merge tensors with different batch "
                             f"sizes: shapes {[tuple(t.shape) for t in inputs]}")
        if any(not t.shape for t in inputs):
            raise ShapeError(f"{_who(self)}: every input needs a batch axis, got shapes "
                             f"{[tuple(t.shape) for t in inputs]}")
        shape = tuple(inputs[0].shape[1:])
        for t in inputs[1:]:
            shape = _elementwise_shape(self, shape, tuple(t.shape[1:]))
        return [cast_floats(self, t) for t in inputs]

    def _same_rank(self, inputs, masks):
        """Keras's reshaping: axes of size 1 after the batch axis until the ranks agree;
        a reshaped input's mask is not seen (in Keras it is a new tensor, without one)."""
        top = max(len(t.shape) for t in inputs)
        out, seen = [], []
        for t, m in zip(inputs, masks):
            if len(t.shape) < top:
                for _ in range(top - len(t.shape)):
                    t = gops.expand_dims(t, 1)
                m = None
            out.append(t)
            seen.append(m)
        return out, seen

    def _input_masks(self, inputs, mask) -> list:
        """One mask (or None) per input: what ``call`` / ``compute_mask`` received."""
        n = len(inputs) if isinstance(inputs, (list, tuple)) else 1
        if mask is None:
            return [None] * n
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask]
        if len(masks) != n:
            raise MaskError(f"{_who(self)}: needs one mask (or None) per input ({n}), got "
                            f"{len(masks)}")
        return masks

    def compute_mask(self, inputs, previous_mask):
        """The OR of the input masks; None if an input has no mask (Keras 3's merges)."""
        masks = self._input_masks(inputs, previous_mask)
        if any(m is None for m in masks):
            return None
        out = masks[0]
        for m in masks[1:]:
            out = gops.logical_or(out, m)
        return out


def _spread(layer, mask, x, i):
    """A (..., T) mask as (..., T, 1), checked against x's shape (Keras broadcasts
    ``expand_dims(mask, -1)`` to ``x.shape``)."""
    want = tuple(x.shape[:-1])
    ok = len(mask.shape) == len(want) and all(
        m is None or w is None or m == w or m == 1 for m, w in zip(mask.shape, want))
    if not ok:
        raise MaskError(f"{_who(layer)}: the mask of input {i} has shape {tuple(mask.shape)}, "
                        f"which does not fit input shape {tuple(x.shape)} (a mask covers "
                        f"every axis but the last)")
    return gops.expand_dims(mask, -1)


class Subtract(_Merge):
    """``inputs[0] - inputs[1]`` (Keras 3's ``keras.layers.Subtract``).

    Masks: the output carries the OR of the two masks (none if one input is unmasked);
    the difference is computed at every position.
    """

    arity = (2, 2)

    def call(self, inputs):
        a, b = self._check(inputs)
        (a, b), _ = self._same_rank([a, b], [None, None])
        return gops.subtract(a, b)


class Average(_Merge):
    """The elementwise mean of the inputs (Keras 3's ``keras.layers.Average``).

    Masks: the output carries the OR of the masks (none if an input is unmasked); the
    mean is taken over all inputs at every position.
    """

    def call(self, inputs):
        xs = self._check(inputs)
        xs, _ = self._same_rank(xs, [None] * len(xs))
        out = xs[0]
        for x in xs[1:]:
            out = gops.add(out, x)
        return out / len(xs)


class Multiply(_Merge):
    """The elementwise product of the inputs (Keras 3's ``keras.layers.Multiply``).

    Masks: a masked input counts as 1 at its padded positions; when every input is
    masked the output is 0 where no input keeps the position, and carries the OR of the
    masks (none if an input is unmasked).
    """

    def call(self, inputs, mask=None):
        xs = self._check(inputs)
        masks = self._input_masks(xs, mask)
        xs, masks = self._same_rank(xs, masks)
        every = all(m is not None for m in masks)
        out = kept = None
        for i, (x, m) in enumerate(zip(xs, masks)):
            if m is not None:
                m = _spread(self, m, x, i)
                x = gops.where(m, x, 1.0)
                if every:
                    kept = m if kept is None else gops.logical_or(kept, m)
            out = x if out is None else gops.multiply(out, x)
        if every:
            out = gops.where(kept, out, 0.0)
        return out


class _Extreme(_Merge):
    """Keras's ``_apply_merge_op_and_or_mask``: the extreme over the inputs that keep
    each position."""

    def _pick(self, a, b):  # Maximum and Minimum define it
        raise TypeError(f"{type(self).__name__} defines no _pick")

    def call(self, inputs, mask=None):
        xs = self._check(inputs)
        masks = self._input_masks(xs, mask)
        xs, masks = self._same_rank(xs, masks)
        out = kept = None
        for i, (x, m) in enumerate(zip(xs, masks)):
            if m is not None:
                m = _spread(self, m, x, i)
            if out is None:
                out, kept = x, m
                continue
            if m is not None:
                x = gops.where(m, x, out)
            if kept is not None:
                out = gops.where(kept, out, x)
            kept = gops.logical_or(kept, m) if m is not None and kept is not None else None
            out = self._pick(out, x)
        return out


class Maximum(_Extreme):
    """The elementwise maximum of the inputs (Keras 3's ``keras.layers.Maximum``).

    Masks: the maximum over the inputs that keep each position (a position no input
    keeps holds the first input's value); the output carries the OR of the masks (none
    if an input is unmasked). Gradients at ties are shared evenly, as in Keras.
    """

    def _pick(self, a, b):
        return gops.maximum(a, b)


class Minimum(_Extreme):
    """The elementwise minimum of the inputs (Keras 3's ``keras.layers.Minimum``); masks
    as :class:`Maximum`."""

    def _pick(self, a, b):
        return gops.minimum(a, b)


class Dot(_Merge):
    """The dot product of two tensors along ``axes`` (Keras 3's ``keras.layers.Dot``).

    Parameters
    ----------
    axes : int or (int, int)
        The axis of each input to contract (the same for both when an int); negative
        values count from the end; never the batch axis 0.
    normalize : bool
        L2-normalise both inputs along their axis first (``x * min(1/||x||, 1e7)``, as
        Keras), so the result is the cosine similarity.
    **kwargs
        ``name``, ``dtype``, ``trainable``.

    Notes
    -----
    The output shape is the first input's shape without its axis, then the second's
    without the batch axis and its axis; a result of rank 1 gets a last axis of 1.
    A masked input is a :class:`MaskError` (Keras 3 would compute over the padded
    positions and drop the mask without a warning); ``layer([a, b], mask=[None, None])``
    does so on purpose.
    """

    arity = (2, 2)

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
            self.axes = int(axes)
        elif isinstance(axes, (list, tuple)) and len(axes) == 2 and all(
                isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes):
            self.axes = [int(a) for a in axes]
        else:
            raise ConfigError(f"Dot {self.name!r}: axes must be an int or a list of two ints, "
                              f"got {axes!r}")
        if not isinstance(normalize, (bool, np.bool_)):
            raise ConfigError(f"Dot {self.name!r}: normalize must be True or False, got "
                              f"{normalize!r}")
        self.normalize = bool(normalize)

    def _pair(self, a, b) -> tuple[int, int]:
        ranks = (len(a.shape), len(b.shape))
        given = [self.axes, self.axes] if isinstance(self.axes, int) else self.axes
        pair = []
        for i, (ax, rank) in enumerate(zip(given, ranks)):
            if rank < 2:
                raise ShapeError(f"Dot {self.name!r}: input {i} must have rank >= 2, got "
                                 f"shape {tuple((a, b)[i].shape)}")
            if not -rank <= ax < rank or ax % rank == 0:
                raise ShapeError(f"Dot {self.name!r}: axes={self.axes!r}: axis {ax} of input "
                                 f"{i} (shape {tuple((a, b)[i].shape)}) is out of range or "
                                 f"the batch axis")
            pair.append(ax % rank)
        da, db = a.shape[pair[0]], b.shape[pair[1]]
        if da is not None and db is not None and da != db:
            raise ShapeError(f"Dot {self.name!r}: axes={self.axes!r}: sizes {da} (axis "
                             f"{pair[0]} of shape {tuple(a.shape)}) and {db} (axis {pair[1]} "
                             f"of shape {tuple(b.shape)}) differ")
        return pair[0], pair[1]

    def call(self, inputs, mask=None):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2 or not all(
                isinstance(t, SymbolicTensor) for t in inputs):
            raise ConfigError(f"Dot {self.name!r}: must be called on a list of exactly 2 "
                              f"tensors, got {inputs!r}")
        arriving = [m for m in flatten(mask) if m is not None]
        if arriving:
            raise MaskError(
                f"the mask created by {mask_creator(arriving[0])} reaches layer "
                f"{self.name!r} (Dot), which cannot take a mask: Keras 3's Dot computes over "
                f"the padded positions and gives its output no mask, without a warning. "
                f"Call it with mask=[None, None] to do so on purpose.")
        a, b = (cast_floats(self, t) for t in inputs)
        if a.shape[0] is not None and b.shape[0] is not None and a.shape[0] != b.shape[0]:
            raise ShapeError(f"Dot {self.name!r}: cannot merge tensors with different batch "
                             f"sizes: shapes {tuple(a.shape)} and {tuple(b.shape)}")
        ax, bx = self._pair(a, b)
        if self.normalize:
            a, b = _l2_normalize(a, ax), _l2_normalize(b, bx)
        return _batch_dot(a, b, ax, bx)

    def compute_mask(self, inputs, previous_mask):
        return None

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


def _l2_normalize(x, axis):
    """Keras's ``ops.normalize(x, axis)``: ``x * min(1 / sqrt(sum(x**2)), 1 / 1e-7)``."""
    inv = 1.0 / gops.sqrt(gops.sum(gops.square(x), axis=axis, keepdims=True))
    return x * gops.minimum(inv, 1.0 / 1e-7)


def _batch_dot(a, b, ax, bx):
    """Per sample, contract axis ``ax`` of ``a`` with axis ``bx`` of ``b``: the result's
    axes are ``a``'s others, then ``b``'s others (batch excluded); rank 1 becomes (B, 1)."""
    letters = "abcdefghijklmnopqrstuvwxy"  # z: the batch axis
    ra, rb = len(a.shape), len(b.shape)
    sa = ["z"] + [letters[i] for i in range(ra - 1)]
    sb = ["z"] + [letters[ra - 1 + i] for i in range(rb - 1)]
    sb[bx] = sa[ax]
    out = [c for i, c in enumerate(sa) if i != ax] + \
        [c for i, c in enumerate(sb) if i not in (0, bx)]
    result = gops.einsum(f"{''.join(sa)},{''.join(sb)}->{''.join(out)}", a, b)
    if len(out) == 1:
        result = gops.expand_dims(result, -1)
    return result
