"""Merge ops add and concatenate: harness, axes, shape errors, mask rules."""
import numpy as np
import pytest

from graphmask.ops import MaskRule, OpError, Spec, get_op
from tests.ops.harness import check_op

MERGE = MaskRule(takes=True, uses=False, out="pass")


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("shape", [(2, 5), (2, 3, 4)])
def test_add(n, shape):
    rng = np.random.default_rng(n)
    inp = {f"x{i}": rng.standard_normal(shape) for i in range(n)}
    check_op("add", {"n": n}, inp)
    np.testing.assert_allclose(get_op("add").forward({"n": n}, inp)[0], sum(inp.values()))
    assert get_op("add").mask_rule({"n": n}) == MERGE


@pytest.mark.parametrize("axis,shapes", [
    (-1, [(2, 3, 4), (2, 3, 1), (2, 3, 2)]),
    (1, [(2, 3, 4), (2, 1, 4)]),
    (0, [(2, 3), (1, 3)]),
    (-1, [(2, 3), (2, 0), (2, 2)]),
])
def test_concatenate(axis, shapes):
    rng = np.random.default_rng(len(shapes))
    inp = {f"x{i}": rng.standard_normal(s) for i, s in enumerate(shapes)}
    attrs = {"n": len(shapes), "axis": axis}
    check_op("concatenate", attrs, inp)
    check_op("concatenate", attrs, {k: v.astype(np.float32) for k, v in inp.items()}, fd=False)
    np.testing.assert_array_equal(get_op("concatenate").forward(attrs, inp)[0],
                                  np.concatenate(list(inp.values()), axis=axis))


def test_concatenate_infer_and_mask_rule():
    op = get_op("concatenate")
    specs = {"x0": Spec((None, 5, 3), "float32"), "x1": Spec((None, 5, 2), "float64")}
    assert op.infer({"n": 2}, specs) == [Spec((None, 5, 5), "float64")]
    with pytest.raises(OpError, match="match on every other axis"):
        op.infer({"n": 2, "axis": 1}, specs)
    with pytest.raises(OpError, match="out of range"):
        op.infer({"n": 2, "axis": 3}, specs)
    with pytest.raises(OpError, match="same rank"):
        op.infer({"n": 2}, {**specs, "x1": Spec((None, 2), "float32")})
    with pytest.raises(OpError, match="match on every other axis"):
        op.forward({"n": 2}, {"x0": np.zeros((2, 3)), "x1": np.zeros((3, 3))})
    assert op.mask_rule({"n": 2}) == MERGE
    assert not op.mask_rule({"n": 2, "axis": 1}).takes


def test_add_shape_error():
    with pytest.raises(OpError, match="same shape"):
        get_op("add").infer({"n": 2}, {"x0": Spec((None, 3), "float32"),
                                       "x1": Spec((None, 1), "float32")})
