"""The op contract: everything about one op, declared in one place.

An *op* is a pure function from named input arrays to a list of output arrays. A node
of the graph (see ``graphmask.graph``) is one application of an op, with ``attrs``
(plain JSON-able values) fixing its configuration.

Each op subclass declares, side by side:

* ``inputs``: the names of its input ports, in order. A port name ending in ``?`` is
  optional (for example ``"bias?"`` or ``"mask?"``); it is simply absent from the
  ``inputs`` dict when not connected.
* ``infer(attrs, specs)``: shape/dtype rule. ``specs`` maps each connected port to a
  :class:`Spec`; returns one ``Spec`` per *visible* output. ``None`` in a shape is a
  dimension unknown until run time (the batch, sometimes the time axis). Raise
  :class:`OpError` on bad input; the shape pass adds the layer name.
* ``mask_rule(attrs)``: a :class:`MaskRule` (Keras's ``compute_mask`` as data).
* ``reference(attrs, inputs)``: readable NumPy implementation, the living definition
  of the semantics. Returns the visible outputs.
* ``forward(attrs, inputs)``: the fast path (numba kernels). Returns the visible
  outputs followed by ``n_residuals(attrs)`` residual arrays that only the VJP reads
  (for example the LSTM's gate activations per timestep).
* ``vjp(attrs, inputs, outputs, grads)``: vector-Jacobian product. ``outputs`` is what
  ``forward`` returned (visible + residuals); ``grads`` holds one array per visible
  output, or ``None`` where no gradient flows into that output. Returns a dict
  ``port -> gradient`` for each port in ``wrt`` (a subset of ``diff_ports``).
* ``reference_vjp``: the same in NumPy, from ``reference`` semantics. Ops whose VJP
  needs residuals recompute them in the reference.

Masks are ordinary boolean arrays of shape (B, T) on a port named ``mask``; they are
never differentiated. Integer inputs (ids, targets) are never differentiated either.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Shape = tuple  # tuple[int | None, ...]


class MissingKernel(TypeError):
    """An op lacks a piece of its contract. Never silently replaced by a slow path."""


class OpError(ValueError):
    """An op rejected its inputs (bad shape, dtype or attribute).

    The shape pass re-raises it as a :class:`graphmask.errors.ShapeError` naming the
    layer, so op code only has to say *what* is wrong.
    """


@dataclass(frozen=True)
class Spec:
    """Static description of one value: shape (``None`` = unknown) and dtype name."""

    shape: Shape
    dtype: str

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class MaskRule:
    """How an op treats a padding mask (Keras's ``supports_masking``/``compute_mask``).

    takes:  the op may receive an incoming mask. If False and a mask arrives, the mask
            pass raises a compile-time error naming both layers.
    uses:   the mask is connected to the op's ``mask`` port (its kernel reads it).
    out:    what its first output carries: ``"pass"`` (the incoming mask, unchanged),
            ``"none"`` (no mask: consumed or dropped), ``"create"`` (a new mask), or
            ``"port"`` (the value on the op's ``mask`` port: ``attach_mask``, how a custom
            layer's ``compute_mask`` result is attached to its output).
    create: with ``out="create"``: ``(mask_op, mask_attrs, from_port)``: the mask pass
            inserts a node of op ``mask_op`` reading this op's input ``from_port``; its
            output is the new mask (and, if ``uses``, also feeds this op's mask port).
    mask_from: the data ports whose masks the op receives (``None``: all of them); masks
            on its other ports are ignored (the LSTM's initial state).
    """

    takes: bool = True
    uses: bool = False
    out: str = "pass"
    create: tuple | None = None
    mask_from: tuple | None = None


PASS = MaskRule(takes=True, uses=False, out="pass")
NO_MASK = MaskRule(takes=False, uses=False, out="none")
#: Primitives (``graphmask.ops`` functions, ``prim.*`` ops): like ``keras.ops`` they neither
#: read nor pass a mask. Inside a custom layer's ``call`` the mask is an explicit value
#: (the ``mask`` argument); the front end applies the mask policy at layer boundaries.
IGNORES_MASK = MaskRule(takes=True, uses=False, out="none")


class Op:
    """Base class of all ops. Subclasses are registered with :func:`register`."""

    name: str = ""
    inputs: tuple[str, ...] = ()
    diff_ports: tuple[str, ...] = ()  # ports that can receive a gradient
    #: A long-running op (a recurrent loop over time) that the scheduler may run beside
    #: another independent one, each on one thread (``passes/schedule.py``): the two
    #: directions of a Bidirectional layer, forward and backward. Its results must not
    #: depend on the thread count it gets.
    side_by_side: bool = False
    #: With ``side_by_side``: pair it only for batches of fewer samples than this (None:
    #: any batch). Bigger batches run faster one after the other, each on all threads
    #: (the LSTM's sample groups share out a batch without per-step synchronisation).
    side_by_side_max_batch: int | None = None

    # ---- static rules -------------------------------------------------------------
    def infer(self, attrs: Mapping[str, Any], specs: Mapping[str, Spec]) -> list[Spec]:
        raise MissingKernel(f"op {self.name!r} has no shape rule")

    def mask_rule(self, attrs: Mapping[str, Any]) -> MaskRule:
        return NO_MASK

    def n_residuals(self, attrs: Mapping[str, Any]) -> int:
        return 0

    # ---- execution ----------------------------------------------------------------
    def reference(self, attrs, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        raise MissingKernel(f"op {self.name!r} has no reference implementation")

    def forward(self, attrs, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        raise MissingKernel(f"op {self.name!r} has no forward kernel")

    def vjp(self, attrs, inputs: Mapping[str, np.ndarray], outputs: Sequence[np.ndarray],
            grads: Sequence[np.ndarray | None], wrt: Sequence[str]) -> dict[str, np.ndarray]:
        raise MissingKernel(f"op {self.name!r} has no VJP kernel")

    def reference_vjp(self, attrs, inputs: Mapping[str, np.ndarray],
                      grads: Sequence[np.ndarray | None],
                      wrt: Sequence[str]) -> dict[str, np.ndarray]:
        raise MissingKernel(f"op {self.name!r} has no reference VJP")

    # ---- ports --------------------------------------------------------------------
    def ports(self, attrs: Mapping[str, Any]) -> tuple[str, ...]:
        """Input port names for these attrs (``?`` marks optional ones).

        Ops with a variable number of inputs (``add_n``) override this, e.g. from
        ``attrs["n"]``; everything else uses the class attribute ``inputs``.
        """
        return self.inputs

    def port_names(self, attrs: Mapping[str, Any]) -> list[str]:
        return [p.rstrip("?") for p in self.ports(attrs)]

    def required_ports(self, attrs: Mapping[str, Any]) -> list[str]:
        return [p for p in self.ports(attrs) if not p.endswith("?")]

    def __repr__(self) -> str:
        return f"<op {self.name}>"


OPS: dict[str, Op] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: instantiate the op and add it to the registry under its name."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    if cls.name in OPS:
        raise TypeError(f"op {cls.name!r} registered twice")
    OPS[cls.name] = cls()
    return cls


def get_op(name: str) -> Op:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; known ops: {sorted(OPS)}") from None


def float_dtype(*dtypes: str) -> str:
    """The float dtype of a result: float64 if any float input is float64, else float32."""
    return "float64" if "float64" in dtypes else "float32"


def is_float(dtype: str) -> bool:
    return np.dtype(dtype).kind == "f"


def is_int(dtype: str) -> bool:
    return np.dtype(dtype).kind in "iu"
