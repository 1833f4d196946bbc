"""embedding op: harness, row 0 unchanged, id validation messages, float ids, mask rule."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphmask.errors import IdRangeError, InputError
from graphmask.ops import MaskRule, OpError, Spec, get_op
from tests.ops.harness import check_op

OP = "embedding"
A = {"input_dim": 6, "output_dim": 3, "mask_zero": True}


def _table(rng, v=6, e=3):
    return rng.uniform(-0.05, 0.05, (v, e))


@pytest.mark.parametrize("shape", [(4,), (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8])
def test_harness(shape, dtype):
    rng = np.random.default_rng(len(shape))
    ids = rng.integers(0, 6, shape).astype(dtype)
    inp = {"ids": ids, "embeddings": _table(rng)}
    check_op(OP, A, inp)
    check_op(OP, A, {**inp, "embeddings": inp["embeddings"].astype(np.float32)}, fd=False)


def test_row_zero_returned_unchanged_and_repeated_ids_accumulate():
    rng = np.random.default_rng(0)
    w = _table(rng).astype(np.float32)
    ids = np.array([[1, 2, 0, 0]])
    op = get_op(OP)
    y = op.forward(A, {"ids": ids, "embeddings": w})[0]
    assert y.dtype == np.float32 and y.shape == (1, 4, 3)
    np.testing.assert_array_equal(y[0, 2], w[0])
    np.testing.assert_array_equal(y[0, 3], w[0])
    np.testing.assert_array_equal(y[0, :2], w[[1, 2]])
    dy = np.ones((1, 4, 3), np.float32)
    dw = op.vjp(A, {"ids": ids, "embeddings": w}, [y], [dy], ["embeddings"])["embeddings"]
    np.testing.assert_array_equal(dw[:, 0], [2, 1, 1, 0, 0, 0])
    assert dw.dtype == np.float32 and dw.shape == w.shape


@pytest.mark.parametrize("path", ["forward", "reference"])
def test_id_out_of_range_message(path):
    op = get_op(OP)
    w = np.zeros((6, 3))
    ids = np.array([[1, 2, 3], [4, 6, 0]])
    with pytest.raises(IdRangeError) as e:
        getattr(op, path)(A, {"ids": ids, "embeddings": w})
    msg = str(e.value)
    assert msg == "Embedding id 6 at sample 1, position 1 is outside [0, 6) (input_dim=6)"
    assert isinstance(e.value, IndexError)
    with pytest.raises(IdRangeError, match=r"id -1 at sample 0, position 2 .*input_dim=6"):
        getattr(op, path)(A, {"ids": np.array([[1, 2, -1], [9, 0, 0]]), "embeddings": w})
    with pytest.raises(IdRangeError, match=r"id 7 at sample 2 is outside"):
        getattr(op, path)(A, {"ids": np.array([0, 1, 7]), "embeddings": w})


def test_float_ids():
    op = get_op(OP)
    w = np.arange(18.0).reshape(6, 3)
    y = op.forward(A, {"ids": np.array([[1.0, 5.0, 0.0]]), "embeddings": w})[0]
    np.testing.assert_array_equal(y[0], w[[1, 5, 0]])
    with pytest.raises(InputError, match=r"whole numbers; got 1\.5 at sample 0, position 1"):
        op.forward(A, {"ids": np.array([[1.0, 1.5, 0.0]]), "embeddings": w})
    with pytest.raises(InputError, match="nan at sample 1, position 0"):
        op.reference(A, {"ids": np.array([[1.0, 2.0], [np.nan, 0.0]]), "embeddings": w})


def test_mask_rule():
    op = get_op(OP)
    assert op.mask_rule(A) == MaskRule(takes=False, uses=False, out="create",
                                       create=("mask_not_equal", {"value": 0}, "ids"))
    assert op.mask_rule({**A, "mask_zero": False}) == MaskRule(takes=False, uses=False,
                                                               out="none")


def test_infer():
    op = get_op(OP)
    ids, w = Spec((None, 4), "int32"), Spec((6, 3), "float32")
    assert op.infer(A, {"ids": ids, "embeddings": w}) == [Spec((None, 4, 3), "float32")]
    with pytest.raises(OpError, match="input_dim=6"):
        op.infer(A, {"ids": ids, "embeddings": Spec((5, 3), "float32")})
    with pytest.raises(OpError, match="integers"):
        op.infer(A, {"ids": Spec((None, 4), "bool"), "embeddings": w})
    with pytest.raises(OpError, match="float"):
        op.infer(A, {"ids": ids, "embeddings": Spec((6, 3), "int32")})


@settings(deadline=None)
@given(shape=st.sampled_from([(3,), (2, 4), (2, 2, 3)]), seed=st.integers(0, 2**16),
       bad=st.sampled_from([-1, 6, 100, -7]))
def test_property_first_bad_id_is_reported(shape, seed, bad):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 6, shape)
    flat = ids.reshape(-1)
    k = int(rng.integers(0, flat.size))
    flat[k] = bad
    flat[k + 1:][rng.random(flat.size - k - 1) < 0.3] = 99  # later bad ids are not reported
    with pytest.raises(IdRangeError, match=rf"^Embedding id {bad} at sample "
                                           rf"{np.unravel_index(k, shape)[0]}\b"):
        get_op(OP).forward(A, {"ids": ids, "embeddings": np.zeros((6, 3))})
    ok = np.where((ids < 0) | (ids >= 6), 0, ids)
    y = get_op(OP).forward(A, {"ids": ok, "embeddings": np.arange(18.0).reshape(6, 3)})[0]
    np.testing.assert_array_equal(y, np.arange(18.0).reshape(6, 3)[ok])
