"""The GRU op: harness checks over masks/attrs (both reset_after conventions), plus
explicit Keras 3 masking semantics."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphmask.ops.base import OpError, Spec, get_op
from tests.ops.harness import check_forward, check_op, check_shapes, check_vjp, random_mask

OP = get_op("gru")
DIFF = list(OP.diff_ports)


def make_inputs(rng, B=4, T=6, D=3, H=2, mask="any", bias=True, dtype=np.float64, scale=0.6,
                init=False, reset_after=True):
    inp = {"x": rng.standard_normal((B, T, D)),
           "kernel": rng.standard_normal((D, 3 * H)) * scale,
           "recurrent_kernel": rng.standard_normal((H, 3 * H)) * scale}
    if bias:
        inp["bias"] = rng.standard_normal((2, 3 * H) if reset_after else (3 * H,)) * 0.3
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


def vjp(attrs, inp, grads):
    return OP.vjp(attrs, inp, OP.forward(attrs, inp), grads, [p for p in DIFF if p in inp])


def f32(inp):
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in inp.items()}


CASES = [
    {},
    {"return_sequences": True, "return_state": True},
    {"return_state": True, "go_backwards": True},
    {"return_sequences": True, "go_backwards": True, "zero_output_for_mask": True},
    {"return_sequences": True, "activation": "relu", "recurrent_activation": "hard_sigmoid"},
    {"activation": "linear", "recurrent_activation": "linear", "return_state": True},
    {"return_sequences": True, "use_bias": False},
]
MASKS = ["right", "left", "holes", None]


@pytest.mark.parametrize("reset_after", [True, False], ids=["after", "before"])
@pytest.mark.parametrize("init", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("m", range(len(MASKS)))
@pytest.mark.parametrize("case", range(len(CASES)))
def test_harness(case, m, init, reset_after):
    """Shapes, mask invariance, kernels vs reference and VJP vs finite differences
    (dh0 included with an initial state) for every case, mask kind and convention."""
    kw, mask = dict(CASES[case]), MASKS[m]
    rng = np.random.default_rng(case * 7 + m + 1000 * init + 50 * reset_after)
    linear = kw.get("recurrent_activation") == "linear"
    inp = make_inputs(rng, mask=mask, bias=kw.get("use_bias", True), scale=0.2 if linear else 0.6,
                      init=init, reset_after=reset_after)
    attrs = attrs_of(reset_after=reset_after, **kw)
    check_op("gru", attrs, inp, data_port="x")
    check_shapes("gru", attrs, f32(inp))
    check_forward("gru", attrs, f32(inp), rtol=1e-4, atol=1e-5)
    check_vjp("gru", attrs, f32(inp), rtol=1e-3, atol=1e-4)


@settings(deadline=None, max_examples=25)
@given(B=st.integers(1, 5), T=st.integers(0, 7), D=st.integers(1, 4), H=st.integers(1, 5),
       seq=st.booleans(), back=st.booleans(), zero=st.booleans(), init=st.booleans(),
       after=st.booleans(), seed=st.integers(0, 10**6))
def test_random_shapes(B, T, D, H, seq, back, zero, init, after, seed):
    rng = np.random.default_rng(seed)
    inp = make_inputs(rng, B, T, D, H, init=init, reset_after=after)
    attrs = attrs_of(H, return_sequences=seq, go_backwards=back, zero_output_for_mask=zero,
                     return_state=True, reset_after=after)
    check_shapes("gru", attrs, inp)
    check_forward("gru", attrs, inp, rtol=1e-10, atol=1e-12)
    check_vjp("gru", attrs, inp, rtol=1e-9, atol=1e-10)


# ---- explicit semantics ----------------------------------------------------------------
@pytest.mark.parametrize("after", [True, False])
def test_masked_steps_repeat_previous_output_exactly(after):
    rng = np.random.default_rng(1)
    inp = make_inputs(rng, B=3, T=7, mask=None, dtype=np.float32, reset_after=after)
    inp["mask"] = np.array([[0, 1, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 0], [1] * 7], bool)
    y = fwd(attrs_of(return_sequences=True, reset_after=after), inp)[0]
    assert np.all(y[0, 0] == 0) and np.all(y[1] == 0)  # zeros before the first kept step
    np.testing.assert_array_equal(y[0, 3], y[0, 2])
    np.testing.assert_array_equal(y[0, 4], y[0, 2])
    np.testing.assert_array_equal(y[0, 6], y[0, 5])
    assert not np.array_equal(y[0, 2], y[0, 1])
    last = fwd(attrs_of(return_state=True, reset_after=after), inp)
    assert len(last) == 2
    np.testing.assert_array_equal(last[0], y[:, -1])
    np.testing.assert_array_equal(last[0][0], y[0, 5])
    np.testing.assert_array_equal(last[1], last[0])
    z = fwd(attrs_of(return_sequences=True, zero_output_for_mask=True, reset_after=after), inp)[0]
    np.testing.assert_array_equal(z, np.where(inp["mask"][..., None], y, 0))


def test_no_mask_equals_all_kept_and_go_backwards_order():
    rng = np.random.default_rng(2)
    inp = make_inputs(rng, mask=None)
    full = {**inp, "mask": np.ones((4, 6), bool)}
    a = attrs_of(return_sequences=True)
    np.testing.assert_array_equal(fwd(a, inp)[0], fwd(a, full)[0])
    b = attrs_of(return_sequences=True, go_backwards=True)
    rev = {**inp, "x": inp["x"][:, ::-1].copy()}
    np.testing.assert_allclose(fwd(b, inp)[0], fwd(a, rev)[0], rtol=1e-12)


@pytest.mark.parametrize("after", [True, False])
@pytest.mark.parametrize("seq", [False, True])
def test_inserted_masked_step_changes_nothing(seq, after):
    """A masked step carries the state (and its gradient) straight through, and gets no
    gradient into its input."""
    rng = np.random.default_rng(4)
    inp = make_inputs(rng, B=3, T=5, mask=None, reset_after=after)
    inp["mask"] = np.ones((3, 5), bool)
    ins = dict(inp)
    ins["x"] = np.insert(inp["x"], 2, rng.standard_normal((3, 3)) * 5, axis=1)
    ins["mask"] = np.insert(inp["mask"], 2, False, axis=1)
    a = attrs_of(return_sequences=seq, return_state=True, reset_after=after)
    o1, o2 = fwd(a, inp), fwd(a, ins)
    y2 = np.delete(o2[0], 2, axis=1) if seq else o2[0]
    np.testing.assert_allclose(y2, o1[0], rtol=1e-12, atol=1e-14)
    gs1 = [rng.standard_normal(o.shape) for o in o1]
    gs2 = [g.copy() for g in gs1]
    if seq:
        gs2[0] = np.insert(gs1[0], 2, 0.0, axis=1)
    g1, g2 = vjp(a, inp, gs1), vjp(a, ins, gs2)
    for p in ["kernel", "recurrent_kernel", "bias"]:
        np.testing.assert_allclose(g2[p], g1[p], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.delete(g2["x"], 2, axis=1), g1["x"], rtol=1e-10, atol=1e-12)
    assert np.all(g2["x"][:, 2] == 0)


@pytest.mark.parametrize("after", [True, False])
def test_hand_computed_one_unit(after):
    """H = D = 1, two kept steps, Keras's formulas written out."""
    def s(v):
        return 1 / (1 + np.exp(-v))

    k = np.array([[0.5, -0.25, 1.0]])
    u = np.array([[0.75, 0.5, -1.5]])
    b = np.array([[0.1, 0.2, 0.3], [-0.2, 0.1, 0.4]]) if after else np.array([0.1, 0.2, 0.3])
    xs = [0.5, -1.0]
    h = 0.0
    hs = []
    for x in xs:
        bi = b[0] if after else b
        br = b[1] if after else np.zeros(3)
        z = s(x * k[0, 0] + bi[0] + h * u[0, 0] + br[0])
        r = s(x * k[0, 1] + bi[1] + h * u[0, 1] + br[1])
        if after:
            hh = np.tanh(x * k[0, 2] + bi[2] + r * (h * u[0, 2] + br[2]))
        else:
            hh = np.tanh(x * k[0, 2] + bi[2] + (r * h) * u[0, 2])
        h = z * h + (1 - z) * hh
        hs.append(h)
    inp = {"x": np.array(xs)[None, :, None], "kernel": k, "recurrent_kernel": u, "bias": b,
           "mask": np.array([[True, True]])}
    attrs = attrs_of(1, return_sequences=True, return_state=True, reset_after=after)
    for out in (fwd(attrs, inp), OP.reference(attrs, inp)):
        np.testing.assert_allclose(out[0][0, :, 0], hs, rtol=1e-14)
        np.testing.assert_allclose(out[1][0, 0], hs[-1], rtol=1e-14)


def test_all_masked_batch_and_float32_kept_dtype():
    rng = np.random.default_rng(5)
    inp = make_inputs(rng, B=2, T=3, mask=None, dtype=np.float32)
    inp["mask"] = np.zeros((2, 3), bool)
    a = attrs_of(return_sequences=True, return_state=True)
    out = fwd(a, inp)
    assert all(o.dtype == np.float32 and np.all(o == 0) for o in out)
    g = vjp(a, inp, [np.ones_like(o) for o in out])
    assert all(np.all(v == 0) and v.dtype == np.float32 for v in g.values())


def test_infer_and_errors():
    t = "float32"
    specs = {"x": Spec((None, None, 3), t), "mask": Spec((None, None), "bool"),
             "kernel": Spec((3, 6), t), "recurrent_kernel": Spec((2, 6), t),
             "bias": Spec((2, 6), t)}
    assert OP.infer(attrs_of(), specs) == [Spec((None, 2), t)]
    out = OP.infer(attrs_of(return_sequences=True, return_state=True), specs)
    assert out == [Spec((None, None, 2), t), Spec((None, 2), t)]
    before = {**specs, "bias": Spec((6,), t)}
    assert OP.infer(attrs_of(reset_after=False), before) == [Spec((None, 2), t)]
    rule = OP.mask_rule(attrs_of(return_sequences=True))
    assert rule.out == "pass" and rule.uses and rule.mask_from == ("x",)
    assert OP.mask_rule(attrs_of()).out == "none"
    cases = [({**specs, "bias": Spec((6,), t)}, {},
              "bias must be a float array of shape (2, 6) for units=2 and 3 input features, "
              "got Spec(shape=(6,), dtype='float32')"),
             (specs, {"reset_after": False},
              "bias must be a float array of shape (6,) for units=2 and 3 input features, "
              "got Spec(shape=(2, 6), dtype='float32')"),
             ({**specs, "kernel": Spec((3, 8), t)}, {},
              "kernel must be a float array of shape (3, 6) for units=2 and 3 input features, "
              "got Spec(shape=(3, 8), dtype='float32')"),
             ({**specs, "h0": Spec((None, 3), t)}, {},
              "h0 must be a float array of shape (None, 2) (batch, units), got "
              "Spec(shape=(None, 3), dtype='float32')"),
             ({**specs, "mask": Spec((None, None), t)}, {},
              "mask must be a bool array of shape (None, None), got "
              "Spec(shape=(None, None), dtype='float32')"),
             (specs, {"activation": "softmax"},
              "activation must be one of ('tanh', 'relu', 'sigmoid', 'linear'), "
              "got 'softmax'"),
             (specs, {"units": 0}, "units must be a positive int, got 0"),
             (specs, {"use_bias": False}, "bias connected but use_bias=False")]
    for sp, kw, msg in cases:
        with pytest.raises(OpError) as e:
            OP.infer({**attrs_of(), **kw}, sp)
        assert str(e.value) == msg


@pytest.mark.parametrize("after", [True, False])
@pytest.mark.parametrize("kw", [{"return_sequences": True},
                                {"go_backwards": True, "return_state": True},
                                {"return_sequences": True, "activation": "relu"}])
def test_threaded_path_with_ragged_unit_chunks(kw, after):
    """Big enough for the multi-threaded float32 kernels; H = 40 gives unit chunks 16, 16,
    8; with an initial state."""
    from graphmask.kernels import gru as K

    B, H = 120, 40
    rng = np.random.default_rng(6)
    inp = make_inputs(rng, B=B, T=9, D=5, H=H, mask="any", scale=0.3, init=True,
                      reset_after=after)
    assert not K.gru_threads(int(inp["mask"].sum(0).max()), H).serial
    attrs = attrs_of(H, reset_after=after, **kw)
    check_forward("gru", attrs, inp, rtol=1e-10, atol=1e-12)
    check_vjp("gru", attrs, inp, rtol=1e-9, atol=1e-10)
    check_forward("gru", attrs, f32(inp), rtol=1e-4, atol=1e-5)
    check_vjp("gru", attrs, f32(inp), rtol=1e-3, atol=1e-4)
    check_forward("gru", {**attrs, "_residuals": False}, f32(inp), rtol=1e-4, atol=1e-5)


def test_run_time_shape_errors():
    rng = np.random.default_rng(7)
    inp = make_inputs(rng, B=3, T=4, D=3, H=2)
    for port, bad in [("mask", np.ones((3, 5), bool)), ("kernel", np.ones((4, 6))),
                      ("recurrent_kernel", np.ones((2, 4))), ("bias", np.ones(6))]:
        with pytest.raises(OpError, match=r"gru\(units=2\): shapes do not fit"):
            OP.forward(attrs_of(), {**inp, port: bad})
    with pytest.raises(OpError, match=r"must be a \(3, 2\) array, got h0 \(3, 3\)"):
        OP.forward(attrs_of(), {**inp, "h0": np.ones((3, 3))})


def test_inference_forward_matches_training_forward():
    rng = np.random.default_rng(8)
    for B, T, H in [(6, 7, 5), (3, 4, 5), (9, 8, 6)]:
        for dtype in (np.float64, np.float32):
            for after in (True, False):
                inp = make_inputs(rng, B=B, T=T, D=3, H=H, dtype=dtype, reset_after=after)
                attrs = attrs_of(H, return_sequences=True, return_state=True,
                                 reset_after=after)
                train = OP.forward(attrs, inp)
                infer = OP.forward({**attrs, "_residuals": False}, inp)
                assert len(infer) == len(train)
                for a, b in zip(train[:2], infer[:2]):
                    np.testing.assert_array_equal(a, b)
                assert all(r.size == 0 for r in infer[4:])


# ---- initial state -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_initial_state_outputs_at_masked_steps_and_empty_samples(dtype):
    rng = np.random.default_rng(11)
    inp = make_inputs(rng, B=3, T=7, mask=None, dtype=dtype, init=True)
    inp["mask"] = np.array([[0, 1, 1, 0, 0, 1, 0], [0] * 7, [1] * 7], bool)
    h0 = inp["h0"]
    seq = fwd(attrs_of(return_sequences=True, return_state=True), inp)
    y = seq[0]
    assert np.all(y[0, 0] == 0) and np.all(y[1] == 0)
    np.testing.assert_array_equal(seq[1][1], h0[1])  # carried initial state, exactly
    np.testing.assert_array_equal(seq[1][[0, 2]], y[[0, 2], -1])
    last = fwd(attrs_of(return_state=True), inp)
    np.testing.assert_array_equal(last[0][1], 0)
    np.testing.assert_array_equal(last[1][1], h0[1])
    for ours, ref in zip(seq, OP.reference(attrs_of(return_sequences=True, return_state=True),
                                           inp)):
        np.testing.assert_allclose(ours, ref, rtol=1e-4 if dtype == np.float32 else 1e-12,
                                   atol=1e-6 if dtype == np.float32 else 1e-14)


def test_initial_state_gradients_of_empty_samples():
    rng = np.random.default_rng(13)
    inp = make_inputs(rng, B=3, T=5, mask=None, init=True)
    inp["mask"] = np.array([[0, 0, 1, 1, 0], [0] * 5, [1] * 5], bool)
    a = attrs_of(return_sequences=True, return_state=True)
    outs = fwd(a, inp)
    gs = [rng.standard_normal(o.shape) for o in outs]
    g = vjp(a, inp, gs)
    np.testing.assert_array_equal(g["h0"][1], gs[1][1])
    forced = ~np.logical_or.accumulate(inp["mask"], axis=1)
    moved = np.where(forced[..., None], rng.standard_normal(gs[0].shape), gs[0])
    g_moved = vjp(a, inp, [moved] + gs[1:])
    for p in g:
        np.testing.assert_array_equal(g_moved[p], g[p])


@pytest.mark.parametrize("after", [True, False])
def test_initial_state_continues_a_split_sequence(after):
    rng = np.random.default_rng(14)
    inp = make_inputs(rng, B=6, T=9, mask="any", reset_after=after)
    inp["mask"][:, 4] = True
    a = attrs_of(return_sequences=True, return_state=True, reset_after=after)
    whole = fwd(a, inp)
    first = {**inp, "x": inp["x"][:, :4].copy(), "mask": inp["mask"][:, :4].copy()}
    o1 = fwd(a, first)
    second = {**inp, "x": inp["x"][:, 4:].copy(), "mask": inp["mask"][:, 4:].copy(),
              "h0": o1[1]}
    o2 = fwd(a, second)
    np.testing.assert_allclose(o2[1], whole[1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(o2[0], whole[0][:, 4:], rtol=1e-12, atol=1e-14)
    gs = [rng.standard_normal(o.shape) for o in whole]
    gw = vjp(a, inp, gs)
    g2 = vjp(a, second, [gs[0][:, 4:], gs[1]])
    g1 = vjp(a, first, [gs[0][:, :4], g2["h0"]])
    np.testing.assert_allclose(np.concatenate([g1["x"], g2["x"]], axis=1), gw["x"],
                               rtol=1e-10, atol=1e-12)
    for p in ("kernel", "recurrent_kernel", "bias"):
        np.testing.assert_allclose(g1[p] + g2[p], gw[p], rtol=1e-10, atol=1e-12)


# ---- dropout -------------------------------------------------------------------------------
def _fd_with_masks(op, attrs, inp, drop, wrt, seed=0, eps=1e-6, n=12):
    """reference_vjp(drop) against central differences of reference(drop), float64."""
    rng = np.random.default_rng(seed)
    outs = op.reference(attrs, inp, drop)
    cot = [rng.standard_normal(o.shape) for o in outs]
    grads = op.reference_vjp(attrs, inp, cot, wrt, drop)
    for p in wrt:
        for idx in rng.permutation(inp[p].size)[:n]:
            i = np.unravel_index(idx, inp[p].shape)
            vals = []
            for sign in (1, -1):
                moved = {**inp, p: inp[p].copy()}
                moved[p][i] += sign * eps
                vals.append(sum(float(np.sum(o * g)) for o, g in
                                zip(op.reference(attrs, moved, drop), cot)))
            fd = (vals[0] - vals[1]) / (2 * eps)
            assert abs(grads[p][i] - fd) <= 1e-7 + 1e-5 * abs(fd), (p, i, grads[p][i], fd)


@pytest.mark.parametrize("after", [True, False])
@pytest.mark.parametrize("recurrent", [False, True])
def test_dropout_reference_gradients_with_fixed_masks(after, recurrent):
    rng = np.random.default_rng(21)
    inp = make_inputs(rng, B=3, T=5, D=3, H=2, init=True, reset_after=after)
    B, D, H = 3, 3, 2
    if recurrent:
        drop = ((rng.random((3, B, D)) > 0.3) / 0.7, (rng.random((3, B, H)) > 0.4) / 0.6)
    else:
        drop = ((rng.random((B, D)) > 0.3) / 0.7, None)
    attrs = attrs_of(return_sequences=True, return_state=True, reset_after=after,
                     go_backwards=recurrent)
    _fd_with_masks(OP, attrs, inp, drop, DIFF)


@pytest.mark.parametrize("after", [True, False])
@pytest.mark.parametrize("rates", [(0.4, 0.0), (0.3, 0.5), (0.0, 0.5)],
                         ids=["dropout", "both", "recurrent"])
def test_dropout_in_training_uses_the_masks_it_returns(after, rates):
    """A train-plan forward draws masks (returned as residuals) and computes the reference
    with them; its VJP is the reference VJP with the same masks. Outside training the op
    is the plain GRU, bit for bit; a seeded stream repeats its masks."""
    from graphmask.ops import lstm as lstm_op

    rng = np.random.default_rng(22)
    inp = f32(make_inputs(rng, B=6, T=7, D=3, H=4, init=True, reset_after=after))
    base = attrs_of(4, return_sequences=True, return_state=True, reset_after=after)
    attrs = {**base, "dropout": rates[0], "recurrent_dropout": rates[1], "seed": 3,
             "seed_key": f"test_gru:{after}:{rates}"}
    assert OP.n_residuals(attrs) == 10 and OP.n_residuals(base) == 8
    plain = fwd(base, inp)
    for a, b in zip(OP.forward(attrs, inp)[:2], plain):  # no _training: no dropout
        np.testing.assert_array_equal(a, b)
    train = {**attrs, "_training": True}
    lstm_op.seed_stream(attrs["seed_key"], 3)
    outs = OP.forward(train, inp)
    mx, mh = outs[-2:]
    assert mx.size and (mh.size > 0) == (rates[1] > 0)
    if rates[0]:
        assert set(np.unique(mx)) == {0.0, np.float32(1 / (1 - rates[0]))}
    drop = (mx, mh if mh.size else None)
    for a, b in zip(outs[:2], OP.reference(train, inp, drop)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(outs[0], plain[0], atol=1e-3)
    gs = [rng.standard_normal(o.shape).astype(np.float32) for o in outs[:2]]
    got = OP.vjp(train, inp, outs, gs, DIFF)
    want = OP.reference_vjp(train, inp, gs, DIFF, drop)
    for p in DIFF:
        np.testing.assert_allclose(got[p], want[p], rtol=1e-3, atol=1e-4, err_msg=p)
    lstm_op.seed_stream(attrs["seed_key"], 3)
    again = OP.forward(train, inp)
    for a, b in zip(again[-2:], outs[-2:]):
        np.testing.assert_array_equal(a, b)


def test_dropout_rate_errors():
    t = "float32"
    specs = {"x": Spec((None, 5, 3), t), "kernel": Spec((3, 6), t),
             "recurrent_kernel": Spec((2, 6), t), "bias": Spec((2, 6), t)}
    for rate, value in [("dropout", 1.0), ("recurrent_dropout", -0.1), ("dropout", "x")]:
        with pytest.raises(OpError) as e:
            OP.infer({**attrs_of(), rate: value}, specs)
        assert str(e.value) == f"{rate} must be a number in [0, 1), got {value!r}"
