"""The optimizer's state in a Keras 3 ``.keras`` file, both ways.

Keras 3 writes ``model.optimizer.variables`` to ``optimizer/vars/<i>`` of
``model.weights.h5``: the step count (int64), the learning rate (float32; absent when it
is a schedule), then the per-weight slots. Slots are created by calls of
``add_optimizer_variables(trainable_variables, names)``: within one call they are
interleaved per weight (``kernel_momentum, kernel_velocity, bias_momentum, ...``), calls
follow one another (RMSprop makes one call per slot; Adam's ``velocity_hat`` comes after
the others). Nadam adds its running momentum product last. graphmask keeps the same
slots slot by slot (``Optimizer.get_state``: every weight's first slot, then every
weight's second ...); this module converts between the two orders, so a model saved by
either library resumes training in the other where it stopped.

An optimizer that has not taken a step has no slots (Keras writes only the step count
and the learning rate then, and so does graphmask). A file whose slots do not match the
compiled optimizer is treated as Keras treats it: a warning, and a fresh optimizer.
"""
from __future__ import annotations

import warnings

import numpy as np

from graphmask.errors import FileFormatError
from graphmask.training import optimizers as optimizers_mod
from graphmask.training import schedules


def slot_groups(opt) -> list[tuple[str, ...]]:
    """The slot names of each of Keras's ``add_optimizer_variables`` calls, in order."""
    names = tuple(opt.slot_names())
    if isinstance(opt, optimizers_mod.RMSprop):
        return [(n,) for n in names]
    if isinstance(opt, optimizers_mod.Adam) and "velocity_hat" in names:
        return [("momentum", "velocity"), ("velocity_hat",)]
    return [names] if names else []


def _has_lr_variable(opt) -> bool:
    return not isinstance(opt._learning_rate, schedules.LearningRateSchedule)


def _nadam_product(opt, steps: int) -> np.float32:
    """Nadam's running product ``u_1 * ... * u_steps`` (float32, as Keras accumulates)."""
    prod = np.float32(1.0)
    for t in range(1, steps + 1):
        prod = np.float32(prod * opt._u(t))
    return prod


def to_keras(model) -> list[np.ndarray]:
    """``model.optimizer``'s state as Keras 3's ``optimizer.variables`` values."""
    opt = model.optimizer
    state = opt.get_state()
    steps = int(state[0])
    out = [np.array(steps, dtype=np.int64)]
    if _has_lr_variable(opt):
        out.append(np.array(opt.learning_rate, dtype=np.float32))
    if len(state) == 1:  # no step taken: no slots yet
        return out
    names = opt.slot_names()
    n = len(model.trainable_weights)
    by_slot = {s: state[1 + k * n:1 + (k + 1) * n] for k, s in enumerate(names)}
    for group in slot_groups(opt):
        for i in range(n):
            out += [np.asarray(by_slot[s][i]) for s in group]
    if isinstance(opt, optimizers_mod.Nadam):
        out.append(np.array(_nadam_product(opt, steps), dtype=np.float32))
    return out


def from_keras(model, arrays: list[np.ndarray], label: str) -> list[np.ndarray] | None:
    """graphmask optimizer state (``Optimizer.set_state``'s list) from the values Keras
    wrote, or None (with a warning, as Keras) when they do not fit the compiled optimizer.
    Also sets a float learning rate to the saved one."""
    opt = model.optimizer
    weights = model.trainable_weights
    head = 2 if _has_lr_variable(opt) else 1
    groups = slot_groups(opt)
    tail = 1 if isinstance(opt, optimizers_mod.Nadam) else 0
    n_slots = sum(len(g) for g in groups) * len(weights)
    if not arrays or np.asarray(arrays[0]).shape != ():
        raise FileFormatError(f"{label}: optimizer/vars/0 is not the step count")
    steps = int(np.asarray(arrays[0]))
    if len(arrays) not in (head, head + n_slots + tail):
        warnings.warn(f"{label}: the optimizer state holds {len(arrays)} arrays, the "
                      f"compiled {type(opt).__name__} has {head + n_slots + tail}; it starts "
                      f"fresh (as Keras does)", UserWarning, stacklevel=3)
        return None
    if head == 2:
        opt.learning_rate = float(np.asarray(arrays[1]))
    if len(arrays) == head:
        return [np.array(steps, dtype=np.int64)]
    by_slot: dict[str, list] = {s: [None] * len(weights) for g in groups for s in g}
    k = head
    for group in groups:
        for i, v in enumerate(weights):
            for s in group:
                a = np.asarray(arrays[k])
                if a.shape != tuple(v.shape):
                    raise FileFormatError(
                        f"{label}: optimizer/vars/{k} ({s} of {v.name!r}) has shape "
                        f"{a.shape}, the weight has {tuple(v.shape)}")
                by_slot[s][i] = a.astype(v.value.dtype)
                k += 1
    return [np.array(steps, dtype=np.int64)] + [a for s in opt.slot_names()
                                                  for a in by_slot[s]]
