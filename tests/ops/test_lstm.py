"""The LSTM op: harness checks over masks/attrs, plus explicit Keras 3 masking semantics."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphmask.ops.base import OpError, Spec, get_op
from tests.ops.harness import check_forward, check_op, check_shapes, check_vjp, random_mask

OP = get_op("lstm")
DIFF = list(OP.diff_ports)


def make_inputs(rng, B=4, T=6, D=3, H=2, mask="any", bias=True, dtype=np.float64, scale=0.6,
                init=False):
    inp = {"x": rng.standard_normal((B, T, D)),
           "kernel": rng.standard_normal((D, 4 * H)) * scale,
           "recurrent_kernel": rng.standard_normal((H, 4 * H)) * scale}
    if bias:
        inp["bias"] = rng.standard_normal(4 * H) * 0.3
    if mask is not None:
        inp["mask"] = random_mask(rng, B, T, kind=mask)
    if init:  # an initial state (h0 in tanh's range, c0 unbounded)
        inp["h0"] = np.tanh(rng.standard_normal((B, H)))
        inp["c0"] = rng.standard_normal((B, H))
    return {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in inp.items()}


def attrs_of(H=2, **kw):
    return {"units": H, "use_bias": kw.pop("use_bias", True), **kw}


def fwd(attrs, inp):
    return OP.forward(attrs, inp)[: len(OP.infer(attrs, {p: Spec(a.shape, str(a.dtype))
                                                         for p, a in inp.items()}))]


def vjp(attrs, inp, grads):
    return OP.vjp(attrs, inp, OP.forward(attrs, inp), grads, [p for p in DIFF if p in inp])


CASES = [
    {},
    {"return_sequences": True},
    {"return_sequences": True, "return_state": True},
    {"return_state": True, "go_backwards": True},
    {"return_sequences": True, "go_backwards": True, "zero_output_for_mask": True},
    {"return_sequences": True, "zero_output_for_mask": True, "return_state": True},
    {"return_sequences": True, "activation": "relu", "recurrent_activation": "hard_sigmoid"},
    {"return_sequences": True, "activation": "sigmoid", "recurrent_activation": "tanh"},
    {"activation": "linear", "recurrent_activation": "linear", "return_state": True},
    {"return_sequences": True, "use_bias": False},
]


MASKS = ["right", "left", "holes", "any", None]


@pytest.mark.parametrize("init", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("m", range(len(MASKS)))
@pytest.mark.parametrize("case", range(len(CASES)))
def test_harness(case, m, init):
    """Shapes, mask invariance, kernels vs reference and VJP vs finite differences
    (dh0, dc0 included with an initial state) for every case and mask kind."""
    kw, mask = dict(CASES[case]), MASKS[m]
    rng = np.random.default_rng(case * 7 + m + 1000 * init)
    linear = kw.get("recurrent_activation") == "linear"  # unbounded gates: keep values small
    inp = make_inputs(rng, mask=mask, bias=kw.get("use_bias", True), scale=0.2 if linear else 0.6,
                      init=init)
    attrs = attrs_of(**kw)
    check_op("lstm", attrs, inp, data_port="x")  # float64: forward, vjp, finite differences
    inp32 = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in inp.items()}
    check_shapes("lstm", attrs, inp32)
    check_forward("lstm", attrs, inp32, rtol=1e-4, atol=1e-5)
    check_vjp("lstm", attrs, inp32, rtol=1e-3, atol=1e-4)


@settings(deadline=None, max_examples=25)
@given(B=st.integers(1, 5), T=st.integers(0, 7), D=st.integers(1, 4), H=st.integers(1, 5),
       seq=st.booleans(), back=st.booleans(), zero=st.booleans(), init=st.booleans(),
       seed=st.integers(0, 10**6))
def test_random_shapes(B, T, D, H, seq, back, zero, init, seed):
    rng = np.random.default_rng(seed)
    inp = make_inputs(rng, B, T, D, H, init=init)
    attrs = attrs_of(H, return_sequences=seq, go_backwards=back, zero_output_for_mask=zero,
                     return_state=True)
    check_shapes("lstm", attrs, inp)
    check_forward("lstm", attrs, inp, rtol=1e-10, atol=1e-12)
    check_vjp("lstm", attrs, inp, rtol=1e-9, atol=1e-10)


# ---- explicit semantics ----------------------------------------------------------------
def test_masked_steps_repeat_previous_output_exactly():
    rng = np.random.default_rng(1)
    inp = make_inputs(rng, B=3, T=7, mask=None, dtype=np.float32)
    inp["mask"] = np.array([[0, 1, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 0], [1] * 7], bool)
    y = fwd(attrs_of(return_sequences=True), inp)[0]
    assert np.all(y[0, 0] == 0) and np.all(y[1] == 0)  # zeros before the first kept step
    np.testing.assert_array_equal(y[0, 3], y[0, 2])
    np.testing.assert_array_equal(y[0, 4], y[0, 2])
    np.testing.assert_array_equal(y[0, 6], y[0, 5])
    assert not np.array_equal(y[0, 2], y[0, 1])
    last = fwd(attrs_of(return_state=True), inp)
    np.testing.assert_array_equal(last[0], y[:, -1])  # h after the last step
    np.testing.assert_array_equal(last[0][0], y[0, 5])  # = output at the last kept step
    np.testing.assert_array_equal(last[1], last[0])
    z = fwd(attrs_of(return_sequences=True, zero_output_for_mask=True), inp)[0]
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
    # y[:, 0] is the output after processing the last timestep only
    one = {**inp, "x": inp["x"][:, -1:].copy()}
    np.testing.assert_allclose(fwd(b, inp)[0][:, 0], fwd(a, one)[0][:, 0], rtol=1e-12)


def test_no_gradient_into_masked_x():
    rng = np.random.default_rng(3)
    for kw in [{"return_sequences": True}, {"go_backwards": True, "return_state": True}]:
        inp = make_inputs(rng, B=5, T=6, mask="any")
        a = attrs_of(**kw)
        outs = fwd(a, inp)
        g = vjp(a, inp, [rng.standard_normal(o.shape) for o in outs])
        assert np.all(g["x"][~inp["mask"]] == 0)
        assert np.any(g["x"][inp["mask"]] != 0)


@pytest.mark.parametrize("seq", [False, True])
def test_inserted_masked_step_changes_nothing(seq):
    """A masked step carries state (and its gradient) straight through."""
    rng = np.random.default_rng(4)
    inp = make_inputs(rng, B=3, T=5, mask=None)
    inp["mask"] = np.ones((3, 5), bool)
    ins = {k: v for k, v in inp.items()}
    ins["x"] = np.insert(inp["x"], 2, rng.standard_normal((3, 3)) * 5, axis=1)
    ins["mask"] = np.insert(inp["mask"], 2, False, axis=1)
    a = attrs_of(return_sequences=seq, return_state=True)
    o1, o2 = fwd(a, inp), fwd(a, ins)
    y2 = np.delete(o2[0], 2, axis=1) if seq else o2[0]
    np.testing.assert_allclose(y2, o1[0], rtol=1e-12, atol=1e-14)
    if seq:
        np.testing.assert_array_equal(o2[0][:, 2], o2[0][:, 1])
    gs1 = [rng.standard_normal(o.shape) for o in o1]
    gs2 = [g.copy() for g in gs1]
    if seq:  # zero cotangent on the inserted step's (repeated) output
        gs2[0] = np.insert(gs1[0], 2, 0.0, axis=1)
    g1, g2 = vjp(a, inp, gs1), vjp(a, ins, gs2)
    for p in ["kernel", "recurrent_kernel", "bias"]:
        np.testing.assert_allclose(g2[p], g1[p], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.delete(g2["x"], 2, axis=1), g1["x"], rtol=1e-10, atol=1e-12)
    assert np.all(g2["x"][:, 2] == 0)


def test_hand_computed_one_unit():
    # H = 1, D = 1; gates i, f, c, o with kernel weights 1, recurrent 0, bias 0.
    x = np.array([[[0.5], [1.0]]])
    inp = {"x": x, "kernel": np.array([[1.0, 1.0, 1.0, 1.0]]),
           "recurrent_kernel": np.array([[0.5, -0.5, 0.25, 1.0]]), "bias": np.zeros(4),
           "mask": np.array([[True, True]])}
    def s(v):
        return 1 / (1 + np.exp(-v))

    c1 = s(0.5) * np.tanh(0.5)
    h1 = s(0.5) * np.tanh(c1)
    z = 1.0 + h1 * np.array([0.5, -0.5, 0.25, 1.0])
    c2 = s(z[1]) * c1 + s(z[0]) * np.tanh(z[2])
    h2 = s(z[3]) * np.tanh(c2)
    out = fwd(attrs_of(1, return_sequences=True, return_state=True), inp)
    np.testing.assert_allclose(out[0][0, :, 0], [h1, h2], rtol=1e-14)
    np.testing.assert_allclose([out[1][0, 0], out[2][0, 0]], [h2, c2], rtol=1e-14)
    ref = OP.reference(attrs_of(1, return_sequences=True, return_state=True), inp)
    np.testing.assert_allclose(ref[0][0, :, 0], [h1, h2], rtol=1e-14)


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
    f32 = "float32"
    specs = {"x": Spec((None, None, 3), f32), "mask": Spec((None, None), "bool"),
             "kernel": Spec((3, 8), f32), "recurrent_kernel": Spec((2, 8), f32),
             "bias": Spec((8,), f32)}
    assert OP.infer(attrs_of(), specs) == [Spec((None, 2), f32)]
    out = OP.infer(attrs_of(return_sequences=True, return_state=True), specs)
    assert out == [Spec((None, None, 2), f32), Spec((None, 2), f32), Spec((None, 2), f32)]
    assert OP.mask_rule(attrs_of(return_sequences=True)).out == "pass"
    assert OP.mask_rule(attrs_of()).out == "none"
    assert OP.mask_rule(attrs_of()).uses
    bad = [({**specs, "kernel": Spec((4, 8), f32)}, {}),
           ({**specs, "recurrent_kernel": Spec((2, 4), f32)}, {}),
           ({**specs, "bias": Spec((4,), f32)}, {}),
           ({**specs, "x": Spec((2, 3), f32)}, {}),
           ({**specs, "mask": Spec((None, None), f32)}, {}),
           (specs, {"activation": "softmax"}),
           (specs, {"recurrent_activation": "relu"}),
           (specs, {"units": 0}),
           (specs, {"use_bias": False})]
    for sp, kw in bad:
        with pytest.raises(OpError):
            OP.infer({**attrs_of(), **kw}, sp)


@pytest.mark.parametrize("kw", [{"return_sequences": True},
                                {"go_backwards": True, "return_state": True},
                                {"return_sequences": True, "activation": "relu"}])
def test_threaded_path_with_ragged_unit_chunks(kw):
    """Big enough for the multi-threaded (float32) kernels; H = 40 gives unit chunks
    16, 16, 8."""
    from graphmask.kernels import lstm as K

    B, H = 80, 40
    rng = np.random.default_rng(6)
    inp = make_inputs(rng, B=B, T=9, D=5, H=H, mask="any", scale=0.3)
    assert not K.threads_for(int(inp["mask"].sum(0).max()), H).serial
    attrs = attrs_of(H, **kw)
    _check_float64_and_float32(attrs, inp)


def test_run_time_shape_errors():
    rng = np.random.default_rng(7)
    inp = make_inputs(rng, B=3, T=4, D=3, H=2)
    for port, bad in [("mask", np.ones((3, 5), bool)), ("kernel", np.ones((4, 8))),
                      ("recurrent_kernel", np.ones((2, 6))), ("bias", np.ones(6))]:
        with pytest.raises(OpError):
            OP.forward(attrs_of(), {**inp, port: bad})


def test_inference_forward_and_reused_workspace():
    """``_residuals=False`` (inference) runs in a reused per-thread workspace: same visible
    outputs as the training forward, empty residuals, and a later call of another shape
    (smaller, then bigger) is not disturbed by what the workspace held."""
    rng = np.random.default_rng(8)
    kw = {"return_sequences": True, "return_state": True}
    for B, T, H in [(6, 7, 5), (3, 4, 5), (9, 8, 6)]:
        for dtype in (np.float64, np.float32):
            inp = make_inputs(rng, B=B, T=T, D=3, H=H, dtype=dtype)
            attrs = attrs_of(H, **kw)
            train = OP.forward(attrs, inp)
            infer = OP.forward({**attrs, "_residuals": False}, inp)
            assert len(infer) == len(train)
            for a, b in zip(train[:3], infer[:3]):
                np.testing.assert_array_equal(a, b)
            assert all(r.size == 0 for r in infer[5:])
            check_forward("lstm", {**attrs, "_residuals": False}, inp,
                          rtol=1e-9 if dtype == np.float64 else 1e-4,
                          atol=1e-10 if dtype == np.float64 else 1e-5)


def test_workspace_reuse_and_cap(monkeypatch):
    from graphmask.kernels import lstm as K

    K.clear_workspaces()
    a = K.workspace(100, np.float32)
    b = K.workspace(60, np.float32)  # a kept buffer also serves requests down to half its size
    assert b.dtype == np.float32 and b.size == 60 and np.shares_memory(a, b)
    assert not np.shares_memory(K.workspace(10, np.float64), a)
    monkeypatch.setattr(K, "WORKSPACE_MAX_BYTES", 64 * 4)
    big = K.workspace(200, np.float32)
    assert big.size == 200 and not np.shares_memory(big, K.workspace(200, np.float32))


# ---- initial state (ports h0, c0) ----------------------------------------------------------
def _with_state(inp, rng, H=2):
    B = inp["x"].shape[0]
    dt = inp["x"].dtype
    return {**inp, "h0": np.tanh(rng.standard_normal((B, H))).astype(dt),
            "c0": rng.standard_normal((B, H)).astype(dt)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_initial_state_outputs_at_masked_steps_and_empty_samples(dtype):
    """Keras's rnn: the previous output starts at zeros, not at h0; states are carried from
    (h0, c0); a sample with no kept step returns its initial state and a zero output."""
    rng = np.random.default_rng(11)
    inp = make_inputs(rng, B=3, T=7, mask=None, dtype=dtype)
    inp["mask"] = np.array([[0, 1, 1, 0, 0, 1, 0], [0] * 7, [1] * 7], bool)
    inp = _with_state(inp, rng)
    h0, c0 = inp["h0"], inp["c0"]
    seq = fwd(attrs_of(return_sequences=True, return_state=True), inp)
    y = seq[0]
    assert np.all(y[0, 0] == 0) and np.all(y[1] == 0)  # zeros before the first kept step
    assert np.all(y[0, 1] != 0)
    np.testing.assert_array_equal(y[0, 3], y[0, 2])
    np.testing.assert_array_equal(y[0, 4], y[0, 2])
    np.testing.assert_array_equal(y[0, 6], y[0, 5])
    np.testing.assert_array_equal(seq[1][1], h0[1])  # carried initial state, exactly
    np.testing.assert_array_equal(seq[2][1], c0[1])
    np.testing.assert_array_equal(seq[1][[0, 2]], y[[0, 2], -1])
    plain = fwd(attrs_of(return_sequences=True), {k: v for k, v in inp.items()
                                                 if k not in ("h0", "c0")})[0]
    assert np.all(np.abs(y[2, 0] - plain[2, 0]) > 0)  # the first step starts from h0
    last = fwd(attrs_of(return_state=True), inp)
    np.testing.assert_array_equal(last[0][1], 0)  # no kept step: zero output ...
    np.testing.assert_array_equal(last[1][1], h0[1])  # ... but the state is h0
    np.testing.assert_array_equal(last[0][[0, 2]], y[[0, 2], -1])
    np.testing.assert_array_equal(last[0][0], y[0, 5])  # the output of the last kept step
    z = fwd(attrs_of(return_sequences=True, zero_output_for_mask=True), inp)[0]
    np.testing.assert_array_equal(z, np.where(inp["mask"][..., None], y, 0))
    back = fwd(attrs_of(return_sequences=True, go_backwards=True), inp)[0]
    # processing order: row 0 reversed is [0, 1, 0, 0, 1, 1, 0]
    assert np.all(back[0, 0] == 0) and np.all(back[0, 1] != 0)
    np.testing.assert_array_equal(back[0, 2], back[0, 1])
    for ours, ref in zip(seq, OP.reference(attrs_of(return_sequences=True, return_state=True),
                                           inp)):
        np.testing.assert_allclose(ours, ref, rtol=1e-4 if dtype == np.float32 else 1e-12,
                                   atol=1e-6 if dtype == np.float32 else 1e-14)


def test_initial_state_hand_computed_one_unit():
    """H = D = 1, one kept step from (h0, c0), then a masked step."""
    def s(v):
        return 1 / (1 + np.exp(-v))

    rk = np.array([0.5, -0.5, 0.25, 1.0])
    inp = {"x": np.array([[[0.5], [3.0]]]), "kernel": np.array([[1.0, 1.0, 1.0, 1.0]]),
           "recurrent_kernel": rk[None], "bias": np.zeros(4), "mask": np.array([[True, False]]),
           "h0": np.array([[0.3]]), "c0": np.array([[-0.7]])}
    z = 0.5 + 0.3 * rk
    c1 = s(z[1]) * -0.7 + s(z[0]) * np.tanh(z[2])
    h1 = s(z[3]) * np.tanh(c1)
    attrs = attrs_of(1, return_sequences=True, return_state=True)
    for out in (fwd(attrs, inp), OP.reference(attrs, inp)):
        np.testing.assert_allclose(out[0][0, :, 0], [h1, h1], rtol=1e-14)
        np.testing.assert_allclose([out[1][0, 0], out[2][0, 0]], [h1, c1], rtol=1e-14)


def test_zero_initial_state_equals_no_initial_state():
    """Connecting zeros changes no output and no gradient, bit for bit; dh0/dc0 are the
    state gradients at the first step."""
    rng = np.random.default_rng(12)
    for kw in [{"return_sequences": True, "return_state": True},
               {"go_backwards": True, "return_state": True},
               {"return_sequences": True, "zero_output_for_mask": True}]:
        inp = make_inputs(rng, B=5, T=6, mask="any", dtype=np.float32)
        zeros = {**inp, "h0": np.zeros((5, 2), np.float32), "c0": np.zeros((5, 2), np.float32)}
        a = attrs_of(**kw)
        o1, o2 = fwd(a, inp), fwd(a, zeros)
        for u, v in zip(o1, o2):
            np.testing.assert_array_equal(u, v)
        gs = [rng.standard_normal(o.shape).astype(np.float32) for o in o1]
        g1, g2 = vjp(a, inp, gs), vjp(a, zeros, gs)
        for p in g1:
            np.testing.assert_array_equal(g1[p], g2[p])
        assert g2["h0"].shape == (5, 2) and g2["h0"].dtype == np.float32
        assert np.any(g2["h0"] != 0) and np.any(g2["c0"] != 0)


def test_initial_state_gradients_of_empty_samples_and_of_forced_zero_outputs():
    """A sample with no kept step passes its state gradients straight to (h0, c0); the
    outputs forced to zero (before the first kept step, and the single output of an empty
    sample) send nothing back."""
    rng = np.random.default_rng(13)
    inp = make_inputs(rng, B=3, T=5, mask=None)
    inp["mask"] = np.array([[0, 0, 1, 1, 0], [0] * 5, [1] * 5], bool)
    inp = _with_state(inp, rng)
    a = attrs_of(return_sequences=True, return_state=True)
    outs = fwd(a, inp)
    gs = [rng.standard_normal(o.shape) for o in outs]
    g = vjp(a, inp, gs)
    np.testing.assert_array_equal(g["h0"][1], gs[1][1])
    np.testing.assert_array_equal(g["c0"][1], gs[2][1])
    forced = ~np.logical_or.accumulate(inp["mask"], axis=1)  # before the first kept step
    assert forced.sum() == 7
    moved = np.where(forced[..., None], rng.standard_normal(gs[0].shape), gs[0])
    g_moved = vjp(a, inp, [moved] + gs[1:])  # other cotangents where outputs are forced to 0
    for p in g:
        np.testing.assert_array_equal(g_moved[p], g[p])
    last = attrs_of(return_state=True)
    outs = fwd(last, inp)
    g = vjp(last, inp, [np.ones_like(outs[0]), np.zeros_like(outs[1]), np.zeros_like(outs[2])])
    assert np.all(g["h0"][1] == 0) and np.all(g["c0"][1] == 0)
    assert np.all(g["h0"][[0, 2]] != 0)


@pytest.mark.parametrize("seq", [False, True])
def test_initial_state_continues_a_split_sequence(seq):
    """Running [x1, x2] equals running x1, then x2 from x1's final state; and the chained
    VJPs (x2's dh0/dc0 fed into x1's state cotangents) give the gradients of the whole."""
    rng = np.random.default_rng(14)
    inp = make_inputs(rng, B=6, T=9, mask="any")
    inp["mask"][:, 4] = True  # every sample has a kept step in the second part
    a = attrs_of(return_sequences=seq, return_state=True)
    whole = fwd(a, inp)
    first = {**inp, "x": inp["x"][:, :4].copy(), "mask": inp["mask"][:, :4].copy()}
    o1 = fwd(a, first)
    second = {**inp, "x": inp["x"][:, 4:].copy(), "mask": inp["mask"][:, 4:].copy(),
              "h0": o1[1], "c0": o1[2]}
    o2 = fwd(a, second)
    for k in (1, 2):
        np.testing.assert_allclose(o2[k], whole[k], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(o2[0], whole[0][:, 4:] if seq else whole[0], rtol=1e-12,
                               atol=1e-14)
    gs = [rng.standard_normal(o.shape) for o in whole]
    gw = vjp(a, inp, gs)
    g2 = vjp(a, second, [gs[0][:, 4:] if seq else gs[0], gs[1], gs[2]])
    g1 = vjp(a, first, [gs[0][:, :4] if seq else np.zeros_like(o1[0]), g2["h0"], g2["c0"]])
    np.testing.assert_allclose(np.concatenate([g1["x"], g2["x"]], axis=1), gw["x"],
                               rtol=1e-10, atol=1e-12)
    for p in ("kernel", "recurrent_kernel", "bias"):
        np.testing.assert_allclose(g1[p] + g2[p], gw[p], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kw", [{"return_sequences": True},
                                {"go_backwards": True, "return_state": True},
                                {"return_sequences": True, "activation": "relu",
                                 "return_state": True}])
def test_initial_state_threaded_path(kw):
    """B = 48, H = 64: the multi-threaded float32 kernels (4 unit chunks per step) start
    from (h0, c0) and return dh0, dc0; float64 runs the one-thread twins."""
    from graphmask.kernels import lstm as K

    B, H = 48, 64
    rng = np.random.default_rng(15)
    inp = make_inputs(rng, B=B, T=8, D=5, H=H, mask="any", scale=0.2, init=True)
    assert not K.threads_for(int(inp["mask"].sum(0).max()), H).serial
    attrs = attrs_of(H, **kw)
    inp32 = _check_float64_and_float32(attrs, inp)
    check_forward("lstm", {**attrs, "_residuals": False}, inp32, rtol=1e-4, atol=1e-5)


def test_initial_state_infer_errors_and_mask_rule():
    f32 = "float32"
    specs = {"x": Spec((None, 5, 3), f32), "kernel": Spec((3, 8), f32),
             "recurrent_kernel": Spec((2, 8), f32), "bias": Spec((8,), f32),
             "h0": Spec((None, 2), f32), "c0": Spec((None, 2), "float64")}
    out = OP.infer(attrs_of(return_sequences=True, return_state=True), specs)
    assert out == [Spec((None, 5, 2), f32), Spec((None, 2), f32), Spec((None, 2), f32)]
    assert OP.infer(attrs_of(), {**specs, "x": Spec((4, 5, 3), f32),
                                 "h0": Spec((4, 2), f32)}) == [Spec((4, 2), f32)]
    cases = [({k: v for k, v in specs.items() if k != "c0"},
              "the initial state needs both h0 and c0, got only h0"),
             ({k: v for k, v in specs.items() if k != "h0"},
              "the initial state needs both h0 and c0, got only c0"),
             ({**specs, "h0": Spec((None, 3), f32)},
              "h0 must be a float array of shape (None, 2) (batch, units), got "
              "Spec(shape=(None, 3), dtype='float32')"),
             ({**specs, "c0": Spec((None, 2), "int32")},
              "c0 must be a float array of shape (None, 2) (batch, units), got "
              "Spec(shape=(None, 2), dtype='int32')"),
             ({**specs, "x": Spec((4, 5, 3), f32), "h0": Spec((3, 2), f32)},
              "h0 must be a float array of shape (4, 2) (batch, units), got "
              "Spec(shape=(3, 2), dtype='float32')"),
             ({**specs, "h0": Spec((None, 1, 2), f32)},
              "h0 must be a float array of shape (None, 2) (batch, units), got "
              "Spec(shape=(None, 1, 2), dtype='float32')")]
    for sp, msg in cases:
        with pytest.raises(OpError) as e:
            OP.infer(attrs_of(), sp)
        assert str(e.value) == msg
    rule = OP.mask_rule(attrs_of(return_sequences=True))
    assert rule.mask_from == ("x",) and rule.uses and rule.out == "pass"


def test_initial_state_run_time_errors():
    rng = np.random.default_rng(16)
    inp = _with_state(make_inputs(rng, B=3, T=4, D=3, H=2), rng)
    with pytest.raises(OpError, match=r"two \(3, 2\) arrays, got h0 \(3, 3\), c0 \(3, 2\)"):
        OP.forward(attrs_of(), {**inp, "h0": np.ones((3, 3))})
    with pytest.raises(OpError, match="needs both h0 and c0"):
        OP.forward(attrs_of(), {k: v for k, v in inp.items() if k != "c0"})


def test_sample_groups_balance_kept_rows_and_index_each_steps_rows():
    """Batches of 32 or more samples run by sample groups (contiguous samples, near-equal
    kept rows): 8 samples of length 10 and 24 of length 2 (128 kept rows) split after
    sample 6 (60 rows | 68 rows), the nearest to half."""
    from graphmask.kernels import lstm as K

    lengths = np.array([10] * 8 + [2] * 24)
    mask = np.arange(10)[None, :] < lengths[:, None]
    offsets, rows = K.lstm_schedule(mask, False)
    gsplit, goff = K.sample_groups(offsets, rows, 32, 128)
    assert gsplit.tolist() == [0, 6, 32]
    assert goff.tolist() == [[0, 6, 32]] * 2 + [[0, 6, 8]] * 8
    offsets, rows = K.lstm_schedule(mask, True)  # go_backwards: the same rows, reversed
    assert K.sample_groups(offsets, rows, 32, 128)[1].tolist() == [[0, 6, 8]] * 8 + [[0, 6, 32]] * 2
    # 16 samples (one group) or too little work per step: the unit-chunk drivers instead
    assert K.sample_groups(*K.lstm_schedule(mask[:16], False), 16, 128) is None
    assert K.sample_groups(offsets, rows, 32, 8) is None


@pytest.mark.parametrize("kw", [{"return_sequences": True},
                                {"go_backwards": True, "return_state": True},
                                {"return_sequences": True, "zero_output_for_mask": True,
                                 "activation": "relu"}])
@pytest.mark.parametrize("mask", ["any", "right", "first_samples_empty"])
def test_sample_group_drivers_match_the_reference(kw, mask):
    """B = 48, H = 128: three sample groups, each running every step on its own samples
    (float32: on numba's threads; float64: one after another)."""
    from graphmask.kernels import lstm as K

    B, T, H = 48, 12, 128
    rng = np.random.default_rng(11)
    inp = make_inputs(rng, B=B, T=T, D=5, H=H, mask="right" if mask == "right" else "any",
                      scale=0.2)
    if mask == "first_samples_empty":
        inp["mask"][:20] = False
    groups = K.sample_groups(*K.lstm_schedule(inp["mask"], False), B, H)
    assert groups is not None and groups[0].size == 4
    attrs = attrs_of(H, **kw)
    _check_float64_and_float32(attrs, inp)


def _check_float64_and_float32(attrs, inp):
    """The kernels against the NumPy reference in float64 (one-thread drivers) and in
    float32 (threaded drivers); returns the float32 inputs."""
    check_forward("lstm", attrs, inp, rtol=1e-10, atol=1e-12)
    check_vjp("lstm", attrs, inp, rtol=1e-9, atol=1e-10)
    inp32 = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in inp.items()}
    check_forward("lstm", attrs, inp32, rtol=1e-4, atol=1e-5)
    check_vjp("lstm", attrs, inp32, rtol=1e-3, atol=1e-4)
    return inp32
