"""Every check says what it could not check: the ``skipped`` of its :class:`CheckReport`.

A check that quietly verifies less than it claims is a test that cannot fail; these tests
pin the report of each part a check can skip, on models and batches where it must."""
import numpy as np
import pytest

import graphmask as gm
from graphmask.ops import get_op
from graphmask.testing import (
    CheckReport,
    _expected,
    _mask_checks,
    build_model,
    check_all,
    check_all_masked,
    check_batch_independence,
    check_grads,
    check_loss_is_masked_mean,
    check_mask_annotations,
    check_masked_steps,
    check_padding_invariance,
    make_targets,
)

SEQ = ("ids", 6, 3, 0.0, 0, ((3, True, False, False),), 2, "mse", False)
FINAL = ("ids", 6, 3, 0.0, 0, ((3, False, False, False),), 2, "mse", False)
IDS = np.array([[1, 2, 0, 0], [0, 3, 0, 4], [5, 0, 0, 0]], np.int32)
FULL = np.array([[1, 2, 3], [4, 5, 1]], np.int32)  # no padding at all


def _case(spec, x=IDS):
    model, loss = build_model(spec, seed=7)
    return model, x, make_targets(model, loss, x, 0)


def _fixed_time_model():
    ids = gm.Input(shape=(4,), dtype="int32", name="ids")
    h = gm.Embedding(6, 2, mask_zero=True, name="emb")(ids)
    h = gm.LSTM(3, return_sequences=True, name="lstm")(h)
    model = gm.Model(ids, gm.Dense(2, name="head")(h))
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_a_complete_report():
    model, x, y = _case(SEQ)
    rep = check_padding_invariance(model, x, y)
    assert isinstance(rep, CheckReport) and rep.check == "check_padding_invariance"
    assert rep.skipped == () and rep.complete
    assert rep.checked == (
        "random values at masked positions of 3 masked layer output(s)",
        "random embedding row of padding id 0 (1 Embedding(mask_zero=True))",
        "2 padding timestep(s) appended", "2 padding timestep(s) prepended")
    assert rep.assert_complete() is rep
    assert str(rep).splitlines()[0] == ("check_padding_invariance: 4 part(s) checked, "
                                        "0 skipped")


def test_fixed_time_axis_skips_adding_and_removing_padding():
    model = _fixed_time_model()
    x = IDS
    rep = check_padding_invariance(model, x)
    assert rep.skipped == (
        "losses and gradients: no y given",
        "appending and prepending padding: input 'ids' has a fixed time axis "
        "(shape (None, 4))")
    rep = check_batch_independence(model, x)
    assert rep.skipped == (
        "losses and gradients: no y given",
        "samples run alone with their trailing padding removed: input 'ids' has a fixed "
        "time axis (shape (None, 4))")
    with pytest.raises(AssertionError, match=r"(?s)check_batch_independence could not "
                                             r"check everything:\n  - losses and gradients"):
        rep.assert_complete()


def test_unknown_padding_value_skips_padding_runs_and_the_all_masked_check():
    x = gm.Input(shape=(None, 2), name="x")
    h = gm.Masking(0.0, name="masking")(gm.Dense(2, name="pre")(x))  # not on the input
    out = gm.Dense(1, name="head")(gm.LSTM(2, return_sequences=True, name="lstm")(h))
    model = gm.Model(x, out)
    model.compile(optimizer="sgd", loss="mse")
    xb = np.random.default_rng(0).normal(size=(2, 3, 2)).astype(np.float32)
    y = np.zeros((2, 3, 1), np.float32)
    why = ("input 'x' has no Embedding(mask_zero=True) or Masking reading it, so its "
           "padding value is unknown")
    assert check_padding_invariance(model, xb, y).skipped == (
        "random values at masked positions: this batch has no masked position",
        f"appending and prepending padding: {why}")
    rep = check_all(model, xb, y)
    assert ("check_all_masked: input 'x' has no Embedding(mask_zero=True) or Masking "
            "reading it, so no all-padding batch can be built") in rep.skipped
    assert f"check_batch_independence: samples run alone with their trailing padding " \
           f"removed: {why}" in rep.skipped


def test_a_batch_without_padding_exercises_no_masking_rule():
    model, x, _ = _case(SEQ, FULL)
    assert check_masked_steps(model, x).skipped == (
        "layer 'embedding' (Embedding): output at padding id 0: no padding id in this batch",
        "layer 'lstm_0' (LSTM) output at a masked timestep: no masked step in this batch")
    assert check_padding_invariance(model, x).skipped == (
        "losses and gradients: no y given",
        "random values at masked positions: this batch has no masked position")
    model, x, _ = _case(FINAL, IDS)  # no sample without a kept step
    assert check_masked_steps(model, x).skipped == (
        "layer 'lstm_0' (LSTM) final output of a sample with no kept step: no such sample "
        "in this batch",)
    x = np.vstack([IDS, np.zeros((1, 4), np.int32)])
    rep = check_masked_steps(model, x)
    assert rep.complete and rep.checked[-1] == ("layer 'lstm_0' (LSTM) final output of a "
                                                "sample with no kept step")


def test_no_trailing_padding_is_reported():
    model, _, _ = _case(SEQ)
    x = np.array([[0, 1, 2], [3, 0, 4]], np.int32)  # left padding and a hole only
    assert "samples run alone with their trailing padding removed: no sample of this batch " \
           "has trailing padding" in check_batch_independence(model, x).skipped


def test_a_model_without_masks_reports_it():
    ids = gm.Input(shape=(None,), dtype="int32", name="ids")
    h = gm.LSTM(2, name="lstm")(gm.Embedding(6, 2, name="emb")(ids))
    model = gm.Model(ids, gm.Dense(1, name="head")(h))
    rep = check_padding_invariance(model, IDS)
    assert "random values at masked positions: no layer output carries a padding mask" \
        in rep.skipped


def test_unknown_mask_rule_is_reported_not_assumed(monkeypatch):
    model, x, y = _case(SEQ)
    monkeypatch.setattr(_expected, "_PASS", tuple(p for p in _expected._PASS if p != "dense"))
    rep = check_mask_annotations(model, x)
    assert rep.skipped == (
        "layer 'head' (dense) output 0: mask annotation not checked: the checker has no "
        "Keras 3 mask rule for op 'dense'",
        "head:loss (masked_mean): its mask port: not checked: the checker has no Keras 3 "
        "mask rule for op 'dense'")
    # the loss check used to take an unknown mask for "no mask"; it now says it cannot tell
    rep = check_loss_is_masked_mean(model, x, y)
    assert rep.checked == ()
    assert rep.skipped == (
        "loss of output 'head' (mean_squared_error): the mask of the prediction is unknown: "
        "the checker has no Keras 3 mask rule for op 'dense'",
        "the test_on_batch total: not every loss could be checked")


def test_downstream_of_an_unknown_op_is_reported(monkeypatch):
    model, x, _ = _case(("ids", 6, 3, 0.0, 2, ((3, True, False, False),), 2, "mse", False))
    monkeypatch.setattr(_expected, "_PASS", tuple(p for p in _expected._PASS if p != "dense"))
    skipped = check_mask_annotations(model, x).skipped
    assert skipped[0] == ("layer 'dense_in' (dense) output 0: mask annotation not checked: "
                          "the checker has no Keras 3 mask rule for op 'dense'")
    assert ("layer 'lstm_0' (lstm) output 0: mask annotation not checked: downstream of layer "
            "'dense_in' (dense), whose output mask the checker cannot derive") in skipped


def test_unknown_masked_step_rule_is_reported(monkeypatch):
    model, x, _ = _case(SEQ)
    monkeypatch.setattr(_mask_checks, "POSITIONWISE",
                        tuple(p for p in _mask_checks.POSITIONWISE if p != "dense"))
    assert check_masked_steps(model, x).skipped == (
        "layer 'head' (dense): no masked-step rule known for op 'dense'",)


def test_non_float_masked_output_is_reported(monkeypatch):
    model, x, _ = _case(SEQ)
    op = get_op("dense")
    forward = op.forward

    def rounded(attrs, inputs):
        return [np.rint(v).astype(np.int64) for v in forward(attrs, inputs)]
    monkeypatch.setattr(op, "forward", rounded)
    rep = check_padding_invariance(model, x)
    assert ("random values at masked positions of layer 'head' (dense) output 0: not a "
            "float output (int64)") in rep.skipped
    assert "random values at masked positions of 2 masked layer output(s)" in rep.checked


def test_several_losses_skip_the_gradient_weighting():
    ids = gm.Input(shape=(None,), dtype="int32", name="ids")
    e = gm.Embedding(6, 2, mask_zero=True, name="emb")(ids)
    a = gm.Dense(2, name="a")(gm.LSTM(3, return_sequences=True, name="l1")(e))
    b = gm.Dense(1, name="b")(gm.LSTM(3, name="l2")(e))
    model = gm.Model(ids, [a, b])
    model.compile(optimizer="sgd", loss=["mse", "mse"])
    y = [np.ones((3, 4, 2), np.float32), np.ones((3, 1), np.float32)]
    assert check_batch_independence(model, IDS, y).skipped == (
        "gradients as the weighted mean of per-sample gradients: the model has 2 losses "
        "(checked for a single loss only)",)


def test_weights_without_a_gradient_are_reported():
    ids = gm.Input(shape=(None,), dtype="int32", name="ids")
    e = gm.Embedding(6, 2, mask_zero=True, name="emb")(ids)
    a = gm.Dense(2, name="a")(gm.LSTM(3, return_sequences=True, name="l1")(e))
    b = gm.Dense(1, name="b")(gm.LSTM(3, name="l2")(e))
    model = gm.Model(ids, [a, b])
    model.compile(optimizer="sgd", loss=["mse", None])
    y = [np.ones((3, 4, 2), np.float32), None]
    want = tuple(f"gradient of weight {w!r}: the compiled graph computes none (no path from "
                 f"it to a loss)" for w in ("l2/kernel", "l2/recurrent_kernel", "l2/bias",
                                            "b/kernel", "b/bias"))
    assert check_grads(model, IDS, y, directions=1).skipped == want
    assert check_all_masked(model, IDS, y).skipped == want


def test_check_all_merges_the_reports_and_names_the_checks_not_run():
    model, x, _ = _case(SEQ, FULL)
    rep = check_all(model, x)
    assert rep.check == "check_all"
    assert rep.skipped[-1] == ("check_loss_is_masked_mean, check_all_masked and check_grads: "
                               "no y given")
    assert "check_masked_steps: layer 'lstm_0' (LSTM) output at a masked timestep: no " \
           "masked step in this batch" in rep.skipped
    model, x, y = _case(SEQ)
    rep = check_all(model, x, y)
    assert rep.complete, rep
    assert {c.split(":")[0] for c in rep.checked} == {
        "check_mask_annotations", "check_masked_steps", "check_padding_invariance",
        "check_batch_independence", "check_loss_is_masked_mean", "check_all_masked",
        "check_grads"}


def test_a_custom_layer_is_checked_at_its_outputs_not_inside():
    """A Lambda traced into several ops: the values inside it (here tanh of the padding
    embedding, with no mask of its own) are free at padded steps, as in Keras; the
    layer's output carries the mask its ``mask=`` function returns, and everything
    downstream is checked against that."""
    ids = gm.Input(shape=(None,), dtype="int32", name="ids")
    h = gm.Embedding(6, 3, mask_zero=True, name="emb")(ids)
    h = gm.Lambda(lambda t: gm.ops.tanh(t) * 2.0, mask=lambda inputs, mask: mask,
                  name="lam")(h)
    h = gm.LSTM(4, return_sequences=True, name="lstm")(h)
    model = gm.Model(ids, gm.Dense(2, name="head")(h))
    model.compile(optimizer="sgd", loss="mse")
    rep = check_all(model, IDS, np.ones((3, 4, 2), np.float32))
    assert rep.complete, rep
    assert "check_mask_annotations: layer 'lam' (attach_mask) output 0: mask annotation" \
        in rep.checked
    assert "check_loss_is_masked_mean: loss of output 'head' (mean_squared_error)" \
        in rep.checked
    assert not [c for c in rep.checked if "prim." in c]
