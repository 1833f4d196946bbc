"""``fused_elementwise``: a chain of elementwise primitives run as one kernel.

The fusion pass (``passes/fusion.py``) replaces a group of elementwise ``prim.*`` nodes
of one layer by one node of this op. Its attrs record the original nodes, so the
semantics, the pictures and ``debugprint`` stay those of the chain:

``members``
    in the graph's order, one dict per original node: ``node`` (its id), ``op``,
    ``attrs`` and ``args`` (port -> ``["in", k]``, the fused node's input ``x<k>``, or
    ``["m", j]``, the output of member ``j``);
``outputs``
    the members whose values leave the group (read by another node, a model output,
    a loss or metric), in order: they are the fused node's outputs;
``n_in``, ``dtype``
    the number of inputs and the float dtype every member computes in as compiled (at
    run time the members' own dtype rules decide, as for the unfused graph: float64
    gradient checks run a float32 model's graph on float64 values);
``key``
    :func:`chain_key`: what the chain computes, the key of its cached tapes.

The op contract, side by side with the primitives it replaces: the shape rule and the
NumPy reference run the members' own rules in order; the forward and the VJP run one
instruction tape each on :func:`graphmask.kernels.fused.run_tape` (the VJP recomputes
the chain's values, then the cotangents in reverse, and sums the gradient of a
broadcast input inside the kernel). Inputs broadcast to the output as NumPy does; a
run-time layout the kernel does not cover (more than two broadcast runs, members of
different run-time shapes) runs the members' own kernels one by one, which is exactly
the unfused computation.
"""
from __future__ import annotations

import json
import threading
from functools import reduce

import numpy as np

from graphmask.kernels import fused as K
from graphmask.ops.base import IGNORES_MASK, Op, OpError, Spec, get_op, register

NAME = "fused_elementwise"

UNARY = {"prim.negative": K.NEG, "prim.abs": K.ABS, "prim.square": K.SQUARE,
         "prim.sqrt": K.SQRT, "prim.relu": K.RELU, "prim.clip": K.CLIP}
BINARY = {"prim.add": K.ADD, "prim.subtract": K.SUB, "prim.multiply": K.MUL,
          "prim.divide": K.DIV, "prim.maximum": K.MAX, "prim.minimum": K.MIN}
#: every primitive the kernel runs
SUPPORTED = frozenset(UNARY) | frozenset(BINARY) | {"prim.where"}
FLOATS = ("float32", "float64")
#: inputs and outputs of one fused node (the VJP's tape also reads the output cotangents)
MAX_INPUTS, MAX_OUTPUTS = 8, 4

_GRAD = {"prim.abs": K.G_ABS, "prim.square": K.G_SQUARE, "prim.relu": K.G_RELU}
_SHARE = {"prim.maximum": (K.G_MAX_X, K.G_MAX_Y), "prim.minimum": (K.G_MIN_X, K.G_MIN_Y)}


class TapeTooLarge(ValueError):
    """A chain needs more registers, inputs or outputs than one tape holds."""


def chain_label(attrs) -> str:
    """``"multiply -> add -> relu"``: the members' ops in order."""
    return " -> ".join(m["op"].removeprefix("prim.") for m in attrs["members"])


# ------------------------------------------------------------------------ layouts
def layout(shapes, out):
    """The iteration space of ``out`` and how each input of ``shapes`` broadcasts to it.

    Returns ``(total, n, modes)``: ``total`` values in rows of ``n``, and per input 0
    (full), 1 (a row of ``n``), 2 (a column of ``total // n``) or 3 (a scalar); or
    ``None`` when the broadcast needs more than two runs of axes.
    """
    r = len(out)
    padded = [(1,) * (r - len(s)) + tuple(s) for s in shapes]
    runs: list = []
    for ax, d in enumerate(out):
        if d == 1:
            continue
        pat = tuple(p[ax] == d for p in padded)
        if runs and runs[-1][0] == pat:
            runs[-1][1] *= d
        else:
            runs.append([pat, d])
    total = int(np.prod(out, dtype=np.int64))
    if not runs:
        return total, max(total, 1), [0] * len(shapes)
    if len(runs) > 2:
        return None
    if len(runs) == 1:
        pat, n = runs[0]
        return total, n, [0 if full else 3 for full in pat]
    (outer, _), (inner, n) = runs
    return total, n, [(0 if a else 1) if b else (2 if a else 3) for a, b in zip(outer, inner)]


# ------------------------------------------------------------------------ tapes
class _Tape:
    """Instruction rows over virtual registers, then a linear-scan register allocation."""

    def __init__(self):
        self.rows: list = []
        self.consts: list = []
        self.n_virtual = 0

    def new(self):
        self.n_virtual += 1
        return ("v", self.n_virtual - 1)

    def const(self, value) -> int:
        self.consts.append(float(value))
        return len(self.consts) - 1

    def emit(self, op, dst=K.NONE, a=K.NONE, b=K.NONE, c=K.NONE):
        self.rows.append([op, dst, a, b, c])
        return dst

    def _peephole(self):
        """``v <- op ...; out <- COPY v`` with no other reader of ``v``: ``out <- op ...``."""
        reads: dict = {}
        for row in self.rows:
            for x in row[2:]:
                reads[x] = reads.get(x, 0) + 1
        defined = {row[1]: row for row in self.rows if isinstance(row[1], tuple)}
        kept = []
        for row in self.rows:
            v = row[2]
            if (row[0] == K.COPY and isinstance(v, tuple) and reads[v] == 1
                    and defined[v][0] != K.CONST):
                defined[v][1] = row[1]
                continue
            kept.append(row)
        self.rows = kept

    def finish(self):
        """The int64 tape and the float64 constants; virtual registers made physical."""
        self._peephole()
        last = {}
        for t, row in enumerate(self.rows):
            for x in row[1:]:
                if isinstance(x, tuple):
                    last[x] = t
        # operand slots of CLIP / G_CLIP rows are constant indices, never registers
        free = list(range(K.MAX_WORK - 1, -1, -1))
        phys, out = {}, []
        for t, row in enumerate(self.rows):
            new = list(row)
            for i in (2, 3, 4):
                x = row[i]
                if isinstance(x, tuple):
                    new[i] = K.WORK + phys[x]
            d = row[1]
            if isinstance(d, tuple):
                if not free:
                    raise TapeTooLarge(f"{NAME}: the chain needs more than {K.MAX_WORK} "
                                       f"registers")
                phys[d] = free.pop()
                new[1] = K.WORK + phys[d]
            for x in set(row[1:]):
                if isinstance(x, tuple) and last.get(x) == t and x in phys:
                    free.append(phys.pop(x))
            out.append(new)
        tape = np.array(out, dtype=np.int64).reshape(-1, 5)
        return tape, np.array(self.consts or [0.0], dtype=np.float64)


def _emit_member(tape, m, args, dst):
    """One member's forward instruction into ``dst``; ``args``: port -> operand."""
    op, attrs = m["op"], m["attrs"]
    if op in BINARY:
        return tape.emit(BINARY[op], dst, args["x"], args["y"])
    if op == "prim.where":
        return tape.emit(K.WHERE, dst, args["condition"], args["x"], args["y"])
    if op == "prim.clip":
        lo = tape.const(attrs["min"])
        tape.const(attrs["max"])
        return tape.emit(K.CLIP, dst, args["x"], lo, lo + 1)
    return tape.emit(UNARY[op], dst, args["x"])


def forward_tape(attrs):
    """The forward tape: each member once, the outputs written in place."""
    tape = _Tape()
    vals = {}
    outs = {j: K.OUT + k for k, j in enumerate(attrs["outputs"])}
    for j, m in enumerate(attrs["members"]):
        args = {p: (ref[1] if ref[0] == "in" else vals[ref[1]]) for p, ref in m["args"].items()}
        vals[j] = _emit_member(tape, m, args, outs.get(j) or tape.new())
    return tape.finish()


def _member_grad(rows, tape, m, j, g, value, wanted):
    """The contributions ``[(port, operand)]`` of member ``j`` (cotangent ``g``) to its
    operands, with the arithmetic of the primitive's own VJP kernel."""
    op, args, new = m["op"], m["args"], rows.new
    out = []
    if op == "prim.add":
        out = [(p, g) for p in ("x", "y") if wanted(p)]
    elif op == "prim.subtract":
        out = [("x", g)] if wanted("x") else []
        if wanted("y"):
            out.append(("y", rows.emit(K.NEG, new(), g)))
    elif op == "prim.multiply":
        out = [(p, rows.emit(K.MUL, new(), g, value(args[q])))
               for p, q in (("x", "y"), ("y", "x")) if wanted(p)]
    elif op == "prim.divide":
        gx = rows.emit(K.DIV, new(), g, value(args["y"]))
        out = [("x", gx)] if wanted("x") else []
        if wanted("y"):
            t = rows.emit(K.MUL, new(), gx, value(args["x"]))
            t = rows.emit(K.DIV, new(), t, value(args["y"]))
            out.append(("y", rows.emit(K.NEG, new(), t)))
    elif op in _SHARE:
        x, y = value(args["x"]), value(args["y"])
        out = [(p, rows.emit(code, new(), g, x, y))
               for p, code in zip(("x", "y"), _SHARE[op]) if wanted(p)]
    elif op == "prim.where":
        zero = value("zero")
        cond = value(args["condition"])
        out = [(p, rows.emit(K.WHERE, new(), cond, *((g, zero) if p == "x" else (zero, g))))
               for p in ("x", "y") if wanted(p)]
    elif op == "prim.negative":
        out = [("x", rows.emit(K.NEG, new(), g))]
    elif op == "prim.sqrt":
        out = [("x", rows.emit(K.G_SQRT, new(), g, value(["m", j])))]
    elif op == "prim.clip":
        lo = tape.const(m["attrs"]["min"])
        tape.const(m["attrs"]["max"])
        out = [("x", rows.emit(K.G_CLIP, new(), g, value(args["x"]), lo))]
    else:
        out = [("x", rows.emit(_GRAD[op], new(), g, value(args["x"])))]
    return out


def backward_tape(attrs, wrt_inputs, present, modes):
    """The VJP's tape: the chain's values recomputed, the cotangents in reverse.

    ``wrt_inputs``: the input indices wanted; ``present``: the output indices with a
    cotangent (read from input slots ``n_in, n_in + 1, ...``); ``modes``: each input's
    broadcast mode. A full input's gradient is written to the next output slot, a
    broadcast one summed into the next accumulator. Contributions add up in the order
    autodiff adds them (an output's own cotangent first, then the members from the last).
    Returns the tape, its constants, and the inputs given a full and a summed gradient.
    """
    members, n_in = attrs["members"], attrs["n_in"]
    tape, rows = _Tape(), _Tape()
    rows.n_virtual = 10 ** 6  # the gradients' names, apart from the forward values'
    # the members that depend on a wanted input: only their cotangents are computed
    leads: list = []
    for m in members:
        leads.append(any((r[0] == "in" and r[1] in wrt_inputs) or (r[0] == "m" and leads[r[1]])
                         for r in m["args"].values()))
    fwd: dict = {}

    def value(ref):
        if ref == "zero":
            if "zero" not in fwd:
                fwd["zero"] = tape.emit(K.CONST, tape.new(), tape.const(0.0))
            return fwd["zero"]
        if ref[0] == "in":
            return ref[1]
        return fwd.setdefault(ref[1], tape.new())

    contribs: dict = {}
    for slot, k in enumerate(present):
        contribs.setdefault(("m", attrs["outputs"][k]), []).append(n_in + slot)
    for j in range(len(members) - 1, -1, -1):
        parts = contribs.get(("m", j))
        if not parts or not leads[j]:
            continue
        g = parts[0]
        for p in parts[1:]:
            g = rows.emit(K.ADD, rows.new(), g, p)
        args = members[j]["args"]

        def wanted(port, args=args):
            ref = args[port]
            return (ref[0] == "in" and ref[1] in wrt_inputs) or (ref[0] == "m" and leads[ref[1]])

        for port, operand in _member_grad(rows, tape, members[j], j, g, value, wanted):
            contribs.setdefault(tuple(args[port]), []).append(operand)
    # the forward values the gradients read, and the values those depend on
    for j in range(len(members) - 1, -1, -1):
        if j in fwd:
            for ref in members[j]["args"].values():
                value(ref)
    for j, m in enumerate(members):
        if j in fwd:
            _emit_member(tape, m, {p: value(r) for p, r in m["args"].items()}, fwd[j])
    tape.rows.extend(rows.rows)
    full, bcast = [], []
    for k in wrt_inputs:
        parts = contribs.get(("in", k), [])
        if not parts:
            continue
        g = parts[0]
        for p in parts[1:]:
            g = tape.emit(K.ADD, tape.new(), g, p)
        if modes[k] == 0:
            tape.emit(K.COPY, K.OUT + len(full), g)
            full.append(k)
        else:
            tape.emit(K.ACC, K.NONE, g, len(bcast))
            bcast.append(k)
    return (*tape.finish(), full, bcast)


# ------------------------------------------------------------------------ running
_local = threading.local()


def _registers(dtype):
    """This thread's register file for ``dtype`` (kernels run concurrently)."""
    regs = getattr(_local, "regs", None)
    if regs is None:
        regs = _local.regs = {}
    if dtype not in regs:
        regs[dtype] = np.empty((K.MAX_IN + K.MAX_WORK) * K.BLOCK, dtype=dtype)
    return regs[dtype]


def _run(tape, consts, dtype, ins, modes, n_out, accs, acc_modes, total, n):
    """Run a tape on flattened inputs; returns the ``n_out`` flat outputs."""
    dt = np.dtype(dtype)
    dummy = np.zeros(1, dt)
    outs = [np.empty(total, dt) for _ in range(n_out)]
    bufs = (tuple(ins) + (dummy,) * (K.MAX_IN - len(ins)) + tuple(outs)
            + (dummy,) * (K.MAX_OUT - n_out) + (_registers(dt.name),))
    m = np.zeros(K.MAX_IN, np.int64)
    m[:len(modes)] = modes
    accs = tuple(accs) + (np.zeros(1),) * (K.MAX_OUT - len(accs))
    am = np.zeros(K.MAX_OUT, np.int64)
    am[:len(acc_modes)] = acc_modes
    K.run_tape(tape, consts, bufs, m, accs, am, total, n)
    return outs


@register
class FusedElementwiseOp(Op):
    """A chain of elementwise primitives in one kernel (see the module docstring)."""

    name = NAME
    diff_ports = tuple(f"x{k}" for k in range(MAX_INPUTS))

    def ports(self, attrs):
        return tuple(f"x{k}" for k in range(attrs["n_in"]))

    def mask_rule(self, attrs):
        return IGNORES_MASK

    # ---- shape rule: the members' own rules, in order --------------------------------
    def _member_specs(self, attrs, specs):
        vals = []
        for m in attrs["members"]:
            op = get_op(m["op"])
            mspecs = {p: specs[f"x{r[1]}"] if r[0] == "in" else vals[r[1]]
                      for p, r in m["args"].items()}
            vals.append(op.infer(m["attrs"], mspecs)[0])
        return vals

    def infer(self, attrs, specs):
        vals = self._member_specs(attrs, specs)
        return [vals[j] for j in attrs["outputs"]]

    # ---- the members one by one: the reference, and the unfused run ---------------------
    def _members(self, attrs, inputs, kernel: bool):
        vals = []
        for m in attrs["members"]:
            op = get_op(m["op"])
            ins = {p: inputs[f"x{r[1]}"] if r[0] == "in" else vals[r[1]]
                   for p, r in m["args"].items()}
            run = op.forward if kernel else op.reference
            vals.append(run(m["attrs"], ins)[0])
        return vals

    def reference(self, attrs, inputs):
        vals = self._members(attrs, inputs, kernel=False)
        return [vals[j] for j in attrs["outputs"]]

    def _members_vjp(self, attrs, inputs, grads, wrt, kernel: bool):
        members = attrs["members"]
        vals = self._members(attrs, inputs, kernel)
        cts: dict = {}
        for k, j in enumerate(attrs["outputs"]):
            if grads[k] is not None:
                cts.setdefault(("m", j), []).append(grads[k])
        for j in range(len(members) - 1, -1, -1):
            parts = cts.get(("m", j))
            if not parts:
                continue
            g = reduce(np.add, parts)
            m = members[j]
            op = get_op(m["op"])
            ins = {p: inputs[f"x{r[1]}"] if r[0] == "in" else vals[r[1]]
                   for p, r in m["args"].items()}
            ports = [p for p in op.diff_ports if p in m["args"]
                     and np.dtype(ins[p].dtype).kind == "f"]
            if kernel:
                res = op.vjp(m["attrs"], ins, [vals[j]], [g], ports)
            else:
                res = op.reference_vjp(m["attrs"], ins, [g], ports)
            for p in ports:
                cts.setdefault(tuple(m["args"][p]), []).append(res[p])
        out = {}
        for p in wrt:
            k = int(p[1:])
            parts = cts.get(("in", k))
            x = inputs[p]
            out[p] = (reduce(np.add, parts).astype(x.dtype, copy=False) if parts
                      else np.zeros(x.shape, x.dtype))
        return out

    def reference_vjp(self, attrs, inputs, grads, wrt):
        return self._members_vjp(attrs, inputs, grads, wrt, kernel=False)

    # ---- the kernel ----------------------------------------------------------------------
    def _plan(self, attrs, inputs):
        """``(total, n, modes, out_shape, dtype)`` for these inputs, or None: run the
        members one by one. The kernel runs when every member computes in one float dtype
        on values of one shape (the members' own rules, on the run-time shapes and
        dtypes; inputs of another dtype are cast to it as each member's ufunc would)."""
        arrays = [inputs[f"x{k}"] for k in range(attrs["n_in"])]
        key = tuple((a.shape, a.dtype.str) for a in arrays)
        cache = _cache(attrs)
        if key not in cache["layouts"]:
            specs = {f"x{k}": Spec(tuple(a.shape), str(a.dtype)) for k, a in enumerate(arrays)}
            try:
                members = self._member_specs(attrs, specs)
            except OpError as e:
                raise OpError(f"{NAME} ({chain_label(attrs)}): {e}") from None
            out, dt = members[-1].shape, members[-1].dtype
            same = all(s.shape == out and s.dtype == dt for s in members)
            found = layout([a.shape for a in arrays], out) if same and dt in FLOATS else None
            cache["layouts"][key] = None if found is None else (*found, out, dt)
        return cache["layouts"][key]

    def _inputs(self, inputs, n_in, dt):
        return [np.ascontiguousarray(inputs[f"x{k}"], dtype=dt).reshape(-1)
                for k in range(n_in)]

    def forward(self, attrs, inputs):
        plan = self._plan(attrs, inputs)
        if plan is None:
            vals = self._members(attrs, inputs, kernel=True)
            return [vals[j] for j in attrs["outputs"]]
        total, n, modes, out, dt = plan
        cache = _cache(attrs)
        if "forward" not in cache:
            cache["forward"] = forward_tape(attrs)
        tape, consts = cache["forward"]
        outs = _run(tape, consts, dt, self._inputs(inputs, attrs["n_in"], dt), modes,
                    len(attrs["outputs"]), [], [], total, n)
        return [o.reshape(out) for o in outs]

    def vjp(self, attrs, inputs, outputs, grads, wrt):
        plan = self._plan(attrs, inputs)
        if plan is None:
            return self._members_vjp(attrs, inputs, grads, wrt, kernel=True)
        total, n, modes, out, dt = plan
        wanted = tuple(int(p[1:]) for p in wrt)
        present = tuple(k for k, g in enumerate(grads) if g is not None)
        key = (wanted, present, tuple(modes))
        cache = _cache(attrs)
        if key not in cache["backward"]:
            cache["backward"][key] = backward_tape(attrs, wanted, present, modes)
        tape, consts, full, bcast = cache["backward"][key]
        ins = self._inputs(inputs, attrs["n_in"], dt)
        ins += [np.ascontiguousarray(grads[k], dtype=dt).reshape(-1) for k in present]
        in_modes = list(modes) + [0] * len(present)
        accs = [np.zeros(inputs[f"x{k}"].size, np.float64) for k in bcast]
        outs = _run(tape, consts, dt, ins, in_modes, len(full), accs,
                    [modes[k] for k in bcast], total, n)
        res = {}
        for k in wanted:
            x = inputs[f"x{k}"]
            if k in full:
                res[f"x{k}"] = outs[full.index(k)].reshape(x.shape).astype(x.dtype, copy=False)
            elif k in bcast:
                res[f"x{k}"] = accs[bcast.index(k)].astype(x.dtype).reshape(x.shape)
            else:
                res[f"x{k}"] = np.zeros(x.shape, x.dtype)
        return res


_CACHES: dict = {}
_CACHE_LOCK = threading.Lock()


def chain_key(attrs) -> str:
    """What a chain computes, as a string (the node ids left out, so equal chains of
    different models share their tapes)."""
    members = [{k: m[k] for k in ("op", "attrs", "args")} for m in attrs["members"]]
    return json.dumps([members, attrs["outputs"], attrs["n_in"], attrs["dtype"]],
                      sort_keys=True)


def _cache(attrs) -> dict:
    """Per chain (keyed by :func:`chain_key`): layouts per input shapes and the tapes."""
    key = attrs.get("key") or chain_key(attrs)
    entry = _CACHES.get(key)
    if entry is None:
        with _CACHE_LOCK:
            entry = _CACHES.setdefault(key, {"layouts": {}, "backward": {}})
    return entry
