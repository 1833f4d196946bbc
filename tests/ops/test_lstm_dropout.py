"""LSTM dropout and recurrent dropout (Keras 3's ``LSTMCell``): only while training, one
mask per sequence (the same units at every step), scaled by ``1 / (1 - rate)``, seeded,
and exactly the NumPy step loop's numbers given the same masks."""
from __future__ import annotations

import numpy as np
import pytest

import graphmask as gm
from graphmask.ops import lstm as lstm_op
from graphmask.ops.base import OpError, Spec, get_op
from tests.ops.test_lstm import make_inputs

OP = get_op("lstm")
DIFF = list(OP.diff_ports)
B, T, D, H = 5, 6, 4, 3


def _n_visible(attrs, inp):
    return len(OP.infer(attrs, {p: Spec(a.shape, str(a.dtype)) for p, a in inp.items()}))


def _attrs(**kw):
    return {"units": H, "return_sequences": True, "return_state": True, **kw}


def _inputs(seed=0, dtype=np.float64, mask="any", init=False):
    return make_inputs(np.random.default_rng(seed), B=B, T=T, D=D, H=H, mask=mask,
                       dtype=dtype, init=init)


def _train(attrs):
    return {**attrs, "_training": True}


# ---- inference ------------------------------------------------------------------------------
def test_no_dropout_outside_training():
    inp = _inputs()
    plain = OP.forward(_attrs(), inp)
    for kw in ({"dropout": 0.5}, {"recurrent_dropout": 0.5},
               {"dropout": 0.3, "recurrent_dropout": 0.6},
               {"dropout": 0.5, "training": False, "_training": True}):  # pinned off
        out = OP.forward(_attrs(**kw), inp)
        for a, b in zip(out[:3], plain[:3]):
            np.testing.assert_array_equal(a, b)
        assert out[-1].size == 0 and out[-2].size == 0  # no masks drawn


def test_zero_rates_in_training_are_the_plain_op():
    inp = _inputs()
    out = OP.forward(_train(_attrs(dropout=0.0, recurrent_dropout=0.0)), inp)
    assert len(out) == 3 + 7
    for a, b in zip(out[:3], OP.forward(_attrs(), inp)[:3]):
        np.testing.assert_array_equal(a, b)


# ---- input dropout --------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{}, {"go_backwards": True}, {"zero_output_for_mask": True},
                                {"return_sequences": False}])
@pytest.mark.parametrize("init", [False, True])
def test_input_dropout_is_one_mask_per_sequence(kw, init):
    gm.set_random_seed(1)
    attrs = _train(_attrs(dropout=0.4, **kw))
    inp = _inputs(init=init)
    out = OP.forward(attrs, inp)
    n = _n_visible(attrs, inp)
    mx, mh = out[-2], out[-1]
    assert mx.shape == (B, D) and mh.size == 0
    assert set(np.unique(mx)) <= {0.0, 1 / 0.6} and 0 < (mx == 0).sum() < mx.size
    # the kernels on x * mx (one mask for every step) give the same arrays bit for bit
    dropped = {**inp, "x": inp["x"] * mx[:, None, :]}
    for a, b in zip(out[:n], OP.forward(_attrs(**kw), dropped)[:n]):
        np.testing.assert_array_equal(a, b)
    # and the NumPy step loop given the masks (float64 rounding apart)
    for a, b in zip(out[:n], OP.reference(attrs, inp, (mx, None))):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # the dropped features are dropped at every step: changing them changes nothing
    poked = {**inp, "x": np.where(mx[:, None, :] == 0, 99.0, inp["x"])}
    np.testing.assert_array_equal(OP.reference(attrs, poked, (mx, None))[0],
                                  OP.reference(attrs, inp, (mx, None))[0])


@pytest.mark.parametrize("rec", [0.0, 0.5])
def test_vjp_with_dropout_matches_the_reference_and_finite_differences(rec):
    gm.set_random_seed(2)
    attrs = _train(_attrs(dropout=0.3, recurrent_dropout=rec))
    inp = _inputs(seed=3, init=True)
    out = OP.forward(attrs, inp)
    n = _n_visible(attrs, inp)
    drop = (out[-2], out[-1] if out[-1].size else None)
    rng = np.random.default_rng(4)
    grads = [rng.standard_normal(o.shape) for o in out[:n]]
    wrt = [p for p in DIFF if p in inp]
    ours = OP.vjp(attrs, inp, out, grads, wrt)
    ref = OP.reference_vjp(attrs, inp, grads, wrt, drop)
    for p in wrt:
        np.testing.assert_allclose(ours[p], ref[p], rtol=1e-9, atol=1e-11, err_msg=p)

    def loss(values):
        ys = OP.reference(attrs, values, drop)
        return sum(float((g * y).sum()) for g, y in zip(grads, ys))

    eps = 1e-6
    for p in wrt:
        numeric = np.zeros_like(inp[p])
        for idx in np.ndindex(inp[p].shape):
            plus, minus = inp[p].copy(), inp[p].copy()
            plus[idx] += eps
            minus[idx] -= eps
            numeric[idx] = (loss({**inp, p: plus}) - loss({**inp, p: minus})) / (2 * eps)
        np.testing.assert_allclose(ref[p], numeric, rtol=1e-5, atol=1e-7, err_msg=p)


# ---- recurrent dropout ----------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.0, 0.25])
def test_recurrent_dropout_has_a_mask_per_gate(rate):
    gm.set_random_seed(5)
    attrs = _train(_attrs(dropout=rate, recurrent_dropout=0.5))
    inp = _inputs(seed=6)
    out = OP.forward(attrs, inp)
    mx, mh = out[-2], out[-1]
    assert mx.shape == (4, B, D) and mh.shape == (4, B, H)
    assert set(np.unique(mh)) == {0.0, 2.0}
    assert (rate == 0) == bool((mx == 1).all())
    assert not all(np.array_equal(mh[0], mh[g]) for g in range(1, 4))  # four masks
    for a, b in zip(out[:3], OP.reference(attrs, inp, (mx, mh))):
        np.testing.assert_array_equal(a, b)
    # with every mask all ones the loop is the plain LSTM
    ones = (np.ones_like(mx), np.ones_like(mh))
    for a, b in zip(OP.reference(attrs, inp, ones), OP.forward(_attrs(), inp)[:3]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_masked_steps_still_carry_the_state_under_dropout():
    gm.set_random_seed(7)
    attrs = _train(_attrs(dropout=0.5, recurrent_dropout=0.5))
    inp = _inputs(seed=8, mask=None)
    inp["mask"] = np.ones((B, T), bool)
    inp["mask"][:, 2] = False
    y = OP.forward(attrs, inp)[0]
    np.testing.assert_array_equal(y[:, 2], y[:, 1])  # the previous output repeated


# ---- randomness -----------------------------------------------------------------------------
def test_new_masks_every_batch_repeatable_with_the_seed():
    attrs = _train(_attrs(dropout=0.5))
    inp = _inputs(dtype=np.float32)

    def two_batches():
        gm.set_random_seed(11)
        return [OP.forward(attrs, inp)[-2] for _ in range(2)]

    first, second = two_batches()
    assert not np.array_equal(first, second)
    again = two_batches()
    np.testing.assert_array_equal(first, again[0])
    np.testing.assert_array_equal(second, again[1])


def test_a_layer_seed_is_its_own_stream():
    attrs = _train(_attrs(dropout=0.5, seed=3, seed_key="test_stream"))
    inp = _inputs(dtype=np.float32)
    lstm_op.seed_stream("test_stream", 3)
    gm.set_random_seed(0)
    a = OP.forward(attrs, inp)[-2]
    lstm_op.seed_stream("test_stream", 3)
    gm.set_random_seed(99)  # the global generator does not matter
    np.testing.assert_array_equal(a, OP.forward(attrs, inp)[-2])
    lstm_op.seed_stream("test_stream", 4)
    assert not np.array_equal(a, OP.forward(attrs, inp)[-2])


def test_kept_share_and_scale():
    gm.set_random_seed(12)
    big = make_inputs(np.random.default_rng(0), B=400, T=2, D=50, H=2, mask=None,
                      dtype=np.float32)
    for rate in (0.1, 0.5):
        mx = OP.forward(_train({"units": 2, "dropout": rate}), big)[-2]
        # 20000 draws: the dropped share is within 5 standard deviations of the rate
        assert abs((mx == 0).mean() - rate) < 5 * np.sqrt(rate * (1 - rate) / mx.size)
        np.testing.assert_allclose(mx[mx != 0], 1 / (1 - rate), rtol=1e-6)


@pytest.mark.parametrize("bad", [1.0, -0.1, "0.5", True])
def test_bad_rates(bad):
    inp = _inputs()
    with pytest.raises(OpError, match=r"dropout must be a number in \[0, 1\), got"):
        OP.forward(_attrs(dropout=bad), inp)
    with pytest.raises(OpError, match=r"recurrent_dropout must be a number in \[0, 1\)"):
        OP.infer(_attrs(recurrent_dropout=bad), {p: Spec(a.shape, str(a.dtype))
                                                   for p, a in inp.items()})


# ---- the layer -------------------------------------------------------------------------------
def _tagger(**lstm_kw):
    ids = gm.Input((T,), dtype="int32")
    h = gm.LSTM(H, return_sequences=True, name="lstm", **lstm_kw)(
        gm.Embedding(9, D, mask_zero=True, name="emb")(ids))
    model = gm.Model(ids, gm.Dense(2, name="head")(h))
    model.compile(optimizer="sgd", loss="mse")
    return model


def _data(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 9, size=(B, T)).astype(np.int32)
    ids[0, 3:] = 0
    ids[1, :2] = 0
    return ids, rng.standard_normal((B, T, 2)).astype(np.float32)


def test_layer_dropout_only_in_training():
    gm.set_random_seed(0)
    plain = _tagger()
    dropping = _tagger(dropout=0.5, recurrent_dropout=0.3)
    dropping.set_weights(plain.get_weights())
    ids, y = _data()
    np.testing.assert_array_equal(dropping.predict(ids), plain.predict(ids))
    assert dropping.evaluate(ids, y) == plain.evaluate(ids, y)
    assert dropping.train_on_batch(ids, y) != plain.train_on_batch(ids, y)
    lstm = gm.LSTM(H, dropout=0.5)
    x = np.random.default_rng(1).standard_normal((B, T, D)).astype(np.float32)
    inference = lstm(x)
    np.testing.assert_array_equal(lstm(x, training=False), inference)
    assert not np.array_equal(lstm(x, training=True), inference)


def test_layer_training_is_repeatable_with_set_random_seed_or_seed():
    ids, y = _data()

    def run(global_seed, **kw):
        gm.set_random_seed(0)
        model = _tagger(**kw)
        gm.set_random_seed(global_seed)
        losses = [model.train_on_batch(ids, y) for _ in range(3)]
        return losses, model.get_weights()

    (l1, w1), (l2, w2) = run(5, dropout=0.4), run(5, dropout=0.4)
    assert l1 == l2 and all(np.array_equal(a, b) for a, b in zip(w1, w2))
    assert run(6, dropout=0.4)[0] != l1
    # a layer seed: the dropout masks no longer follow the global generator
    (s1, _), (s2, _) = run(5, dropout=0.4, seed=3), run(6, dropout=0.4, seed=3)
    assert s1 == s2 and run(5, dropout=0.4, seed=4)[0] != s1


def test_layer_config_and_errors():
    lstm = gm.LSTM(H, dropout=0.25, recurrent_dropout=0.5, seed=7, name="l")
    config = lstm.get_config()
    assert (config["dropout"], config["recurrent_dropout"], config["seed"]) == (0.25, 0.5, 7)
    assert gm.LSTM.from_config(config).get_config() == config
    bidi = gm.Bidirectional(lstm)
    assert bidi.backward_layer.recurrent_dropout == 0.5 and bidi.forward_layer.dropout == 0.25
    for kw, msg in [({"dropout": 1.0}, r"LSTM 'l': dropout must be a number in \[0, 1\) "
                                       r"\(the fraction of units dropped while training\), "
                                       r"got 1.0"),
                    ({"recurrent_dropout": -0.5}, r"LSTM 'l': recurrent_dropout must be a "
                                                  r"number in \[0, 1\)"),
                    ({"seed": -1}, r"LSTM 'l': seed must be None or an int >= 0, got -1")]:
        with pytest.raises(gm.errors.ConfigError, match=msg):
            gm.LSTM(H, name="l", **kw)
    x = gm.Input((T, D))
    with pytest.raises(gm.errors.ConfigError, match=r"layer 'l2' \(LSTM\): training=True at "
                                                    r"call time is not supported"):
        gm.LSTM(H, dropout=0.5, name="l2")(x, training=True)
