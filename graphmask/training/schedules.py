"""Learning-rate schedules (``keras.optimizers.schedules``), evaluated as Keras does.

A schedule maps the optimizer's step count (``iterations``, 0 before the first update)
to a learning rate, computed in float32 operation by operation as Keras computes it.
Give one as ``learning_rate=`` to any optimizer; ``optimizer.learning_rate`` is then the
rate of the next step.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphmask.errors import ConfigError

__all__ = ["CosineDecay", "ExponentialDecay", "InverseTimeDecay", "LearningRateSchedule",
           "PiecewiseConstantDecay", "deserialize", "serialize"]

F32 = np.float32


def _num(who, arg, value, positive=False, nonneg=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not math.isfinite(value):
        raise ConfigError(f"{who}: {arg} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{who}: {arg} must be > 0, got {value!r}")
    if nonneg and value < 0:
        raise ConfigError(f"{who}: {arg} must be >= 0, got {value!r}")
    return value


class LearningRateSchedule:
    """Base class: subclasses define ``__call__(step)`` and ``get_config()``."""

    def __call__(self, step) -> np.float32:
        raise TypeError(f"{type(self).__name__} must define __call__(step)")

    def get_config(self) -> dict[str, Any]:
        raise TypeError(f"{type(self).__name__} must define get_config() to be saved")

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        return cls(**config)

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (the exponent
    floored with ``staircase=True``)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        who = type(self).__name__
        self.initial_learning_rate = _num(who, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _num(who, "decay_steps", decay_steps, positive=True)
        self.decay_rate = _num(who, "decay_rate", decay_rate)
        self.staircase, self.name = bool(staircase), name

    def __call__(self, step):
        p = F32(step) / F32(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return F32(self.initial_learning_rate) * np.power(F32(self.decay_rate), p)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (the ratio
    floored with ``staircase=True``)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="InverseTimeDecay"):
        who = type(self).__name__
        self.initial_learning_rate = _num(who, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _num(who, "decay_steps", decay_steps, positive=True)
        self.decay_rate = _num(who, "decay_rate", decay_rate)
        self.staircase, self.name = bool(staircase), name

    def __call__(self, step):
        p = F32(step) / F32(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return F32(self.initial_learning_rate) / (F32(1) + F32(self.decay_rate) * p)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after the last boundary."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        who = type(self).__name__
        boundaries, values = list(boundaries), list(values)
        if len(values) != len(boundaries) + 1:
            raise ConfigError(f"{who}: values must have one more entry than boundaries; got "
                              f"{len(boundaries)} boundaries and {len(values)} values")
        for b in boundaries:
            _num(who, "boundaries", b)
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])):
            raise ConfigError(f"{who}: boundaries must increase, got {boundaries}")
        self.boundaries = boundaries
        self.values = [_num(who, "values", v) for v in values]
        self.name = name

    def __call__(self, step):
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return F32(v)
        return F32(self.values[-1])

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Optional linear warmup from ``initial_learning_rate`` to ``warmup_target`` over
    ``warmup_steps``, then cosine decay to ``alpha`` times the start over ``decay_steps``
    (and constant after), as Keras 3."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        who = type(self).__name__
        self.initial_learning_rate = _num(who, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _num(who, "decay_steps", decay_steps, positive=True)
        self.alpha = _num(who, "alpha", alpha)
        self.warmup_target = None if warmup_target is None else \
            _num(who, "warmup_target", warmup_target)
        self.warmup_steps = _num(who, "warmup_steps", warmup_steps, nonneg=True)
        if self.warmup_target is not None and self.warmup_steps == 0:
            raise ConfigError(f"{who}: warmup_target={warmup_target!r} needs warmup_steps > 0")
        self.name = name

    def _decay(self, step, start):
        frac = F32(step) / F32(self.decay_steps)
        cosine = F32(0.5) * (F32(1) + np.cos(F32(math.pi) * frac))
        return F32(start) * (F32(1 - self.alpha) * cosine + F32(self.alpha))

    def __call__(self, step):
        step = F32(step)
        if self.warmup_target is None:
            return self._decay(min(step, F32(self.decay_steps)), self.initial_learning_rate)
        warm = F32(self.warmup_steps)
        step = min(step, F32(self.decay_steps) + warm)
        if step < warm:
            delta = F32(self.warmup_target) - F32(self.initial_learning_rate)
            return delta * (step / warm) + F32(self.initial_learning_rate)
        return self._decay(step - warm, self.warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


_CLASSES = {c.__name__: c for c in (ExponentialDecay, InverseTimeDecay,
                                     PiecewiseConstantDecay, CosineDecay)}


def serialize(schedule: LearningRateSchedule) -> dict[str, Any]:
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config: dict[str, Any]) -> LearningRateSchedule:
    name = config.get("class_name")
    if name not in _CLASSES:
        raise ConfigError(f"unknown learning-rate schedule {name!r}; known: {sorted(_CLASSES)}")
    return _CLASSES[name].from_config(dict(config.get("config", {})))
