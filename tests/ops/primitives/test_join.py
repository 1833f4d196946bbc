"""concatenate, stack and split: harness, None dims, dtypes, gradients, exact errors."""
import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op
from tests.ops.harness import check_op

RNG = np.random.default_rng(0)


def _f32(inp):
    return {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in inp.items()}


@pytest.mark.parametrize("name,axis,shapes", [
    ("concatenate", 0, [(2, 3), (1, 3)]), ("concatenate", -1, [(2, 3, 4), (2, 3, 1), (2, 3, 2)]),
    ("concatenate", 1, [(2, 3), (2, 0)]), ("stack", 0, [(2, 3), (2, 3)]),
    ("stack", -1, [(2, 3), (2, 3), (2, 3)]), ("stack", 1, [(4,), (4,)]), ("stack", 0, [(), ()]),
])
def test_join_harness(name, axis, shapes):
    inp = {f"x{i}": RNG.standard_normal(s) for i, s in enumerate(shapes)}
    attrs = {"n": len(shapes), "axis": axis}
    check_op(f"prim.{name}", attrs, inp)
    check_op(f"prim.{name}", attrs, _f32(inp), fd=False)
    fn = np.concatenate if name == "concatenate" else np.stack
    np.testing.assert_array_equal(get_op(f"prim.{name}").forward(attrs, inp)[0],
                                  fn(list(inp.values()), axis=axis))


def test_join_dtypes_and_infer():
    op = get_op("prim.concatenate")
    specs = {"x0": Spec((None, 3), "int32"), "x1": Spec((None, 2), "float32")}
    assert op.infer({"n": 2, "axis": -1}, specs) == [Spec((None, 5), "float32")]
    assert op.infer({"n": 2, "axis": 0}, {"x0": Spec((None, 3), "float32"),
                                          "x1": Spec((4, 3), "float32")}) == [
        Spec((None, 3), "float32")]
    inp = {"x0": np.array([[1, 2]], np.int32), "x1": np.array([[0.5]], np.float32)}
    out = op.forward({"n": 2, "axis": 1}, inp)
    assert out[0].dtype == np.float32 and out[0].tolist() == [[1, 2, 0.5]]
    g = op.vjp({"n": 2, "axis": 1}, inp, out, [np.array([[1.0, 2.0, 3.0]], np.float32)],
               ["x1"])
    assert list(g) == ["x1"] and g["x1"].tolist() == [[3.0]]
    st = get_op("prim.stack")
    assert st.infer({"n": 3, "axis": 1}, {"x0": Spec((None, 3), "float32"),
                                          "x1": Spec((2, None), "float32"),
                                          "x2": Spec((None, None), "float64")}) == [
        Spec((2, 3, 3), "float64")]


def test_join_errors():
    op = get_op("prim.concatenate")
    with pytest.raises(OpError, match=r"^prim.concatenate: shapes must match except on axis "
                                      r"1, got \[\(None, 3\), \(4, 3\), \(5, 2\)\]$"):
        op.infer({"n": 3, "axis": 1}, {"x0": Spec((None, 3), "float32"),
                                       "x1": Spec((4, 3), "float32"),
                                       "x2": Spec((5, 2), "float32")})
    with pytest.raises(OpError, match=r"^prim.concatenate: inputs must have the same rank, "
                                      r"got shapes \[\(2, 3\), \(3,\)\]$"):
        op.forward({"n": 2}, {"x0": np.zeros((2, 3)), "x1": np.zeros(3)})
    with pytest.raises(OpError, match="^prim.concatenate: inputs must have rank >= 1"):
        op.infer({"n": 2}, {"x0": Spec((), "float32"), "x1": Spec((), "float32")})
    with pytest.raises(OpError, match=r"^prim.stack: inputs must have the same shape, got "
                                      r"\[\(2, 3\), \(2, 4\)\]$"):
        get_op("prim.stack").infer({"n": 2}, {"x0": Spec((2, 3), "float32"),
                                              "x1": Spec((2, 4), "float32")})
    with pytest.raises(OpError, match="^prim.stack: axis=3 is out of range for rank 3$"):
        get_op("prim.stack").infer({"n": 2, "axis": 3}, {"x0": Spec((2, 3), "float32"),
                                                         "x1": Spec((2, 3), "float32")})
    with pytest.raises(OpError, match=r"prim.stack needs attrs\['n'\] between 1 and 256"):
        get_op("prim.stack").ports({"n": 0})


@pytest.mark.parametrize("ios,axis,shape", [(2, 0, (4, 3)), (3, -1, (2, 6)), ([1, 3], 1, (2, 5)),
                                            ([0, 2, 2], 0, (3, 2)), ([], 0, (2, 2)),
                                            ([4], 1, (2, 4))])
def test_split_harness(ios, axis, shape):
    x = RNG.standard_normal(shape)
    attrs = {"indices_or_sections": ios, "axis": axis}
    check_op("prim.split", attrs, {"x": x})
    check_op("prim.split", attrs, {"x": x.astype(np.float32)}, fd=False)
    got = get_op("prim.split").forward(attrs, {"x": x})
    exp = np.split(x, ios, axis=axis)
    assert len(got) == len(exp)
    for a, b in zip(got, exp):
        np.testing.assert_array_equal(a, b)


def test_split_infer_gradients_and_errors():
    op = get_op("prim.split")
    x = Spec((None, 6), "float32")
    assert [s.shape for s in op.infer({"indices_or_sections": 3, "axis": 1}, {"x": x})] == [
        (None, 2)] * 3
    assert [s.shape for s in op.infer({"indices_or_sections": [1, 4]}, {"x": x})] == [
        (1, 6), (3, 6), (None, 6)]
    xv = np.arange(6.0).reshape(1, 6)
    outs = op.forward({"indices_or_sections": 3, "axis": 1}, {"x": xv})
    g = op.vjp({"indices_or_sections": 3, "axis": 1}, {"x": xv}, outs,
               [None, np.array([[1.0, 2.0]]), None], ["x"])["x"]
    assert g.tolist() == [[0, 0, 1, 2, 0, 0]]
    with pytest.raises(OpError, match="^prim.split: cannot split axis 1 of size 6 into 4 equal "
                                      "sections$"):
        op.infer({"indices_or_sections": 4, "axis": 1}, {"x": x})
    with pytest.raises(OpError, match=r"^prim.split: split point 7 is past the end of axis 1 "
                                      r"\(size 6\)$"):
        op.infer({"indices_or_sections": [2, 7], "axis": 1}, {"x": x})
    with pytest.raises(OpError, match=r"^prim.split: indices_or_sections=\[3, 1\] must be an "
                                      r"int or a list of increasing split points >= 0$"):
        op.infer({"indices_or_sections": [3, 1], "axis": 1}, {"x": x})
    with pytest.raises(OpError, match="^prim.split: cannot split axis 0 of size 5 into 2"):
        op.forward({"indices_or_sections": 2}, {"x": np.zeros((5, 2))})
