"""Hypothesis strategies for padded batches and masks.

Every strategy shrinks towards small, readable cases: one sample, one timestep, id 1,
feature value 0 (or ``mask_value + 1``), rows padded on the right.

``padding`` chooses where the padding sits in each row:

* ``"right"``  ``[5, 3, 0, 0]``: kept steps first (the common layout);
* ``"left"``   ``[0, 0, 5, 3]``: padding first;
* ``"holes"``  ``[5, 0, 3, 0]``: any pattern, including holes in the middle;
* ``"any"``    each row picks one of the three (the default);
* a tuple of the names above: each row picks one of those.

:func:`sample_weights` draws Keras ``sample_weight`` arrays: per sample ``(B,)`` or per
position ``(B, T)``, non-negative, zeros included, shrinking towards all ones (the
unweighted case).

Large arrays (more than ``DENSE_MAX`` values: production-size batches such as 40 x 64
steps) are drawn with hypothesis's own numpy ``arrays`` strategy, which draws a fill value
and a few distinct elements at random places, so they stay within hypothesis's per-example
data budget; smaller ones draw every value, so each can shrink on its own.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.strategies import SearchStrategy

PADDINGS = ("right", "left", "holes")
_BATCH = st.integers(1, 4)
_TIME = st.integers(1, 6)

WEIGHT_KINDS = ("sample", "position")

#: arrays with more values than this are drawn sparsely (see the module docstring)
DENSE_MAX = 128

__all__ = ["PADDINGS", "WEIGHT_KINDS", "float_sequences", "lengths_to_mask", "masks",
           "padded_ids", "sample_weights"]


def _value(draw, v):
    return draw(v) if isinstance(v, SearchStrategy) else v


def _values(draw, elements, n: int, dtype, total: int | None = None) -> np.ndarray:
    """``n`` values of ``elements`` as a 1-D array: one draw each when the whole array
    (``total`` values, default ``n``) has at most ``DENSE_MAX``, hypothesis's sparse numpy
    arrays above it."""
    if (n if total is None else total) <= DENSE_MAX:
        return np.array(draw(st.lists(elements, min_size=n, max_size=n)), dtype=dtype)
    return draw(hnp.arrays(np.dtype(dtype), n, elements=elements))


def _modes(padding) -> tuple:
    modes = PADDINGS if padding == "any" else (
        (padding,) if isinstance(padding, str) else tuple(padding))
    bad = [m for m in modes if m not in PADDINGS]
    if bad or not modes:
        raise ValueError(f"padding must be 'right', 'left', 'holes', 'any' or a tuple of "
                         f"those, got {padding!r}")
    return modes


def lengths_to_mask(lengths, timesteps: int, padding: str = "right") -> np.ndarray:
    """A (B, T) bool mask keeping ``lengths[b]`` steps on the right or left."""
    lengths = np.asarray(lengths)
    t = np.arange(timesteps)
    if padding == "right":
        return t[None, :] < lengths[:, None]
    if padding == "left":
        return t[None, :] >= timesteps - lengths[:, None]
    raise ValueError(f"padding must be 'right' or 'left', got {padding!r}")


@st.composite
def masks(draw, batch_size=_BATCH, timesteps=_TIME, padding="any",
          allow_empty_rows: bool = True) -> np.ndarray:
    """Bool masks of shape (B, T): True where a timestep is kept.

    Parameters
    ----------
    batch_size, timesteps : int or strategy of int
        B and T (the padded length).
    padding : str or tuple
        Where padding sits in each row (see the module docstring).
    allow_empty_rows : bool
        If False every row keeps at least one timestep.
    """
    modes = _modes(padding)
    b, t = int(_value(draw, batch_size)), int(_value(draw, timesteps))
    if b < 1 or t < 1:
        raise ValueError(f"batch_size and timesteps must be >= 1, got {b}, {t}")
    lo = 0 if allow_empty_rows else 1
    rows = []
    for _ in range(b):
        mode = modes[0] if len(modes) == 1 else draw(st.sampled_from(modes))
        if mode == "holes":
            row = _values(draw, st.booleans(), t, bool, total=b * t)
            if not row.any() and not allow_empty_rows:
                row[draw(st.integers(0, t - 1))] = True
        else:
            n = t + lo - draw(st.integers(lo, t))  # shrinks towards full rows
            row = lengths_to_mask([n], t, mode)[0]
        rows.append(row)
    return np.stack(rows)


@st.composite
def padded_ids(draw, vocab_size=10, batch_size=_BATCH, min_len: int = 1,
               max_len: int = 6, padding="any", allow_empty_rows: bool = True,
               pad_id: int = 0, dtype: str = "int32") -> np.ndarray:
    """Integer id batches (B, T) where ``pad_id`` marks padding, as ``mask_zero`` expects.

    Kept positions hold ids in ``[1, vocab_size)`` (never ``pad_id``); padded positions
    hold ``pad_id``. ``min_len``/``max_len`` bound the padded length T.
    """
    vocab_size = int(_value(draw, vocab_size))
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2 (id 0 is padding), got {vocab_size}")
    t = draw(st.integers(min_len, max_len))
    m = draw(masks(batch_size, t, padding, allow_empty_rows))
    ids = np.full(m.shape, pad_id, dtype=dtype)
    kept = int(m.sum())
    if kept:
        choices = [i for i in range(vocab_size) if i != pad_id]
        ids[m] = _values(draw, st.sampled_from(choices), kept, dtype)
    return ids


@st.composite
def float_sequences(draw, features=2, mask_value: float = 0.0, batch_size=_BATCH,
                    min_len: int = 1, max_len: int = 6, padding="any",
                    allow_empty_rows: bool = True, elements=None,
                    dtype: str = "float32") -> np.ndarray:
    """Float batches (B, T, F) for a ``Masking(mask_value)`` input.

    Padded timesteps hold ``mask_value`` in every feature; a kept timestep always has
    at least one feature different from ``mask_value`` (else Masking would mask it).
    ``elements`` is a strategy for the kept values (default floats in [-2, 2]).
    """
    f = int(_value(draw, features))
    t = draw(st.integers(min_len, max_len))
    m = draw(masks(batch_size, t, padding, allow_empty_rows))
    x = np.full(m.shape + (f,), mask_value, dtype=dtype)
    kept = int(m.sum())
    if kept:
        el = elements if elements is not None else st.floats(-2, 2, width=32)
        vals = _values(draw, el, kept * f, dtype).reshape(kept, f)
        same = np.all(vals == np.asarray(mask_value, dtype), axis=1)
        vals[same, 0] = np.asarray(mask_value, dtype) + 1
        x[m] = vals
    return x


@st.composite
def sample_weights(draw, batch_size=_BATCH, timesteps=None, kind="any",
                   max_weight: float = 4.0, dtype: str = "float32") -> np.ndarray:
    """Keras ``sample_weight`` arrays: per sample ``(B,)`` or per position ``(B, T)``.

    Keras 3 semantics, which graphmask follows: a per-sample weight scales every position
    of its sample; a per-position weight scales one position; weights at masked
    positions are ignored; a zero weight removes a position from the numerator of a
    masked loss but *not* from its denominator, which counts kept positions
    (``sum(score * m * w) / sum(m)``). So the drawn weights include zeros (often), ones
    and other values in ``[0, max_weight]``, at masked and kept positions alike; they
    shrink towards all ones, so a failing example shows only the weights that matter.

    Parameters
    ----------
    batch_size : int or strategy of int
        B, the number of samples.
    timesteps : int, strategy of int or None
        T, for per-position weights; None allows only per-sample weights.
    kind : str
        ``"sample"`` (shape (B,)), ``"position"`` (shape (B, T), needs ``timesteps``)
        or ``"any"`` (either; per sample only when ``timesteps`` is None).
    max_weight : float
        Largest weight drawn (finite, > 0).
    dtype : str
        Float dtype of the array.
    """
    if kind not in ("any",) + WEIGHT_KINDS:
        raise ValueError(f"sample_weights: kind must be 'sample', 'position' or 'any', "
                         f"got {kind!r}")
    if kind == "position" and timesteps is None:
        raise ValueError("sample_weights: kind='position' needs timesteps (the T of the "
                         "(B, T) weights)")
    if not (isinstance(max_weight, (int, float)) and np.isfinite(max_weight)
            and max_weight > 0):
        raise ValueError(f"sample_weights: max_weight must be a finite number > 0, got "
                         f"{max_weight!r}")
    b = int(_value(draw, batch_size))
    shape = (b,)
    if kind == "position" or (kind == "any" and timesteps is not None
                              and draw(st.sampled_from(WEIGHT_KINDS)) == "position"):
        shape = (b, int(_value(draw, timesteps)))
    if min(shape) < 1:
        raise ValueError(f"sample_weights: batch_size and timesteps must be >= 1, got "
                         f"shape {shape}")
    one = st.one_of(st.just(1.0), st.just(0.0),
                    st.floats(0, float(max_weight), width=32))
    n = int(np.prod(shape))
    return _values(draw, one, n, dtype).reshape(shape)
