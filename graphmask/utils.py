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
