"""The prim.* ops the graphmask.ops front end records: names, ports, rules (the contract)."""
import pytest

from graphmask.ops import OPS, Op, get_op
from graphmask.ops.base import IGNORES_MASK

# every op on port x alone: elementwise, reductions, shapes
UNARY = ["negative", "abs", "square", "sqrt", "exp", "log", "log1p", "tanh", "sigmoid",
         "relu", "softplus", "logical_not", "cast", "stop_gradient", "clip", "softmax",
         "log_softmax", "one_hot", "sum", "mean", "max", "min", "logsumexp", "any", "all",
         "argmax", "reshape", "transpose", "expand_dims", "squeeze", "split", "repeat",
         "tile", "broadcast_to", "getitem"]
BINARY = ["add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "equal",
          "not_equal", "greater", "greater_equal", "less", "less_equal", "logical_and",
          "logical_or", "matmul", "einsum"]
PORTS = {**{n: ("x",) for n in UNARY}, **{n: ("x", "y") for n in BINARY},
         "where": ("condition", "x", "y"), "take": ("x", "indices"),
         "masked_softmax": ("x", "keep?")}
VARIADIC = ["concatenate", "stack"]
NO_GRADIENT = {"logical_not", "stop_gradient", "one_hot", "any", "all", "argmax", "equal",
               "not_equal", "greater", "greater_equal", "less", "less_equal", "logical_and",
               "logical_or"}


def test_exactly_the_primitives_of_the_contract():
    assert sorted(n for n in OPS if n.startswith("prim.")) == sorted(
        f"prim.{n}" for n in list(PORTS) + VARIADIC)


@pytest.mark.parametrize("name", sorted(PORTS) + VARIADIC)
def test_ports_rules_and_complete_contract(name):
    op = get_op(f"prim.{name}")
    if name in VARIADIC:
        assert op.ports({"n": 3}) == ("x0", "x1", "x2")
        ports = ("x0", "x1", "x2")
    else:
        ports = PORTS[name]
        assert op.ports({}) == ports
    assert op.mask_rule({}) == IGNORES_MASK
    assert op.n_residuals({}) == 0
    if name in NO_GRADIENT:
        assert op.diff_ports == ()
    else:
        assert set(ports) & set(op.diff_ports)
        assert "indices" not in op.diff_ports and "condition" not in op.diff_ports
    for method in ("infer", "reference", "forward", "vjp", "reference_vjp"):
        assert getattr(type(op), method) is not getattr(Op, method), f"{name}.{method}"
