"""Loss, metric and reduction ops: harness checks, exact values, masks, edge cases."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from graphmask.errors import InputError
from graphmask.ops import OpError, get_op
from tests.ops.harness import check_op, check_shapes, random_mask

B, T, C = 3, 4, 5
LS = {"binary_crossentropy": 0.1, "categorical_crossentropy": 0.2}


def _case(fn, logits, rng, shape=(B, T, C)):
    if logits:
        p = rng.standard_normal(shape) * 3
    else:
        p = rng.random(shape) * 0.9 + 0.05
    lead, c = shape[:-1], shape[-1]
    if fn == "sparse_categorical_crossentropy":
        y = rng.integers(0, c, lead)
    elif fn == "categorical_crossentropy":
        y = np.eye(c)[rng.integers(0, c, lead)]
    elif fn == "binary_crossentropy":
        y = rng.integers(0, 2, shape).astype(np.float64)
    else:
        y = rng.standard_normal(shape)
    attrs = {"fn": fn, "from_logits": logits, "label_smoothing": LS.get(fn, 0.0)}
    return attrs, p, y


FNS = [("mean_squared_error", False), ("mean_absolute_error", False),
       ("binary_crossentropy", False), ("binary_crossentropy", True),
       ("categorical_crossentropy", False), ("categorical_crossentropy", True),
       ("sparse_categorical_crossentropy", False), ("sparse_categorical_crossentropy", True)]


@pytest.mark.parametrize("fn,logits", FNS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_score_harness(fn, logits, dtype):
    rng = np.random.default_rng(1)
    attrs, p, y = _case(fn, logits, rng)
    check_op("loss_score", attrs, {"y_pred": p.astype(dtype), "y_true": y},
             fd=dtype == np.float64)
    # rank 2 (return_sequences=False) as well
    attrs, p, y = _case(fn, logits, rng, shape=(B, C))
    check_op("loss_score", attrs, {"y_pred": p.astype(dtype), "y_true": y},
             fd=dtype == np.float64)


@pytest.mark.parametrize("fn,logits", FNS)
def test_loss_node_is_weighted_mean_of_scores(fn, logits):
    rng = np.random.default_rng(2)
    attrs, p, y = _case(fn, logits, rng)
    w = rng.random(B)
    check_op("loss", attrs, {"y_pred": p, "y_true": y, "weight": w})
    score = get_op("loss_score").forward(attrs, {"y_pred": p, "y_true": y})[0]
    got = get_op("loss").forward(attrs, {"y_pred": p, "y_true": y, "weight": w})[0]
    assert got.shape == ()
    np.testing.assert_allclose(got, np.sum(score * w[:, None]) / score.size, rtol=1e-12)
    got = get_op("loss").forward(attrs, {"y_pred": p, "y_true": y})[0]
    np.testing.assert_allclose(got, score.mean(), rtol=1e-12)


def test_sparse_targets_with_trailing_one_and_whole_floats():
    rng = np.random.default_rng(3)
    attrs, p, y = _case("sparse_categorical_crossentropy", True, rng)
    op = get_op("loss_score")
    base = op.forward(attrs, {"y_pred": p, "y_true": y})[0]
    for yt in (y[..., None], y.astype(np.float32), y.astype(np.int8)[..., None]):
        np.testing.assert_array_equal(op.forward(attrs, {"y_pred": p, "y_true": yt})[0], base)
    check_op("loss_score", attrs, {"y_pred": p, "y_true": y[..., None].astype(np.float64)})


@pytest.mark.parametrize("bad,where", [(5, "[1, 2]"), (-1, "[1, 2]")])
def test_sparse_out_of_range_names_position(bad, where):
    y = np.zeros((B, T), np.int64)
    y[1, 2] = bad
    y[2, 3] = 7
    p = np.full((B, T, C), 0.2)
    attrs = {"fn": "sparse_categorical_crossentropy", "from_logits": False}
    for method in ("forward", "reference"):
        with pytest.raises(InputError, match=rf"class id {bad} at y_true\{where}"):
            getattr(get_op("loss_score"), method)(attrs, {"y_pred": p, "y_true": y})


def test_sparse_non_whole_float_ids():
    y = np.zeros((B, T))
    y[0, 1] = 1.5
    with pytest.raises(InputError, match=r"whole numbers; y_true\[0, 1\] = 1.5"):
        get_op("loss_score").forward({"fn": "sparse_categorical_crossentropy"},
                                     {"y_pred": np.full((B, T, C), 0.2), "y_true": y})


def test_shape_errors():
    op = get_op("loss_score")
    p = np.zeros((B, T, 3))
    with pytest.raises(OpError, match="does not match"):
        op.forward({"fn": "mean_squared_error"}, {"y_pred": p, "y_true": np.zeros((B, T, 4))})
    with pytest.raises(OpError, match=r"reshape it to \(3, 4, 1\)"):
        op.forward({"fn": "binary_crossentropy"},
                   {"y_pred": np.zeros((B, T, 1)), "y_true": np.zeros((B, T))})
    with pytest.raises(OpError, match="class ids"):
        op.forward({"fn": "sparse_categorical_crossentropy"},
                   {"y_pred": p, "y_true": np.zeros((B, 2))})
    with pytest.raises(OpError, match="unknown fn"):
        op.forward({"fn": "hinge"}, {"y_pred": p, "y_true": p})
    # a (B, 1) prediction with (B,) targets is expanded, as Keras does
    got = op.forward({"fn": "binary_crossentropy"},
                     {"y_pred": np.full((2, 1), 0.5), "y_true": np.array([1.0, 0.0])})[0]
    np.testing.assert_allclose(got, [math.log(2)] * 2, rtol=1e-12)


def _score(fn, p, y, **kw):
    out = get_op("loss_score").forward({"fn": fn, **kw}, {"y_pred": np.asarray(p, float),
                                                          "y_true": np.asarray(y)})[0]
    ref = get_op("loss_score").reference({"fn": fn, **kw}, {"y_pred": np.asarray(p, float),
                                                            "y_true": np.asarray(y)})[0]
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    return out


def test_hand_computed_values():
    ok = np.testing.assert_allclose
    ok(_score("mean_squared_error", [[1, 2], [3, 4]], [[0, 0], [0, 0]]), [2.5, 12.5])
    ok(_score("mean_absolute_error", [[1, -2], [3, 4]], [[0, 0], [0, 0]]), [1.5, 3.5])
    # probabilities: clipped to [1e-7, 1 - 1e-7]
    ok(_score("binary_crossentropy", [[0.5], [1.0], [0.0]], [[1], [1], [1]]),
       [math.log(2), -math.log(1 - 1e-7), -math.log(1e-7)], rtol=1e-12)
    ok(_score("binary_crossentropy", [[0.8]], [[1]], label_smoothing=0.2),
       [-(0.9 * math.log(0.8) + 0.1 * math.log(0.2))], rtol=1e-12)
    ok(_score("binary_crossentropy", [[0.0], [-100.0], [100.0]], [[1], [1], [0]],
              from_logits=True), [math.log(2), 100.0, 100.0], rtol=1e-12)
    # categorical: normalised first, then clipped
    ok(_score("categorical_crossentropy", [[0.2, 0.3, 0.5], [1, 1, 2]], [[0, 0, 1]] * 2),
       [math.log(2)] * 2, rtol=1e-12)
    ok(_score("categorical_crossentropy", [[0.25, 0.25, 0.5]], [[0, 0, 1]],
              label_smoothing=0.3),
       [-(0.2 * math.log(0.25) + 0.8 * math.log(0.5))], rtol=1e-12)
    ok(_score("categorical_crossentropy", [[0.0, 0.0, 1.0]], [[1, 0, 0]]),
       [-math.log(1e-7)], rtol=1e-12)
    ok(_score("sparse_categorical_crossentropy", [[0.0, 0.0, 0.0]], [1], from_logits=True),
       [math.log(3)], rtol=1e-12)
    ok(_score("sparse_categorical_crossentropy", [[0.1, 0.6, 0.3]], [[2]]),
       [-math.log(0.3)], rtol=1e-12)


def test_float32_clip_bounds_are_float32():
    # Keras clips float32 probabilities to float32(1 - 1e-7) = 1 - 2**-23
    p = np.array([[1.0]], np.float32)
    got = get_op("loss_score").forward({"fn": "binary_crossentropy"},
                                       {"y_pred": p, "y_true": np.array([[0.0]])})[0]
    np.testing.assert_allclose(got, [-math.log(2.0 ** -23)], rtol=1e-6)


@pytest.mark.parametrize("fn", ["binary_crossentropy", "categorical_crossentropy",
                                "sparse_categorical_crossentropy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_are_finite(fn, dtype):
    big = np.finfo(dtype).max / 4
    p = np.array([[big, -big, 0.0], [-big, big, 1e4], [1e4, -1e4, -1e4]], dtype)
    y = np.array([1, 2, 1]) if fn.startswith("sparse") else np.eye(3)[[1, 2, 1]]
    attrs = {"fn": fn, "from_logits": True}
    op = get_op("loss_score")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = op.forward(attrs, {"y_pred": p, "y_true": y})[0]
        g = op.vjp(attrs, {"y_pred": p, "y_true": y}, [s], [np.ones_like(s)], ["y_pred"])
        r = op.reference(attrs, {"y_pred": p, "y_true": y})[0]
        rg = op.reference_vjp(attrs, {"y_pred": p, "y_true": y}, [np.ones_like(s)], ["y_pred"])
    for a in (s, g["y_pred"], r, rg["y_pred"]):
        assert np.all(np.isfinite(a))
    np.testing.assert_allclose(s, r, rtol=1e-6)
    np.testing.assert_allclose(g["y_pred"], rg["y_pred"], rtol=1e-6, atol=1e-7)


def test_seed_check_mse_first_two_timesteps():
    """Embedding(5,5,mask_zero) -> Dense(3) on [[1,2,0,0]]: mse over the 2 kept steps."""
    y = np.arange(12, dtype=np.float32).reshape(1, 4, 3)
    p = np.random.default_rng(0).standard_normal((1, 4, 3)).astype(np.float32)
    mask = np.array([[1, 2, 0, 0]]) != 0
    s = get_op("loss_score").forward({"fn": "mean_squared_error"}, {"y_pred": p, "y_true": y})
    got = get_op("masked_mean").forward({}, {"score": s[0], "mask": mask})[0]
    want = np.mean((y[0, :2].astype(np.float64) - p[0, :2]) ** 2)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.dtype == np.float32


# ---------------------------------------------------------------- reductions


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(4))
def test_masked_mean_harness(dtype, seed):
    rng = np.random.default_rng(seed)
    s = rng.random((5, 6)).astype(dtype)
    mask = random_mask(rng, 5, 6)
    fd = dtype == np.float64
    for weight in (None, rng.random(5), rng.random((5, 6)), np.array(2.0)):
        inp = {"score": s, "mask": mask}
        if weight is not None:
            inp["weight"] = weight
        check_op("masked_mean", {}, inp, data_port="score", fd=fd)
    check_op("weighted_mean", {}, {"score": s, "weight": rng.random(5)}, fd=fd)
    check_op("weighted_mean", {}, {"score": s}, fd=fd)
    check_shapes("weighted_average", {}, {"score": s, "mask": mask, "weight": rng.random(5)})


def test_masked_mean_formula_and_per_sample_weight_broadcast():
    rng = np.random.default_rng(5)
    s = rng.random((4, 6))
    m = random_mask(rng, 4, 6)
    w = rng.random(4)
    op = get_op("masked_mean")
    got = op.forward({}, {"score": s, "mask": m, "weight": w})[0]
    want = np.sum(s * m * w[:, None]) / np.sum(m)  # denominator counts kept positions
    np.testing.assert_allclose(got, want, rtol=1e-13)
    full = op.forward({}, {"score": s, "mask": m, "weight": np.repeat(w[:, None], 6, 1)})[0]
    assert got == full
    # values at masked positions do not matter, even NaN
    s2 = np.where(m, s, np.nan)
    assert op.forward({}, {"score": s2, "mask": m, "weight": w})[0] == got


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_masked_is_exactly_zero_without_warnings(dtype):
    s = np.random.default_rng(0).random((3, 4)).astype(dtype)
    m = np.zeros((3, 4), bool)
    op = get_op("masked_mean")
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        for inp in ({"score": s, "mask": m}, {"score": s, "mask": m, "weight": np.ones(3)}):
            for v in (op.forward({}, inp)[0], op.reference({}, inp)[0]):
                assert v == 0.0 and v.dtype == dtype
            for g in (op.vjp({}, inp, [], [np.array(1.0)], ["score"])["score"],
                      op.reference_vjp({}, inp, [np.array(1.0)], ["score"])["score"]):
                assert np.all(g == 0.0) and g.shape == s.shape
        tot, cnt = get_op("weighted_average").forward({}, {"score": s, "mask": m})
        assert tot == 0.0 and cnt == 0.0


def test_weighted_mean_and_average_values():
    s = np.array([[1.0, 2.0], [3.0, 4.0]])
    w = np.array([1.0, 3.0])
    m = np.array([[True, False], [True, True]])
    got = get_op("weighted_mean").forward({}, {"score": s, "weight": w})[0]
    assert got == (1 + 2 + 9 + 12) / 4
    tot, cnt = get_op("weighted_average").forward({}, {"score": s, "mask": m, "weight": w})
    assert (tot, cnt) == (1 + 9 + 12, 1 + 3 + 3)
    rt, rc = get_op("weighted_average").reference({}, {"score": s, "mask": m, "weight": w})
    assert (rt, rc) == (tot, cnt)
    tot, cnt = get_op("weighted_average").forward({}, {"score": s})
    assert (tot, cnt) == (10, 4)


def test_reduction_shape_errors():
    s = np.zeros((3, 4))
    with pytest.raises(OpError, match="mask shape"):
        get_op("masked_mean").forward({}, {"score": s, "mask": np.ones((3, 5), bool)})
    with pytest.raises(OpError, match="weight must have shape"):
        get_op("weighted_mean").forward({}, {"score": s, "weight": np.ones(4)})


# ---------------------------------------------------------------- metric scores


def _metric(fn, p, y, **kw):
    inp = {"y_pred": np.asarray(p, np.float32), "y_true": np.asarray(y)}
    check_op("metric_score", {"fn": fn, **kw}, inp, fd=False)
    return get_op("metric_score").forward({"fn": fn, **kw}, inp)[0]


def test_metric_scores():
    eq = np.testing.assert_array_equal
    eq(_metric("binary_accuracy", [[0.6], [0.4], [0.5]], [[1], [1], [0]]), [1, 0, 1])
    eq(_metric("binary_accuracy", [[0.6], [0.4]], [1, 0], threshold=0.7), [0, 1])
    eq(_metric("categorical_accuracy", [[[0.1, 0.9], [0.8, 0.2]]], [[[0, 1], [0, 1]]]),
       [[1, 0]])
    p = [[[0.1, 0.7, 0.2], [0.5, 0.4, 0.1]]]
    eq(_metric("sparse_categorical_accuracy", p, [[1, 1]]), [[1, 0]])
    eq(_metric("sparse_categorical_accuracy", p, [[[1.0], [0.0]]]), [[1, 1]])
    eq(_metric("accuracy", [[1.0, 2.0], [3.0, 3.0]], [[1, 2], [3, 4]]), [1.0, 0.5])
    np.testing.assert_allclose(_metric("mean_squared_error", [[1.0, 3.0]], [[0, 0]]), [5.0])
    np.testing.assert_allclose(_metric("mean_absolute_error", [[1.0, -3.0]], [[0, 0]]), [2.0])
    op = get_op("metric_score")
    assert op.diff_ports == () and op.vjp({}, {}, [], [None], []) == {}


def test_metric_score_accepts_crossentropies():
    rng = np.random.default_rng(4)
    attrs, p, y = _case("sparse_categorical_crossentropy", False, rng)
    want = get_op("loss_score").forward(attrs, {"y_pred": p, "y_true": y})[0]
    got = get_op("metric_score").forward(attrs, {"y_pred": p, "y_true": y})[0]
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------- dropped positions

SCCE = "sparse_categorical_crossentropy"


@pytest.mark.parametrize("logits", [False, True])
@pytest.mark.parametrize("kind", ["right", "left", "holes"])
def test_sparse_score_with_mask_harness(logits, kind):
    rng = np.random.default_rng(5)
    attrs, p, y = _case(SCCE, logits, rng)
    m = random_mask(rng, B, T, kind)
    y = np.where(m, y, np.array([99, -1, -100])[rng.integers(0, 3, (B, T))])
    inputs = {"y_pred": p, "y_true": y, "mask": m}
    check_op("loss_score", attrs, inputs, data_port="y_pred")
    check_op("loss_score", attrs, inputs, data_port="y_true", fd=False)
    check_op("metric_score", attrs, inputs, data_port="y_true", fd=False)
    for op in ("loss_score", "metric_score"):
        got = get_op(op).forward(attrs, inputs)[0]
        want = get_op(op).forward(attrs, {"y_pred": p, "y_true": np.where(m, y, 0)})[0]
        np.testing.assert_array_equal(got, np.where(m, want, 0))


def test_sparse_masked_rows_are_never_read():
    p = np.full((2, 3, 4), 0.25, np.float32)
    p[0, 2] = np.nan            # whatever sits at a masked step
    p[1, 0] = [np.inf, -1.0, np.nan, 0.0]
    y = np.array([[1, 2, 99], [-7, 3, 0]])
    m = np.array([[True, True, False], [False, True, True]])
    attrs = {"fn": SCCE, "from_logits": False}
    op = get_op("loss_score")
    for run in (lambda i: op.forward(attrs, i)[0], lambda i: op.reference(attrs, i)[0]):
        s = run({"y_pred": p, "y_true": y, "mask": m})
        np.testing.assert_allclose(s, np.where(m, math.log(4), 0.0), rtol=1e-6)
    g = np.ones((2, 3), np.float32)
    for d in (op.vjp(attrs, {"y_pred": p, "y_true": y, "mask": m}, [], [g], ["y_pred"]),
              op.reference_vjp(attrs, {"y_pred": p, "y_true": y, "mask": m}, [g], ["y_pred"])):
        assert np.all(d["y_pred"][~m] == 0) and np.all(np.isfinite(d["y_pred"]))


@pytest.mark.parametrize("op_name", ["loss_score", "metric_score"])
def test_kept_positions_are_still_checked_first_one_named(op_name):
    y = np.array([[0, 5, 9], [-1, 1, 2]])
    m = np.array([[True, False, True], [True, True, True]])
    p = np.full((2, 3, 3), 1 / 3)
    for method in ("forward", "reference"):
        with pytest.raises(InputError, match=r"class id 9 at y_true\[0, 2\] is outside \[0, 3\)"):
            getattr(get_op(op_name), method)({"fn": SCCE}, {"y_pred": p, "y_true": y, "mask": m})
    yf = np.array([[0.0, 0.5, 1.0]])
    with pytest.raises(InputError, match=r"whole numbers; y_true\[0, 2\] = 1.5"):
        get_op(op_name).forward({"fn": SCCE}, {"y_pred": p[:1], "y_true": yf + [0, 0, 0.5],
                                               "mask": np.array([[True, False, True]])})
    # a non-whole float at a masked position is not checked either
    s = get_op(op_name).forward({"fn": SCCE}, {"y_pred": p[:1], "y_true": yf,
                                               "mask": np.array([[True, False, True]])})[0]
    np.testing.assert_allclose(s, [[math.log(3), 0.0, math.log(3)]], rtol=1e-12)


def test_ignore_class_keras_values():
    # keras/src/losses/losses_test.py: test_ignore_class (from_logits, ignore_class=-1)
    logits = np.array([[[0.854, 0.698, 0.598], [0.088, 0.86, 0.018]]], np.float32)
    attrs = {"fn": SCCE, "from_logits": True, "ignore_class": -1}
    for y in (np.array([[-1, 2]]), np.array([[[-1], [2]]]), np.array([[-1.0, 2.0]])):
        for op in ("loss_score", "metric_score"):
            s = get_op(op).forward(attrs, {"y_pred": logits, "y_true": y})[0]
            np.testing.assert_allclose(s, [[0.0, 1.480129]], rtol=1e-6)
    # ignored ids are dropped before any check, even far outside the classes
    s = get_op("loss_score").forward({**attrs, "ignore_class": 255},
                                     {"y_pred": logits, "y_true": np.array([[255, 2]])})[0]
    np.testing.assert_allclose(s, [[0.0, 1.480129]], rtol=1e-6)
    with pytest.raises(InputError, match=r"class id -1 at y_true\[0, 0\]"):
        get_op("loss_score").forward({**attrs, "ignore_class": 255},
                                     {"y_pred": logits, "y_true": np.array([[-1, 2]])})


@pytest.mark.parametrize("logits", [False, True])
def test_ignore_class_harness_and_mask_together(logits):
    rng = np.random.default_rng(6)
    attrs, p, y = _case(SCCE, logits, rng)
    attrs["ignore_class"] = 255
    y[rng.random((B, T)) < 0.3] = 255
    m = random_mask(rng, B, T, "holes")
    check_op("loss_score", attrs, {"y_pred": p, "y_true": y})
    check_op("loss_score", attrs, {"y_pred": p, "y_true": y, "mask": m}, data_port="y_pred")
    s = get_op("loss_score").forward(attrs, {"y_pred": p, "y_true": y, "mask": m})[0]
    plain = get_op("loss_score").forward({"fn": SCCE, "from_logits": logits},
                                         {"y_pred": p, "y_true": np.where(y == 255, 0, y)})[0]
    np.testing.assert_array_equal(s, np.where(m & (y != 255), plain, 0))


def test_loss_node_with_ignore_class_drops_positions_from_the_count():
    rng = np.random.default_rng(8)
    attrs, p, y = _case(SCCE, True, rng)
    y[0, :2] = -1
    y[2, 3] = -1
    w = rng.random(B)
    attrs["ignore_class"] = -1
    check_op("loss", attrs, {"y_pred": p, "y_true": y, "weight": w})
    s = get_op("loss_score").forward(attrs, {"y_pred": p, "y_true": y})[0]
    got = get_op("loss").forward(attrs, {"y_pred": p, "y_true": y, "weight": w})[0]
    np.testing.assert_allclose(got, np.sum(s * w[:, None]) / np.sum(y != -1), rtol=1e-12)
    all_ignored = get_op("loss").forward(attrs, {"y_pred": p, "y_true": np.full((B, T), -1)})
    assert all_ignored[0] == 0.0


@pytest.mark.parametrize("attrs,words", [
    ({"fn": "mean_squared_error", "ignore_class": 0}, "applies to sparse_categorical"),
    ({"fn": "sparse_categorical_accuracy", "ignore_class": 0}, "applies to sparse_categorical"),
    ({"fn": SCCE, "ignore_class": 1.5}, "must be an integer class id or None, got 1.5"),
    ({"fn": SCCE, "ignore_class": True}, "got True"),
])
def test_ignore_class_attr_errors(attrs, words):
    from graphmask.ops import Spec
    op = get_op("metric_score" if "accuracy" in attrs["fn"] else "loss_score")
    with pytest.raises(OpError, match=words):
        op.infer(attrs, {"y_pred": Spec((None, 4, 3), "float32"),
                         "y_true": Spec((None, 4), "int32")})


def test_score_mask_rules():
    from graphmask.ops import MaskRule
    reads, takes = MaskRule(takes=True, uses=True, out="none"), \
        MaskRule(takes=True, uses=False, out="none")
    for op in ("loss_score", "metric_score"):
        assert get_op(op).mask_rule({"fn": SCCE}) == reads  # class ids index y_pred
        assert get_op(op).mask_rule({"fn": "mean_squared_error"}) == takes
    assert get_op("metric_score").mask_rule({"fn": "sparse_categorical_accuracy"}) == takes


def test_mask_port_shape_is_checked():
    from graphmask.ops import Spec
    with pytest.raises(OpError, match=r"mask must be bool of shape \(None, 4\)"):
        get_op("loss_score").infer({"fn": SCCE}, {
            "y_pred": Spec((None, 4, 3), "float32"), "y_true": Spec((None, 4), "int32"),
            "mask": Spec((None, 5), "bool")})
    with pytest.raises(OpError, match=r"mask of shape \(2, 5\) does not fit"):
        get_op("loss_score").forward({"fn": SCCE}, {
            "y_pred": np.full((2, 4, 3), 0.3), "y_true": np.zeros((2, 4), int),
            "mask": np.ones((2, 5), bool)})


def test_dense_scores_with_mask_are_zero_there():
    rng = np.random.default_rng(9)
    attrs, p, y = _case("mean_squared_error", False, rng)
    m = random_mask(rng, B, T, "right")
    y[~m] = np.nan
    s = get_op("loss_score").forward(attrs, {"y_pred": p, "y_true": y, "mask": m})[0]
    np.testing.assert_allclose(s, np.where(m, np.mean((np.nan_to_num(y) - p) ** 2, -1), 0))
    check_op("loss_score", attrs, {"y_pred": p, "y_true": np.nan_to_num(y), "mask": m},
             data_port="y_pred")
