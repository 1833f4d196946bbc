"""The SimpleRNN op: harness checks over masks and attributes, and Keras 3 masking
semantics written out."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphmask.ops.base import OpError, Spec, get_op
from tests.ops.harness import check_forward, check_op, check_shapes, check_vjp, random_mask

OP = get_op("simple_rnn")
DIFF = list(OP.diff_ports)


def make_inputs(rng, B=4, T=6, D=3, H=2, mask="any", bias=True, dtype=np.float64, scale=0.6,
                init=False):
    inp = {"x": rng.standard_normal((B, T, D)),
           "kernel": rng.standard_normal((D, H)) * scale,
           "recurrent_kernel": rng.standard_normal((H, H)) * scale}
    if bias:
        inp["bias"] = rng.standard_normal(H) * 0.3
    if mask is not None:
        inp["mask"] = random_mask(rng, B, T, kind=mask)
    if init:
        inp["h0"] = np.tanh(rng.standard_normal((B, H)))
    return {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in inp.items()}


def attrs_of(H=2, **kw):
    return {"units": H, "use_bias": kw.pop("use_bias", True), **kw}


def fwd(attrs, inp):
    return OP.forward(attrs, inp)[: len(OP.infer(attrs, {p: Spec(a.shape, str(a.dtype))
                                                         for p, a in inp.items()}))]


CASES = [
    {},
    {"return_sequences": True, "return_state": True},
    {"return_state": True, "go_backwards": True},
    {"return_sequences": True, "go_backwards": True, "zero_output_for_mask": True},
    {"return_sequences": True, "activation": "relu"},
    {"activation": "sigmoid", "return_state": True, "use_bias": False},
    {"return_sequences": True, "activation": "linear"},
]
MASKS = ["right", "left", "holes", None]


@pytest.mark.parametrize("init", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("m", range(len(MASKS)))
@pytest.mark.parametrize("case", range(len(CASES)))
def test_harness(case, m, init):
    kw, mask = dict(CASES[case]), MASKS[m]
    rng = np.random.default_rng(case * 7 + m + 1000 * init)
    inp = make_inputs(rng, mask=mask, bias=kw.get("use_bias", True), init=init)
    attrs = attrs_of(**kw)
    check_op("simple_rnn", attrs, inp, data_port="x")
    inp32 = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in inp.items()}
    check_shapes("simple_rnn", attrs, inp32)
    check_forward("simple_rnn", attrs, inp32, rtol=1e-4, atol=1e-5)
    check_vjp("simple_rnn", attrs, inp32, rtol=1e-3, atol=1e-4)


@settings(deadline=None, max_examples=25)
@given(B=st.integers(1, 5), T=st.integers(0, 7), D=st.integers(1, 4), H=st.integers(1, 5),
       seq=st.booleans(), back=st.booleans(), zero=st.booleans(), init=st.booleans(),
       seed=st.integers(0, 10**6))
def test_random_shapes(B, T, D, H, seq, back, zero, init, seed):
    rng = np.random.default_rng(seed)
    inp = make_inputs(rng, B, T, D, H, init=init)
    attrs = attrs_of(H, return_sequences=seq, go_backwards=back, zero_output_for_mask=zero,
                     return_state=True)
    check_shapes("simple_rnn", attrs, inp)
    check_forward("simple_rnn", attrs, inp, rtol=1e-10, atol=1e-12)
    check_vjp("simple_rnn", attrs, inp, rtol=1e-9, atol=1e-10)


def test_hand_computed_and_masked_step_repeats():
    """H = D = 1: h1 = tanh(0.5 k + b), a masked step, h2 = tanh(-x k + b + h1 u)."""
    k, u, b = 0.8, -0.6, 0.1
    inp = {"x": np.array([[[0.5], [9.0], [-1.0]]]), "kernel": np.array([[k]]),
           "recurrent_kernel": np.array([[u]]), "bias": np.array([b]),
           "mask": np.array([[True, False, True]])}
    h1 = np.tanh(0.5 * k + b)
    h2 = np.tanh(-1.0 * k + b + h1 * u)
    attrs = attrs_of(1, return_sequences=True, return_state=True)
    for out in (fwd(attrs, inp), OP.reference(attrs, inp)):
        np.testing.assert_allclose(out[0][0, :, 0], [h1, h1, h2], rtol=1e-14)
        np.testing.assert_allclose(out[1][0, 0], h2, rtol=1e-14)
    z = fwd(attrs_of(1, return_sequences=True, zero_output_for_mask=True), inp)[0]
    np.testing.assert_allclose(z[0, :, 0], [h1, 0.0, h2], rtol=1e-14)


def test_initial_state_and_empty_samples():
    rng = np.random.default_rng(3)
    inp = make_inputs(rng, B=3, T=5, mask=None, init=True, dtype=np.float32)
    inp["mask"] = np.array([[0, 1, 0, 1, 0], [0] * 5, [1] * 5], bool)
    out = fwd(attrs_of(return_sequences=True, return_state=True), inp)
    assert np.all(out[0][0, 0] == 0) and np.all(out[0][1] == 0)
    np.testing.assert_array_equal(out[1][1], inp["h0"][1])
    last = fwd(attrs_of(return_state=True), inp)
    np.testing.assert_array_equal(last[0][1], 0)
    np.testing.assert_array_equal(last[1][1], inp["h0"][1])


def test_infer_and_errors():
    t = "float32"
    specs = {"x": Spec((None, None, 3), t), "kernel": Spec((3, 2), t),
             "recurrent_kernel": Spec((2, 2), t), "bias": Spec((2,), t)}
    assert OP.infer(attrs_of(return_state=True), specs) == [Spec((None, 2), t)] * 2
    with pytest.raises(OpError, match=r"recurrent_kernel must be a float array of shape "
                                      r"\(2, 2\)"):
        OP.infer(attrs_of(), {**specs, "recurrent_kernel": Spec((2, 3), t)})
    with pytest.raises(OpError, match="activation must be one of"):
        OP.infer(attrs_of(activation="softmax"), specs)
    rng = np.random.default_rng(4)
    with pytest.raises(OpError, match=r"simple_rnn\(units=2\): shapes do not fit"):
        OP.forward(attrs_of(), {**make_inputs(rng), "bias": np.ones(3)})


@pytest.mark.parametrize("rates", [(0.4, 0.0), (0.3, 0.5)], ids=["dropout", "both"])
def test_dropout_in_training_uses_the_masks_it_returns(rates):
    from graphmask.ops import lstm as lstm_op
    from tests.ops.test_gru import _fd_with_masks

    rng = np.random.default_rng(9)
    inp = make_inputs(rng, B=5, T=6, D=3, H=4, init=True)
    base = attrs_of(4, return_sequences=True, return_state=True)
    attrs = {**base, "dropout": rates[0], "recurrent_dropout": rates[1], "seed": 1,
             "seed_key": f"test_simple_rnn:{rates}", "_training": True}
    assert OP.n_residuals(attrs) == 7 and OP.n_residuals(base) == 5
    lstm_op.seed_stream(attrs["seed_key"], 1)
    outs = OP.forward(attrs, inp)
    mx, mh = outs[-2:]
    drop = (mx, mh if mh.size else None)
    assert mx.shape == ((5, 3) if not rates[1] else (1, 5, 3))
    for a, b in zip(outs[:2], OP.reference(attrs, inp, drop)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    gs = [rng.standard_normal(o.shape) for o in outs[:2]]
    got = OP.vjp(attrs, inp, outs, gs, DIFF)
    want = OP.reference_vjp(attrs, inp, gs, DIFF, drop)
    for p in DIFF:
        np.testing.assert_allclose(got[p], want[p], rtol=1e-9, atol=1e-10, err_msg=p)
    _fd_with_masks(OP, base, inp, drop, DIFF)
    plain = OP.forward(base, inp)[:2]
    for a, b in zip(OP.forward({**attrs, "_training": False}, inp)[:2], plain):
        np.testing.assert_array_equal(a, b)
