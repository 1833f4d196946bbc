"""The mask doctor: ``graphmask check MODEL`` finds where a padding mask is lost.

MODEL is a Keras 3 ``.keras`` file, a graphmask ``.gmz`` file or ``module:function`` (a
function returning a model). The doctor compiles the model and reports, in plain words:

* ``mask-dropped``: a mask reaches a layer that neither uses nor passes it (Keras 3 only
  warns and drops it; graphmask refuses such a model, so a Keras file is rebuilt here the
  way Keras runs it, with the mask dropped, to find every such place);
* ``merge-drops-mask``: a merge of a masked and an unmasked branch (Keras gives the
  result no mask, silently);
* ``mask-missing``: a layer that reads a mask (an LSTM, a pooling layer, a custom layer
  with ``mask=``) gets none because it was lost upstream, so it reads padded steps;
* ``output-unmasked``: a model output computed from padded steps carries no mask, so a
  loss or metric on it averages over padding.

Then it runs the :mod:`graphmask.testing` invariants (padding invariance, batch
independence, masked steps, mask annotations) on ``--examples`` random padded batches of
the model's input spec (``--seed``) and prints the smallest failing batch of each
violation. The exit code is 1 when anything is found, 0 otherwise; ``--json`` prints the
same report for machines.
"""
from __future__ import annotations

import inspect
import json
import os
import sys
from dataclasses import asdict, dataclass, field

import numpy as np

from graphmask.errors import GraphmaskError, MaskError

_DROP = "__mask_dropped_before__"


@dataclass
class Finding:
    kind: str
    layer: str
    message: str


@dataclass
class Violation:
    check: str
    message: str
    batch: list


@dataclass
class Report:
    model: str
    findings: list = field(default_factory=list)
    violations: list = field(default_factory=list)
    checked: int = 0
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings and not self.violations

    def to_json(self) -> str:
        return json.dumps({"model": self.model, "ok": self.ok,
                           "findings": [asdict(f) for f in self.findings],
                           "violations": [asdict(v) for v in self.violations],
                           "examples_checked": self.checked, "notes": self.notes}, indent=1)

    def text(self) -> str:
        lines = [f"graphmask check {self.model}"]
        for f in self.findings:
            lines.append(f"  [{f.kind}] {f.message}")
        for v in self.violations:
            lines.append(f"  [invariant] {v.check} fails; smallest failing batch: {v.batch}")
            lines += [f"      {line}" for line in v.message.splitlines()[:6]]
        lines += [f"  note: {n}" for n in self.notes]
        n = len(self.findings) + len(self.violations)
        lines.append(f"{n} problem(s) found; invariants checked on {self.checked} random "
                     f"padded batch(es)" if n else
                     f"no mask problem found; invariants hold on {self.checked} random "
                     f"padded batch(es)")
        return "\n".join(lines) + "\n"


# ---- loading, the way Keras runs the model ----------------------------------------------
def _who(layer) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _strip(t, consumer: str):
    """``t`` without its mask: an identity step that drops it, as Keras does before
    layer ``consumer``."""
    from graphmask.layers.base import SymbolicTensor
    from graphmask.layers.lambda_layer import Lambda
    if not isinstance(t, SymbolicTensor) or t.keras_mask is None:
        return t
    return Lambda(lambda x: x * 1, mask=lambda inputs, mask=None: None,
                  name=f"{_DROP}{consumer}")(t)


def _map(fn, x):
    if isinstance(x, (list, tuple)):
        return type(x)(_map(fn, v) for v in x)
    if isinstance(x, dict):
        return {k: _map(fn, v) for k, v in x.items()}
    return fn(x)


def _refuses_mask(layer, out) -> bool:
    """Whether a built-in layer's op cannot take the mask its input carried."""
    from graphmask.layers.tensors import flatten
    from graphmask.ops.base import get_op
    if not layer._builtin:
        return False
    for t in flatten(out):
        call = getattr(t, "call", None)
        if call is not None and not get_op(call.op).mask_rule(call.attrs).takes:
            return True
    return False


def _lenient_call(findings: list):
    from graphmask.layers.tensors import flatten

    def call(layer, args, kwargs):
        masked = [t for t in flatten([*args, *kwargs.values()])
                  if getattr(t, "keras_mask", None) is not None]
        try:
            out = layer(*args, **kwargs)
            if not (masked and _refuses_mask(layer, out)):
                return out
        except MaskError:
            if not masked:
                raise
        creator = masked[0].node.layer.name if masked[0].node else "an input"
        findings.append(Finding(
            "mask-dropped", layer.name,
            f"the mask made by layer {creator!r} reaches {_who(layer)}, which neither uses "
            f"nor passes masks: Keras 3 warns and drops it, so everything after "
            f"{layer.name!r} sees padded steps as data"))
        return layer(*_map(lambda t: _strip(t, layer.name), list(args)), **kwargs)
    return call


def load_for_check(spec: str, findings: list):
    """The model named by ``spec``; a Keras file is rebuilt as Keras runs it."""
    if os.path.exists(spec) and spec.lower().endswith(".keras"):
        import io

        from graphmask.io import keras_format, keras_h5
        config, data = keras_format.read_archive(spec)
        model = keras_format.model_from_config(config, spec, call=_lenient_call(findings))
        model.set_weights(keras_h5.read(model, io.BytesIO(data), repr(spec)))
        return model
    from graphmask.viz.cli import load
    return load(spec)


# ---- the static analysis -------------------------------------------------------------------
MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
          "Dot")


#: graphmask's composed layers whose computation reads the mask their call receives
READING_COMPOSED = frozenset({"Bidirectional", "RNN", "MultiHeadAttention", "Attention",
                              "AdditiveAttention"})


def _reads_mask(layer, outs) -> bool:
    """Whether the layer's computation uses the mask it receives."""
    from graphmask.io.keras_config import layer_classes
    from graphmask.ops.base import get_op
    if not layer._builtin and type(layer) in layer_classes().values() \
            and type(layer).__name__ not in READING_COMPOSED:
        return False  # graphmask's composed layers (Reshape, merges...) read no mask
    if layer._builtin:
        for t in outs:
            call = getattr(t, "call", None)
            if call is not None and get_op(call.op).mask_rule(call.attrs).uses:
                return True
        return False
    try:
        params = inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False
    return "mask" in params or any(p.endswith("_mask") for p in params)


def analyse(model) -> list[Finding]:
    """The mask findings of a built model's layer calls (see the module docstring)."""
    from graphmask.layers.base import InputLayer, SymbolicTensor
    from graphmask.layers.tensors import flatten, layer_nodes_of
    state: dict[int, str] = {}  # id(tensor) -> "masked" | "lost" (else clean)
    lost_at: dict[int, str] = {}
    found: list[Finding] = []
    for node in layer_nodes_of(model.outputs):
        layer = node.layer
        if isinstance(layer, InputLayer):
            continue
        ins = [t for t in flatten(node.args) if isinstance(t, SymbolicTensor)]
        masked = [t for t in ins if t.keras_mask is not None]
        lost = [t for t in ins if state.get(id(t)) == "lost"]
        reads = _reads_mask(layer, node.outputs)
        if reads and not masked and lost:
            found.append(Finding(
                "mask-missing", layer.name,
                f"{_who(layer)} reads a padding mask but receives none: it was lost at "
                f"layer {lost_at[id(lost[0])]!r}, so {layer.name!r} treats padded steps as "
                f"data"))
        for t in node.outputs:
            if t.keras_mask is not None:
                state[id(t)] = "masked"
                continue
            if reads and not masked and lost:  # it read padded steps: so do its outputs
                state[id(t)], lost_at[id(t)] = "lost", lost_at[id(lost[0])]
                continue
            if type(layer).__name__ in MERGES and masked and len(masked) < len(ins):
                plain = [u.node.layer.name for u in ins if u.keras_mask is None and u.node]
                found.append(Finding(
                    "merge-drops-mask", layer.name,
                    f"{_who(layer)} merges masked and unmasked inputs (unmasked: {plain}); "
                    f"Keras 3 silently gives the result no mask, so every later layer "
                    f"sees padded steps"))
                state[id(t)], lost_at[id(t)] = "lost", layer.name
            elif layer.name.startswith(_DROP) or ((masked or lost) and not reads):
                state[id(t)] = "lost"
                src = lost_at.get(id(lost[0])) if lost and not masked else None
                lost_at[id(t)] = src or (layer.name[len(_DROP):] if layer.name.startswith(_DROP)
                                         else layer.name)
    for t, name in zip(model.outputs, model.output_names):
        if state.get(id(t)) == "lost" and len(t.shape) >= 3:  # a loss per time step
            found.append(Finding(
                "output-unmasked", name,
                f"output {name!r} is computed from padded steps (the mask was lost at layer "
                f"{lost_at[id(t)]!r}) but carries no mask: a loss or metric on it averages "
                f"over padding"))
    return found


# ---- the invariants ------------------------------------------------------------------------
def _vocab(model, index) -> int:
    g = model.graph
    inp = g.meta["inputs"][index]
    sizes = [g.node(n)["attrs"].get("input_dim") for n in g.nodes_by_op("embedding")
             if any(e[0] == inp for e in g.nx.in_edges(n))]
    return min([s for s in sizes if s] or [10])


def random_batch(model, rng, pads) -> list[np.ndarray]:
    """One padded batch of the model's inputs: each row kept up to a random length."""
    b = int(rng.integers(2, 5))
    ts = {t.shape[1] for t in model.inputs if len(t.shape) > 1 and t.shape[1] is not None}
    steps = ts.pop() if len(ts) == 1 else int(rng.integers(3, 7))
    lengths = rng.integers(0, steps + 1, size=b)
    lengths[0] = steps
    xs = []
    for k, (t, pad) in enumerate(zip(model.inputs, pads)):
        shape = (b, *[steps if d is None else d for d in t.shape[1:]])
        if np.dtype(t.dtype).kind in "iu":
            x = rng.integers(1, _vocab(model, k), size=shape).astype(t.dtype)
        else:
            x = rng.normal(size=shape).astype(t.dtype)
        if pad is not None and len(shape) > 1:
            for row, n in enumerate(lengths):
                x[row, n:] = pad
        xs.append(x)
    return xs


def _fails(model, xs):
    from graphmask.testing import check_all
    try:
        check_all(model, xs if len(xs) > 1 else xs[0])
    except AssertionError as e:
        text = str(e).replace(f"layer '{_DROP}", "the input of layer '").replace(
            "(prim.multiply)", "(where Keras drops the mask)")
        first = text.splitlines()[0] if text else "AssertionError"
        return first.split(": ")[0][:120] or "invariant", text
    return None


def _smallest(model, xs):
    """A smaller batch failing the same way: single rows first, the shortest that fails."""
    for row in sorted(range(len(xs[0])), key=lambda r: int(np.count_nonzero(xs[0][r]))):
        one = [x[row:row + 1] for x in xs]
        if _fails(model, one):
            return one
    return xs


def run_invariants(model, report: Report, examples: int, seed: int) -> None:
    from graphmask.testing._runner import input_pads
    pads = input_pads(model)
    if all(p is None for p in pads):
        report.notes.append("no model input feeds an Embedding(mask_zero=True) or Masking, "
                            "so no padded batch can be drawn: invariants not run")
        return
    rng = np.random.default_rng(seed)
    seen = set()
    for _ in range(examples):
        xs = random_batch(model, rng, pads)
        report.checked += 1
        failure = _fails(model, xs)
        if failure and failure[0] not in seen:
            seen.add(failure[0])
            small = _smallest(model, xs)
            again = _fails(model, small) or failure
            report.violations.append(Violation(
                again[0], again[1], [np.round(x, 3).tolist() for x in small]))


def check(spec: str, examples: int = 20, seed: int = 0) -> Report:
    """The doctor's report on the model ``spec`` names (see the module docstring)."""
    report = Report(spec)
    model = load_for_check(spec, report.findings)
    try:
        model.graph  # noqa: B018  (compiles: shapes and masks)
    except MaskError as e:
        report.findings.append(Finding("mask-dropped", "?", str(e)))
        return report
    report.findings += analyse(model)
    run_invariants(model, report, examples, seed)
    return report


# ---- the command -----------------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="a .keras file, a .gmz file, or module:function returning a model")
    parser.add_argument("--examples", type=int, default=20,
                        help="random padded batches for the invariants (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random batches")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    if args.examples < 0:
        raise GraphmaskError(f"check: --examples must be >= 0, got {args.examples}")
    report = check(args.model, examples=args.examples, seed=args.seed)
    sys.stdout.write(report.to_json() + "\n" if args.json else report.text())
    return 0 if report.ok else 1


__all__ = ["Finding", "Report", "Violation", "analyse", "check", "random_batch"]
