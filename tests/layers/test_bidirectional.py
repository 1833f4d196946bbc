"""``Bidirectional``: its outputs are the two directions' LSTM outputs (the backward one
reversed in time) merged, the masks and weights as Keras 3's, exact errors, config,
saving, and how it shows in summary / explain_mask / pictures.

The numbers are checked here against separately built LSTM layers holding the same
weights (the same kernels: exact equality); tests/conformance/test_keras_bidirectional.py
checks them against Keras 3.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphmask as gm
from graphmask.errors import ConfigError, ShapeError
from graphmask.inspect import explain_mask
from graphmask.testing import models
from graphmask.viz.dot import to_dot

B, T, F, H = 4, 6, 3, 5
MASK = np.array([[1, 1, 1, 0, 0, 0],      # right padding
                 [0, 0, 1, 1, 1, 1],      # left padding
                 [1, 0, 1, 0, 0, 1],      # holes
                 [0, 0, 0, 0, 0, 0]], bool)  # nothing kept


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal((B, T, F)).astype(np.float32)


def _randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    layer.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(np.float32)
                       for w in layer.get_weights()])


def _directions(bidi, x, mask, initial_state=None, **lstm_kw):
    """The forward and backward LSTMs run on their own with the wrapper's weights."""
    seq = bidi.return_sequences
    fwd = gm.LSTM(H, return_sequences=seq, zero_output_for_mask=seq, **lstm_kw)
    bwd = gm.LSTM(H, return_sequences=seq, zero_output_for_mask=seq, go_backwards=True,
                  **lstm_kw)
    fs = bs = {}
    if initial_state is not None:
        fs, bs = {"initial_state": initial_state[:2]}, {"initial_state": initial_state[2:]}
    fwd(x, **fs)
    bwd(x, **bs)
    fwd.set_weights(bidi.forward_layer.get_weights())
    bwd.set_weights(bidi.backward_layer.get_weights())
    return fwd(x, mask=mask, **fs), bwd(x, mask=mask, **bs)


def _built(layer, x=None):
    layer(_x() if x is None else x)
    _randomize(layer)
    return layer


# ---- numbers -------------------------------------------------------------------------------
def test_sequences_are_the_forward_and_the_time_reversed_backward_outputs():
    x = _x()
    bidi = _built(gm.Bidirectional(gm.LSTM(H, return_sequences=True), merge_mode=None), x)
    f, b = _directions(bidi, x, MASK)
    ours_f, ours_b = bidi(x, mask=MASK)
    np.testing.assert_array_equal(ours_f, f)
    np.testing.assert_array_equal(ours_b, b[:, ::-1])
    # masked steps are zeros in both (Keras forces zero_output_for_mask)
    assert not ours_f[~MASK].any() and not ours_b[~MASK].any()
    assert ours_f[MASK].all() and ours_b[MASK].all()


@pytest.mark.parametrize("seq", [True, False])
def test_merge_modes(seq):
    x = _x()
    halves = _built(gm.Bidirectional(gm.LSTM(H, return_sequences=seq), merge_mode=None), x)
    f, b = halves(x, mask=MASK)
    want = {"concat": np.concatenate([f, b], axis=-1), "sum": f + b, "mul": f * b,
            "ave": (f + b) / 2}
    for mode, expected in want.items():
        bidi = gm.Bidirectional(gm.LSTM(H, return_sequences=seq), merge_mode=mode)
        bidi(x)
        bidi.set_weights(halves.get_weights())
        np.testing.assert_array_equal(bidi(x, mask=MASK), expected, err_msg=mode)


def test_summary_output_is_each_direction_at_its_last_kept_step():
    x = _x()
    bidi = _built(gm.Bidirectional(gm.LSTM(H), merge_mode=None), x)
    f, b = _directions(bidi, x, MASK)
    ours = bidi(x, mask=MASK)
    np.testing.assert_array_equal(ours[0], f)
    np.testing.assert_array_equal(ours[1], b)
    assert not ours[0][3].any() and not ours[1][3].any()  # the row with no kept step


def test_return_state_lists_forward_then_backward_states():
    x = _x()
    bidi = _built(gm.Bidirectional(gm.LSTM(H, return_state=True)), x)
    out = bidi(x, mask=MASK)
    assert len(out) == 5 and out[0].shape == (B, 2 * H)
    (f, fh, fc), (b, bh, bc) = _directions(bidi, x, MASK, return_state=True)
    np.testing.assert_array_equal(out[0], np.concatenate([f, b], axis=-1))
    for ours, want in zip(out[1:], [fh, fc, bh, bc]):
        np.testing.assert_array_equal(ours, want)
    none = gm.Bidirectional(gm.LSTM(H, return_state=True), merge_mode=None)
    none(x)
    none.set_weights(bidi.get_weights())
    assert len(none(x, mask=MASK)) == 6


def test_initial_state_first_half_forward_second_half_backward():
    x = _x()
    rng = np.random.default_rng(7)
    states = [rng.standard_normal((B, H)).astype(np.float32) for _ in range(4)]
    bidi = gm.Bidirectional(gm.LSTM(H, return_sequences=True), merge_mode=None)
    bidi(x, initial_state=states)
    _randomize(bidi)
    f, b = _directions(bidi, x, MASK, initial_state=states)
    ours_f, ours_b = bidi(x, initial_state=states, mask=MASK)
    np.testing.assert_array_equal(ours_f, f)
    np.testing.assert_array_equal(ours_b, b[:, ::-1])
    swapped = bidi(x, initial_state=states[2:] + states[:2], mask=MASK)
    assert not np.array_equal(swapped[0], ours_f)


def test_weights_argument_and_set_weights():
    x = _x()
    bidi = _built(gm.Bidirectional(gm.LSTM(H)), x)
    given = gm.Bidirectional(gm.LSTM(H), weights=bidi.get_weights())
    np.testing.assert_array_equal(given(x, mask=MASK), bidi(x, mask=MASK))
    with pytest.raises(ShapeError, match=r"Bidirectional 'bw': weights has 2 arrays, the layer "
                                         r"has 6 \(3 forward, 3 backward\)"):
        gm.Bidirectional(gm.LSTM(H), weights=bidi.get_weights()[:2], name="bw")(x)


# ---- layers, names, weights, masks -----------------------------------------------------------
def test_inner_layers_are_fresh_copies_named_as_keras():
    lstm = gm.LSTM(H, return_sequences=True, name="enc")
    bidi = gm.Bidirectional(lstm, name="bi")
    assert (bidi.forward_layer.name, bidi.backward_layer.name) == ("forward_enc", "backward_enc")
    assert bidi.forward_layer is not lstm and not bidi.forward_layer.go_backwards
    assert bidi.backward_layer.go_backwards
    assert bidi.forward_layer.zero_output_for_mask and bidi.backward_layer.zero_output_for_mask
    assert not lstm.zero_output_for_mask  # the given layer is left alone
    again = gm.Bidirectional(gm.LSTM(H, name="forward_x"))
    assert (again.forward_layer.name, again.backward_layer.name) == (
        "forward_x", "backward_forward_x")
    bidi(_x())
    assert not lstm.built
    assert [v.name for v in bidi.weights] == [
        f"{d}_enc/{w}" for d in ("forward", "backward")
        for w in ("kernel", "recurrent_kernel", "bias")]


def test_in_a_model_one_layer_with_keras_masks():
    ids = gm.Input((T,), dtype="int32")
    emb = gm.Embedding(10, F, mask_zero=True, name="emb")(ids)
    seq = gm.Bidirectional(gm.LSTM(H, return_sequences=True), name="bi_seq")(emb)
    assert seq.shape == (None, T, 2 * H) and seq.keras_mask is emb.keras_mask
    f, b = gm.Bidirectional(gm.LSTM(H, return_sequences=True), merge_mode=None)(emb)
    assert f.keras_mask is emb.keras_mask and b.keras_mask is emb.keras_mask
    last = gm.Bidirectional(gm.LSTM(H), merge_mode="sum", name="bi_last")(seq)
    assert last.shape == (None, H) and last.keras_mask is None
    model = gm.Model(ids, [gm.Dense(1, name="head")(last), f, b])
    assert sorted(layer.name for layer in model.layers) == [  # the inner LSTMs are not
        "bi_last", "bi_seq", "bidirectional", "emb", "head", "input_layer"]  # listed


def test_summary_explain_mask_and_picture_show_one_box():
    ids = gm.Input((T,), dtype="int32")
    emb = gm.Embedding(10, F, mask_zero=True, name="emb")(ids)
    h = gm.Bidirectional(gm.LSTM(H, return_sequences=True), name="bi")(emb)
    model = gm.Model(ids, gm.Dense(2, name="head")(h))
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "│ bi (Bidirectional)" in text
    assert "forward_lstm" not in text and "backward_lstm" not in text
    assert explain_mask(model, "bi") == (
        "created by 'emb' as ids != 0 -> read and passed by 'bi' (call takes mask) -> "
        "passed by 'head'")
    dot = to_dot(model)
    assert dot.count('label="bi (Bidirectional)') == 1


def test_sequential_and_trainable():
    model = gm.Sequential([gm.Input((T, F)), gm.Masking(0.0),
                           gm.Bidirectional(gm.LSTM(H, return_sequences=True), name="bi"),
                           gm.Dense(1)])
    assert model.predict(_x()).shape == (B, T, 1)
    bi = model.get_layer("bi")
    bi.trainable = False
    assert not bi.forward_layer.trainable and not bi.backward_layer.trainable
    assert bi.trainable_weights == [] and len(bi.non_trainable_weights) == 6


def test_same_seed_same_weights():
    def weights():
        gm.set_random_seed(3)
        layer = gm.Bidirectional(gm.LSTM(H))
        layer(_x())
        return layer.get_weights()
    for a, b in zip(weights(), weights()):
        np.testing.assert_array_equal(a, b)


# ---- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(merge_mode="max"),
     r"Bidirectional 'bi': merge_mode must be one of \['concat', 'sum', 'mul', 'ave', None\], "
     r"got 'max'"),
    (dict(backward_layer=gm.LSTM(H)),
     r"Bidirectional 'bi': the forward and backward layers must have different go_backwards, "
     r"got False for LSTM 'l' and False for LSTM 'lstm"),
    (dict(backward_layer=gm.LSTM(H, go_backwards=True, return_sequences=True, name="b")),
     r"Bidirectional 'bi': the forward and backward layers must have the same "
     r"return_sequences, got False for LSTM 'l' and True for LSTM 'b'"),
    (dict(backward_layer=gm.LSTM(H, go_backwards=True, return_state=True, name="b")),
     r"the same return_state, got False for LSTM 'l' and True for LSTM 'b'"),
    (dict(backward_layer=gm.Dense(2, name="d")),
     r"Bidirectional 'bi': backward_layer must be a recurrent layer .* got Dense 'd', which has "
     r"no \['go_backwards', 'return_sequences', 'return_state'\]"),
    (dict(weights=[np.zeros(3)]),
     r"Bidirectional 'bi': weights must be a list of an even number of arrays"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        gm.Bidirectional(gm.LSTM(H, name="l"), name="bi", **kwargs)


def test_bad_layers():
    with pytest.raises(ConfigError, match=r"Bidirectional 'bi': layer must be a recurrent "
                                          r"layer .* got Dense 'dense_x'"):
        gm.Bidirectional(gm.Dense(3, name="dense_x"), name="bi")
    with pytest.raises(ConfigError, match=r"layer must be a recurrent layer instance .* got "
                                          r"type"):
        gm.Bidirectional(gm.LSTM, name="bi")
    with pytest.raises(ConfigError, match=r"different go_backwards, got True for LSTM "
                                          r"'forward_r' and True for LSTM 'backward_r' \(a "
                                          r"layer with go_backwards=True needs a "
                                          r"backward_layer with go_backwards=False\)"):
        gm.Bidirectional(gm.LSTM(H, go_backwards=True, name="r"), name="bi")


def test_bad_calls_change_nothing():
    bidi = gm.Bidirectional(gm.LSTM(H), name="bi")
    with pytest.raises(ShapeError, match=r"Bidirectional 'bi': input must be \(batch, "
                                         r"timesteps, features\), got shape \(None, 3\)"):
        bidi(gm.Input((3,)))
    assert not bidi.built and not bidi.forward_layer.built
    x = _x()
    bidi(x)
    before = bidi.get_weights()
    states = [np.zeros((B, H), np.float32)] * 3
    with pytest.raises(ConfigError, match=r"Bidirectional 'bi': initial_state must be a list "
                                          r"of an even number of tensors .* got 3"):
        bidi(x, initial_state=states)
    for a, b in zip(before, bidi.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_training_at_symbolic_call_time_is_refused_with_dropout():
    x = gm.Input((T, F))
    with pytest.raises(ConfigError, match=r"Bidirectional 'bd': training=True at call time is "
                                          r"not supported for \['forward_l', 'backward_l'\] "
                                          r"\(dropout\)"):
        gm.Bidirectional(gm.LSTM(H, dropout=0.5, name="l"), name="bd")(x, training=True)
    gm.Bidirectional(gm.LSTM(H, name="l2"))(x, training=True)  # nothing random: accepted
    bidi = _built(gm.Bidirectional(gm.LSTM(H, dropout=0.5)))
    x = _x()
    assert not np.array_equal(bidi(x, training=True), bidi(x))  # eager: honoured
    np.testing.assert_array_equal(bidi(x, training=False), bidi(x))


# ---- config and saving ---------------------------------------------------------------------
def test_config_round_trip_and_saving(tmp_path):
    ids = gm.Input((T,), dtype="int32")
    emb = gm.Embedding(10, F, mask_zero=True)(ids)
    fwd = gm.LSTM(H, return_sequences=True, name="fwd")
    bwd = gm.LSTM(H, return_sequences=True, go_backwards=True, activation="relu", name="bwd")
    bi = gm.Bidirectional(fwd, backward_layer=bwd, merge_mode="mul", name="bi")
    model = gm.Model(ids, gm.Dense(2)(bi(emb)))
    _randomize(model)
    config = bi.get_config()
    assert config["merge_mode"] == "mul"
    assert config["layer"]["class_name"] == "LSTM"
    assert config["layer"]["config"]["name"] == "forward_fwd"
    assert config["backward_layer"]["config"]["activation"] == "relu"
    clone = gm.Bidirectional.from_config(config)
    assert clone.get_config() == config
    x = np.array([[1, 2, 3, 0, 0, 0], [0, 0, 4, 5, 6, 7]])
    path = tmp_path / "bidi.gmz"
    model.save(path)
    back = gm.load_model(path)
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    assert back.get_layer("bi").get_config() == config


def test_from_config_refuses_unknown_classes():
    config = gm.Bidirectional(gm.LSTM(H), name="bi").get_config()
    config["layer"]["class_name"] = "os.system"
    with pytest.raises(ConfigError, match=r"Bidirectional 'bi': unknown layer class "
                                          r"'os.system'"):
        gm.Bidirectional.from_config(config)


# ---- generated models ----------------------------------------------------------------------
@settings(max_examples=12, deadline=None)
@given(models(bidirectional=True, batch_norm=False), st.data())
def test_generated_bidirectional_models_are_padding_invariant(case, data):
    from graphmask.testing import check_padding_invariance
    wrapped = [e for e in case.spec[5] if len(e) == 5 and e[4]]
    assert (any(isinstance(layer, gm.Bidirectional) for layer in case.model.layers)
            == bool(wrapped))
    x, y = data.draw(case.batch(max_len=5))
    check_padding_invariance(case.model, x, y)  # raises, naming what differs
