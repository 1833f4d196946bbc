"""matmul and einsum: NumPy semantics on every rank combination, batch broadcasting, the
subscripts attention and bilinear layers use, parse errors."""
import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op
from graphmask.ops.primitives.linalg import contract
from tests.ops.harness import check_op

MATMUL = [((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((2, 3), (3, 4)),
          ((5, 2, 3), (3, 4)), ((5, 2, 3), (5, 3, 4)), ((2, 3), (5, 3, 4)),
          ((5, 1, 2, 3), (4, 3, 2)), ((3,), (5, 3, 4)), ((5, 2, 3), (3,)), ((0, 2, 3), (3, 1))]


@pytest.mark.parametrize("xs,ys", MATMUL)
def test_matmul_harness(xs, ys):
    rng = np.random.default_rng(len(xs) * 3 + len(ys))
    inp = {"x": rng.standard_normal(xs), "y": rng.standard_normal(ys)}
    check_op("prim.matmul", {}, inp)
    check_op("prim.matmul", {}, {k: v.astype(np.float32) for k, v in inp.items()}, fd=False)
    np.testing.assert_allclose(get_op("prim.matmul").forward({}, inp)[0],
                               np.matmul(inp["x"], inp["y"]), rtol=1e-12)


def test_matmul_infer():
    op = get_op("prim.matmul")

    def infer(xs, ys, dx="float32", dy="float32"):
        return op.infer({}, {"x": Spec(xs, dx), "y": Spec(ys, dy)})[0]
    assert infer((None, 5, 3), (3, 4)) == Spec((None, 5, 4), "float32")
    assert infer((None, 5, 3), (None, 3, 4)) == Spec((None, 5, 4), "float32")
    assert infer((None, 3), (3,)) == Spec((None,), "float32")
    assert infer((3,), (3,), "int32", "int32") == Spec((), "int32")
    assert infer((2, 1, 5, None), (4, 7, 2), "int32", "float64") == Spec((2, 4, 5, 2),
                                                                           "float64")
    with pytest.raises(OpError, match=r"^prim.matmul: x \(None, 5, 3\) and y \(4, 2\): the "
                                      r"last axis of x \(3\) must match the second-to-last "
                                      r"axis of y \(4\)$"):
        infer((None, 5, 3), (4, 2))
    with pytest.raises(OpError, match=r"the only axis of y \(4\)"):
        infer((5, 3), (4,))
    with pytest.raises(OpError, match=r"^prim.matmul: inputs must have rank >= 1, got x \(\) "
                                      r"and y \(3,\)$"):
        infer((), (3,))
    with pytest.raises(OpError, match=r"^prim.matmul: cannot broadcast the shapes of x batch "
                                      r"axes \(2,\), y batch axes \(3,\)$"):
        infer((2, 4, 3), (3, 3, 1))
    with pytest.raises(OpError, match="must match"):
        op.forward({}, {"x": np.ones((2, 3)), "y": np.ones((2, 3))})


def test_matmul_ints_stay_ints():
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    y = get_op("prim.matmul").forward({}, {"x": x, "y": x.T.copy()})[0]
    assert y.dtype == np.int32 and y.tolist() == [[5, 14], [14, 50]]


EINSUM = [
    ("bij,bkj->bik", (2, 3, 4), (2, 5, 4)),     # attention scores
    ("bij,bjk->bik", (2, 3, 4), (2, 4, 5)),     # attention-weighted values
    ("btd,d->bt", (2, 3, 4), (4,)),             # additive attention scoring
    ("bhqd,bhkd->bhqk", (2, 3, 4, 5), (2, 3, 6, 5)),
    ("ij,jk->ik", (3, 4), (4, 5)),
    ("ij,jk", (3, 4), (4, 5)),                  # implicit output "ik"
    ("bi,ij->bj", (2, 3), (3, 4)),
    ("i,j->ij", (3,), (4,)),                    # outer product
    ("ij,ij->", (3, 4), (3, 4)),                # full contraction
    ("bij,k->bkj", (2, 3, 4), (5,)),            # i summed from x alone
    ("ab,cd->a", (2, 3), (4, 5)),               # b from x alone, c and d from y alone
    ("jb,bj->b", (3, 2), (2, 3)),               # batch letter, transposed layouts
]


@pytest.mark.parametrize("subscripts,xs,ys", EINSUM)
def test_einsum_harness(subscripts, xs, ys):
    rng = np.random.default_rng(len(subscripts))
    inp = {"x": rng.standard_normal(xs), "y": rng.standard_normal(ys)}
    attrs = {"subscripts": subscripts}
    check_op("prim.einsum", attrs, inp)
    check_op("prim.einsum", attrs, {k: v.astype(np.float32) for k, v in inp.items()},
             fd=False)
    np.testing.assert_allclose(get_op("prim.einsum").forward(attrs, inp)[0],
                               np.einsum(subscripts, inp["x"], inp["y"]), rtol=1e-12)


def test_contract_matches_numpy_on_mixed_letter_kinds():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((5, 2, 6, 7))
    np.testing.assert_allclose(contract(a, "bxcy", b, "ybzw", "zbx"),
                               np.einsum("bxcy,ybzw->zbx", a, b), rtol=1e-12)


def test_einsum_infer():
    op = get_op("prim.einsum")

    def infer(sub, xs, ys):
        return op.infer({"subscripts": sub}, {"x": Spec(xs, "float32"),
                                              "y": Spec(ys, "float32")})[0].shape
    assert infer("bij,bkj->bik", (None, 3, 4), (None, 5, 4)) == (None, 3, 5)
    assert infer("bij,bkj->bik", (None, 3, 4), (7, None, 4)) == (7, 3, None)
    assert infer("btd,d->bt", (None, None, 4), (4,)) == (None, None)


@pytest.mark.parametrize("subscripts,xs,ys,message", [
    ("ij,jk->ik", (3, 4), (5, 6),
     r"^prim.einsum: subscripts 'ij,jk->ik': axis 'j' has size 4 in one operand and 5 in "
     r"another$"),
    ("ij,jk->ik", (3, 4, 1), (4, 6),
     r"^prim.einsum: subscripts 'ij,jk->ik' give x 2 axes but x has shape \(3, 4, 1\)$"),
    ("ii,ij->j", (3, 3), (3, 4),
     r"^prim.einsum: subscripts 'ii,ij->j': x repeats 'i' \(diagonals are not supported\)$"),
    ("...i,ij->...j", (3, 3), (3, 4),
     r"^prim.einsum: subscripts '...i,ij->...j': ellipsis \('...'\) is not supported"),
    ("ij->i", (3, 3), (3, 4),
     r"^prim.einsum: subscripts 'ij->i' must name exactly two operands, got 1$"),
    ("ij,jk->iz", (3, 4), (4, 6),
     r"^prim.einsum: subscripts 'ij,jk->iz': output letter 'z' is in neither operand$"),
    ("i1,jk->ik", (3, 4), (4, 6),
     r"^prim.einsum: subscripts 'i1,jk->ik': x uses '1'; use letters a-z, A-Z$"),
    (None, (3, 4), (4, 6), r"^prim.einsum: attrs\['subscripts'\] must be a string, got None$"),
])
def test_einsum_errors(subscripts, xs, ys, message):
    with pytest.raises(OpError, match=message):
        get_op("prim.einsum").infer({"subscripts": subscripts},
                                    {"x": Spec(xs, "float32"), "y": Spec(ys, "float32")})


def test_only_one_gradient_and_no_gradient():
    rng = np.random.default_rng(1)
    inp = {"x": rng.standard_normal((2, 3)), "y": rng.standard_normal((3, 4))}
    for name, attrs in (("prim.matmul", {}), ("prim.einsum", {"subscripts": "ij,jk->ik"})):
        op = get_op(name)
        out = op.forward(attrs, inp)
        assert list(op.vjp(attrs, inp, out, [np.ones((2, 4))], ["y"])) == ["y"]
        got = op.vjp(attrs, inp, out, [None], ["x", "y"])
        np.testing.assert_array_equal(got["x"], np.zeros((2, 3)))
        np.testing.assert_array_equal(got["y"], np.zeros((3, 4)))
