"""Every primitive op (``prim.*``) against ``keras.ops`` on the torch backend.

For each case the op's ``forward`` must give Keras's values and dtype, and its ``vjp``
the gradients torch autograd computes through the same ``keras.ops`` call, for a random
cotangent on every float output. The tricky points (ties, clip bounds, kinks, division
dtypes, out-of-range one_hot ids, argmax ties) have their own exact-value tests.
"""
import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()  # Keras 3 on torch; the skip names what is missing
import torch  # only once import_keras has checked that it is installed

from graphmask.ops import OpError, Spec, get_op

kops = keras.ops
RNG = np.random.default_rng(0)


def _f(*shape, lo=-2.0, hi=2.0):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def _i(*shape, hi=5, dtype=np.int32):
    return RNG.integers(0, hi, shape).astype(dtype)


def _ours(op_name, attrs, inputs):
    op = get_op(op_name)
    n = len(op.infer(attrs, {p: Spec(a.shape, str(a.dtype)) for p, a in inputs.items()}))
    return op, op.forward(attrs, inputs), n


def compare(op_name, attrs, inputs, fn, rtol=1e-5, atol=1e-6, seed=0):
    """Values, dtypes and (for float inputs) gradients of one op against ``fn``."""
    op, outs, n = _ours(op_name, attrs, inputs)
    wrt = [p for p in op.diff_ports if p in inputs and inputs[p].dtype.kind == "f"]
    tens = {p: torch.tensor(a, requires_grad=p in wrt) for p, a in inputs.items()}
    got = fn(**tens)
    got = list(got) if isinstance(got, (list, tuple)) else [got]
    assert len(got) == n, f"{op_name}: {n} outputs, keras gives {len(got)}"
    for k, (o, t) in enumerate(zip(outs, got)):
        assert str(o.dtype) == keras.backend.standardize_dtype(t.dtype), (
            f"{op_name} output {k}: dtype {o.dtype}, keras {t.dtype}")
        np.testing.assert_allclose(o, t.detach().numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"{op_name} output {k}")
    if not wrt:
        return
    rng = np.random.default_rng(seed)
    cots = [rng.standard_normal(o.shape).astype(o.dtype) if o.dtype.kind == "f" else None
            for o in outs[:n]]
    total = sum((t * torch.tensor(c)).sum() for t, c in zip(got, cots)
                if c is not None and t.requires_grad)
    if not isinstance(total, torch.Tensor):  # no output depends on the inputs
        total = torch.zeros((), requires_grad=True)
    expected = torch.autograd.grad(total, [tens[p] for p in wrt], allow_unused=True)
    ours = op.vjp(attrs, inputs, outs, cots, wrt)
    for p, e in zip(wrt, expected):
        e = np.zeros_like(inputs[p]) if e is None else e.numpy()
        np.testing.assert_allclose(ours[p], e, rtol=rtol, atol=atol,
                                   err_msg=f"{op_name} d{p}")


UNARY = {
    "negative": (_f(3, 4), kops.negative), "abs": (_f(3, 4), kops.abs),
    "square": (_f(3, 4), kops.square), "sqrt": (_f(3, 4, lo=0.1), kops.sqrt),
    "exp": (_f(3, 4), kops.exp), "log": (_f(3, 4, lo=0.1), kops.log),
    "log1p": (_f(3, 4, lo=-0.9), kops.log1p), "tanh": (_f(3, 4), kops.tanh),
    "sigmoid": (_f(3, 4, lo=-20, hi=20), kops.sigmoid),
    "softplus": (_f(3, 4, lo=-20, hi=20), kops.softplus), "relu": (_f(3, 4), kops.relu),
    "logical_not": (_f(3, 4).round(), kops.logical_not),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name):
    x, fn = UNARY[name]
    compare(f"prim.{name}", {}, {"x": x}, lambda x: fn(x))
    if name in ("negative", "abs", "square", "relu", "sqrt", "exp", "sigmoid"):
        xi = np.array([[-3, 0, 2]], np.int32)  # ints: the dtype rule too
        compare(f"prim.{name}", {}, {"x": xi}, lambda x: fn(x))


@pytest.mark.parametrize("name,attrs,fn", [
    ("cast", {"dtype": "float64"}, lambda x: kops.cast(x, "float64")),
    ("cast", {"dtype": "int32"}, lambda x: kops.cast(x, "int32")),
    ("cast", {"dtype": "bool"}, lambda x: kops.cast(x, "bool")),
    ("clip", {"min": -1.0, "max": 0.5}, lambda x: kops.clip(x, -1.0, 0.5)),
    ("stop_gradient", {}, lambda x: kops.stop_gradient(x)),
    ("softmax", {"axis": 1}, lambda x: kops.softmax(x, axis=1)),
    ("log_softmax", {"axis": 0}, lambda x: kops.log_softmax(x, axis=0)),
])
def test_unary_with_attrs(name, attrs, fn):
    compare(f"prim.{name}", attrs, {"x": _f(2, 3, 4) * 3}, fn)


BINARY = ["add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "equal",
          "not_equal", "greater", "greater_equal", "less", "less_equal", "logical_and",
          "logical_or"]


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("xs,ys", [((3, 4), (3, 4)), ((3, 1, 4), (2, 4)), ((3, 4), ())])
def test_binary(name, xs, ys):
    x, y = _f(*xs), _f(*ys)
    if name == "divide":
        y = np.where(np.abs(y) < 0.2, 0.5, y).astype(np.float32)
    if name == "power":
        x = _f(*xs, lo=0.2)
    if name.startswith("logical"):
        x, y = x.round(), y.round()
    fn = getattr(kops, name)
    compare(f"prim.{name}", {}, {"x": x, "y": y}, lambda x, y: fn(x, y))


@pytest.mark.parametrize("name,dx,dy", [
    ("add", "int32", "float32"), ("multiply", "int8", "uint8"), ("divide", "int32", "int32"),
    ("divide", "int64", "int32"), ("subtract", "bool", "int32"), ("maximum", "bool", "bool"),
    ("power", "int32", "int32"), ("add", "float32", "float64"),
])
def test_binary_dtypes(name, dx, dy):
    x = np.array([[1, 2, 3], [0, 1, 2]]).astype(dx)
    y = np.array([2, 1, 1]).astype(dy)
    fn = getattr(kops, name)
    compare(f"prim.{name}", {}, {"x": x, "y": y}, lambda x, y: fn(x, y))


def test_where():
    c = RNG.random((3, 1)) < 0.5
    x, y = _f(3, 4), _f(4)
    compare("prim.where", {}, {"condition": c, "x": x, "y": y},
            lambda condition, x, y: kops.where(condition, x, y))


@pytest.mark.parametrize("xs,ys", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)),
                                   ((2, 3, 4), (2, 4, 5)), ((4,), (2, 4, 5)), ((3, 4), (4,)),
                                   ((2, 1, 3, 4), (5, 4, 2))])
def test_matmul(xs, ys):
    compare("prim.matmul", {}, {"x": _f(*xs), "y": _f(*ys)}, lambda x, y: kops.matmul(x, y),
            rtol=1e-4)


@pytest.mark.parametrize("sub,xs,ys", [
    ("bij,bkj->bik", (2, 3, 4), (2, 5, 4)), ("bij,bjk->bik", (2, 3, 4), (2, 4, 5)),
    ("btd,d->bt", (2, 3, 4), (4,)), ("bhqd,bhkd->bhqk", (2, 2, 3, 4), (2, 2, 5, 4)),
    ("ij,jk->ik", (3, 4), (4, 5)), ("ab,cd->a", (2, 3), (4, 5)), ("i,j->ij", (3,), (4,)),
])
def test_einsum(sub, xs, ys):
    compare("prim.einsum", {"subscripts": sub}, {"x": _f(*xs), "y": _f(*ys)},
            lambda x, y: kops.einsum(sub, x, y), rtol=1e-4)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "logsumexp", "any", "all"])
@pytest.mark.parametrize("axis,keepdims", [(None, False), (1, False), (-1, True),
                                           ([0, 2], False), ([1, 2], True)])
def test_reductions(name, axis, keepdims):
    x = _f(2, 3, 4) * 3
    if name in ("any", "all"):
        x = (x > 1).astype(np.float32)
    fn = getattr(kops, name)
    compare(f"prim.{name}", {"axis": axis, "keepdims": keepdims}, {"x": x},
            lambda x: fn(x, axis=None if axis is None else (
                tuple(axis) if isinstance(axis, list) else axis), keepdims=keepdims))


@pytest.mark.parametrize("dtype", ["bool", "int8", "int32"])
def test_integer_reduction_dtypes(dtype):
    x = np.array([[1, 0, 1], [1, 1, 0]]).astype(dtype)
    compare("prim.sum", {"axis": 1}, {"x": x}, lambda x: kops.sum(x, axis=1))
    compare("prim.mean", {"axis": 0}, {"x": x}, lambda x: kops.mean(x, axis=0))
    compare("prim.argmax", {"axis": 1}, {"x": x}, lambda x: kops.argmax(x, axis=1))


def test_argmax():
    x = _f(3, 4, 5)
    for axis, keep in ((None, False), (1, True), (-1, False)):
        compare("prim.argmax", {"axis": axis, "keepdims": keep}, {"x": x},
                lambda x, a=axis, k=keep: kops.argmax(x, axis=a, keepdims=k))


SHAPE_CASES = [
    ("reshape", {"shape": [6, -1]}, (2, 3, 4), lambda x: kops.reshape(x, (6, -1))),
    ("transpose", {"axes": [2, 0, 1]}, (2, 3, 4), lambda x: kops.transpose(x, (2, 0, 1))),
    # the default (reversed axes), spelled out: keras's torch x.T warns on rank 3
    ("transpose", {}, (2, 3, 4), lambda x: kops.transpose(x, (2, 1, 0))),
    ("expand_dims", {"axis": [0, 3]}, (2, 3), lambda x: kops.expand_dims(x, (0, 3))),
    ("squeeze", {"axis": [1]}, (2, 1, 3), lambda x: kops.squeeze(x, axis=1)),
    ("squeeze", {}, (1, 3, 1), kops.squeeze),
    ("broadcast_to", {"shape": [2, 3, 4]}, (3, 1), lambda x: kops.broadcast_to(x, (2, 3, 4))),
    ("tile", {"repeats": [2, 1, 3]}, (2, 3), lambda x: kops.tile(x, (2, 1, 3))),
    ("repeat", {"repeats": 3, "axis": 1}, (2, 3), lambda x: kops.repeat(x, 3, axis=1)),
    ("repeat", {"repeats": 2}, (2, 3), lambda x: kops.repeat(x, 2)),
    ("split", {"indices_or_sections": [1, 3], "axis": 1}, (2, 5),
     lambda x: kops.split(x, [1, 3], axis=1)),
    ("split", {"indices_or_sections": 2, "axis": 0}, (4, 3), lambda x: kops.split(x, 2)),
]


@pytest.mark.parametrize("name,attrs,shape,fn", SHAPE_CASES)
def test_shapes(name, attrs, shape, fn):
    compare(f"prim.{name}", attrs, {"x": _f(*shape)}, fn)


@pytest.mark.parametrize("name,axis", [("concatenate", 0), ("concatenate", -1), ("stack", 1)])
def test_joins(name, axis):
    shapes = [(2, 3), (2, 3)] if name == "stack" else (
        [(2, 3), (1, 3)] if axis == 0 else [(2, 3), (2, 1)])
    inputs = {"x0": _f(*shapes[0]), "x1": _f(*shapes[1])}
    fn = getattr(kops, name)
    compare(f"prim.{name}", {"n": 2, "axis": axis}, inputs,
            lambda x0, x1: fn([x0, x1], axis=axis))


# With axis=None, Keras's torch backend wraps a negative index by x.shape[0] instead of
# x.size (NumPy and JAX count from the end of the flattened x, as graphmask does), so the
# negative ids are tested along an axis only.
@pytest.mark.parametrize("axis,xs,ids", [(None, (2, 3), [[0, 5], [1, 2]]),
                                         (0, (4, 3), [3, 0, -1, 3]), (1, (2, 5, 3), [[4, -5]])])
def test_take(axis, xs, ids):
    inputs = {"x": _f(*xs), "indices": np.array(ids, np.int32)}
    compare("prim.take", {"axis": axis}, inputs,
            lambda x, indices: kops.take(x, indices, axis=axis))


@pytest.mark.parametrize("key", [(0,), (slice(1, None),), (slice(None), -1),
                                 (Ellipsis, slice(0, 4, 2)), (None, 1, slice(None, 2))])
def test_getitem(key):
    items = []
    for k in key:
        if k is None:
            items.append({"kind": "newaxis"})
        elif k is Ellipsis:
            items.append({"kind": "ellipsis"})
        elif isinstance(k, slice):
            items.append({"kind": "slice", "start": k.start, "stop": k.stop, "step": k.step})
        else:
            items.append({"kind": "int", "value": k})
    compare("prim.getitem", {"key": items}, {"x": _f(3, 4, 5)}, lambda x: x[key])


def test_one_hot_matches_keras_including_negative_ids():
    ids = np.array([[0, 2], [-1, 1]], np.int32)
    compare("prim.one_hot", {"num_classes": 3}, {"x": ids}, lambda x: kops.one_hot(x, 3))
    compare("prim.one_hot", {"num_classes": 3, "axis": 0}, {"x": ids},
            lambda x: kops.one_hot(x, 3, axis=0))
    # an id >= num_classes is an error in Keras with torch, and here
    with pytest.raises(RuntimeError):
        kops.one_hot(torch.tensor([0, 3]), 3)
    with pytest.raises(OpError, match="class id 3, out of range for num_classes=3"):
        get_op("prim.one_hot").forward({"num_classes": 3}, {"x": np.array([0, 3])})


def _keras_grad(fn, *arrays):
    ts = [torch.tensor(np.asarray(a, np.float32), requires_grad=True) for a in arrays]
    fn(*ts).sum().backward()
    return [t.grad.numpy() for t in ts]


def _our_grad(op_name, attrs, **inputs):
    op = get_op(op_name)
    inputs = {p: np.asarray(a, np.float32) for p, a in inputs.items()}
    outs = op.forward(attrs, inputs)
    return op.vjp(attrs, inputs, outs, [np.ones_like(outs[0])], list(inputs))


def test_tricky_gradients_exactly_as_keras():
    # ties of maximum/minimum split evenly
    a, b = [1, 2, 2, 0], [1, 1, 2, 3]
    for name in ("maximum", "minimum"):
        ka, kb = _keras_grad(getattr(kops, name), a, b)
        ours = _our_grad(f"prim.{name}", {}, x=a, y=b)
        np.testing.assert_array_equal(ours["x"], ka)
        np.testing.assert_array_equal(ours["y"], kb)
    np.testing.assert_array_equal(ka, [0.5, 0, 0.5, 1])
    # max/min reductions: ties share evenly, over one axis or all
    m = [[1, 3, 3], [2, 2, 2]]
    for name, axis in (("max", 1), ("max", None), ("min", 0)):
        (k,) = _keras_grad(lambda t, n=name, ax=axis: getattr(kops, n)(t, axis=ax), m)
        np.testing.assert_array_equal(_our_grad(f"prim.{name}", {"axis": axis}, x=m)["x"], k)
    # clip passes the gradient at the bounds; relu and abs give 0 at 0; sqrt inf at 0
    x = [-2, -1, 0, 1, 3]
    (k,) = _keras_grad(lambda t: kops.clip(t, -1.0, 1.0), x)
    np.testing.assert_array_equal(k, [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(_our_grad("prim.clip", {"min": -1.0, "max": 1.0}, x=x)["x"], k)
    for name in ("relu", "abs", "sqrt"):
        (k,) = _keras_grad(getattr(kops, name), [0.0, 4.0])
        np.testing.assert_array_equal(_our_grad(f"prim.{name}", {}, x=[0.0, 4.0])["x"], k)
    # power at a zero base or exponent
    ka, kb = _keras_grad(kops.power, [0, 0, 0], [0, 1, 2])
    ours = _our_grad("prim.power", {}, x=[0, 0, 0], y=[0, 1, 2])
    np.testing.assert_array_equal(ours["x"], ka)
    np.testing.assert_array_equal(ours["y"], kb)


def test_argmax_ties_take_the_first_index():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], np.float32)
    k = kops.argmax(torch.tensor(x), axis=1).numpy()
    ours = get_op("prim.argmax").forward({"axis": 1}, {"x": x})[0]
    np.testing.assert_array_equal(ours, k)
    np.testing.assert_array_equal(ours, [1, 0])


@pytest.mark.parametrize("n", [4, 300])  # the row kernels, and NumPy on long rows
@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax", "max"])
def test_infinite_and_nan_rows(name, n):
    x = np.zeros((4, n), np.float32)
    x[0, :2] = np.inf
    x[1, :] = -np.inf
    x[2, 1] = np.nan
    x[3, 0] = 1000.0
    attrs = {"axis": 1} if name in ("logsumexp", "max") else {}
    ours = get_op(f"prim.{name}").forward(attrs, {"x": x})[0]
    theirs = getattr(kops, name)(torch.tensor(x), axis=1).numpy()
    np.testing.assert_array_equal(ours, theirs)
