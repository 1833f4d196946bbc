"""Shape primitives: harness, unknown (None) dimensions in infer, exact errors."""
import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op
from tests.ops.harness import check_op

X = np.random.default_rng(0).standard_normal((2, 3, 4))


def _infer(name, attrs, shape, dtype="float32"):
    return get_op(f"prim.{name}").infer(attrs, {"x": Spec(shape, dtype)})[0].shape


@pytest.mark.parametrize("name,attrs,shape", [
    ("reshape", {"shape": [6, 4]}, (2, 3, 4)), ("reshape", {"shape": [-1]}, (2, 3, 4)),
    ("reshape", {"shape": [2, -1, 2]}, (2, 3, 4)), ("reshape", {"shape": [1, 1]}, ()),
    ("reshape", {"shape": [None, 12]}, (2, 3, 4)),
    ("transpose", {}, (2, 3, 4)), ("transpose", {"axes": [1, 0, 2]}, (2, 3, 4)),
    ("transpose", {"axes": [-1, 0, 1]}, (2, 3, 4)),
    ("expand_dims", {"axis": 0}, (2, 3)), ("expand_dims", {"axis": -1}, (2, 3)),
    ("expand_dims", {"axis": [0, 3]}, (2, 3)),
    ("squeeze", {"axis": 1}, (2, 1, 3)), ("squeeze", {"axis": [-1, 1]}, (2, 1, 3, 1)),
    ("broadcast_to", {"shape": [2, 3]}, (3,)), ("broadcast_to", {"shape": [2, 4]}, (2, 1)),
    ("broadcast_to", {"shape": [2, 2]}, ()), ("broadcast_to", {"shape": [3, 2, 4]}, (2, 1)),
    ("tile", {"repeats": [2, 1]}, (2, 3)), ("tile", {"repeats": [2]}, (2, 3)),
    ("tile", {"repeats": [1, 2, 2]}, (2, 3)), ("tile", {"repeats": [0, 2]}, (2, 3)),
    ("repeat", {"repeats": 2, "axis": 0}, (2, 3)), ("repeat", {"repeats": 3, "axis": -1},
                                                   (2, 3)),
    ("repeat", {"repeats": 2}, (2, 3)), ("repeat", {"repeats": 0, "axis": 1}, (2, 3)),
])
def test_harness(name, attrs, shape):
    x = np.random.default_rng(len(shape)).standard_normal(shape)
    check_op(f"prim.{name}", attrs, {"x": x})
    check_op(f"prim.{name}", attrs, {"x": x.astype(np.float32)}, fd=False)
    numpy_fn = {"reshape": lambda: np.reshape(x, [-1 if d is None else d
                                                  for d in attrs.get("shape", [])]),
                "transpose": lambda: np.transpose(x, attrs.get("axes")),
                "expand_dims": lambda: np.expand_dims(x, tuple(np.atleast_1d(attrs["axis"]))),
                "squeeze": lambda: np.squeeze(x, tuple(np.atleast_1d(attrs["axis"]))),
                "broadcast_to": lambda: np.broadcast_to(x, attrs["shape"]),
                "tile": lambda: np.tile(x, attrs["repeats"]),
                "repeat": lambda: np.repeat(x, attrs["repeats"], attrs.get("axis"))}[name]
    np.testing.assert_array_equal(get_op(f"prim.{name}").forward(attrs, {"x": x})[0],
                                  numpy_fn())


def test_reshape_infer_with_unknown_dims():
    assert _infer("reshape", {"shape": [-1, 20]}, (None, 4, 5)) == (None, 20)
    assert _infer("reshape", {"shape": [2, -1, 5]}, (None, 4, 5)) == (2, None, 5)
    assert _infer("reshape", {"shape": [None, 20]}, (None, 4, 5)) == (None, 20)
    assert _infer("reshape", {"shape": [8, 5]}, (None, 4, 5)) == (8, 5)
    assert _infer("reshape", {"shape": [3, -1]}, (2, 3, 4)) == (3, 8)


@pytest.mark.parametrize("attrs,shape,message", [
    ({"shape": [-1, -1]}, (2, 3), r"attrs\['shape'\]=\[-1, -1\] may hold one -1 \(or None\)"),
    ({"shape": [-2, 3]}, (2, 3), r"attrs\['shape'\]=\[-2, 3\] may hold one -1"),
    ({"shape": [5, -1]}, (2, 3), r"^prim.reshape: cannot reshape \(2, 3\) to \(5, -1\)$"),
    ({"shape": [4, 2]}, (2, 3), r"^prim.reshape: cannot reshape \(2, 3\) \(size 6\) to "
                                r"\(4, 2\) \(size 8\)$"),
    ({"shape": [3, 5]}, (None, 4), r"^prim.reshape: cannot reshape \(None, 4\) to \(3, 5\)$"),
    ({"shape": "6"}, (2, 3), r"^prim.reshape: attrs\['shape'\] must be a list of ints, "
                             r"got '6'$"),
])
def test_reshape_errors(attrs, shape, message):
    with pytest.raises(OpError, match=message):
        _infer("reshape", attrs, shape)


def test_reshape_checked_at_run_time():
    op = get_op("prim.reshape")
    assert op.infer({"shape": [-1, 4]}, {"x": Spec((None, 4), "float32")})[0].shape == (None, 4)
    with pytest.raises(OpError, match=r"^prim.reshape: cannot reshape \(3, 3\) to \(-1, 4\)$"):
        op.forward({"shape": [-1, 4]}, {"x": np.zeros((3, 3))})


def test_reshape_and_transpose_return_views():
    assert np.shares_memory(get_op("prim.reshape").forward({"shape": [6, 4]}, {"x": X})[0], X)
    assert np.shares_memory(get_op("prim.transpose").forward({}, {"x": X})[0], X)


def test_transpose_squeeze_expand_infer_and_errors():
    assert _infer("transpose", {}, (None, 3, 4)) == (4, 3, None)
    assert _infer("transpose", {"axes": [0, 2, 1]}, (None, 3, 4)) == (None, 4, 3)
    with pytest.raises(OpError, match=r"^prim.transpose: axes=\[0, 0, 1\] is not a "
                                      r"permutation of the 3 axes$"):
        _infer("transpose", {"axes": [0, 0, 1]}, (2, 3, 4))
    with pytest.raises(OpError, match="^prim.transpose: axes entry=3 is out of range"):
        _infer("transpose", {"axes": [0, 3, 1]}, (2, 3, 4))
    assert _infer("expand_dims", {"axis": [0, -1]}, (None, 3)) == (1, None, 3, 1)
    with pytest.raises(OpError, match=r"^prim.expand_dims: attrs\['axis'\] \(an int or a "
                                      r"list of ints\) is required$"):
        _infer("expand_dims", {}, (2, 3))
    with pytest.raises(OpError, match=r"^prim.expand_dims: axis=\[0, -3\] repeats an axis$"):
        _infer("expand_dims", {"axis": [0, -3]}, (2,))
    assert _infer("squeeze", {"axis": 1}, (None, 1, 3)) == (None, 3)
    assert _infer("squeeze", {"axis": 1}, (2, None, 3)) == (2, 3)  # checked at run time
    assert _infer("squeeze", {}, (2, 1, 3, 1)) == (2, 3)
    with pytest.raises(OpError, match=r"^prim.squeeze: cannot squeeze axis 2 of size 3 "
                                      r"\(input shape \(None, 1, 3\)\)$"):
        _infer("squeeze", {"axis": -1}, (None, 1, 3))
    with pytest.raises(OpError, match=r"^prim.squeeze: axis=None on the input shape "
                                      r"\(None, 1, 3\) with unknown \(None\) dimensions: "
                                      r"name the axes to squeeze$"):
        _infer("squeeze", {}, (None, 1, 3))
    with pytest.raises(OpError, match=r"cannot squeeze axis 1 of size 2 \(input shape "
                                      r"\(2, 2, 3\)\)"):
        get_op("prim.squeeze").forward({"axis": 1}, {"x": np.zeros((2, 2, 3))})


def test_squeeze_all_axes():
    x = np.random.default_rng(1).standard_normal((1, 3, 1))
    check_op("prim.squeeze", {}, {"x": x}, none_batch=False)
    assert get_op("prim.squeeze").forward({}, {"x": x})[0].shape == (3,)


def test_broadcast_to_infer_errors_and_writeable_output():
    assert _infer("broadcast_to", {"shape": [4, 2, 3]}, (None, 3)) == (4, 2, 3)
    with pytest.raises(OpError, match=r"^prim.broadcast_to: cannot broadcast the shapes of "
                                      r"x \(2, 3\), attrs\['shape'\] \(4, 3\)$"):
        _infer("broadcast_to", {"shape": [4, 3]}, (2, 3))
    with pytest.raises(OpError, match=r"^prim.broadcast_to: cannot broadcast \(2, 3\) to "
                                      r"attrs\['shape'\]=\[3\]$"):
        _infer("broadcast_to", {"shape": [3]}, (2, 3))
    with pytest.raises(OpError, match=r"^prim.broadcast_to: cannot broadcast \(3, 1\) to "
                                      r"attrs\['shape'\]=\[1, 1\]$"):
        _infer("broadcast_to", {"shape": [1, 1]}, (3, 1))
    with pytest.raises(OpError, match=r"attrs\['shape'\] must be a list of ints, got "
                                      r"\[None, 3\]"):
        _infer("broadcast_to", {"shape": [None, 3]}, (1, 3))
    y = get_op("prim.broadcast_to").forward({"shape": [2, 3]}, {"x": np.ones(3)})[0]
    assert y.flags.writeable and y.flags.c_contiguous


def test_tile_and_repeat_infer_and_errors():
    assert _infer("tile", {"repeats": [2, 3]}, (None, 4)) == (None, 12)
    assert _infer("tile", {"repeats": [2, 1, 1]}, (None, 4)) == (2, None, 4)
    assert _infer("repeat", {"repeats": 2, "axis": 1}, (None, 4)) == (None, 8)
    assert _infer("repeat", {"repeats": 2}, (None, 4)) == (None,)
    assert _infer("repeat", {"repeats": 2}, (3, 4)) == (24,)
    with pytest.raises(OpError, match=r"^prim.tile: attrs\['repeats'\]=\[2, -1\] must not be "
                                      r"negative$"):
        _infer("tile", {"repeats": [2, -1]}, (2, 3))
    with pytest.raises(OpError, match=r"^prim.repeat: attrs\['repeats'\] must be an int >= 0, "
                                      r"got \[2\]$"):
        _infer("repeat", {"repeats": [2]}, (2, 3))


def test_repeat_and_tile_gradients_sum_the_copies():
    op = get_op("prim.repeat")
    x = np.array([[1.0, 2.0]])
    out = op.forward({"repeats": 2, "axis": 1}, {"x": x})
    assert out[0].tolist() == [[1, 1, 2, 2]]
    g = op.vjp({"repeats": 2, "axis": 1}, {"x": x}, out, [np.array([[1.0, 2, 3, 4]])], ["x"])
    assert g["x"].tolist() == [[3, 7]]
    op = get_op("prim.tile")
    out = op.forward({"repeats": [2]}, {"x": x})
    g = op.vjp({"repeats": [2]}, {"x": x}, out, [np.array([[1.0, 2, 3, 4]])], ["x"])
    assert g["x"].tolist() == [[4, 6]]


def test_int_inputs_and_no_gradient():
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    y = get_op("prim.transpose").forward({}, {"x": x})[0]
    assert y.dtype == np.int32 and y.tolist() == [[0, 3], [1, 4], [2, 5]]
    op = get_op("prim.reshape")
    xf = x.astype(np.float64)
    out = op.forward({"shape": [-1]}, {"x": xf})
    np.testing.assert_array_equal(op.vjp({"shape": [-1]}, {"x": xf}, out, [None], ["x"])["x"],
                                  np.zeros((2, 3)))
