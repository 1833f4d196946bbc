"""Weight initializers with Keras 3 names and formulas, drawn from graphmask's seeded RNG."""
from __future__ import annotations

import math

import numpy as np

from graphmask.errors import ConfigError
from graphmask.utils import closest, rng


def _fans(shape):
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def zeros(shape, dtype="float32"):
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype="float32"):
    return np.ones(shape, dtype=dtype)


def random_uniform(shape, dtype="float32", minval=-0.05, maxval=0.05):
    return rng().uniform(minval, maxval, size=shape).astype(dtype)


def random_normal(shape, dtype="float32", mean=0.0, stddev=0.05):
    return rng().normal(mean, stddev, size=shape).astype(dtype)


def glorot_uniform(shape, dtype="float32"):
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng().uniform(-limit, limit, size=shape).astype(dtype)


def glorot_normal(shape, dtype="float32"):
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(shape, math.sqrt(2.0 / (fan_in + fan_out)), dtype)


def he_uniform(shape, dtype="float32"):
    fan_in, _ = _fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return rng().uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(shape, dtype="float32"):
    fan_in, _ = _fans(shape)
    return _truncated_normal(shape, math.sqrt(2.0 / fan_in), dtype)


def _truncated_normal(shape, stddev, dtype):
    # Keras's variance-scaling normal: a normal truncated at 2 stddev, rescaled so the
    # variance is stddev**2 (0.87962566 is the std of a standard normal cut at +-2).
    s = stddev / 0.87962566103423978
    out = rng().normal(0.0, s, size=shape)
    bad = np.abs(out) > 2 * s
    while bad.any():
        out[bad] = rng().normal(0.0, s, size=int(bad.sum()))
        bad = np.abs(out) > 2 * s
    return out.astype(dtype)


def orthogonal(shape, dtype="float32", gain=1.0):
    rows = math.prod(shape[:-1])
    cols = shape[-1]
    a = rng().normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return (gain * q).reshape(shape).astype(dtype)


INITIALIZERS = {
    "zeros": zeros, "ones": ones, "random_uniform": random_uniform, "uniform": random_uniform,
    "random_normal": random_normal, "normal": random_normal,
    "glorot_uniform": glorot_uniform, "glorot_normal": glorot_normal,
    "he_uniform": he_uniform, "he_normal": he_normal, "orthogonal": orthogonal,
}


def get(identifier, layer: str = "", argument: str = "initializer"):
    """An initializer function from a name or a callable ``f(shape, dtype) -> ndarray``."""
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in INITIALIZERS:
        return INITIALIZERS[identifier.lower()]
    raise ConfigError(f"{layer}: unknown {argument} {identifier!r}"
                      f"{closest(identifier, INITIALIZERS)}; valid: {sorted(INITIALIZERS)}")


def name_of(fn) -> str:
    for k, v in INITIALIZERS.items():
        if v is fn:
            return k
    return getattr(fn, "__name__", "custom")
