"""LSTM ``dropout`` / ``recurrent_dropout`` against Keras 3 (torch backend).

Dropout is random, so the two libraries are made to drop the same units: Keras's cell
draws its masks through ``get_dropout_mask`` / ``get_recurrent_dropout_mask`` (once per
batch, reused at every step), graphmask's op through ``graphmask.ops.lstm.draw_masks``;
both are replaced by the same fixed masks, in the layout each library uses (one
``(batch, features)`` input mask without recurrent dropout; four input and four
recurrent masks, one per gate, with it). Then the training-mode outputs, the loss and
weights after SGD and Adam steps must be Keras's, under right, left, holes and empty-row
padding, for ``Bidirectional`` too. Outside training both libraries ignore the rates.

Tolerances are those of ``test_keras_bidirectional.py``.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

import graphmask as gm  # noqa: E402
from graphmask.ops import lstm as lstm_op  # noqa: E402
from tests.conformance import twin as tw  # noqa: E402

B, T, V, E, H = 6, 5, 7, 3, 4
PADDINGS = ("right", "left", "holes", "rows")
RATES = {"dropout": dict(dropout=0.4), "recurrent": dict(recurrent_dropout=0.3),
         "both": dict(dropout=0.25, recurrent_dropout=0.5)}


def _masks(kw, seed=0):
    """Fixed masks in graphmask's layout (what draw_masks returns)."""
    rng = np.random.default_rng(seed)
    d, r = kw.get("dropout", 0.0), kw.get("recurrent_dropout", 0.0)

    def keep(shape, rate):
        return ((rng.random(shape) >= rate) / (1 - rate)).astype(np.float32)

    if not r:
        return keep((B, E), d), None
    return (keep((4, B, E), d) if d else np.ones((4, B, E), np.float32)), keep((4, B, H), r)


def _patch(monkeypatch, klayers, masks):
    """Both libraries draw ``masks``."""
    mx, mh = masks
    conv = keras.ops.convert_to_tensor
    monkeypatch.setattr(lstm_op, "draw_masks",
                        lambda attrs, b, d, h, dt: (None, None) if not lstm_op._active(attrs)
                        else (mx.astype(dt), None if mh is None else mh.astype(dt)))
    for layer in klayers:
        cell = layer.cell
        if mh is None:
            cell.get_dropout_mask = lambda step_input: conv(mx)
        else:
            cell.get_dropout_mask = lambda step_input: [conv(m) for m in mx]
            cell.get_recurrent_dropout_mask = lambda step_input: [conv(m) for m in mh]


def _models(lib, kw, bidi):
    L = lib.layers if lib is keras else gm
    Input, Model = (keras.Input, keras.Model) if lib is keras else (gm.Input, gm.Model)
    ids = Input((T,), dtype="int32", name="ids")
    lstm = L.LSTM(H, return_sequences=True, name="lstm", **kw)
    e = L.Embedding(V, E, mask_zero=True, name="emb")(ids)
    h = (L.Bidirectional(lstm, name="bidi") if bidi else lstm)(e)
    return Model(ids, L.Dense(2, name="head")(h))


def _twin(kw, bidi=False):
    g, k = _models(gm, kw, bidi), _models(keras, kw, bidi)
    rng = np.random.default_rng(0)
    k.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                   for w in k.get_weights()])
    g.set_weights(k.get_weights())
    inner = [k.get_layer("bidi").forward_layer, k.get_layer("bidi").backward_layer] if bidi \
        else [k.get_layer("lstm")]
    return g, k, inner


def _batch(padding, rng):
    return tw.ids_for(tw.mask_pattern(padding, B, T, rng), V, rng)


@pytest.mark.parametrize("rates", RATES)
def test_inference_ignores_the_rates(rates):
    g, k, _ = _twin(RATES[rates])
    rng = np.random.default_rng(1)
    for padding in PADDINGS:
        x = _batch(padding, rng)
        tw.assert_close(g.predict(x), tw.keras_predict(k, x), what=f"{rates} {padding}")


@pytest.mark.parametrize("bidi", [False, True], ids=["lstm", "bidirectional"])
@pytest.mark.parametrize("rates", RATES)
def test_training_outputs_with_the_same_masks(monkeypatch, rates, bidi):
    g, k, inner = _twin(RATES[rates], bidi)
    _patch(monkeypatch, inner, _masks(RATES[rates]))
    rng = np.random.default_rng(2)
    for padding in PADDINGS:
        x = _batch(padding, rng)
        theirs = keras.ops.convert_to_numpy(k(x, training=True))
        ours = g(x, training=True)
        tw.assert_close(ours, theirs, what=f"{rates} {padding}")
        assert not np.allclose(ours, g.predict(x), atol=1e-3)  # dropout did something


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
@pytest.mark.parametrize("bidi", [False, True], ids=["lstm", "bidirectional"])
@pytest.mark.parametrize("rates", RATES)
def test_train_steps_with_the_same_masks(monkeypatch, rates, bidi, optimizer):
    g, k, inner = _twin(RATES[rates], bidi)
    _patch(monkeypatch, inner, _masks(RATES[rates], seed=3))
    cfg = {"learning_rate": 0.1 if optimizer == "SGD" else 0.01}

    def targets(_, rng):
        return rng.standard_normal((B, T, 2)).astype(np.float32)

    tw.check_train_steps(g, k, optimizer, cfg, PADDINGS, lambda _, p, rng: _batch(p, rng),
                         targets, f"{rates} {'bidi' if bidi else 'lstm'}", 1e-3)
