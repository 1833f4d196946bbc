"""batch_normalization op: harness in inference and training, with and without a mask;
Keras 3's masked moments exactly; state-update reports."""
import numpy as np
import pytest

from graphmask.ops import OpError, Spec, get_op, state
from graphmask.ops.base import MaskRule
from tests.ops.harness import check_op, random_mask

OP = "batch_normalization"


def _inputs(rng, shape, affine=True, mask_kind=None):
    c = shape[-1]
    inp = {"x": rng.standard_normal(shape) * 2 + 1,
           "moving_mean": rng.standard_normal(c), "moving_variance": rng.random(c) + 0.5}
    if affine:
        inp["gamma"], inp["beta"] = rng.standard_normal(c), rng.standard_normal(c)
    if mask_kind:
        inp["mask"] = random_mask(rng, shape[0], shape[1], mask_kind)
    return inp


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("mask_kind", [None, "right", "left", "holes", "any"])
@pytest.mark.parametrize("affine", [True, False])
def test_harness(training, mask_kind, affine):
    rng = np.random.default_rng(len(mask_kind or "") + 2 * affine)
    inp = _inputs(rng, (4, 5, 3), affine, mask_kind)
    attrs = {"momentum": 0.9, "epsilon": 1e-3, "_training": training}
    check_op(OP, attrs, inp)
    check_op(OP, attrs, {k: (v.astype(np.float32) if v.dtype.kind == "f" else v)
                         for k, v in inp.items()}, fd=False, rtol=1e-4, atol=1e-5)


def test_harness_rank_2_and_4():
    rng = np.random.default_rng(3)
    for shape in [(6, 3), (2, 3, 2, 4)]:
        for training in (False, True):
            check_op(OP, {"momentum": 0.5, "epsilon": 1e-2, "_training": training},
                     _inputs(rng, shape))


def test_masked_moments_are_keras_3s_exactly():
    # kept values of channel 0: 1, 3, 8 -> mean 12/(3+1e-7), var over the kept ones
    x = np.array([[[1.0], [3.0], [100.0]], [[8.0], [np.nan], [-50.0]]])
    m = np.array([[True, True, False], [True, False, False]])
    inp = {"x": x, "moving_mean": np.zeros(1), "moving_variance": np.ones(1), "mask": m}
    attrs = {"momentum": 0.9, "epsilon": 0.0, "_training": True,
             "moving_mean_var": "bn/moving_mean", "moving_variance_var": "bn/moving_variance"}
    with state.collecting() as reports:
        y, mean, inv, training = get_op(OP).forward(attrs, inp)
    d = 3 + 1e-7
    mu = 12.0 / d
    var = ((1 - mu) ** 2 + (3 - mu) ** 2 + (8 - mu) ** 2) / d
    np.testing.assert_allclose(mean, [mu], rtol=1e-14)
    np.testing.assert_allclose(inv, [var ** -0.5], rtol=1e-14)
    np.testing.assert_allclose(y[m][:, 0], (np.array([1.0, 3.0, 8.0]) - mu) / np.sqrt(var),
                               rtol=1e-13)
    np.testing.assert_allclose(y[0, 2, 0], (100.0 - mu) / np.sqrt(var), rtol=1e-13)
    assert np.isnan(y[1, 1, 0])  # a NaN where the mask is off stays there, never in the stats
    assert [(n, float(v[0]), mom) for n, v, mom in reports] == [
        ("bn/moving_mean", mean[0], 0.9), ("bn/moving_variance", var, 0.9)]


def test_all_masked_batch_gives_zero_moments():
    x = np.arange(6.0).reshape(1, 2, 3)
    inp = {"x": x, "moving_mean": np.ones(3), "moving_variance": np.ones(3),
           "mask": np.zeros((1, 2), bool)}
    y, mean, inv, training = get_op(OP).forward({"momentum": 0.5, "epsilon": 0.25,
                                                 "_training": True},
                                      inp)
    np.testing.assert_array_equal(mean, 0.0)
    np.testing.assert_array_equal(inv, 2.0)
    np.testing.assert_array_equal(y, x * 2.0)


def test_inference_uses_moving_statistics_and_reports_nothing():
    x = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)
    inp = {"x": x, "gamma": np.array([2.0, 1.0], np.float32),
           "beta": np.array([0.5, 0.0], np.float32),
           "moving_mean": np.array([1.0, 2.0], np.float32),
           "moving_variance": np.array([3.0, 15.0], np.float32)}
    attrs = {"momentum": 0.9, "epsilon": 1.0, "moving_mean_var": "m",
             "moving_variance_var": "v"}
    for frozen_training in ({}, {"_training": True, "frozen": True}):
        with state.collecting() as reports:
            y = get_op(OP).forward({**attrs, **frozen_training}, inp)[0]
        assert reports == []
        np.testing.assert_allclose(y, [[0.5, 0.0], [2.5, 1.0]], rtol=1e-6)
        assert y.dtype == np.float32


def test_reports_outside_a_collection_are_dropped():
    inp = _inputs(np.random.default_rng(0), (3, 2))
    attrs = {"momentum": 0.9, "epsilon": 1e-3, "_training": True, "moving_mean_var": "m",
             "moving_variance_var": "v"}
    get_op(OP).forward(attrs, inp)  # no collection active: nothing kept anywhere
    with state.collecting() as reports:
        pass
    assert reports == []


def test_apply_updates_composes_in_order():
    from graphmask.layers.base import Variable
    var = Variable("bn/moving_mean", np.array([1.0, 2.0], np.float32), False)
    state.apply_updates([("bn/moving_mean", np.array([3.0, 4.0]), 0.5),
                         ("bn/moving_mean", np.array([0.0, 0.0]), 0.5),
                         ("other/moving_mean", np.array([9.0, 9.0]), 0.5)], [var])
    np.testing.assert_array_equal(var.value, [1.0, 1.5])
    assert var.value.dtype == np.float32


def test_shape_rule_mask_rule_and_errors():
    op = get_op(OP)
    specs = {"x": Spec((None, 5, 3), "float32"), "moving_mean": Spec((3,), "float32"),
             "moving_variance": Spec((3,), "float32"), "mask": Spec((None, 5), "bool")}
    attrs = {"momentum": 0.99, "epsilon": 1e-3}
    assert op.infer(attrs, specs) == [Spec((None, 5, 3), "float32")]
    assert op.infer(attrs, {**specs, "x": Spec((None, 5, 3), "int32")})[0].dtype == "float32"
    assert op.mask_rule(attrs) == MaskRule(takes=True, uses=True, out="pass")
    with pytest.raises(OpError, match=r"gamma must have shape \(3,\), got \(4,\)"):
        op.infer(attrs, {**specs, "gamma": Spec((4,), "float32")})
    with pytest.raises(OpError, match="the mask must have the input's shape without its last"):
        op.infer(attrs, {**specs, "mask": Spec((None, 4), "bool")})
    with pytest.raises(OpError, match="momentum must be a finite number, got nan"):
        op.infer({**attrs, "momentum": float("nan")}, specs)
