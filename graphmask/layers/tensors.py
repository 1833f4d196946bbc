"""Symbolic values of the front end: variables, symbolic tensors and the calls that make them.

Calling a layer (or a ``graphmask.ops`` function) on a :class:`SymbolicTensor` records a
:class:`Call`: an op, its attrs and the tensor or variable on each port, and returns new
symbolic tensors whose shapes come from the op's shape rule, so shape errors appear at the
line that made them. ``Model(inputs, outputs)`` walks the calls back from the outputs to
build the graph.

Masks in the front end. Like Keras's ``_keras_mask``, every symbolic tensor knows the mask
it carries (:attr:`SymbolicTensor.keras_mask`, a symbolic bool tensor or ``None``), derived
when the tensor is made from the op's :class:`~graphmask.ops.base.MaskRule`. A custom
layer's ``call`` receives that tensor as its ``mask`` argument, so its masks are ordinary
values computed with ``graphmask.ops``. Built-in ops keep their mask rules: the mask pass
makes the same masks explicit in the graph (reusing the mask nodes recorded here).

Tracing. While a layer's ``call`` runs, the layer is on a per-thread *scope* stack; every
call recorded meanwhile belongs to it (:attr:`Call.scope`), which is how a custom layer's
primitives form one named group in the graph.
"""
from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphmask.errors import MaskError, ShapeError
from graphmask.ops.base import OpError, Spec, get_op
from graphmask.ops.merge import MERGE_OPS

_call_counter = itertools.count()


def next_order() -> int:
    """A number larger than that of every call recorded so far."""
    return next(_call_counter)
_state = threading.local()


def scope_stack() -> list:
    """The layers whose ``call`` is being traced on this thread, outermost first."""
    if not hasattr(_state, "stack"):
        _state.stack = []
    return _state.stack


def group_stack() -> list:
    """The :class:`Group` of each custom-layer call being traced, outermost first."""
    if not hasattr(_state, "groups"):
        _state.groups = []
    return _state.groups


@contextmanager
def tracing(layer, group: Group | None = None):
    """Record every call made inside the block as part of ``layer`` (and of ``group``,
    the one call of a custom layer being traced)."""
    stack, groups = scope_stack(), group_stack()
    stack.append(layer)
    if group is not None:
        groups.append(group)
    try:
        yield
    finally:
        stack.pop()
        if group is not None:
            groups.pop()


@dataclass(eq=False)
class Group:
    """One traced call of a custom layer: the primitives it recorded form this group.

    ``mask_in``: the masks its ``call`` received (symbolic tensors or None), ``mask_out``:
    the masks its outputs carry, ``how``: how it treated the mask, for inspection
    (``"read by call"``, ``"passed"``, ``"computed by compute_mask"``, ...).
    """

    id: int
    layer: Any
    takes_mask: bool = False
    mask_in: list = field(default_factory=list)
    mask_out: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    how: str = ""


def in_eager_trace() -> bool:
    """True while an eager call traces a throw-away graph (its calls are not kept)."""
    return getattr(_state, "eager", 0) > 0


def keeps_records() -> bool:
    """Whether layer calls made now are remembered on the layers (``layer._calls``,
    ``layer._nodes``): not in an eager call's throw-away trace, nor in the second trace
    of a training-dependent ``call`` (:func:`quiet_trace`)."""
    return not in_eager_trace() and getattr(_state, "quiet", 0) == 0


@contextmanager
def quiet_trace():
    """Trace without remembering layer calls on the layers (the training=True trace of a
    custom layer: its calls are in the graph only if they differ from the other trace)."""
    _state.quiet = getattr(_state, "quiet", 0) + 1
    try:
        yield
    finally:
        _state.quiet -= 1


def current_training():
    """The ``training`` value of the enclosing layer call being traced (Keras's call
    context): ``True``/``False``, or ``None`` outside any call that fixed it."""
    stack = getattr(_state, "training", None)
    return stack[-1][0] if stack else None


def training_pinned() -> bool:
    """Whether the enclosing call's ``training`` was given by the user (``layer(x,
    training=True)``: it holds in ``predict`` too, as in Keras) rather than chosen by
    graphmask for the train or the inference graph (then ops follow the plan)."""
    stack = getattr(_state, "training", None)
    return bool(stack) and stack[-1][1]


@contextmanager
def training_context(value, pinned: bool = False):
    """Layers called inside the block see ``training=value`` unless given one explicitly
    (Keras 3 hands the outer call's ``training`` to nested layer calls); ``pinned``: the
    user gave it (see :func:`training_pinned`)."""
    if not hasattr(_state, "training"):
        _state.training = []
    _state.training.append((value, pinned))
    try:
        yield
    finally:
        _state.training.pop()


@contextmanager
def eager_trace():
    _state.eager = getattr(_state, "eager", 0) + 1
    try:
        yield
    finally:
        _state.eager -= 1


class _Operand:
    """Python operators on symbolic tensors and variables, as ``keras.ops`` functions."""

    def _ops(self):
        from graphmask.ops import api
        return api

    def __add__(self, o): return self._ops().add(self, o)
    def __radd__(self, o): return self._ops().add(o, self)
    def __sub__(self, o): return self._ops().subtract(self, o)
    def __rsub__(self, o): return self._ops().subtract(o, self)
    def __mul__(self, o): return self._ops().multiply(self, o)
    def __rmul__(self, o): return self._ops().multiply(o, self)
    def __truediv__(self, o): return self._ops().divide(self, o)
    def __rtruediv__(self, o): return self._ops().divide(o, self)
    def __pow__(self, o): return self._ops().power(self, o)
    def __rpow__(self, o): return self._ops().power(o, self)
    def __matmul__(self, o): return self._ops().matmul(self, o)
    def __rmatmul__(self, o): return self._ops().matmul(o, self)
    def __neg__(self): return self._ops().negative(self)
    def __pos__(self): return self
    def __abs__(self): return self._ops().abs(self)
    def __lt__(self, o): return self._ops().less(self, o)
    def __le__(self, o): return self._ops().less_equal(self, o)
    def __gt__(self, o): return self._ops().greater(self, o)
    def __ge__(self, o): return self._ops().greater_equal(self, o)
    def __and__(self, o): return self._ops().logical_and(self, o)
    def __or__(self, o): return self._ops().logical_or(self, o)
    def __invert__(self): return self._ops().logical_not(self)
    def __getitem__(self, key): return self._ops().getitem(self, key)

    def __iter__(self):
        raise TypeError(f"{self!r} cannot be iterated while a graph is traced; index it "
                        f"(x[0]) or use graphmask.ops.split / unstack")

    # equality stays identity (tensors are dict keys); use ops.equal / ops.not_equal
    __hash__ = object.__hash__

    def __bool__(self):
        raise TypeError(f"{self!r} has no truth value while a graph is traced: Python `if` "
                        f"on a tensor cannot be recorded; use graphmask.ops.where")

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"{self!r} is symbolic: it has no values until the model runs "
                        f"(call the layer or model on NumPy arrays to compute at once)")


@dataclass(eq=False)
class Variable(_Operand):
    """A layer weight: a float array owned by the layer, fed to ``variable`` nodes."""

    name: str
    value: np.ndarray
    trainable: bool = True

    @property
    def shape(self) -> tuple:
        return tuple(self.value.shape)

    @property
    def dtype(self) -> str:
        return str(self.value.dtype)

    @property
    def ndim(self) -> int:
        return self.value.ndim

    @property
    def spec(self) -> Spec:
        return Spec(self.shape, self.dtype)

    def numpy(self) -> np.ndarray:
        return self.value.copy()

    def assign(self, value) -> None:
        arr = np.asarray(value)
        if arr.shape != self.value.shape:
            raise ShapeError(f"variable {self.name!r}: assign expected shape {self.shape}, "
                             f"got {arr.shape}")
        self.value[...] = arr

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<Variable {self.name!r} shape={self.shape} dtype={self.dtype}>"


@dataclass(eq=False)
class Call:
    """One application of an op: attrs, connected ports, and who recorded it.

    ``layer`` is the layer whose ``call`` recorded the op (for a ``graphmask.ops``
    function used outside any layer, an :class:`OpLayer`); ``scope`` lists the enclosing
    custom layers being traced, outermost first (empty for a top-level layer call).
    """

    layer: Any
    op: str
    attrs: dict
    inputs: dict  # port -> SymbolicTensor | Variable
    outputs: list = field(default_factory=list)
    order: int = field(default_factory=lambda: next(_call_counter))
    scope: tuple = ()
    groups: tuple = ()  # the Group of each enclosing custom-layer call, outermost first

    @property
    def owner(self):
        """The top-level layer this call belongs to (what ``model.layers`` lists)."""
        return self.scope[0] if self.scope else self.layer


@dataclass(eq=False)
class SymbolicTensor(_Operand):
    """The symbolic result of a call (Keras's ``KerasTensor``)."""

    call: Call
    index: int
    spec: Spec
    keras_mask: SymbolicTensor | None = None
    #: the layer call that returned this tensor (Keras's ``_keras_history``), set by
    #: ``Layer.__call__``; ``None`` for values made inside a layer's ``call``
    node: LayerNode | None = None

    @property
    def shape(self) -> tuple:
        return self.spec.shape

    @property
    def dtype(self) -> str:
        return self.spec.dtype

    @property
    def ndim(self) -> int:
        return len(self.spec.shape)

    # Keras spells it with a leading underscore; both work.
    @property
    def _keras_mask(self):
        return self.keras_mask

    def __len__(self):
        if self.shape and self.shape[0] is not None:
            return self.shape[0]
        raise TypeError(f"{self!r}: len() of a symbolic tensor with unknown first dimension")

    def __repr__(self) -> str:
        mask = "" if self.keras_mask is None else " masked"
        return (f"<SymbolicTensor shape={self.shape} dtype={self.dtype}{mask} "
                f"from {self.call.layer.name!r}>")


@dataclass(eq=False)
class LayerNode:
    """One call of a layer, as the user wrote it: the layer, the arguments (with their
    symbolic tensors) and the outputs. Replaying nodes re-applies a model to new inputs
    (a model used as a layer); the graph itself is built from the op-level :class:`Call`s.
    """

    layer: Any
    args: tuple
    kwargs: dict
    outputs: list
    order: int = field(default_factory=lambda: next(_call_counter))

    @property
    def parents(self) -> list:
        """The symbolic tensors among the arguments, in argument order."""
        return [t for t in flatten((self.args, self.kwargs)) if isinstance(t, SymbolicTensor)]


def flatten(x) -> list:
    """The leaves of a nest of lists, tuples and dicts, in order."""
    if isinstance(x, (list, tuple)):
        return [t for item in x for t in flatten(item)]
    if isinstance(x, dict):
        return [t for k in x for t in flatten(x[k])]
    return [x]


def map_structure(fn, x):
    """The same nest with ``fn`` applied to every leaf."""
    if isinstance(x, (list, tuple)):
        return type(x)(map_structure(fn, item) for item in x)
    if isinstance(x, dict):
        return {k: map_structure(fn, v) for k, v in x.items()}
    return fn(x)


def layer_nodes_of(outputs) -> list[LayerNode]:
    """Every layer call the ``outputs`` depend on, in the order they were made."""
    nodes, stack, seen = [], [t.node for t in outputs], set()
    while stack:
        n = stack.pop()
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        nodes.append(n)
        stack.extend(t.node for t in n.parents)
    nodes.sort(key=lambda n: n.order)
    return nodes


def calls_of(outputs) -> list[Call]:
    """Every call the ``outputs`` depend on, in creation (so topological) order."""
    calls, stack, seen = [], [t.call for t in outputs], set()
    while stack:
        c = stack.pop()
        if id(c) in seen:
            continue
        seen.add(id(c))
        calls.append(c)
        stack.extend(v.call for v in c.inputs.values() if isinstance(v, SymbolicTensor))
    calls.sort(key=lambda c: c.order)
    return calls


# ---- recording ------------------------------------------------------------------------
def record(layer, op: str, attrs: dict, ports: dict, keep: bool = True):
    """Record a call of ``op`` made by ``layer``; one symbolic tensor per visible output.

    Each output's ``keras_mask`` follows the op's mask rule (create, pass or none), as the
    mask pass will make it explicit. ``keep``: append to ``layer._calls`` (the layer's own
    calls, which ``layer.input``/``layer.output`` read).
    """
    ports = {p: v for p, v in ports.items() if v is not None}
    specs_in = {p: v.spec for p, v in ports.items()}
    try:
        specs = get_op(op).infer(attrs, specs_in)
    except OpError as e:
        shapes = {p: s.shape for p, s in specs_in.items()}
        raise ShapeError(f"layer {layer.name!r} ({type(layer).__name__}): {e} "
                         f"[input shapes {shapes}]") from None
    call = Call(layer, op, dict(attrs), ports, scope=tuple(scope_stack()),
                groups=tuple(group_stack()))
    call.outputs = [SymbolicTensor(call, i, s) for i, s in enumerate(specs)]
    if call.outputs:
        call.outputs[0].keras_mask = _mask_after(layer, op, attrs, ports)
    if keep and keeps_records():
        layer._calls.append(call)
    return call.outputs[0] if len(call.outputs) == 1 else list(call.outputs)


def _mask_after(layer, op: str, attrs: dict, ports: dict):
    """The mask the first output of this call carries (what the mask pass will derive)."""
    rule = get_op(op).mask_rule(attrs)
    data = [v for p, v in ports.items() if isinstance(v, SymbolicTensor) and p != "mask"
            and (rule.mask_from is None or p in rule.mask_from)]
    if rule.out == "create":
        mask_op, mask_attrs, from_port = rule.create
        return record(layer, mask_op, mask_attrs, {"x": ports[from_port]}, keep=False)
    if rule.out == "port":
        return ports["mask"]
    if rule.out != "pass":
        return None
    carried = [t.keras_mask for t in data if t.keras_mask is not None]
    if not carried:
        return None
    if op in MERGE_OPS and len(carried) < len(data):
        return None  # Keras 3.4+: an unmasked input makes the merged output unmasked
    distinct = list({id(m): m for m in carried}.values())
    if len(distinct) == 1:
        return distinct[0]
    return record(layer, "mask_or", {"n": len(distinct)},
                  {f"m{i}": m for i, m in enumerate(distinct)}, keep=False)


def attach_mask(layer, x: SymbolicTensor, mask: SymbolicTensor) -> SymbolicTensor:
    """``x`` carrying ``mask`` (an identity node whose output mask is the given one)."""
    if not isinstance(mask, SymbolicTensor):
        raise MaskError(f"layer {layer.name!r}: a mask must be a symbolic bool tensor, got "
                        f"{type(mask).__name__}")
    if mask.dtype != "bool":
        raise MaskError(f"layer {layer.name!r}: a mask must have dtype bool, got {mask.dtype}")
    xs, ms = x.shape, mask.shape
    if len(ms) > len(xs) or any(a is not None and b is not None and a != b
                                for a, b in zip(ms, xs)):
        raise MaskError(f"layer {layer.name!r}: mask of shape {ms} does not fit the tensor "
                        f"of shape {xs} it is attached to")
    if mask.index != 0:  # the mask pass names masks by their node: give it its own node
        mask = record(layer, "prim.cast", {"dtype": "bool"}, {"x": mask}, keep=False)
    return record(layer, "attach_mask", {}, {"x": x, "mask": mask}, keep=False)


def mask_creator(mask: SymbolicTensor) -> str:
    """Who made a mask, for error messages."""
    c = mask.call
    what = {"mask_not_equal": "ids != {value}", "mask_any_not_equal": "any(x != {value})",
            "mask_or": "OR of masks"}.get(c.op, c.op)
    try:
        what = what.format(**c.attrs)
    except (KeyError, IndexError):
        pass
    return f"layer {c.owner.name!r} ({what})"
