"""Keras 3 conformance of the newer layers at production sizes (slow suite).

The layer conformance files use B <= 7, T <= 6 and a few units, where every recurrent
kernel runs on one thread over one unit chunk and the two directions of a
Bidirectional layer never run side by side. Here the sizes are those of the
benchmarks (B = 32, T = 100, 128 units, d_model 128 with 4 heads), so the threaded,
multi-chunk GRU/SimpleRNN/LSTM kernels run, the runtime runs the two directions of a
Bidirectional layer at once (one thread each, ``passes/schedule.py``), and the attention
kernels see long masked rows:

* a Bidirectional LSTM tagger and a Bidirectional GRU tagger (concat),
* a Transformer-encoder block (MultiHeadAttention, residual Adds, LayerNormalization,
  a feed-forward pair of Dense layers, masked GlobalAveragePooling1D),
* ``RNN(LSTMCell)`` and a SimpleRNN,
* Conv1D (causal and dilated; strided "same"), BatchNormalization, MaxPooling1D,
  AveragePooling1D and GlobalAveragePooling1D over an unmasked float sequence.

Each is built in both libraries with graphmask's initial weights copied into Keras;
predict, the loss and every gradient (torch autograd on Keras's compiled loss), and the
weights after SGD (momentum) steps are compared under right, left, holes and empty-row
padding. Tolerances are those of ``test_keras_production.py``, whose docstring derives
them: predict 1e-5 relative / 1e-6 absolute; gradients ``GRAD_TOL`` of each weight's
largest entry (at least ``GRAD_FLOOR``: the key bias of attention has a gradient that is
exactly 0 in exact arithmetic, softmax ignoring a shift of all scores, and both
libraries give rounding noise of 1e-11 there); SGD ``tw.TRAIN_RTOL, tw.TRAIN_ATOL``.
(Adam's steps are compared at small sizes in each layer's file: at these sizes an
entry whose gradient is rounding noise moves by up to ``lr`` per step in a direction
rounding decides.)

The Transformer's pooled output of an all-masked row is 0 in graphmask and NaN in
Keras (``sum(x * m) / sum(m)`` = 0 / 0; see docs/masking.md): its empty-row case checks
that difference and the other rows, and trains on the other paddings only.
"""
import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

import graphmask as gm  # noqa: E402
from graphmask.runtime import SIDE_BY_SIDE  # noqa: E402
from tests.conformance import twin as tw  # noqa: E402

pytestmark = pytest.mark.slow

B, T, V, E, H, C = 32, 100, 60, 32, 128, 8
D, HEADS, FF = 128, 4, 256
MASKS = ("right", "left", "holes", "rows")
GRAD_TOL = 1e-4
GRAD_FLOOR = 1e-6
#: predict's absolute tolerance where the default (``tw.ATOL``) is below the float32
#: rounding of the model: the SimpleRNN's single output follows 100 steps of a tanh
#: recurrence, and graphmask's float32 result lies up to 1.6e-6 from a float64
#: computation of the same model (Keras's up to 5e-7; graphmask's tanh is exact to an
#: absolute float32 ulp of 1, not a relative one near 0), so the two float32 results
#: differ by up to about 1.5e-6: ``test_simple_rnn_predict_near_float64_truth``.
PREDICT_ATOL = {"simple_rnn": 2e-6}
SGD = {"learning_rate": 0.05, "momentum": 0.9}
STEPS = 2


class Lib:
    """``layers``, ``Input`` and ``Model`` of one library."""

    def __init__(self, name):
        if name == "graphmask":
            self.layers, self.Input, self.Model = gm, gm.Input, gm.Model
        else:
            self.layers, self.Input, self.Model = keras.layers, keras.Input, keras.Model


def _bidirectional(rnn):
    def build(lib):
        ids = lib.Input((T,), dtype="int32", name="ids")
        e = lib.layers.Embedding(V, E, mask_zero=True, name="emb")(ids)
        layer = getattr(lib.layers, rnn)(H, return_sequences=True, name="rnn")
        h = lib.layers.Bidirectional(layer, name="bidi")(e)
        return lib.Model(ids, lib.layers.Dense(C, name="head")(h))
    return build


def _transformer(lib):
    L = lib.layers
    ids = lib.Input((T,), dtype="int32", name="ids")
    e = L.Embedding(V, D, mask_zero=True, name="emb")(ids)
    a = L.MultiHeadAttention(HEADS, D // HEADS, name="mha")(e, e)
    h = L.LayerNormalization(name="ln1")(L.Add(name="add1")([e, a]))
    f = L.Dense(FF, activation="relu", name="ff1")(h)
    f = L.Dense(D, name="ff2")(f)
    h = L.LayerNormalization(name="ln2")(L.Add(name="add2")([h, f]))
    p = L.GlobalAveragePooling1D(name="pool")(h)
    return lib.Model(ids, L.Dense(C, name="head")(p))


def _cell(lib):
    ids = lib.Input((T,), dtype="int32", name="ids")
    e = lib.layers.Embedding(V, E, mask_zero=True, name="emb")(ids)
    h = lib.layers.RNN(lib.layers.LSTMCell(H, name="cell"), return_sequences=True,
                       name="rnn")(e)
    return lib.Model(ids, lib.layers.Dense(C, name="head")(h))


def _simple_rnn(lib):
    ids = lib.Input((T,), dtype="int32", name="ids")
    e = lib.layers.Embedding(V, E, mask_zero=True, name="emb")(ids)
    h = lib.layers.SimpleRNN(H, go_backwards=True, name="rnn")(e)
    return lib.Model(ids, lib.layers.Dense(C, name="head")(h))


MODELS = {"bilstm": _bidirectional("LSTM"), "bigru": _bidirectional("GRU"),
          "transformer": _transformer, "rnn_lstm_cell": _cell, "simple_rnn": _simple_rnn}


def _pair(name):
    """The model in both libraries, graphmask's initial weights copied into Keras."""
    gm.clear_session()
    gm.set_random_seed(11)
    keras.utils.set_random_seed(11)
    g = MODELS[name](Lib("graphmask"))
    k = MODELS[name](Lib("keras"))
    tw.copy_weights(g, k)
    return g, k


def _batch(g, mask_kind, rng):
    mask = tw.mask_pattern(mask_kind, B, T, rng)
    x = tw.ids_for(mask, V, rng)
    y = tw.targets_for("mse", (B,) + tuple(g.outputs[0].shape[1:]), rng)
    return x, y, mask


def test_the_bidirectional_plans_run_their_directions_side_by_side():
    """What makes this file differ from the small-size one: the runtime pairs them."""
    assert SIDE_BY_SIDE
    g, _ = _pair("bilstm")
    g.compile(optimizer="adam", loss="mse")
    x, y, _ = _batch(g, "right", np.random.default_rng(0))
    g.train_on_batch(x, y)
    paired = [(s.label, s.op.name) for s in g._plan("train").steps if s.with_next]
    assert paired == [("forward_rnn", "lstm"), ("backward_rnn", "vjp")]


def _cases():
    return [(n, k) for n in sorted(MODELS) for k in MASKS
            if not (n == "transformer" and k == "rows")]


def test_transformer_empty_rows_pool_to_zero_where_keras_gives_nan():
    g, k = _pair("transformer")
    x, _, mask = _batch(g, "rows", np.random.default_rng(1))
    empty = ~mask.any(axis=1)
    assert empty.sum() == 2
    ours, theirs = g.predict(x, batch_size=B, verbose=0), tw.keras_predict(k, x)
    assert np.isnan(theirs[empty]).all() and not np.isnan(theirs[~empty]).any()
    head_bias = g.get_layer("head").get_weights()[1]
    np.testing.assert_array_equal(ours[empty], np.broadcast_to(head_bias, ours[empty].shape))
    tw.assert_close(ours[~empty], theirs[~empty], what="transformer predict, kept rows")


@pytest.mark.parametrize("name, mask_kind", _cases())
def test_predict_gradients_and_sgd_steps(name, mask_kind):
    g, k = _pair(name)
    rng = np.random.default_rng(1)
    x, y, _ = _batch(g, mask_kind, rng)
    tw.assert_close(g.predict(x, batch_size=B, verbose=0), tw.keras_predict(k, x),
                    atol=PREDICT_ATOL.get(name, tw.ATOL), what=f"{name} predict ({mask_kind})")

    go, ko = tw.optimizer_pair("SGD", **SGD)
    g.compile(optimizer=go, loss="mse")
    k.compile(optimizer=ko, loss="mse")
    ours_loss, ours = g.loss_and_gradients(x, y)
    theirs_loss, theirs = tw.keras_loss_and_gradients(k, x, y)
    np.testing.assert_allclose(ours_loss, theirs_loss, rtol=1e-5, err_msg=f"{name} loss")
    assert [tuple(a.shape) for a in ours.values()] == [a.shape for a in theirs]
    for (wname, a), b in zip(ours.items(), theirs):
        scale = float(np.abs(b).max())
        np.testing.assert_allclose(a, b, rtol=0, atol=GRAD_TOL * max(scale, GRAD_FLOOR),
                                   err_msg=f"{name} ({mask_kind}): gradient of {wname}")

    for step in range(STEPS):
        xs, ys, _ = _batch(g, mask_kind, rng)
        tw.assert_close(g.train_on_batch(xs, ys), k.train_on_batch(xs, ys), 1e-5, 0.0,
                        f"{name} loss at step {step}")
    names = [v.name for v in g.weights]
    for wname, a, b in zip(names, g.get_weights(), tw.keras_weights(k)):
        tw.assert_close(a, b, tw.TRAIN_RTOL, tw.TRAIN_ATOL,
                        f"{name} ({mask_kind}) {wname} after {STEPS} SGD steps")
    tw.assert_close(g.predict(x, batch_size=B, verbose=0), tw.keras_predict(k, x),
                    1e-4, 1e-5, f"{name} predict after training ({mask_kind})")


def _conv(lib):
    """Conv1D (causal, dilated; strided 'same'), BatchNormalization, both poolings and a
    global pooling over an unmasked float sequence (the convolutions take no mask)."""
    L = lib.layers
    x = lib.Input((T, 16), name="x")
    h = L.Conv1D(64, 5, padding="causal", dilation_rate=2, activation="relu", name="c1")(x)
    h = L.BatchNormalization(name="bn")(h)
    h = L.MaxPooling1D(2, name="max")(h)
    h = L.Conv1D(32, 3, strides=2, padding="same", name="c2")(h)
    h = L.AveragePooling1D(3, strides=2, padding="same", name="avg")(h)
    h = L.GlobalAveragePooling1D(name="pool")(h)
    return lib.Model(x, L.Dense(C, name="head")(h))


def _conv_pair():
    gm.clear_session()
    gm.set_random_seed(11)
    g = _conv(Lib("graphmask"))
    k = _conv(Lib("keras"))
    tw.copy_weights(g, k)
    go, ko = tw.optimizer_pair("SGD", **SGD)
    g.compile(optimizer=go, loss="mse")
    k.compile(optimizer=ko, loss="mse")
    return g, k


def test_convolutions_pooling_and_batch_norm_at_production_sizes():
    g, k = _conv_pair()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(B, T, 16)).astype("float32")
    tw.assert_close(g.predict(x, batch_size=B, verbose=0), tw.keras_predict(k, x),
                    what="conv predict")
    y = rng.normal(size=(B, C)).astype("float32")
    ours_loss, ours = g.loss_and_gradients(x, y)
    theirs_loss, theirs = tw.keras_loss_and_gradients(k, x, y)
    np.testing.assert_allclose(ours_loss, theirs_loss, rtol=1e-5, err_msg="conv loss")
    for (wname, a), b in zip(ours.items(), theirs):
        scale = float(np.abs(b).max())
        np.testing.assert_allclose(a, b, rtol=0, atol=GRAD_TOL * max(scale, GRAD_FLOOR),
                                   err_msg=f"conv: gradient of {wname}")
    # Keras's gradient pass (a training call) moved its BatchNormalization statistics:
    # the steps start again from a fresh pair
    g, k = _conv_pair()
    for step in range(STEPS):
        xs = rng.normal(size=(B, T, 16)).astype("float32")
        ys = rng.normal(size=(B, C)).astype("float32")
        tw.assert_close(g.train_on_batch(xs, ys), k.train_on_batch(xs, ys), 1e-5, 0.0,
                        f"conv loss at step {step}")
    for v, a, b in zip(g.weights, g.get_weights(), tw.keras_weights(k)):
        tw.assert_close(a, b, tw.TRAIN_RTOL, tw.TRAIN_ATOL, f"conv {v.name} after SGD steps")


@pytest.mark.parametrize("mask_kind", MASKS)
def test_simple_rnn_predict_near_float64_truth(mask_kind):
    """graphmask's float32 SimpleRNN against the same model computed in float64 (NumPy,
    Keras's masked recurrence written out: a masked step keeps the state)."""
    g, _ = _pair("simple_rnn")
    x, _, mask = _batch(g, mask_kind, np.random.default_rng(1))
    emb = g.get_layer("emb").get_weights()[0].astype(np.float64)
    kernel, recurrent, bias = (w.astype(np.float64) for w in g.get_layer("rnn").get_weights())
    dense, dense_bias = (w.astype(np.float64) for w in g.get_layer("head").get_weights())
    h = np.zeros((B, H))
    for t in reversed(range(T)):  # go_backwards
        new = np.tanh(emb[x[:, t]] @ kernel + h @ recurrent + bias)
        h = np.where(mask[:, t:t + 1], new, h)
    truth = h @ dense + dense_bias
    ours = g.predict(x, batch_size=B, verbose=0)
    np.testing.assert_allclose(ours, truth, rtol=0, atol=PREDICT_ATOL["simple_rnn"])
