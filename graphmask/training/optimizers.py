"""Optimizers with Keras 3's update rules (see docs/masking.md, "Optimizers").

``opt.apply(params, grads)`` updates a list of weight arrays in place, one fused numba
pass per weight. Per-weight state (momentums, velocities, ...) is created on the first
``apply`` (or ``build``); ``iterations`` counts applied steps and the step number inside
an update is ``t = iterations + 1``.

Arithmetic follows Keras 3 operation by operation in the weight's dtype. As in Keras,
the learning rate is held as a float32 value (Keras keeps it in a float32 variable), so
float64 weights see ``float64(float32(learning_rate))``. Every weight is updated at every
step, also where its gradient is zero (Adam's moments decay); a ``None`` gradient is a
zero gradient (Keras would skip that weight).

Gradient clipping, applied before the update as in Keras: ``clipnorm`` (each gradient
scaled to L2 norm <= clipnorm), ``global_clipnorm`` (all gradients scaled together) or
``clipvalue`` (elementwise clip); at most one of them.
"""
from __future__ import annotations

import difflib
import math
from typing import Any

import numpy as np

from graphmask.errors import ConfigError, InputError
from graphmask.kernels import optimizers as K
from graphmask.training import schedules

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "Lion", "Nadam",
           "Optimizer", "RMSprop", "deserialize", "get", "serialize"]


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return value


def _check(name, value, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    """Validate a float hyper-parameter against [lo, hi] (open ends where asked)."""
    v = _number(name, value)
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ConfigError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ConfigError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {value!r}")
    return v


def _flag(name, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
    return bool(value)


class Optimizer:
    """Base class: learning rate, clipping, lazily created state, save/restore."""

    _hyper: tuple[str, ...] = ()  # extra get_config keys

    def __init__(self, learning_rate: float, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None,
                 name: str | None = None, weight_decay: float | None = None) -> None:
        if isinstance(learning_rate, dict) and "class_name" in learning_rate:
            learning_rate = schedules.deserialize(learning_rate)  # a saved config
        self.learning_rate = learning_rate
        self.weight_decay = None if weight_decay is None else \
            _check("weight_decay", weight_decay, lo=0)
        for arg, val in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                         ("global_clipnorm", global_clipnorm)):
            setattr(self, arg, None if val is None else _check(arg, val, lo=0, lo_open=True))
        given = [a for a in ("clipnorm", "clipvalue", "global_clipnorm")
                 if getattr(self, a) is not None]
        if len(given) > 1:
            raise ConfigError(f"only one of clipnorm, clipvalue and global_clipnorm can be "
                              f"set; got {', '.join(f'{a}={getattr(self, a)}' for a in given)}")
        self.name = name or type(self).__name__.lower()
        self._iterations = 0
        self._slots: dict[str, list[np.ndarray]] | None = None
        self._pending: list[np.ndarray] | None = None

    # ---- hyper-parameters -------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step (a schedule's value at ``iterations``)."""
        return self.current_learning_rate()

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        if isinstance(value, schedules.LearningRateSchedule):
            self._learning_rate = value
            return
        self._learning_rate = _check("learning_rate", value, lo=0, lo_open=True)

    def current_learning_rate(self) -> float:
        """The learning rate the next step uses (a schedule's value at ``iterations``)."""
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            return float(lr(self._iterations))
        return lr

    def learning_rate_settable(self, who: str) -> None:
        """Raise unless ``learning_rate`` can be assigned (not a schedule), naming ``who``."""
        if isinstance(self._learning_rate, schedules.LearningRateSchedule):
            raise ConfigError(f"{who}: the optimizer's learning rate is the schedule "
                              f"{self._learning_rate!r}, which cannot be changed by a "
                              f"callback; give the optimizer a float learning_rate")

    def slot_init(self, slot: str) -> float:
        """The initial value of a state slot (0 unless the rule says otherwise)."""
        return 0.0

    @property
    def iterations(self) -> int:
        """Number of steps applied so far."""
        return self._iterations

    def slot_names(self) -> tuple[str, ...]:
        """Per-weight state arrays, in the order of ``get_state`` (Keras's order)."""
        return ()

    # ---- state ------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self._slots is not None

    def build(self, params: list[np.ndarray]) -> None:
        """Create zero state for these weights (done by the first ``apply``)."""
        self._slots = {s: [np.full_like(p, self.slot_init(s)) for p in params]
                       for s in self.slot_names()}
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.set_state(pending)

    def get_state(self) -> list[np.ndarray]:
        """``[iterations (int64 scalar)] + every slot of every weight`` (copies)."""
        state = [np.array(self._iterations, dtype=np.int64)]
        if self._slots is not None:
            for s in self.slot_names():
                state += [a.copy() for a in self._slots[s]]
        elif self._pending is not None:
            state += [a.copy() for a in self._pending[1:]]
        return state

    def set_state(self, state: list[np.ndarray]) -> None:
        """Restore what ``get_state`` returned (before or after the first ``apply``)."""
        state = [np.asarray(a) for a in state]
        if not state or state[0].shape != () or state[0].dtype.kind not in "iu":
            raise ConfigError(f"{self.name}: optimizer state must start with the integer "
                              f"iteration count")
        if self._slots is None:
            self._iterations = int(state[0])
            self._pending = [a.copy() for a in state]
            return
        arrays = [a for s in self.slot_names() for a in self._slots[s]]
        if len(state) - 1 != len(arrays):
            raise ConfigError(f"{self.name}: optimizer state has {len(state) - 1} arrays, "
                              f"expected {len(arrays)} ({len(self.slot_names())} slot(s) for "
                              f"each of {len(arrays) // max(len(self.slot_names()), 1)} "
                              f"weights)")
        for k, (dst, src) in enumerate(zip(arrays, state[1:])):
            if dst.shape != src.shape:
                raise ConfigError(f"{self.name}: optimizer state array {k + 1} has shape "
                                  f"{src.shape}, expected {dst.shape}")
        for dst, src in zip(arrays, state[1:]):
            dst[...] = src
        self._iterations = int(state[0])

    # ---- the step ---------------------------------------------------------------
    def _clip(self, grads: list[np.ndarray]) -> list[np.ndarray]:
        if self.clipnorm is not None:
            out = []
            for g in grads:
                norm = g.dtype.type(math.sqrt(K.sum_squares(g.reshape(-1))))
                c = g.dtype.type(self.clipnorm)
                out.append(g * c / max(norm, c))
            return out
        if self.global_clipnorm is not None:
            norm = math.sqrt(sum(K.sum_squares(g.reshape(-1)) for g in grads))
            scale = self.global_clipnorm * min(1.0 / norm if norm else math.inf,
                                               1.0 / self.global_clipnorm)
            return [g * g.dtype.type(scale) for g in grads]
        if self.clipvalue is not None:
            return [np.clip(g, -self.clipvalue, self.clipvalue).astype(g.dtype) for g in grads]
        return grads

    def apply(self, params: list[np.ndarray], grads: list[np.ndarray | None]) -> None:
        """Update ``params`` in place from ``grads`` (same order, same shapes)."""
        params, grads = list(params), list(grads)
        if len(params) != len(grads):
            raise InputError(f"{self.name}: {len(params)} weights but {len(grads)} gradients")
        flat_g = []
        for k, (p, g) in enumerate(zip(params, grads)):
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise InputError(f"{self.name}: weight {k} must be a float ndarray")
            if not (p.flags.c_contiguous and p.flags.writeable):
                raise InputError(f"{self.name}: weight {k} must be C-contiguous and writeable "
                                 f"(it is updated in place)")
            g = np.zeros_like(p) if g is None else np.asarray(g)
            if g.shape != p.shape:
                raise InputError(f"{self.name}: gradient {k} has shape {g.shape}, weight has "
                                 f"{p.shape}")
            flat_g.append(np.ascontiguousarray(g, dtype=p.dtype))
        if self._slots is None:
            self.build(params)
        else:
            n = len(next(iter(self._slots.values()), params))
            if n != len(params):
                raise InputError(f"{self.name}: built for {n} weights, got {len(params)}")
        flat_g = self._clip(flat_g)
        t = self._iterations + 1
        self._lr_now = np.float32(self.current_learning_rate())
        if self.weight_decay:  # decoupled, before the update (Keras on torch)
            for p in params:
                dt = p.dtype.type
                K.scale(p.reshape(-1), dt(np.float32(1) - np.float32(self.weight_decay)
                                          * self._lr_now))
        self._begin_step(t)
        for k, (p, g) in enumerate(zip(params, flat_g)):
            slots = {s: self._slots[s][k].reshape(-1) for s in self.slot_names()}
            self._update(p.reshape(-1), g.reshape(-1), slots, t, p.dtype.type)
        self._iterations += 1

    def _update(self, w, g, slots, t, dt) -> None:
        raise TypeError(f"{type(self).__name__} defines no update rule")

    def _begin_step(self, t) -> None:
        """Per-step work shared by all weights (before the first weight's update)."""

    def _lr(self, dt):
        # Keras holds the learning rate in a float32 variable and casts it to the weight dtype
        return dt(self._lr_now)

    # ---- config -----------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        lr = self._learning_rate
        cfg = {"name": self.name,
               "learning_rate": schedules.serialize(lr)
               if isinstance(lr, schedules.LearningRateSchedule) else lr,
               "weight_decay": self.weight_decay,
               "clipnorm": self.clipnorm, "clipvalue": self.clipvalue,
               "global_clipnorm": self.global_clipnorm}
        cfg.update({k: getattr(self, k) for k in self._hyper})
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items()
                         if v is not None and k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Gradient descent, optionally with (Nesterov) momentum.

    ``m = momentum * m - lr * g``; ``w += m`` (nesterov: ``w += momentum * m - lr * g``);
    without momentum ``w -= lr * g``.
    """

    _hyper = ("momentum", "nesterov")

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.momentum = _check("momentum", momentum, lo=0.0, hi=1.0)
        self.nesterov = _flag("nesterov", nesterov)

    def slot_names(self):
        return ("momentum",) if self.momentum != 0 else ()

    def _update(self, w, g, slots, t, dt):
        if self.momentum != 0:
            K.sgd_momentum(w, g, slots["momentum"], self._lr(dt), dt(self.momentum),
                           self.nesterov)
        else:
            K.sgd(w, g, self._lr(dt))


class Adam(Optimizer):
    """Adam with Keras's epsilon placement (``sqrt(v) + epsilon``, rate bias-corrected)."""

    _hyper = ("beta_1", "beta_2", "epsilon", "amsgrad")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, amsgrad: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _check("beta_1", beta_1, lo=0.0, hi=1.0, hi_open=True)
        self.beta_2 = _check("beta_2", beta_2, lo=0.0, hi=1.0, hi_open=True)
        self.epsilon = _check("epsilon", epsilon, lo=0.0)
        self.amsgrad = _flag("amsgrad", amsgrad)

    def slot_names(self):
        return ("momentum", "velocity") + (("velocity_hat",) if self.amsgrad else ())

    def _update(self, w, g, slots, t, dt):
        step = dt(t)
        b1p = dt(self.beta_1) ** step
        b2p = dt(self.beta_2) ** step
        alpha = self._lr(dt) * np.sqrt(dt(1) - b2p) / (dt(1) - b1p)
        vhat = slots.get("velocity_hat", slots["velocity"])
        K.adam(w, g, slots["momentum"], slots["velocity"], vhat, dt(alpha),
               dt(1 - self.beta_1), dt(1 - self.beta_2), dt(self.epsilon), self.amsgrad)


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with plain momentum (Keras 3 rules)."""

    _hyper = ("rho", "momentum", "epsilon", "centered")

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.rho = _check("rho", rho, lo=0.0, hi=1.0, hi_open=True)
        self.momentum = _check("momentum", momentum, lo=0.0, hi=1.0)
        self.epsilon = _check("epsilon", epsilon, lo=0.0)
        self.centered = _flag("centered", centered)

    def slot_names(self):
        return (("velocity",) + (("momentum",) if self.momentum > 0 else ())
                + (("average_gradient",) if self.centered else ()))

    def _update(self, w, g, slots, t, dt):
        v = slots["velocity"]
        K.rmsprop(w, g, v, slots.get("average_gradient", v), slots.get("momentum", v),
                  self._lr(dt), dt(self.rho), dt(1 - self.rho), dt(self.epsilon),
                  dt(self.momentum), self.centered, self.momentum > 0)


class AdamW(Adam):
    """Adam with decoupled weight decay: ``w *= 1 - weight_decay * lr`` before each Adam
    update (Keras 3's rule; default ``weight_decay=0.004``)."""

    def __init__(self, learning_rate: float = 0.001, weight_decay: float = 0.004,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 amsgrad: bool = False, **kwargs: Any) -> None:
        if weight_decay is None:
            raise ConfigError("AdamW: weight_decay must be a float, got None")
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=amsgrad, weight_decay=weight_decay, **kwargs)


class Adagrad(Optimizer):
    """``acc += g**2``; ``w -= lr * g / sqrt(acc + epsilon)``; ``acc`` starts at
    ``initial_accumulator_value``."""

    _hyper = ("initial_accumulator_value", "epsilon")

    def __init__(self, learning_rate: float = 0.001, initial_accumulator_value: float = 0.1,
                 epsilon: float = 1e-7, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = _check("initial_accumulator_value",
                                                initial_accumulator_value, lo=0.0)
        self.epsilon = _check("epsilon", epsilon, lo=0.0)

    def slot_names(self):
        return ("accumulator",)

    def slot_init(self, slot):
        return self.initial_accumulator_value

    def _update(self, w, g, slots, t, dt):
        K.adagrad(w, g, slots["accumulator"], self._lr(dt), dt(self.epsilon))


class Adamax(Optimizer):
    """Adam on the infinity norm: ``m = beta_1 m + (1 - beta_1) g``,
    ``u = max(beta_2 u, |g|)``, ``w -= lr m / ((u + epsilon) (1 - beta_1**t))``."""

    _hyper = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _check("beta_1", beta_1, lo=0.0, hi=1.0, hi_open=True)
        self.beta_2 = _check("beta_2", beta_2, lo=0.0, hi=1.0, hi_open=True)
        self.epsilon = _check("epsilon", epsilon, lo=0.0)

    def slot_names(self):
        return ("momentum", "norm")

    def _update(self, w, g, slots, t, dt):
        corr = dt(1) - dt(self.beta_1) ** dt(t)
        K.adamax(w, g, slots["momentum"], slots["norm"], self._lr(dt), dt(self.beta_1),
                 dt(1 - self.beta_1), dt(self.beta_2), dt(self.epsilon), dt(corr))


class Nadam(Optimizer):
    """Adam with Nesterov momentum and Keras's momentum schedule
    ``u_t = beta_1 (1 - 0.5 * 0.96**t)`` (its running product is derived from
    ``iterations``, so saved state restores it)."""

    _hyper = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _check("beta_1", beta_1, lo=0.0, hi=1.0, hi_open=True)
        self.beta_2 = _check("beta_2", beta_2, lo=0.0, hi=1.0, hi_open=True)
        self.epsilon = _check("epsilon", epsilon, lo=0.0)
        self._product = (0, np.float32(1.0))  # (step, prod of u_1..u_step) in float32

    def slot_names(self):
        return ("momentum", "velocity")

    def _u(self, step):
        f = np.float32
        return f(self.beta_1) * (f(1.0) - f(0.5) * f(0.96) ** f(step))

    def _begin_step(self, t):
        step, prod = self._product
        if step > t - 1:
            step, prod = 0, np.float32(1.0)
        while step < t:
            step += 1
            prod = np.float32(prod * self._u(step))
        self._product = (step, prod)

    def _update(self, w, g, slots, t, dt):
        u_t, u_t_1 = self._u(t), self._u(t + 1)
        prod = self._product[1]
        prod_1 = np.float32(prod * u_t_1)
        K.nadam(w, g, slots["momentum"], slots["velocity"], self._lr(dt), dt(self.beta_1),
                dt(1 - self.beta_1), dt(self.beta_2), dt(1 - self.beta_2), dt(u_t), dt(u_t_1),
                dt(1 - prod_1), dt(1 - prod), dt(1) - dt(self.beta_2) ** dt(t),
                dt(self.epsilon))


class Adadelta(Optimizer):
    """``a = rho a + (1 - rho) g**2``; ``d = -sqrt(s + eps) g / sqrt(a + eps)``;
    ``s = rho s + (1 - rho) d**2``; ``w += lr d``."""

    _hyper = ("rho", "epsilon")

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.95, epsilon: float = 1e-7,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.rho = _check("rho", rho, lo=0.0, hi=1.0)
        self.epsilon = _check("epsilon", epsilon, lo=0.0)

    def slot_names(self):
        return ("accumulated_grad", "accumulated_delta_var")

    def _update(self, w, g, slots, t, dt):
        K.adadelta(w, g, slots["accumulated_grad"], slots["accumulated_delta_var"],
                   self._lr(dt), dt(self.rho), dt(1 - self.rho), dt(self.epsilon))


class Lion(Optimizer):
    """``w -= lr * sign(beta_1 m + (1 - beta_1) g)``; ``m = beta_2 m + (1 - beta_2) g``."""

    _hyper = ("beta_1", "beta_2")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9,
                 beta_2: float = 0.99, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _check("beta_1", beta_1, lo=0.0, hi=1.0, lo_open=True)
        self.beta_2 = _check("beta_2", beta_2, lo=0.0, hi=1.0)

    def slot_names(self):
        return ("momentum",)

    def _update(self, w, g, slots, t, dt):
        K.lion(w, g, slots["momentum"], self._lr(dt), dt(self.beta_1), dt(1 - self.beta_1),
               dt(self.beta_2), dt(1 - self.beta_2))


_CLASSES = {c.__name__.lower(): c for c in (SGD, Adam, RMSprop, AdamW, Adagrad, Adamax,
                                            Nadam, Adadelta, Lion)}


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config: dict[str, Any]) -> Optimizer:
    name = str(config.get("class_name", ""))
    cls = _lookup(name)
    cfg = config.get("config", {})
    if not isinstance(cfg, dict):
        raise ConfigError(f"optimizer {name}: config must be a dict, got {cfg!r}")
    try:
        return cls.from_config(dict(cfg))
    except TypeError as e:
        raise ConfigError(f"optimizer {name}: bad config {cfg!r} ({e})") from None


def _lookup(name: str) -> type[Optimizer]:
    key = name.lower()
    if key in _CLASSES:
        return _CLASSES[key]
    close = difflib.get_close_matches(key, list(_CLASSES), n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown optimizer {name!r}{hint} (known: {sorted(_CLASSES)})")


def get(identifier: str | dict | Optimizer) -> Optimizer:
    """An optimizer from a name ('sgd', 'adam', 'adamw', 'nadam', ...; any case), a config
    or itself."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        return _lookup(identifier)()
    raise ConfigError(f"cannot interpret {identifier!r} as an optimizer; give a name "
                      f"({sorted(_CLASSES)}) or an Optimizer instance")
