"""The encoder-decoder pattern with masks on both sides against Keras 3 (torch backend):
``LSTM(...)(decoder_input, initial_state=[h, c])`` with the encoder's states.

Predictions, the loss and every weight gradient (torch autograd), and the weights after
SGD and Adam steps, on copied weights, for right/left padding, holes, empty rows and
mixed batches on either side, for the plain, ``go_backwards`` and
``zero_output_for_mask`` decoders; eager calls with an initial state and a mask.

Keras 3 hands a layer its input's mask only when ``call`` gets one tensor argument, so
``lstm(x, initial_state=[h, c])`` runs Keras's LSTM *without* ``x``'s mask while its
output still carries that mask (the masked loss then averages steps the LSTM did not
skip). graphmask applies the mask, as Keras does when it is passed explicitly:
``lstm(x, initial_state=[h, c], mask=x._keras_mask)`` is the Keras model compared
against; ``test_keras_drops_the_decoder_mask_without_an_explicit_mask`` pins the
difference down.
"""
import numpy as np
import pytest

import graphmask as gm
from tests.conformance.oracle import import_keras

keras = import_keras()

from tests.conformance import twin as tw

B, TS, TT, V, E, H, C = 6, 7, 5, 11, 3, 4, 2


@pytest.fixture(autouse=True)
def _fresh_layer_names():
    """Automatic layer names are counted per library, and the eager calls here make
    graphmask Inputs Keras does not: start and leave both counters fresh, so that the
    automatic names of other modules' twins still line up."""
    gm.clear_session()
    keras.backend.clear_session()
    yield
    gm.clear_session()
    keras.backend.clear_session()

LAYERS = ("src_emb", "tgt_emb", "enc", "dec", "head")

PAIRS = [("right", "right"), ("left", "left"), ("holes", "holes"), ("rows", "rows"),
         ("mixed", "mixed"), ("right", "left"), ("none", "holes"), ("rows", "none")]
DECODERS = {"plain": {}, "go_backwards": {"go_backwards": True},
            "zero_output_for_mask": {"zero_output_for_mask": True}}


def _build(lib, dec_kw, explicit=True, units=H, ts=TS, tt=TT, tgt_mask=True):
    """The model in ``lib`` (graphmask or keras); Keras's decoder gets its mask explicitly
    unless ``explicit`` is False."""
    L = lib.layers
    src = lib.Input(shape=(ts,), dtype="int32", name="src")
    tgt = lib.Input(shape=(tt,), dtype="int32", name="tgt")
    _, h, c = L.LSTM(units, return_state=True, name="enc")(
        L.Embedding(V, E, mask_zero=True, name="src_emb")(src))
    e = L.Embedding(V, E, mask_zero=tgt_mask, name="tgt_emb")(tgt)
    dec = L.LSTM(units, return_sequences=True, name="dec", **dec_kw)
    if lib is keras and explicit:
        y = dec(e, initial_state=[h, c], mask=e._keras_mask)
    else:
        y = dec(e, initial_state=[h, c])
    return lib.Model([src, tgt], L.Dense(C, name="head")(y))


def twin(dec_kw, seed=0, explicit=True, **kw):
    g = _build(gm, dec_kw, **kw)
    k = _build(keras, dec_kw, explicit=explicit, **kw)
    rng = np.random.default_rng(seed)
    g.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                   for w in g.get_weights()])
    copy_by_layer(g, k)
    return g, k


def copy_by_layer(gmodel, kmodel):
    for name in LAYERS:
        kmodel.get_layer(name).set_weights(gmodel.get_layer(name).get_weights())


def batch(src_kind, tgt_kind, seed, b=B, ts=TS, tt=TT):
    rng = np.random.default_rng(seed)
    src = tw.ids_for(tw.mask_pattern(src_kind, b, ts, rng), V, rng)
    tgt = tw.ids_for(tw.mask_pattern(tgt_kind, b, tt, rng), V, rng)
    y = rng.standard_normal((b, tt, C)).astype(np.float32)
    return [src, tgt], y


def keras_loss_and_gradients(kmodel, xs, y):
    """Keras's compiled loss of one batch (training=True) and, by torch autograd, the
    gradient of each weight, as ``{(layer name, index in the layer): array}``."""
    xt = [keras.ops.convert_to_tensor(a) for a in xs]
    yt = keras.ops.convert_to_tensor(y)
    kmodel.zero_grad()
    value = kmodel.compute_loss(x=xt, y=yt, y_pred=kmodel(xt, training=True), training=True)
    value.backward()
    grads = {}
    for name in LAYERS:
        for i, v in enumerate(kmodel.get_layer(name).trainable_weights):
            g = v.value.grad
            grads[(name, i)] = np.zeros(tuple(v.shape), np.float32) if g is None \
                else g.detach().numpy().copy()
    kmodel.zero_grad()
    return float(value.detach()), grads


def assert_same_weights(gmodel, kmodel, what):
    for name in LAYERS:
        for i, (a, b) in enumerate(zip(gmodel.get_layer(name).get_weights(),
                                       kmodel.get_layer(name).get_weights())):
            tw.assert_close(a, b, tw.TRAIN_RTOL, tw.TRAIN_ATOL, f"{what}: {name}[{i}]")


# ---- predict --------------------------------------------------------------------------------
@pytest.mark.parametrize("decoder", sorted(DECODERS))
@pytest.mark.parametrize("pair", PAIRS, ids=["-".join(p) for p in PAIRS])
def test_predict(pair, decoder):
    g, k = twin(DECODERS[decoder], seed=1)
    xs, _ = batch(*pair, seed=2)
    tw.assert_close(g.predict(xs), tw.keras_predict(k, xs))


def test_predict_states_and_single_output_of_a_decoder_with_empty_rows():
    """return_state decoder without return_sequences: the output of the last kept step
    (zeros for an empty target row) and the carried states (the encoder's for it)."""
    outs = []
    for lib in (gm, keras):
        L = lib.layers
        src = lib.Input(shape=(TS,), dtype="int32")
        tgt = lib.Input(shape=(TT,), dtype="int32")
        _, h, c = L.LSTM(H, return_state=True, name="enc")(
            L.Embedding(V, E, mask_zero=True, name="src_emb")(src))
        e = L.Embedding(V, E, mask_zero=True, name="tgt_emb")(tgt)
        dec = L.LSTM(H, return_state=True, name="dec")
        kw = {"mask": e._keras_mask} if lib is keras else {}
        outs.append(lib.Model([src, tgt], [*dec(e, initial_state=[h, c], **kw), h, c]))
    g, k = outs
    rng = np.random.default_rng(3)
    g.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                   for w in g.get_weights()])
    for name in ("src_emb", "tgt_emb", "enc", "dec"):
        k.get_layer(name).set_weights(g.get_layer(name).get_weights())
    xs, _ = batch("mixed", "rows", seed=4)
    ours, theirs = g.predict(xs), tw.keras_predict(k, xs)
    tw.assert_close(ours, theirs)
    empty = ~(xs[1] != 0).any(axis=1)
    assert empty.any()
    assert np.all(ours[0][empty] == 0)
    np.testing.assert_array_equal(ours[1][empty], ours[3][empty])
    np.testing.assert_array_equal(ours[2][empty], ours[4][empty])


def test_keras_drops_the_decoder_mask_without_an_explicit_mask():
    """Keras's ``lstm(x, initial_state=[h, c])`` computes as if ``x`` had no mask; with
    the mask given explicitly it agrees with graphmask, which always applies it."""
    g, k_implicit = twin({}, seed=5, explicit=False)
    k_explicit = _build(keras, {})
    copy_by_layer(g, k_explicit)
    g_unmasked = _build(gm, {}, tgt_mask=False)
    g_unmasked.set_weights(g.get_weights())
    xs, _ = batch("holes", "left", seed=6)
    ours = g.predict(xs)
    tw.assert_close(tw.keras_predict(k_implicit, xs), g_unmasked.predict(xs))
    tw.assert_close(ours, tw.keras_predict(k_explicit, xs))
    padded = (xs[1] == 0).any(axis=1)
    assert not np.allclose(ours[padded], g_unmasked.predict(xs)[padded], atol=1e-3)


def test_layer_and_weight_order_match_keras():
    """model.layers and get_weights of the encoder-decoder follow Keras 3's order."""
    g, k = twin({}, explicit=False)
    assert [layer.name for layer in g.layers] == [layer.name for layer in k.layers]
    tw.copy_weights(g, k)  # checks that the shapes line up one by one
    for a, b in zip(g.get_weights(), tw.keras_weights(k)):
        np.testing.assert_array_equal(a, b)


# ---- gradients --------------------------------------------------------------------------
@pytest.mark.parametrize("decoder", sorted(DECODERS))
@pytest.mark.parametrize("pair", PAIRS, ids=["-".join(p) for p in PAIRS])
def test_loss_and_gradients(pair, decoder):
    g, k = twin(DECODERS[decoder], seed=7)
    g.compile(optimizer="sgd", loss="mse")
    k.compile(optimizer="sgd", loss="mse")
    xs, y = batch(*pair, seed=8)
    loss, grads = g.loss_and_gradients(xs, y)
    k_loss, k_grads = keras_loss_and_gradients(k, xs, y)
    assert loss == pytest.approx(k_loss, rel=1e-5, abs=1e-7)
    for name in LAYERS:
        for i, v in enumerate(g.get_layer(name).weights):
            tw.assert_close(grads[v.name], k_grads[(name, i)], 1e-4, 1e-6, v.name)
    assert np.any(grads["enc/kernel"] != 0)  # the loss reaches the encoder via the state


def test_wide_batch_uses_the_threaded_kernels_and_matches_keras():
    """B = 32, H = 64: graphmask's multi-threaded float32 kernels, initial state and
    masks on both sides, against Keras's predictions and gradients."""
    from graphmask.kernels import lstm as K

    g, k = twin({}, seed=9, units=64, ts=12, tt=10)
    g.compile(optimizer="sgd", loss="mse")
    k.compile(optimizer="sgd", loss="mse")
    xs, y = batch("mixed", "holes", seed=10, b=32, ts=12, tt=10)
    assert not K.threads_for(int((xs[1] != 0).sum(0).max()), 64).serial
    tw.assert_close(g.predict(xs), tw.keras_predict(k, xs), 1e-4, 1e-5)
    loss, grads = g.loss_and_gradients(xs, y)
    k_loss, k_grads = keras_loss_and_gradients(k, xs, y)
    assert loss == pytest.approx(k_loss, rel=1e-5)
    for name in LAYERS:
        for i, v in enumerate(g.get_layer(name).weights):
            tw.assert_close(grads[v.name], k_grads[(name, i)], 1e-3, 1e-6, v.name)


# ---- training -----------------------------------------------------------------------------
@pytest.mark.parametrize("opt", [("SGD", {"learning_rate": 0.1}),
                                 ("Adam", {"learning_rate": 0.01})], ids=["SGD", "Adam"])
@pytest.mark.parametrize("decoder", ["plain", "go_backwards"])
def test_weights_after_optimizer_steps(opt, decoder):
    g, k = twin(DECODERS[decoder], seed=11)
    go, ko = tw.optimizer_pair(opt[0], **opt[1])
    g.compile(optimizer=go, loss="mse")
    k.compile(optimizer=ko, loss="mse")
    for step, pair in enumerate([("right", "left"), ("holes", "rows"), ("mixed", "mixed")]):
        xs, y = batch(*pair, seed=20 + step)
        g_loss = g.train_on_batch(xs, y)
        k_loss = k.train_on_batch(xs, y)
        assert g_loss == pytest.approx(float(k_loss), rel=1e-4), step
        assert_same_weights(g, k, f"{opt[0]} step {step}")


# ---- eager ------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{"return_sequences": True, "return_state": True},
                                {"return_state": True, "go_backwards": True},
                                {"return_sequences": True, "zero_output_for_mask": True}])
def test_eager_call_with_initial_state_and_mask(kw):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((5, 6, 3)).astype(np.float32)
    h0 = rng.standard_normal((5, 4)).astype(np.float32)
    c0 = rng.standard_normal((5, 4)).astype(np.float32)
    mask = tw.mask_pattern("mixed", 5, 6, rng)
    ours_layer = gm.LSTM(4, **kw)
    ours = ours_layer(x, initial_state=[h0, c0], mask=mask)
    theirs_layer = keras.layers.LSTM(4, **kw)
    theirs_layer.build((5, 6, 3))
    theirs_layer.set_weights(ours_layer.get_weights())
    theirs = theirs_layer(x, initial_state=[h0, c0], mask=mask)
    theirs = [keras.ops.convert_to_numpy(t) for t in theirs] \
        if isinstance(theirs, (list, tuple)) else keras.ops.convert_to_numpy(theirs)
    tw.assert_close(ours, theirs)
