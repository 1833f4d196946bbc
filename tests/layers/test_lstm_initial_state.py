"""``LSTM(...)(x, initial_state=[h, c])``: the encoder-decoder pattern with masks on both
sides, symbolic (predict, evaluate, fit, gradients into the encoder) and eager, and the
errors of a bad initial state (named layer, argument and shapes, nothing built)."""
import numpy as np
import pytest

import graphmask as gm
from graphmask import LSTM, Dense, Embedding, Input, Masking, Model
from graphmask.errors import ConfigError, ShapeError
from graphmask.ops.base import get_op

OP = get_op("lstm")
V = 9
SRC = np.array([[3, 1, 4, 0, 0, 0],      # right padding
                [0, 0, 2, 5, 1, 2],      # left padding
                [1, 0, 3, 0, 4, 1],      # holes
                [0, 0, 0, 0, 0, 0],      # empty source: the decoder starts from zeros
                [2, 2, 2, 2, 2, 2]])     # full
TGT = np.array([[1, 2, 0, 0, 0],
                [0, 0, 3, 4, 5],         # left padding: zeros before the first kept step
                [6, 0, 7, 0, 8],
                [5, 1, 0, 3, 0],
                [0, 0, 0, 0, 0]])        # empty target: states are the encoder's


def seq2seq(dtype="float32", units=4, dec_kw=None, seed=0):
    src = Input((6,), dtype="int32", name="src")
    tgt = Input((5,), dtype="int32", name="tgt")
    _, h, c = LSTM(units, return_state=True, name="enc", dtype=dtype)(
        Embedding(V, 3, mask_zero=True, name="src_emb", dtype=dtype)(src))
    e = Embedding(V, 3, mask_zero=True, name="tgt_emb", dtype=dtype)(tgt)
    y = LSTM(units, return_sequences=True, name="dec", dtype=dtype, **(dec_kw or {}))(
        e, initial_state=[h, c])
    model = Model([src, tgt], Dense(2, name="head", dtype=dtype)(y))
    rng = np.random.default_rng(seed)
    model.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                       for w in model.get_weights()])
    return model


def _attrs(layer):
    return {"units": layer.units, "activation": layer.activation,
            "recurrent_activation": layer.recurrent_activation, "use_bias": layer.use_bias,
            "return_sequences": layer.return_sequences, "return_state": layer.return_state,
            "go_backwards": layer.go_backwards,
            "zero_output_for_mask": layer.zero_output_for_mask}


def _ports(layer, x, mask, **state):
    return {"x": x, "mask": mask, "kernel": layer.kernel.value,
            "recurrent_kernel": layer.recurrent_kernel.value, "bias": layer.bias.value, **state}


def expected(model, src, tgt):
    """The model in NumPy: embedding rows, the LSTM op's reference, the dense head."""
    w = {v.name: v.value.astype(np.float64) for v in model.weights}
    enc, dec = model.get_layer("enc"), model.get_layer("dec")
    _, h, c = OP.reference(_attrs(enc), _ports(enc, w["src_emb/embeddings"][src], src != 0))
    y = OP.reference(_attrs(dec), _ports(dec, w["tgt_emb/embeddings"][tgt], tgt != 0,
                                         h0=h, c0=c))[0]
    return y @ w["head/kernel"] + w["head/bias"]


@pytest.mark.parametrize("dec_kw", [{}, {"go_backwards": True},
                                    {"zero_output_for_mask": True}],
                         ids=["plain", "go_backwards", "zero_output_for_mask"])
def test_predict_matches_the_numpy_definition(dec_kw):
    model = seq2seq(dec_kw=dec_kw)
    out = model.predict([SRC, TGT])
    np.testing.assert_allclose(out, expected(model, SRC, TGT), rtol=1e-5, atol=1e-6)
    bias = model.get_layer("head").bias.value
    # left-padded row 1: the decoder's output is 0 before its first kept step, so the head
    # gives its bias there (also with an initial state); the empty row 4 gives it everywhere.
    # go_backwards: row 1 in processing order is [5, 4, 3, 0, 0], with no such step.
    first = [] if dec_kw.get("go_backwards") else [0, 1]
    np.testing.assert_array_equal(out[1, first], np.broadcast_to(bias, (len(first), 2)))
    assert np.all(out[1, 2] != bias)
    np.testing.assert_array_equal(out[4], np.broadcast_to(bias, (5, 2)))


def test_decoder_states_of_an_empty_target_are_the_encoder_states():
    src = Input((6,), dtype="int32")
    tgt = Input((5,), dtype="int32")
    enc_out, h, c = LSTM(4, return_state=True, name="enc")(Embedding(V, 3, mask_zero=True)(src))
    _, h2, c2 = LSTM(4, return_state=True, name="dec")(Embedding(V, 3, mask_zero=True)(tgt),
                                                      initial_state=[h, c])
    model = Model([src, tgt], [h, c, h2, c2])
    h, c, h2, c2 = model.predict([SRC, TGT])
    np.testing.assert_array_equal(h2[4], h[4])
    np.testing.assert_array_equal(c2[4], c[4])
    assert np.all(h2[:4] != h[:4])


def test_decoder_mask_flows_to_the_loss():
    """The decoder's output carries the target mask: the loss averages kept steps only."""
    model = seq2seq()
    model.compile(optimizer="sgd", loss="mse")
    y = np.random.default_rng(1).standard_normal((5, 5, 2)).astype(np.float32)
    keep = TGT != 0
    score = ((expected(model, SRC, TGT) - y) ** 2).mean(-1)
    want = (score * keep).sum() / keep.sum()
    assert model.evaluate([SRC, TGT], y, verbose=0) == pytest.approx(want, rel=1e-5)
    lstm = next(n for n in model.graph.nodes_by_op("lstm")
                if model.graph.node(n)["layer"] == "dec")
    mask_src = model.graph.in_ports(lstm)["mask"][0]
    assert model.graph.node(mask_src)["op"] == "mask_not_equal"
    assert model.graph.node(mask_src)["layer"] == "tgt_emb"


def _fd_check(model, x, y, names, n_entries=5, eps=1e-6):
    loss, grads = model.loss_and_gradients(x, y)
    rng = np.random.default_rng(0)
    weights = model.get_weights()
    index = {v.name: i for i, v in enumerate(model.weights)}
    for name in names:
        i = index[name]
        w = weights[i]
        for flat in rng.choice(w.size, size=min(n_entries, w.size), replace=False):
            idx = np.unravel_index(flat, w.shape)
            plus = [a.copy() for a in weights]
            minus = [a.copy() for a in weights]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            model.set_weights(plus)
            lp = model.test_on_batch(x, y)
            model.set_weights(minus)
            lm = model.test_on_batch(x, y)
            fd = (lp - lm) / (2 * eps)
            assert grads[name][idx] == pytest.approx(fd, rel=1e-5, abs=1e-9), (name, idx)
    model.set_weights(weights)
    return grads


@pytest.mark.parametrize("dec_kw", [{}, {"go_backwards": True}])
def test_gradients_reach_the_encoder_and_match_finite_differences(dec_kw):
    model = seq2seq(dtype="float64", dec_kw=dec_kw)
    model.compile(optimizer="sgd", loss="mse")
    y = np.random.default_rng(2).standard_normal((5, 5, 2))
    names = ["src_emb/embeddings", "enc/kernel", "enc/recurrent_kernel", "enc/bias",
             "dec/kernel", "dec/recurrent_kernel"]
    grads = _fd_check(model, [SRC, TGT], y, names)
    for name in names[1:]:
        assert np.any(grads[name] != 0), name
    used = np.unique(SRC[SRC != 0])
    assert np.all(np.abs(grads["src_emb/embeddings"][used]).sum(1) > 0)
    assert np.all(grads["src_emb/embeddings"][0] == 0)  # padding id: masked steps only


def test_fit_trains_the_encoder_through_the_state():
    gm.set_random_seed(3)
    model = seq2seq(seed=3)
    model.compile(optimizer=gm.optimizers.Adam(0.01), loss="mse")
    y = np.random.default_rng(3).standard_normal((5, 5, 2)).astype(np.float32)
    before = {v.name: v.value.copy() for v in model.weights}
    hist = model.fit([SRC, TGT], y, epochs=5, batch_size=5, verbose=0, shuffle=False)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    after = {v.name: v.value for v in model.weights}
    for name in ("enc/kernel", "enc/recurrent_kernel", "enc/bias"):
        assert np.all(after[name] != before[name]), name
    np.testing.assert_array_equal(after["src_emb/embeddings"][0], before["src_emb/embeddings"][0])


def test_state_and_its_gradient_pass_through_a_decoder_with_no_kept_step():
    """With every target empty the decoder's final state is the encoder's, and the loss
    on it gives the encoder exactly the gradients of the same loss on the encoder's state
    (dh0 = dh, dc0 = dc); the decoder's weights get none."""
    src, tgt = Input((6,), dtype="int32"), Input((5,), dtype="int32")
    _, h, c = LSTM(4, return_state=True, name="enc", dtype="float64")(
        Embedding(V, 3, mask_zero=True, name="src_emb", dtype="float64")(src))
    _, h2, _ = LSTM(4, return_state=True, name="dec", dtype="float64")(
        Embedding(V, 3, mask_zero=True, name="tgt_emb", dtype="float64")(tgt),
        initial_state=[h, c])
    head = Dense(2, name="head", dtype="float64")
    through = Model([src, tgt], head(h2))
    direct = Model(src, head(h))
    rng = np.random.default_rng(6)
    through.set_weights([rng.standard_normal(w.shape) * 0.5 for w in through.get_weights()])
    y = rng.standard_normal((5, 2))
    through.compile(optimizer="sgd", loss="mse")
    direct.compile(optimizer="sgd", loss="mse")
    lt, gt = through.loss_and_gradients([SRC, np.zeros_like(TGT)], y)
    ld, gd = direct.loss_and_gradients(SRC, y)
    assert lt == ld
    for name, g in gd.items():
        np.testing.assert_array_equal(gt[name], g, err_msg=name)
    assert np.any(gd["enc/kernel"] != 0)
    assert all(np.all(gt[n] == 0) for n in gt if n.startswith(("dec/", "tgt_emb/")))


# ---- eager calls --------------------------------------------------------------------------
def _eager_layer(**kw):
    layer = LSTM(4, name="eager", **kw)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    h0 = np.tanh(rng.standard_normal((3, 4))).astype(np.float32)
    c0 = rng.standard_normal((3, 4)).astype(np.float32)
    mask = np.array([[0, 1, 1, 0, 1], [0, 0, 0, 0, 0], [1, 1, 0, 1, 1]], bool)
    return layer, x, h0, c0, mask


@pytest.mark.parametrize("kw", [{"return_sequences": True, "return_state": True},
                                {"return_state": True, "go_backwards": True},
                                {"return_sequences": True, "zero_output_for_mask": True}])
def test_eager_call_returns_numpy_arrays_of_the_reference(kw):
    layer, x, h0, c0, mask = _eager_layer(**kw)
    out = layer(x, initial_state=[h0, c0], mask=mask)
    out = out if isinstance(out, list) else [out]
    ref = OP.reference(_attrs(layer), _ports(layer, x, mask, h0=h0, c0=c0))
    assert len(out) == len(ref)
    for o, r in zip(out, ref):
        assert isinstance(o, np.ndarray) and o.dtype == np.float32
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-6)
    if kw.get("return_state"):  # the all-masked sample keeps its initial state exactly
        np.testing.assert_array_equal(out[-2][1], h0[1])
        np.testing.assert_array_equal(out[-1][1], c0[1])


def test_eager_and_symbolic_calls_agree():
    layer, x, h0, c0, mask = _eager_layer(return_sequences=True, return_state=True)
    eager = layer(x, initial_state=(h0, c0))  # a tuple works too; no mask: all kept
    xi, hi, ci = Input((5, 2)), Input((4,)), Input((4,))
    model = Model([xi, hi, ci], layer(xi, initial_state=[hi, ci]))
    for a, b in zip(eager, model.predict([x, h0, c0])):
        np.testing.assert_array_equal(a, b)
    ref = OP.reference(_attrs(layer), _ports(layer, x, np.ones((3, 5), bool), h0=h0, c0=c0))
    np.testing.assert_allclose(eager[0], ref[0], rtol=1e-5, atol=1e-6)


def test_step_by_step_inference_decoder_equals_the_training_decoder():
    """Keras's seq2seq inference pattern: the trained decoder layer reused one step at a
    time, its states fed back, gives the outputs of the whole-sequence decoder."""
    model = seq2seq()
    dec, head, tgt_emb = (model.get_layer(n) for n in ("dec", "head", "tgt_emb"))
    full = model.predict([SRC[:4], TGT[:4]])
    encoder = Model(model.inputs[0], model.get_layer("enc").output[1:])
    step_in, hi, ci = Input((1,), dtype="int32"), Input((4,)), Input((4,))
    dec_step = LSTM(4, return_sequences=True, return_state=True, name="dec_step")
    y, h, c = dec_step(tgt_emb(step_in), initial_state=[hi, ci])
    step_model = Model([step_in, hi, ci], [head(y), h, c])
    dec_step.set_weights(dec.get_weights())
    h, c = encoder.predict(SRC[:4])
    for t in range(5):
        out, h_new, c_new = step_model.predict([TGT[:4, t:t + 1], h, c])
        keep = TGT[:4, t] != 0
        # a kept step gives the training decoder's output; states carry over masked steps
        np.testing.assert_allclose(out[keep, 0], full[keep, t], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(h_new[~keep], h[~keep])
        h, c = h_new, c_new


# ---- masks of the state -------------------------------------------------------------------
def test_masks_of_the_initial_state_are_ignored():
    """A state that carries a mask (Masking on a (batch, units) input) neither changes the
    decoder's mask nor reaches its mask port, as in Keras."""
    tgt, hi, ci = Input((5,), dtype="int32"), Input((4,)), Input((4,))
    e = Embedding(V, 3, mask_zero=True, name="tgt_emb")(tgt)
    hm = Masking(name="state_mask")(hi)
    assert hm.keras_mask is not None
    dec = LSTM(4, return_sequences=True, name="dec")
    y = dec(e, initial_state=[hm, ci])
    assert y.keras_mask is e.keras_mask
    masked = Model([tgt, hi, ci], y)
    plain = Model([tgt, hi, ci], dec(e, initial_state=[hi, ci]))
    rng = np.random.default_rng(5)
    h0, c0 = rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal((5, 4))
    np.testing.assert_array_equal(masked.predict([TGT, h0, c0]), plain.predict([TGT, h0, c0]))
    g = masked.graph
    (lstm,) = g.nodes_by_op("lstm")
    assert g.node(g.in_ports(lstm)["mask"][0])["layer"] == "tgt_emb"
    assert g.node(lstm)["masks"][0] == g.in_ports(lstm)["mask"][0]


def test_save_and_load_keep_the_initial_state(tmp_path):
    model = seq2seq()
    model.save(tmp_path / "seq2seq.gmz")
    loaded = gm.load_model(tmp_path / "seq2seq.gmz")
    np.testing.assert_array_equal(loaded.predict([SRC, TGT]), model.predict([SRC, TGT]))


# ---- errors ---------------------------------------------------------------------------------
def _symbolic():
    return Input((5, 2)), Input((4,)), Input((4,))


ERRORS = [
    (lambda x, h, c: h, ConfigError,
     "LSTM 'dec': initial_state must be a list [h, c] of 2 tensors of shape (batch, 4), got "
     "SymbolicTensor"),
    (lambda x, h, c: [h], ConfigError,
     "LSTM 'dec': initial_state must be a list [h, c] of 2 tensors of shape (batch, 4), got "
     "1 tensors"),
    (lambda x, h, c: [h, None], ConfigError,
     "LSTM 'dec': initial_state[1] (c) must be a tensor of shape (batch, 4), got NoneType"),
    (lambda x, h, c: [h, np.zeros((2, 4), np.float32)], ConfigError,
     "LSTM 'dec': initial_state[1] (c) must be a symbolic tensor (from Input or another "
     "layer) when the layer is called on a symbolic tensor, got ndarray"),
    (lambda x, h, c: [Input((3,)), c], ShapeError,
     "LSTM 'dec': initial_state[0] (h) must have shape (None, 4) (batch, units), got "
     "(None, 3)"),
    (lambda x, h, c: [h, Input((5, 4))], ShapeError,
     "LSTM 'dec': initial_state[1] (c) must have shape (None, 4) (batch, units), got "
     "(None, 5, 4)"),
    (lambda x, h, c: [Input((4,), dtype="int32"), c], ShapeError,
     "LSTM 'dec': initial_state[0] (h) must be a float tensor, got dtype int32"),
    (lambda x, h, c: [h, Input((4,), batch_size=3)], ShapeError,
     "LSTM 'dec': initial_state[1] (c) must have shape (2, 4) (batch, units), got (3, 4)"),
]


@pytest.mark.parametrize("case", range(len(ERRORS)))
def test_bad_initial_state_is_an_error_before_anything_is_built(case):
    make, err, msg = ERRORS[case]
    x, h, c = _symbolic()
    if "(2, 4)" in msg:
        x = Input((5, 2), batch_size=2)
    layer = LSTM(4, name="dec")
    with pytest.raises(err) as e:
        layer(x, initial_state=make(x, h, c))
    assert str(e.value) == msg
    assert not layer.built and layer.weights == []
    layer(x, initial_state=[h, c])  # the layer is still usable
    assert layer.built


def test_bad_eager_initial_state_messages():
    layer, x, h0, c0, mask = _eager_layer()
    with pytest.raises(ShapeError) as e:
        layer(x, initial_state=[h0[:2], c0])
    assert str(e.value) == ("LSTM 'eager': initial_state[0] (h) must have shape (3, 4) "
                            "(batch, units), got (2, 4)")
    with pytest.raises(ShapeError) as e:
        layer(x, initial_state=[h0, c0.astype(np.int64)])
    assert str(e.value) == "LSTM 'eager': initial_state[1] (c) must be a float tensor, got " \
                           "dtype int64"
    assert not layer.built


def test_states_passed_as_inputs_is_an_error():
    x, h, c = _symbolic()
    layer = LSTM(4, name="dec")
    with pytest.raises(ConfigError) as e:
        layer([x, h, c])
    assert str(e.value) == ("LSTM 'dec': call it on one (batch, timesteps, features) tensor "
                            "and pass the state as initial_state=[h, c], got 3 input tensors")
    assert not layer.built


def test_check_masked_steps_knows_the_initial_state(monkeypatch):
    """graphmask.testing's masked-step check: an empty target row keeps the encoder's
    states (not zeros), and the check still catches a wrong state."""
    from graphmask.testing import invariants

    src, tgt = Input((6,), dtype="int32"), Input((5,), dtype="int32")
    _, h, c = LSTM(4, return_state=True)(Embedding(V, 3, mask_zero=True)(src))
    out = LSTM(4, return_sequences=True, return_state=True, name="dec")(
        Embedding(V, 3, mask_zero=True)(tgt), initial_state=[h, c])
    model = Model([src, tgt], out)
    report = invariants.check_masked_steps(model, [SRC, TGT])
    assert "layer 'dec' (LSTM) final state h of a sample with no kept step" in report.checked
    assert "layer 'dec' (LSTM) final state c of a sample with no kept step" in report.checked
    original = OP.forward

    def forgetful(attrs, inputs):  # an LSTM that drops the initial state of empty samples
        outs = original(attrs, inputs)
        if "h0" in inputs:
            outs[1][~inputs["mask"].any(axis=1)] = 0
        return outs

    monkeypatch.setattr(OP, "forward", forgetful)
    with pytest.raises(AssertionError, match="final state h of a sample with no kept step"):
        invariants.check_masked_steps(model, [SRC, TGT])
