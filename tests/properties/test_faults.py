"""Tests of the tests: every invariant check passes on a correct model and fails, with a
message naming what broke, once the matching fault is injected (monkeypatched op)."""
import numpy as np
import pytest
from hypothesis import Phase, find, settings

from graphmask.ops import MaskRule, get_op
from graphmask.ops.reductions import layout
from graphmask.testing import (
    build_model,
    check_all_masked,
    check_batch_independence,
    check_grads,
    check_loss_is_masked_mean,
    check_mask_annotations,
    check_masked_steps,
    check_padding_invariance,
    make_targets,
)
from graphmask.testing.strategies import padded_ids
from tests.properties.weighted import weighted_cases

SEQ = ("ids", 6, 3, 0.0, 0, ((3, True, False, False),), 2, "mse", False)
FINAL = ("ids", 6, 3, 0.0, 0, ((3, False, False, False),), 2, "mse", False)
MASKING = ("floats", 2, 3, 5.0, 2, ((3, True, False, False),), 2, "mse", False)
IDS = np.array([[1, 2, 0, 0], [0, 3, 0, 4], [5, 0, 0, 0]], np.int32)


def _floats():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (3, 4, 2)).astype(np.float32)
    x[0, 2:] = 5.0
    x[1, 0] = 5.0
    x[2, 1:] = 5.0
    return x


def _case(spec, x):
    model, loss = build_model(spec, seed=7)
    return model, x, make_targets(model, loss, x, 0)


# ---------------------------------------------------------------- faults

def _lstm_ignores_mask(monkeypatch):
    op = get_op("lstm")
    forward = op.forward

    def no_mask(attrs, inputs):
        return forward(attrs, {k: v for k, v in inputs.items() if k != "mask"})
    monkeypatch.setattr(op, "forward", no_mask)


def _loss_divides_by_all_positions(monkeypatch):
    op = get_op("masked_mean")

    def all_positions(attrs, inputs):
        s, m, w = layout("masked_mean", inputs)
        return [np.asarray((s * m * w).sum() / s.size, inputs["score"].dtype)]
    monkeypatch.setattr(op, "forward", all_positions)


def _masking_does_not_zero(monkeypatch):
    monkeypatch.setattr(get_op("masking"), "forward", lambda attrs, inputs: [inputs["x"]])


def _dense_drops_mask(monkeypatch):
    monkeypatch.setattr(get_op("dense"), "mask_rule",
                        lambda attrs: MaskRule(takes=True, uses=False, out="none"))


def _lstm_gradient_ignores_mask(monkeypatch):
    op = get_op("lstm")

    def leaky(attrs, inputs, outputs, grads, wrt):
        return op.reference_vjp(attrs, {k: v for k, v in inputs.items() if k != "mask"},
                                grads, wrt)
    monkeypatch.setattr(op, "vjp", leaky)


def _loss_divides_by_weight_sum(monkeypatch):
    """The masked mean with sum(m*w) as denominator instead of sum(m) (Keras 3 counts the
    kept positions, whatever their weights)."""
    op = get_op("masked_mean")

    def weighted_denominator(attrs, inputs):
        s, m, w = layout("masked_mean", inputs)
        d = (m * w).sum()
        return [np.asarray((s * m * w).sum() / d if d else 0.0, inputs["score"].dtype)]
    monkeypatch.setattr(op, "forward", weighted_denominator)


def _all_masked_loss_is_nan(monkeypatch):
    op = get_op("masked_mean")

    def unguarded(attrs, inputs):
        s, m, w = layout("masked_mean", inputs)
        with np.errstate(invalid="ignore", divide="ignore"):
            return [np.asarray((s * m * w).sum() / m.sum(), inputs["score"].dtype)]
    monkeypatch.setattr(op, "forward", unguarded)


# ---------------------------------------------------------------- padding invariance

@pytest.mark.parametrize("spec", [SEQ, FINAL])
def test_padding_invariance_catches_lstm_ignoring_mask(monkeypatch, spec):
    model, x, y = _case(spec, IDS)
    check_padding_invariance(model, x, y)
    _lstm_ignores_mask(monkeypatch)
    with pytest.raises(AssertionError, match=r"layer 'lstm_0' \(lstm\) output 0 at a kept "
                                             r"position: sample \d"):
        check_padding_invariance(model, x, y)


def test_padding_invariance_catches_loss_over_all_positions(monkeypatch):
    model, x, y = _case(SEQ, IDS)
    _loss_divides_by_all_positions(monkeypatch)
    with pytest.raises(AssertionError, match=r"loss 'head:loss'.*\n.*appending 2 padding"):
        check_padding_invariance(model, x, y)


def test_padding_invariance_catches_leaking_gradient(monkeypatch):
    model, x, y = _case(SEQ, IDS)
    _lstm_gradient_ignores_mask(monkeypatch)
    with pytest.raises(AssertionError, match=r"gradient of weight '(lstm_0|embedding)/"):
        check_padding_invariance(model, x, y)


# ---------------------------------------------------------------- masked steps

def test_masked_steps_catches_lstm_ignoring_mask(monkeypatch):
    model, x, _ = _case(SEQ, IDS)
    check_masked_steps(model, x)
    _lstm_ignores_mask(monkeypatch)
    with pytest.raises(AssertionError, match=r"(?s)layer .lstm_0. \(LSTM\) output at a masked "
                                             r"timestep: sample 0, timestep 2.*repeat of the "
                                             r"previous output"):
        check_masked_steps(model, x)


def test_masked_steps_catches_masking_that_does_not_zero(monkeypatch):
    model, x, _ = _case(MASKING, _floats())
    check_masked_steps(model, x)
    _masking_does_not_zero(monkeypatch)
    with pytest.raises(AssertionError, match=r"layer 'masking' \(Masking\): output: sample 0, "
                                             r"timestep 2: expected \[0, 0\], got \[5, 5\]"):
        check_masked_steps(model, x)


# ---------------------------------------------------------------- batch independence

def test_batch_independence_catches_lstm_ignoring_mask(monkeypatch):
    model, x, y = _case(FINAL, IDS)
    check_batch_independence(model, x, y)
    _lstm_ignores_mask(monkeypatch)
    with pytest.raises(AssertionError, match=r"trailing padding removed"):
        check_batch_independence(model, x, y)


def test_batch_independence_catches_loss_over_all_positions(monkeypatch):
    model, x, y = _case(SEQ, IDS)
    check_batch_independence(model, x, y)
    _loss_divides_by_all_positions(monkeypatch)
    with pytest.raises(AssertionError, match=r"loss 'head:loss'|trailing padding removed"):
        check_batch_independence(model, x, y)


# ---------------------------------------------------------------- loss formula

def test_loss_check_catches_division_by_all_positions(monkeypatch):
    model, x, y = _case(SEQ, IDS)
    check_loss_is_masked_mean(model, x, y)
    _loss_divides_by_all_positions(monkeypatch)
    with pytest.raises(AssertionError, match=r"loss of output 'head' \(mean_squared_error\): "
                                             r"expected the mean over kept positions.*"
                                             r"\(5 kept of 12 positions\).*padding included"):
        check_loss_is_masked_mean(model, x, y)


def test_loss_check_catches_dense_dropping_mask(monkeypatch):
    _dense_drops_mask(monkeypatch)
    model, x, y = _case(SEQ, IDS)
    with pytest.raises(AssertionError, match=r"matches the unmasked mean"):
        check_loss_is_masked_mean(model, x, y)


def test_loss_check_catches_a_weighted_denominator(monkeypatch):
    model, x, y = _case(SEQ, IDS)
    w = np.array([[1, 0, 1, 1], [2, 1, 0, 3], [0.5, 1, 1, 1]], np.float32)
    check_loss_is_masked_mean(model, x, y, w)
    check_loss_is_masked_mean(model, x, y)
    _loss_divides_by_weight_sum(monkeypatch)
    check_loss_is_masked_mean(model, x, y)  # invisible without weights
    with pytest.raises(AssertionError, match=r"expected the mean over kept positions .*"
                                             r"\(5 kept of 12 positions\).*the value matches "
                                             r"sum\(score\*m\*w\)/sum\(m\*w\) \(a weighted "
                                             r"denominator\)"):
        check_loss_is_masked_mean(model, x, y, w)


def _suite_failure(check):
    """The first case of the property suite's strategy on which ``check`` fails (derandomized,
    so always the same; no shrinking, which would rebuild hundreds of models)."""
    def fails(draw):
        try:
            check(*draw)
        except AssertionError:
            return True
        return False
    return find(weighted_cases(), fails,
                settings=settings(database=None, max_examples=25, derandomize=True,
                                  phases=[Phase.generate]))


def test_the_weighted_suite_catches_a_weighted_denominator(monkeypatch):
    """What tests/properties/test_invariants.py runs (the same strategy and checks) fails
    on the fault; before sample weights were drawn, the whole suite passed with it."""
    _loss_divides_by_weight_sum(monkeypatch)

    def loss_check(case, x, y, w):
        check_loss_is_masked_mean(case.model, x, y, w)
    case, x, y, w = _suite_failure(loss_check)
    # within the suite's 25 examples per test (the default profile); the case has a masked
    # sequence output and a kept weight that is not 1
    kept = x != case.pad if case.kind == "ids" else np.any(x != case.pad, axis=-1)
    kept_weights = np.broadcast_to(w.reshape(w.shape + (1,) * (2 - w.ndim)), kept.shape)[kept]
    assert case.sequence_output and np.any(kept_weights != 1)
    with pytest.raises(AssertionError, match=r"a weighted denominator"):
        loss_check(case, x, y, w)
    check_loss_is_masked_mean(case.model, x, y)  # the same case without weights passes

    def independence(case, x, y, w):
        check_batch_independence(case.model, x, y, w)
    case, x, y, w = _suite_failure(independence)
    assert np.any(w != 1)
    check_batch_independence(case.model, x, y)


# ---------------------------------------------------------------- all-masked batch

def test_all_masked_catches_nan_loss(monkeypatch):
    model, x, y = _case(SEQ, IDS)
    check_all_masked(model, x, y)
    _all_masked_loss_is_nan(monkeypatch)
    with pytest.raises(AssertionError, match=r"all-masked batch: loss 'head:loss' is nan"):
        check_all_masked(model, x, y)


def test_all_masked_catches_leaking_gradient(monkeypatch):
    model, x, y = _case(FINAL, IDS)
    check_all_masked(model, x, y)
    _lstm_gradient_ignores_mask(monkeypatch)
    with pytest.raises(AssertionError, match=r"all-masked batch: gradient of weight "
                                             r"'(embedding/embeddings|lstm_0/\w+)' must be "
                                             r"exactly 0"):
        check_all_masked(model, x, y)


# ---------------------------------------------------------------- gradients

def test_check_grads_catches_leaking_gradient(monkeypatch):
    model, x, y = _case(SEQ, IDS)
    check_grads(model, x, y)
    _lstm_gradient_ignores_mask(monkeypatch)
    with pytest.raises(AssertionError, match=r"gradient of weight '\w+/\w+': directional "
                                             r"derivative from the backward graph"):
        check_grads(model, x, y)


def test_check_grads_catches_a_scaled_dense_gradient(monkeypatch):
    model, x, y = _case(SEQ, IDS)
    op = get_op("dense")
    vjp = op.vjp

    def scaled(attrs, inputs, outputs, grads, wrt):
        res = vjp(attrs, inputs, outputs, grads, wrt)
        return {p: g * 1.01 if p == "kernel" else g for p, g in res.items()}
    monkeypatch.setattr(op, "vjp", scaled)
    with pytest.raises(AssertionError, match=r"gradient of weight 'head/kernel'"):
        check_grads(model, x, y)


# ---------------------------------------------------------------- mask annotations

def test_mask_annotations_catch_dense_dropping_mask(monkeypatch):
    model, x, _ = _case(MASKING, _floats())
    check_mask_annotations(model, x)
    _dense_drops_mask(monkeypatch)
    model, x, _ = _case(MASKING, _floats())
    with pytest.raises(AssertionError, match=r"layer 'dense_in' \(dense\) output 0: at run "
                                             r"time a padding mask reaches this output"):
        check_mask_annotations(model, x)


def test_mask_annotations_catch_a_wrong_mask_value(monkeypatch):
    model, x, _ = _case(SEQ, IDS)
    op = get_op("mask_not_equal")
    monkeypatch.setattr(op, "forward", lambda attrs, inputs: [inputs["x"] > 1])
    with pytest.raises(AssertionError, match=r"mask computed by 'embedding' "
                                             r"\(mask_not_equal#\d+\): sample 0"):
        check_mask_annotations(model, x)


# ---------------------------------------------------------------- shrinking

def test_failing_examples_shrink_to_small_cases(monkeypatch):
    model, _, _ = _case(SEQ, IDS)
    _loss_divides_by_all_positions(monkeypatch)

    def fails(ids):
        y = make_targets(model, model.loss_objects[0], ids, 0)
        try:
            check_loss_is_masked_mean(model, ids, y)
        except AssertionError:
            return True
        return False
    small = find(padded_ids(vocab_size=6, max_len=6), fails,
                 settings=settings(database=None, max_examples=200, derandomize=True))
    # one kept step and one padding step: [[1, 0]] or [[1], [0]]
    assert small.size == 2 and sorted(small.reshape(-1).tolist()) == [0, 1]
