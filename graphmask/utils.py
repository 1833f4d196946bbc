"""Seeding, layer naming and small helpers shared by the layers and the model."""
from __future__ import annotations

import random
import re
from collections import defaultdict

import numpy as np

_state = {"rng": np.random.default_rng(), "uids": defaultdict(int)}


def set_random_seed(seed: int) -> None:
    """Seed every random choice graphmask makes (initializers, shuffling, dropout).

    The same seed and the same model-building code give the same weights, the same
    batches and so the same training run. Like ``keras.utils.set_random_seed`` this
    also seeds Python's ``random`` and NumPy's global generator.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        from graphmask.errors import ConfigError
        raise ConfigError(f"set_random_seed: seed must be a non-negative int, got {seed!r}")
    _state["rng"] = np.random.default_rng(int(seed))
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)


def rng() -> np.random.Generator:
    """The generator every initializer and shuffle draws from."""
    return _state["rng"]


def clear_session() -> None:
    """Reset automatic layer names (``dense``, ``dense_1``, ...) as Keras does."""
    _state["uids"].clear()


def unique_name(prefix: str) -> str:
    """Keras's naming: the first layer of a kind is ``prefix``, then ``prefix_1``, ..."""
    _state["uids"][prefix] += 1
    n = _state["uids"][prefix]
    return prefix if n == 1 else f"{prefix}_{n - 1}"


def snake_case(name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def closest(name: str, valid) -> str:
    """`` (did you mean 'x'?)`` for an unknown name, or an empty string."""
    import difflib
    match = difflib.get_close_matches(str(name).lower(), list(valid), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


# ---- Keras's data utilities (keras.utils) -------------------------------------------------
def _pad_side(arg: str, value) -> str:
    if value not in ("pre", "post"):
        from graphmask.errors import ConfigError
        raise ConfigError(f"pad_sequences: {arg} must be 'pre' or 'post', got {value!r}")
    return value


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre",
                  value=0.0):
    """Pad (and truncate) sequences to one length, as ``keras.utils.pad_sequences``.

    Parameters
    ----------
    sequences : list of sequences
        Each a list or array of ids (or of equally shaped feature vectors).
    maxlen : int, optional
        The length of the result; default: the longest sequence.
    dtype : str or dtype
        The result's dtype (default ``"int32"``); ``object`` for strings.
    padding, truncating : {"pre", "post"}
        Pad before or after each sequence; cut longer sequences at the start or the end.
    value : float or str
        The padding value (default 0, the id ``Embedding(mask_zero=True)`` masks).

    Returns
    -------
    numpy.ndarray
        Shape ``(len(sequences), maxlen) + feature shape``.
    """
    from graphmask.errors import ConfigError, InputError, InputTypeError
    _pad_side("padding", padding)
    _pad_side("truncating", truncating)
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise InputTypeError(f"pad_sequences: sequences must be a list of sequences, got "
                             f"{type(sequences).__name__}")
    if maxlen is not None and (isinstance(maxlen, bool) or not isinstance(
            maxlen, (int, np.integer)) or maxlen <= 0):
        raise ConfigError(f"pad_sequences: maxlen must be a positive int or None, got "
                          f"{maxlen!r}")
    lengths, sample_shape = [], None
    for i, s in enumerate(sequences):
        if not hasattr(s, "__len__") or isinstance(s, (str, bytes)):
            raise InputTypeError(f"pad_sequences: sequence {i} is not a sequence: {s!r}")
        lengths.append(len(s))
        if sample_shape is None and len(s):
            sample_shape = np.asarray(s).shape[1:]
    sample_shape = sample_shape or ()
    if maxlen is None:
        if not lengths:
            raise InputError("pad_sequences: no sequences given and no maxlen")
        maxlen = max(lengths)
    try:
        is_text = np.dtype(dtype).kind in "SU"
    except TypeError:
        raise ConfigError(f"pad_sequences: unknown dtype {dtype!r}") from None
    if isinstance(value, str) and dtype is not object and not is_text:
        raise ConfigError(f"pad_sequences: value {value!r} is a string but dtype is {dtype!r}; "
                          f"use dtype=object for strings")
    out = np.full((len(lengths), maxlen) + sample_shape, value, dtype=dtype)
    for i, s in enumerate(sequences):
        if not len(s):
            continue
        kept = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        try:
            kept = np.asarray(kept, dtype=dtype)
        except (TypeError, ValueError) as e:
            raise InputTypeError(f"pad_sequences: sequence {i} cannot be read as {dtype} "
                                 f"({e})") from None
        if kept.shape[1:] != sample_shape:
            raise InputError(f"pad_sequences: the items of sequence {i} have shape "
                             f"{kept.shape[1:]}, those of the first non-empty sequence "
                             f"{sample_shape}")
        if padding == "post":
            out[i, :len(kept)] = kept
        else:
            out[i, -len(kept):] = kept
    return out


def to_categorical(x, num_classes=None):
    """One-hot rows for class ids, as ``keras.utils.to_categorical`` (float64 result).

    Parameters
    ----------
    x : array-like of int
        Class ids in ``[0, num_classes)``; a trailing axis of size 1 is dropped.
    num_classes : int, optional
        Default: ``max(x) + 1``.

    Returns
    -------
    numpy.ndarray
        ``x.shape + (num_classes,)`` (without the dropped trailing 1).
    """
    from graphmask.errors import ConfigError, InputError, InputTypeError
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise InputTypeError(f"to_categorical: class ids must be numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(f"to_categorical: class ids must be whole numbers, got "
                             f"{arr[pos].item()!r} at position {pos}")
    arr = arr.astype(np.int64)
    shape = arr.shape[:-1] if arr.ndim > 1 and arr.shape[-1] == 1 else arr.shape
    flat = arr.reshape(-1)
    if num_classes is None:
        if flat.size == 0:
            raise InputError("to_categorical: no class ids given and no num_classes")
        num_classes = int(flat.max()) + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes <= 0:
        raise ConfigError(f"to_categorical: num_classes must be a positive int, got "
                          f"{num_classes!r}")
    bad = (flat < 0) | (flat >= num_classes)
    if bad.any():
        k = int(np.argmax(bad))
        pos = tuple(int(i) for i in np.unravel_index(k, arr.shape))
        raise InputError(f"to_categorical: class id {int(flat[k])} at position {pos} is "
                         f"outside [0, {num_classes})")
    out = np.zeros((flat.size, int(num_classes)))
    out[np.arange(flat.size), flat] = 1
    return out.reshape(shape + (int(num_classes),))


class PyDataset:
    """Batches computed in Python, as ``keras.utils.PyDataset`` (alias ``Sequence``).

    Subclass it, call ``super().__init__(**kwargs)``, and define ``__len__`` (the number
    of batches) and ``__getitem__(index)`` returning ``x``, ``(x,)``, ``(x, y)`` or
    ``(x, y, sample_weight)`` for batch ``index``. ``fit`` / ``evaluate`` / ``predict``
    take it as ``x``; each batch may have its own sequence length (the masks make padding
    each batch on its own correct). ``on_epoch_begin`` / ``on_epoch_end`` are called
    around each epoch. An endless dataset returns ``None`` from ``num_batches``.

    Parameters
    ----------
    workers : int
        Threads preparing batches ahead (1: batches are made in the training thread).
    use_multiprocessing : bool
        Only False: graphmask prepares batches in threads, not processes.
    max_queue_size : int
        How many batches the workers prepare ahead.
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        from graphmask.errors import ConfigError
        who = type(self).__name__
        for arg, val in (("workers", workers), ("max_queue_size", max_queue_size)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
                raise ConfigError(f"{who}: {arg} must be a positive int, got {val!r}")
        if use_multiprocessing:
            raise ConfigError(f"{who}: use_multiprocessing=True is not supported; graphmask "
                              f"prepares batches in threads (workers={workers})")
        self._workers, self._max_queue_size = int(workers), int(max_queue_size)

    @property
    def workers(self) -> int:
        return getattr(self, "_workers", 1)

    @property
    def use_multiprocessing(self) -> bool:
        return False

    @property
    def max_queue_size(self) -> int:
        return getattr(self, "_max_queue_size", 10)

    def __getitem__(self, index):
        raise TypeError(f"{type(self).__name__} must define __getitem__(index) returning "
                        f"one batch")

    @property
    def num_batches(self):
        """The number of batches (``len(self)``), or None for an endless dataset."""
        if hasattr(self, "__len__"):
            return len(self)
        raise TypeError(f"{type(self).__name__} must define __len__ or a num_batches "
                        f"property (None for an endless dataset)")

    def on_epoch_begin(self):
        """Called before each epoch."""

    def on_epoch_end(self):
        """Called after each epoch (e.g. to reshuffle)."""


Sequence = PyDataset


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False,
               show_layer_names=True, rankdir="TB", expand_nested=False, dpi=200,
               show_layer_activations=False, show_trainable=False):
    """Write the model's picture, as ``keras.utils.plot_model``: graphmask draws its
    mask-flow picture (layer names, output shapes, and where masks are created, consumed
    and dropped) with matplotlib, no Graphviz needed.

    Parameters
    ----------
    model : graphmask.Model
    to_file : str or path
        ``.png``, ``.svg``, ``.dot`` or ``.html`` (the interactive explorer).
    show_shapes, show_layer_names : bool
        Shapes and names are always shown.
    expand_nested : bool
        Draw the operations inside custom layers (one box per layer otherwise).
    dpi : int
        Resolution of a PNG.
    rankdir : "TB"
        Top to bottom, the picture's only layout.
    show_dtype, show_layer_activations, show_trainable : False
        Not drawn; ``model.summary()`` lists them.

    Returns
    -------
    str
        The path written.
    """
    from graphmask.errors import ConfigError
    from graphmask.viz import render
    if rankdir != "TB":
        raise ConfigError(f"plot_model: rankdir={rankdir!r} is not supported; the mask-flow "
                          f"picture is drawn top to bottom ('TB')")
    for arg, val in (("show_dtype", show_dtype), ("show_layer_activations",
                                                  show_layer_activations),
                     ("show_trainable", show_trainable)):
        if val:
            raise ConfigError(f"plot_model: {arg}=True is not drawn by the mask-flow picture; "
                              f"model.summary() lists it")
    if not show_layer_names:
        raise ConfigError("plot_model: show_layer_names=False is not supported; the mask-flow "
                          "picture names every layer")
    if isinstance(dpi, bool) or not isinstance(dpi, (int, np.integer)) or dpi <= 0:
        raise ConfigError(f"plot_model: dpi must be a positive int, got {dpi!r}")
    return render(model, to_file, expand=bool(expand_nested), dpi=int(dpi))
