"""Weight initializers: Keras 3's initializer objects, names, defaults and formulas.

Every initializer is an :class:`Initializer`: ``init(shape, dtype=None)`` returns a NumPy
array of that shape and dtype (``float32`` when ``dtype`` is None); ``get_config()``
gives its arguments as a JSON-able dict and ``from_config(config)`` rebuilds it.

Random initializers take a ``seed``:

* ``seed=<int>`` makes the initializer deterministic: every call returns the same values
  for the same shape (as in Keras 3), whatever :func:`graphmask.set_random_seed` did;
* ``seed=None`` draws from graphmask's generator, so :func:`graphmask.set_random_seed`
  makes model building reproducible. Each call draws fresh values (Keras 3 instead fixes
  a random seed when the initializer is created, so an unseeded initializer shared by
  two layers gives both the same values; in graphmask they differ).

The values are not Keras's (a different generator); the distributions, formulas, fans,
shapes and dtypes are. :func:`get` turns a name (``"GlorotUniform"`` or
``"glorot_uniform"``), a Keras config dict, a class or an instance into an initializer;
:func:`serialize` and :func:`name_of` give what :func:`get` turns back into an equal one.
"""
from __future__ import annotations

import inspect
import math
import numbers

import numpy as np

from graphmask.errors import ConfigError
from graphmask.utils import closest, rng, snake_case

__all__ = [
    "Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Initializer",
    "LecunNormal", "LecunUniform", "Ones", "Orthogonal", "RandomNormal", "RandomUniform",
    "TruncatedNormal", "VarianceScaling", "Zeros", "compute_fans", "deserialize", "get",
    "is_custom", "name_of", "serialize",
]

#: The standard deviation of a standard normal truncated at +-2 (Keras's constant).
_TRUNCATED_STD = 0.87962566103423978


# ---- argument checks -----------------------------------------------------------------
def _real(who: str, arg: str, value) -> float | int:
    """A finite real number (not a bool), as a plain Python int or float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(float(value)):
        raise ConfigError(f"{who}: {arg} must be a finite real number, got {value!r}")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _seed(who: str, seed) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"{who}: seed must be None or a non-negative int, got {seed!r}")
    return int(seed)


def _axes(who: str, arg: str, axes) -> list[int] | None:
    if axes is None:
        return None
    if isinstance(axes, (str, bytes)) or not hasattr(axes, "__iter__") or not all(
            isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axes):
        raise ConfigError(f"{who}: {arg} must be None or a list of ints, got {axes!r}")
    return [int(a) for a in axes]


def _shape(who: str, shape) -> tuple[int, ...]:
    dims = None if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__") \
        else list(shape)
    if dims is None or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool)
                               and d >= 0 for d in dims):
        raise ConfigError(f"{who}: shape must be a tuple of non-negative ints, got {shape!r}")
    return tuple(int(d) for d in dims)


def _dtype(who: str, dtype, floating: bool) -> np.dtype:
    try:
        dt = np.dtype("float32" if dtype is None else dtype)
    except (TypeError, ValueError):
        raise ConfigError(f"{who}: unknown dtype {dtype!r}") from None
    if dt.kind not in ("f" if floating else "fiub"):
        need = "a floating-point" if floating else "a numeric or bool"
        raise ConfigError(f"{who}: dtype must be {need} dtype, got {dt.name!r}")
    return dt


# ---- the base class ------------------------------------------------------------------
class Initializer:
    """Base class of initializers (Keras 3's ``keras.initializers.Initializer``).

    Subclasses implement ``__call__(shape, dtype=None)`` returning an array of that
    shape and dtype, and ``get_config()`` when their constructor takes arguments; the
    default :meth:`from_config` calls the constructor with the config's keys.
    Two initializers are equal when they have the same class and config.
    """

    def __call__(self, shape, dtype=None):
        """Return an array of ``shape`` and ``dtype`` (``float32`` when None)."""
        raise NotImplementedError(f"{type(self).__name__}: Initializer subclasses must "
                                  f"implement __call__(shape, dtype=None)")

    def get_config(self) -> dict:
        """The constructor arguments, as a JSON-able dict."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> Initializer:
        """Build an initializer from :meth:`get_config`'s output.

        Raises
        ------
        ConfigError
            ``config`` is not a dict or names an argument the constructor does not take.
        """
        if not isinstance(config, dict):
            raise ConfigError(f"{cls.__name__}: config must be a dict, got {config!r}")
        params = inspect.signature(cls).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            valid = list(params)
            unknown = sorted(set(config) - set(valid))
            if unknown:
                raise ConfigError(f"{cls.__name__}: unknown config key(s) {unknown}; "
                                  f"valid: {sorted(valid)}")
        return cls(**config)

    def clone(self) -> Initializer:
        """A new initializer with the same config."""
        return type(self).from_config(self.get_config())

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self.get_config() == other.get_config()

    def __hash__(self):  # equal configs may differ in repr (0 vs 0.0): hash the class
        return hash(type(self))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


# ---- constants -----------------------------------------------------------------------
class Constant(Initializer):
    """Every entry is ``value`` (a real number) cast to the dtype.

    Parameters
    ----------
    value : int or float
        The constant; finite. An int stays an int, so ``Constant(3)`` is exact in any
        dtype.
    """

    def __init__(self, value=0.0):
        self.value = _real("Constant", "value", value)

    def __call__(self, shape, dtype=None):
        dt = _dtype("Constant", dtype, floating=False)
        return np.full(_shape("Constant", shape), self.value).astype(dt)

    def get_config(self):
        return {"value": self.value}


class Zeros(Initializer):
    """Every entry is 0."""

    def __call__(self, shape, dtype=None):
        return np.zeros(_shape("Zeros", shape), _dtype("Zeros", dtype, floating=False))


class Ones(Initializer):
    """Every entry is 1."""

    def __call__(self, shape, dtype=None):
        return np.ones(_shape("Ones", shape), _dtype("Ones", dtype, floating=False))


# ---- random --------------------------------------------------------------------------
class RandomInitializer(Initializer):
    """Base of the random initializers: holds ``seed`` (see the module docstring)."""

    def __init__(self, seed=None):
        self.seed = _seed(type(self).__name__, seed)

    def _generator(self) -> np.random.Generator:
        return rng() if self.seed is None else np.random.default_rng(self.seed)

    def _prepare(self, shape, dtype):
        who = type(self).__name__
        return _shape(who, shape), _dtype(who, dtype, floating=True), self._generator()

    def get_config(self):
        return {"seed": self.seed}


def _truncated_normal(gen, shape, mean, stddev):
    """``normal(mean, stddev)`` with values more than 2 stddev from the mean redrawn."""
    out = gen.normal(0.0, stddev, size=shape)
    bad = np.abs(out) > 2 * stddev
    while bad.any():
        out[bad] = gen.normal(0.0, stddev, size=int(bad.sum()))
        bad = np.abs(out) > 2 * stddev
    return out + mean


class RandomNormal(RandomInitializer):
    """Samples of ``normal(mean, stddev)``.

    Parameters
    ----------
    mean : float
    stddev : float
        Non-negative.
    seed : int or None
        See the module docstring.
    """

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        who = type(self).__name__
        self.mean = float(_real(who, "mean", mean))
        self.stddev = float(_real(who, "stddev", stddev))
        if self.stddev < 0:
            raise ConfigError(f"{who}: stddev must be non-negative, got {stddev!r}")
        super().__init__(seed)

    def __call__(self, shape, dtype=None):
        shape, dt, gen = self._prepare(shape, dtype)
        return gen.normal(self.mean, self.stddev, size=shape).astype(dt)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class TruncatedNormal(RandomNormal):
    """Samples of ``normal(mean, stddev)``; values more than ``2 * stddev`` away from
    the mean are redrawn (so the result's standard deviation is ~0.88 ``stddev``).

    Parameters
    ----------
    mean : float
    stddev : float
        Non-negative: the standard deviation before truncation.
    seed : int or None
        See the module docstring.
    """

    def __call__(self, shape, dtype=None):
        shape, dt, gen = self._prepare(shape, dtype)
        return _truncated_normal(gen, shape, self.mean, self.stddev).astype(dt)


class RandomUniform(RandomInitializer):
    """Samples of ``uniform[minval, maxval)``.

    Parameters
    ----------
    minval, maxval : float
        ``minval <= maxval``.
    seed : int or None
        See the module docstring.
    """

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        who = type(self).__name__
        self.minval = float(_real(who, "minval", minval))
        self.maxval = float(_real(who, "maxval", maxval))
        if self.minval > self.maxval:
            raise ConfigError(f"{who}: minval must be <= maxval, got "
                              f"minval={minval!r} > maxval={maxval!r}")
        super().__init__(seed)

    def __call__(self, shape, dtype=None):
        shape, dt, gen = self._prepare(shape, dtype)
        return gen.uniform(self.minval, self.maxval, size=shape).astype(dt)

    def get_config(self):
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


def compute_fans(shape, input_axes=None, output_axes=None) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight shape, as Keras 3 computes them.

    With both ``input_axes`` and ``output_axes``, the products of those axes' sizes.
    Otherwise: rank 0 gives ``(1, 1)``, rank 1 ``(n, n)``, rank 2 ``(rows, cols)``, and a
    higher rank (a convolution kernel ``(..., in, out)``) multiplies ``in`` and ``out``
    by the product of the leading axes (the receptive field).
    """
    shape = tuple(shape)
    if input_axes is not None and output_axes is not None:
        return (math.prod(shape[a] for a in input_axes),
                math.prod(shape[a] for a in output_axes))
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


_MODES = ("fan_avg", "fan_in", "fan_out")
_DISTRIBUTIONS = ("truncated_normal", "uniform", "untruncated_normal")


class VarianceScaling(RandomInitializer):
    """Samples whose variance is ``scale / n``, ``n`` chosen by ``mode`` from the fans.

    ``n`` is ``max(1, fan_in)``, ``max(1, fan_out)`` or ``max(1, (fan_in + fan_out) / 2)``
    (:func:`compute_fans`). ``"truncated_normal"`` draws a normal truncated at 2 stddev
    whose stddev after truncation is ``sqrt(scale / n)``; ``"untruncated_normal"`` a
    normal with that stddev; ``"uniform"`` samples ``uniform[-limit, limit)`` with
    ``limit = sqrt(3 * scale / n)``.

    Parameters
    ----------
    scale : float
        Positive.
    mode : {"fan_in", "fan_out", "fan_avg"}
    distribution : {"truncated_normal", "untruncated_normal", "uniform"}
        Case-insensitive; ``"normal"`` means ``"truncated_normal"``.
    seed : int or None
        See the module docstring.
    input_axes, output_axes : list of int, optional
        When both are given, the axes whose sizes multiply to ``fan_in`` / ``fan_out``.
    """

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal",
                 seed=None, input_axes=None, output_axes=None):
        who = type(self).__name__
        self.scale = float(_real(who, "scale", scale))
        if self.scale <= 0:
            raise ConfigError(f"{who}: scale must be positive, got {scale!r}")
        if mode not in _MODES:
            raise ConfigError(f"{who}: mode must be one of {list(_MODES)}, got {mode!r}")
        dist = distribution.lower() if isinstance(distribution, str) else distribution
        dist = "truncated_normal" if dist == "normal" else dist
        if dist not in _DISTRIBUTIONS:
            raise ConfigError(f"{who}: distribution must be one of {list(_DISTRIBUTIONS)} "
                              f"(or 'normal'), got {distribution!r}")
        self.mode, self.distribution = mode, dist
        self.input_axes = _axes(who, "input_axes", input_axes)
        self.output_axes = _axes(who, "output_axes", output_axes)
        super().__init__(seed)

    def _fans(self, shape):
        for arg, axes in (("input_axes", self.input_axes), ("output_axes", self.output_axes)):
            bad = [a for a in axes or () if not -len(shape) <= a < len(shape)]
            if bad:
                raise ConfigError(f"{type(self).__name__}: {arg} {axes} has axes {bad} out "
                                  f"of range for shape {shape}")
        return compute_fans(shape, self.input_axes, self.output_axes)

    def __call__(self, shape, dtype=None):
        shape, dt, gen = self._prepare(shape, dtype)
        fan_in, fan_out = self._fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}
        scale = self.scale / max(1.0, n[self.mode])
        if self.distribution == "truncated_normal":
            out = _truncated_normal(gen, shape, 0.0, math.sqrt(scale) / _TRUNCATED_STD)
        elif self.distribution == "untruncated_normal":
            out = gen.normal(0.0, math.sqrt(scale), size=shape)
        else:
            limit = math.sqrt(3.0 * scale)
            out = gen.uniform(-limit, limit, size=shape)
        return out.astype(dt)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "mode": self.mode,
                "distribution": self.distribution, "input_axes": self.input_axes,
                "output_axes": self.output_axes}


class _FixedVarianceScaling(VarianceScaling):
    """A :class:`VarianceScaling` whose scale, mode and distribution are fixed."""

    _fixed: tuple[float, str, str]

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        scale, mode, distribution = self._fixed
        super().__init__(scale, mode, distribution, seed, input_axes, output_axes)

    def get_config(self):
        return {"seed": self.seed, "input_axes": self.input_axes,
                "output_axes": self.output_axes}


class GlorotUniform(_FixedVarianceScaling):
    """``uniform[-limit, limit)`` with ``limit = sqrt(6 / (fan_in + fan_out))``."""

    _fixed = (1.0, "fan_avg", "uniform")


class GlorotNormal(_FixedVarianceScaling):
    """Truncated normal with stddev ``sqrt(2 / (fan_in + fan_out))`` after truncation."""

    _fixed = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_FixedVarianceScaling):
    """``uniform[-limit, limit)`` with ``limit = sqrt(6 / fan_in)``."""

    _fixed = (2.0, "fan_in", "uniform")


class HeNormal(_FixedVarianceScaling):
    """Truncated normal with stddev ``sqrt(2 / fan_in)`` after truncation."""

    _fixed = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_FixedVarianceScaling):
    """``uniform[-limit, limit)`` with ``limit = sqrt(3 / fan_in)``."""

    _fixed = (1.0, "fan_in", "uniform")


class LecunNormal(_FixedVarianceScaling):
    """Truncated normal with stddev ``sqrt(1 / fan_in)`` after truncation."""

    _fixed = (1.0, "fan_in", "truncated_normal")


class Orthogonal(RandomInitializer):
    """``gain`` times a random orthogonal matrix (QR of a standard normal matrix).

    A shape of rank > 2 is treated as the matrix ``(prod(shape[:-1]), shape[-1])`` and
    reshaped back. With fewer rows than columns the rows are orthonormal, otherwise the
    columns.

    Parameters
    ----------
    gain : float
        Positive multiplicative factor.
    seed : int or None
        See the module docstring.
    """

    def __init__(self, gain=1.0, seed=None):
        who = type(self).__name__
        self.gain = float(_real(who, "gain", gain))
        if self.gain <= 0:
            raise ConfigError(f"{who}: gain must be positive, got {gain!r}")
        super().__init__(seed)

    def __call__(self, shape, dtype=None):
        shape, dt, gen = self._prepare(shape, dtype)
        if len(shape) < 2:
            raise ConfigError(f"{type(self).__name__}: shape must have rank >= 2, got "
                              f"{shape} of rank {len(shape)}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = gen.normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
        from graphmask.runtime import single_threaded_blas
        with single_threaded_blas():  # threaded OpenBLAS QR: up to 500x slower, same result
            q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(dt)

    def get_config(self):
        return {**super().get_config(), "gain": self.gain}


# ---- names, get and serialization ----------------------------------------------------
_CLASSES = (Constant, Zeros, Ones, RandomNormal, TruncatedNormal, RandomUniform,
            VarianceScaling, GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform,
            LecunNormal, Orthogonal)
#: The built-in initializers by class name (``"GlorotUniform"``).
CLASSES: dict[str, type] = {c.__name__: c for c in _CLASSES}
#: Snake-case names (matched case-insensitively) and Keras's aliases.
INITIALIZERS: dict[str, type] = {
    **{snake_case(c.__name__): c for c in _CLASSES},
    "normal": RandomNormal, "uniform": RandomUniform, "zero": Zeros, "one": Ones,
}
_ALIASES = {"OrthogonalInitializer": Orthogonal}

# Keras exports the snake-case names as aliases of the classes.
constant, zeros, ones = Constant, Zeros, Ones
random_normal, truncated_normal, random_uniform = RandomNormal, TruncatedNormal, RandomUniform
variance_scaling, orthogonal = VarianceScaling, Orthogonal
glorot_uniform, glorot_normal, he_uniform, he_normal = (GlorotUniform, GlorotNormal,
                                                         HeUniform, HeNormal)
lecun_uniform, lecun_normal = LecunUniform, LecunNormal


def _class_named(name: str):
    return CLASSES.get(name) or _ALIASES.get(name) or INITIALIZERS.get(name.lower())


def _where(layer: str, argument: str) -> str:
    return f"{layer}: {argument}" if layer else argument


def serialize(initializer) -> dict:
    """The Keras config dict ``{"class_name": ..., "config": ...}`` of an initializer.

    Raises
    ------
    ConfigError
        ``initializer`` is not an :class:`Initializer` (a plain function has no config).
    """
    if not isinstance(initializer, Initializer):
        raise ConfigError(f"serialize: expected an Initializer, got {initializer!r}")
    return {"class_name": type(initializer).__name__, "config": initializer.get_config()}


def deserialize(config, layer: str = "", argument: str = "initializer") -> Initializer:
    """The initializer of a Keras config dict ``{"class_name": ..., "config": {...}}``.

    ``module`` and ``registered_name`` keys (as Keras writes them) are accepted and ignored.
    """
    where = _where(layer, argument)
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str) \
            or not isinstance(config.get("config", {}), dict) \
            or set(config) - {"class_name", "config", "module", "registered_name"}:
        raise ConfigError(f"{where}: expected {{'class_name': str, 'config': dict}}, "
                          f"got {config!r}")
    name = config["class_name"]
    cls = _class_named(name)
    if cls is None:
        raise ConfigError(f"{where}: unknown initializer {name!r}{closest(name, CLASSES)}; "
                          f"valid: {sorted(CLASSES)}")
    try:
        return cls.from_config(config.get("config", {}))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def get(identifier, layer: str = "", argument: str = "initializer"):
    """An initializer from what users pass as ``*_initializer`` or ``initializer=``.

    Parameters
    ----------
    identifier : Initializer, str, dict, class or callable
        An instance (returned as it is); a class name (``"GlorotUniform"``) or a
        snake-case name (``"glorot_uniform"``, any case; Keras's aliases ``"normal"``,
        ``"uniform"``, ``"zero"``, ``"one"``) giving an instance with default arguments;
        a Keras config dict (:func:`deserialize`); an :class:`Initializer` subclass
        (instantiated with no arguments); or any callable ``f(shape, dtype)``.
    layer, argument : str
        Named in error messages.

    Raises
    ------
    ConfigError
        An unknown name (with the closest valid one), a bad config or argument.
    """
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier, layer, argument)
    if isinstance(identifier, str):
        cls = _class_named(identifier)
        if cls is not None:
            return cls()
        raise ConfigError(f"{_where(layer, 'unknown ' + argument)} {identifier!r}"
                          f"{closest(snake_case(identifier), INITIALIZERS)}; valid: "
                          f"{sorted(INITIALIZERS)} or their class names ('GlorotUniform')")
    if inspect.isclass(identifier) and issubclass(identifier, Initializer):
        try:
            return identifier()
        except TypeError as e:
            raise ConfigError(f"{_where(layer, argument)}: {identifier.__name__}() needs "
                              f"arguments ({e}); pass an instance") from None
    if callable(identifier):
        return identifier
    raise ConfigError(f"{_where(layer, argument)}: expected an Initializer, a name, a "
                      f"config dict or a callable f(shape, dtype), got {identifier!r}")


def name_of(initializer):
    """What a layer's ``get_config`` stores for an initializer: JSON-able, and for every
    built-in initializer something :func:`get` turns back into an equal one.

    A built-in initializer with its default arguments gives its snake-case name
    (``"glorot_uniform"``), one with other arguments its :func:`serialize` dict; a
    user's function or :class:`Initializer` subclass gives its name only (it cannot be
    looked up when loading: a loaded model's weights replace what it would draw).
    """
    cls = type(initializer)
    if cls in _CLASSES:
        if initializer == cls():
            return snake_case(cls.__name__)
        return serialize(initializer)
    if isinstance(initializer, Initializer):
        return cls.__name__
    return getattr(initializer, "__name__", "custom")


def is_custom(saved) -> bool:
    """Whether a saved initializer (a name or a config dict) names a user's initializer,
    which loading cannot rebuild (see :func:`name_of`)."""
    if isinstance(saved, dict):
        saved = saved.get("class_name")
    return isinstance(saved, str) and _class_named(saved) is None
