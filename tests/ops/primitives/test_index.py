"""take and getitem: harness, None dims, accumulated gradients, exact errors."""
import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op
from tests.ops.harness import check_op

RNG = np.random.default_rng(0)


def _f32(inp):
    return {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in inp.items()}


@pytest.mark.parametrize("axis,xs,ids", [(None, (2, 3), [[0, 5], [-1, 2]]), (0, (4, 3), [3, 0, 3]),
                                         (1, (2, 5, 3), [[4, 0], [1, -5]]), (-1, (2, 4), 2),
                                         (0, (3,), [])])
def test_take_harness(axis, xs, ids):
    inp = {"x": RNG.standard_normal(xs), "indices": np.array(ids, np.int64)}
    attrs = {"axis": axis}
    check_op("prim.take", attrs, inp)
    check_op("prim.take", attrs, {**_f32(inp), "indices": inp["indices"].astype(np.int32)},
             fd=False)
    np.testing.assert_array_equal(get_op("prim.take").forward(attrs, inp)[0],
                                  np.take(inp["x"], inp["indices"], axis=axis))


def test_take_repeated_indices_accumulate_gradients():
    op = get_op("prim.take")
    x = np.arange(3, dtype=np.float32)
    inp = {"x": x, "indices": np.array([0, 0, 2, -3])}
    out = op.forward({"axis": 0}, inp)
    assert out[0].tolist() == [0, 0, 2, 0]
    g = op.vjp({"axis": 0}, inp, out, [np.array([1.0, 2.0, 3.0, 4.0], np.float32)], ["x"])
    assert g["x"].dtype == np.float32 and g["x"].tolist() == [7, 0, 3]
    rows = {"x": np.ones((4, 2)), "indices": np.array([[1, 1], [3, 1]])}
    out = op.forward({"axis": 0}, rows)
    g = op.vjp({"axis": 0}, rows, out, [np.ones((2, 2, 2))], ["x"])["x"]
    assert g.tolist() == [[0, 0], [3, 3], [0, 0], [1, 1]]
    assert op.diff_ports == ("x",)


def test_take_infer_and_errors():
    op = get_op("prim.take")
    assert op.infer({"axis": 1}, {"x": Spec((None, 5, 3), "float32"),
                                  "indices": Spec((None, 2), "int32")}) == [
        Spec((None, None, 2, 3), "float32")]
    assert op.infer({}, {"x": Spec((None, 5), "int64"), "indices": Spec((7,), "int32")}) == [
        Spec((7,), "int64")]
    with pytest.raises(OpError, match="^prim.take: index 5 is out of range for axis 0 of size "
                                      "5$"):
        op.forward({"axis": 0}, {"x": np.zeros(5), "indices": np.array([1, 5, 9])})
    with pytest.raises(OpError, match="^prim.take: index -7 is out of range for axis None of "
                                      "size 6$"):
        op.forward({}, {"x": np.zeros((2, 3)), "indices": np.array([-7])})
    with pytest.raises(OpError, match="^prim.take: input indices must be ints, got float32$"):
        op.infer({}, {"x": Spec((5,), "float32"), "indices": Spec((2,), "float32")})
    # the gradient path refuses them too, before touching memory
    with pytest.raises(OpError, match="out of range"):
        op.vjp({"axis": 0}, {"x": np.zeros(5), "indices": np.array([5])}, [np.zeros(1)],
               [np.ones(1)], ["x"])


def _key(*items):
    out = []
    for it in items:
        if it is None:
            out.append({"kind": "newaxis"})
        elif it is Ellipsis:
            out.append({"kind": "ellipsis"})
        elif isinstance(it, slice):
            out.append({"kind": "slice", "start": it.start, "stop": it.stop, "step": it.step})
        else:
            out.append({"kind": "int", "value": it})
    return out


KEYS = [(0,), (-1,), (slice(1, None),), (slice(None, None, -1),), (slice(None), 1),
        (Ellipsis, 0), (None, slice(0, 2)), (1, Ellipsis, None, slice(3, 0, -2)),
        (slice(-2, None), slice(None, None, 2), -1), ()]


@pytest.mark.parametrize("key", KEYS)
def test_getitem_harness(key):
    x = RNG.standard_normal((3, 4, 5))
    attrs = {"key": _key(*key)}
    check_op("prim.getitem", attrs, {"x": x})
    check_op("prim.getitem", attrs, {"x": x.astype(np.float32)}, fd=False)
    np.testing.assert_array_equal(get_op("prim.getitem").forward(attrs, {"x": x})[0], x[key])


def test_getitem_infer_with_unknown_dims():
    op = get_op("prim.getitem")

    def infer(*key):
        return op.infer({"key": _key(*key)}, {"x": Spec((None, 4, 5), "float32")})[0].shape
    assert infer(slice(None), 0) == (None, 5)
    assert infer(0) == (4, 5)
    assert infer(slice(1, None)) == (None, 4, 5)
    assert infer(Ellipsis, slice(None, None, -2)) == (None, 4, 3)
    assert infer(None, Ellipsis, None) == (1, None, 4, 5, 1)


def test_getitem_errors():
    op = get_op("prim.getitem")
    x = Spec((None, 4), "float32")
    with pytest.raises(OpError, match="^prim.getitem: index 4 is out of range for axis 1 of "
                                      "size 4$"):
        op.infer({"key": _key(slice(None), 4)}, {"x": x})
    with pytest.raises(OpError, match="^prim.getitem: index -3 is out of range for axis 0 of "
                                      "size 2$"):
        op.forward({"key": _key(-3)}, {"x": np.zeros((2, 4))})
    with pytest.raises(OpError, match=r"^prim.getitem: slice step must not be 0"):
        op.infer({"key": _key(slice(None, None, 0))}, {"x": x})
    with pytest.raises(OpError, match=r"^prim.getitem: key .* indexes 3 axes \(at most one "
                                      r"ellipsis\) but x has rank 2$"):
        op.infer({"key": _key(0, 0, 0)}, {"x": x})
    with pytest.raises(OpError, match="at most one ellipsis"):
        op.infer({"key": _key(Ellipsis, Ellipsis)}, {"x": x})
    with pytest.raises(OpError, match=r"^prim.getitem: bad key item \{'kind': 'int', "
                                      r"'value': 1.5\}"):
        op.infer({"key": [{"kind": "int", "value": 1.5}]}, {"x": x})
    with pytest.raises(OpError, match=r"^prim.getitem: attrs\['key'\] must be a list of "
                                      r"items, got 3$"):
        op.infer({"key": 3}, {"x": x})
