"""``stateful=True`` against Keras 3 (torch backend): ``LSTM``, ``GRU`` (both
``reset_after``), ``SimpleRNN``, ``RNN`` on a built-in cell, forwards, ``go_backwards`` and
inside ``Bidirectional``. A sequence of batches with right, left, holes and empty-row
padding carried from one to the next (predictions and the carried states),
``reset_states()``, ``evaluate`` (which advances the state in Keras too), and the loss,
weights and states over SGD and Adam ``train_on_batch`` steps with a reset between them.
Tolerances are those of ``test_keras_bidirectional.py``; production sizes run in the
slow suite.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

import graphmask as gm  # noqa: E402
from tests.conformance import twin as tw  # noqa: E402

B, T, V, E, H = 6, 5, 7, 3, 4
PADDINGS = ("right", "left", "holes", "rows")


def _layer(L, kind, units, back):
    """The stateful recurrent layer of ``kind`` from the namespace ``L`` (Keras's layers
    or graphmask)."""
    kw = {"stateful": True, "return_sequences": True, "go_backwards": back, "name": "rnn"}
    if kind == "lstm":
        return L.LSTM(units, **kw)
    if kind == "gru":
        return L.GRU(units, **kw)
    if kind == "gru_reset_before":
        return L.GRU(units, reset_after=False, **kw)
    if kind == "simple_rnn":
        return L.SimpleRNN(units, **kw)
    if kind == "rnn_gru_cell":
        return L.RNN(L.GRUCell(units), **kw)
    if kind == "rnn_simple_rnn_cell":
        return L.RNN(L.SimpleRNNCell(units), **kw)
    if kind == "rnn_lstm_cell":
        return L.RNN(L.LSTMCell(units), **kw)
    raise ValueError(kind)


def _model(lib, kind, bidi, back, b=B, t=T, units=H, vocab=V, emb=E):
    L = keras.layers if lib is keras else gm
    Input, Model = (keras.Input, keras.Model) if lib is keras else (gm.Input, gm.Model)
    ids = Input(batch_shape=(b, t), dtype="int32", name="ids")
    layer = _layer(L, kind, units, back)
    h = (L.Bidirectional(layer, name="bidi") if bidi else layer)(
        L.Embedding(vocab, emb, mask_zero=True, name="emb")(ids))
    return Model(ids, L.Dense(2, name="head")(h))


def _twin(kind, bidi=False, back=False, own_init=False, **sizes):
    """Both models with one set of weights: N(0, 0.5^2) draws (large enough for small
    models to saturate some gates), or graphmask's own initializers (``own_init``: the
    point a real model trains from)."""
    g, k = _model(gm, kind, bidi, back, **sizes), _model(keras, kind, bidi, back, **sizes)
    if own_init:
        k.set_weights(g.get_weights())
        return g, k
    rng = np.random.default_rng(0)
    k.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                   for w in k.get_weights()])
    g.set_weights(k.get_weights())
    return g, k


def _outer(model, bidi):
    return model.get_layer("bidi" if bidi else "rnn")


def _states(model, bidi):
    inner = _outer(model, bidi)
    inner = [inner.forward_layer, inner.backward_layer] if bidi else [inner]
    return [np.asarray(keras.ops.convert_to_numpy(s)) for layer in inner
            for s in layer.states]


def _batch(padding, rng, b=B, t=T, vocab=V):
    return tw.ids_for(tw.mask_pattern(padding, b, t, rng), vocab, rng)


#: case -> (layer kind, Bidirectional, go_backwards)
CASES = {
    "lstm": ("lstm", False, False),
    "lstm_backwards": ("lstm", False, True),
    "lstm_bidirectional": ("lstm", True, False),
    "gru": ("gru", False, False),
    "gru_reset_before": ("gru_reset_before", False, False),
    "gru_backwards": ("gru", False, True),
    "gru_bidirectional": ("gru", True, False),
    "simple_rnn": ("simple_rnn", False, False),
    "simple_rnn_backwards": ("simple_rnn", False, True),
    "simple_rnn_bidirectional": ("simple_rnn", True, False),
    "rnn_gru_cell": ("rnn_gru_cell", False, False),
    "rnn_simple_rnn_cell_backwards": ("rnn_simple_rnn_cell", False, True),
    "rnn_lstm_cell": ("rnn_lstm_cell", False, False),
}
#: the cases trained with both optimizers in the default suite (the rest: SGD, Adam slow)
BOTH_OPTIMIZERS = ("lstm", "gru", "gru_reset_before", "simple_rnn")


def test_config_and_states_as_keras():
    for kind, _, _ in CASES.values():
        g, k = _twin(kind)
        gl, kl = g.get_layer("rnn"), k.get_layer("rnn")
        assert gl.get_config()["stateful"] is kl.get_config()["stateful"] is True, kind
        assert len(gl.states) == len(kl.states), kind
        assert [s.shape for s in gl.states] == [tuple(s.shape) for s in kl.states], kind


@pytest.mark.parametrize("case", CASES)
def test_predictions_and_states_carried_over_batches(case):
    kind, bidi, back = CASES[case]
    g, k = _twin(kind, bidi, back)
    rng = np.random.default_rng(1)
    for rnd in range(2):
        for padding in PADDINGS:
            x = _batch(padding, rng)
            tw.assert_close(g.predict(x, batch_size=B, verbose=0), tw.keras_predict(k, x),
                            what=f"{case} round {rnd} {padding}")
            tw.assert_close(_states(g, bidi), _states(k, bidi),
                            what=f"{case} states round {rnd} {padding}")
        for model in (g, k):
            _outer(model, bidi).reset_states()
        assert not any(np.any(s) for s in _states(g, bidi))
    # evaluate runs the batches in order and carries the state, as Keras's
    x = np.concatenate([_batch(p, rng) for p in PADDINGS])
    y = rng.standard_normal((len(x), T, 2)).astype(np.float32)
    for model in (g, k):
        model.compile(optimizer="sgd", loss="mse")
    tw.assert_close(g.evaluate(x, y, batch_size=B, verbose=0),
                    k.evaluate(x, y, batch_size=B, verbose=0), what=f"{case} evaluate")
    tw.assert_close(_states(g, bidi), _states(k, bidi), what=f"{case} states after evaluate")


def _optimizer_cases():
    out = []
    for case in CASES:
        for opt in ("SGD", "Adam"):
            slow = opt == "Adam" and case not in BOTH_OPTIMIZERS
            out.append(pytest.param(case, opt, marks=pytest.mark.slow) if slow
                       else (case, opt))
    return out


def _train_and_compare(g, k, bidi, optimizer, case, rng, make_batch, steps, reset_at,
                       out_shape, adam_tol=1e-3):
    lr = 0.1 if optimizer == "SGD" else 0.01
    go, ko = tw.optimizer_pair(optimizer, learning_rate=lr)
    g.compile(optimizer=go, loss="mse")
    k.compile(optimizer=ko, loss="mse")
    if optimizer == "SGD":
        rtol, atol = tw.TRAIN_RTOL, tw.TRAIN_ATOL
    else:
        rtol, atol = 1e-4, adam_tol * lr * len(steps)
    names = [v.name for v in g.weights]
    for step, padding in enumerate(steps):
        if step == reset_at:
            for model in (g, k):
                _outer(model, bidi).reset_states()
        xs = make_batch(padding, rng)
        ys = rng.standard_normal(out_shape).astype(np.float32)
        tw.assert_close(g.train_on_batch(xs, ys), k.train_on_batch(xs, ys), rtol, atol,
                        f"{case} loss at step {step} ({padding} padding)")
        for name, a, b in zip(names, g.get_weights(), k.get_weights()):
            tw.assert_close(a, b, rtol, atol, f"{case} {name} after step {step} ({padding})")
        tw.assert_close(_states(g, bidi), _states(k, bidi), rtol, max(atol, 1e-4),
                        what=f"{case} states after step {step} ({padding})")


@pytest.mark.parametrize(("case", "optimizer"), _optimizer_cases())
def test_train_steps_carry_the_state(case, optimizer):
    kind, bidi, back = CASES[case]
    g, k = _twin(kind, bidi, back)
    _train_and_compare(g, k, bidi, optimizer, case, np.random.default_rng(2),
                       _batch, PADDINGS + PADDINGS[:2], 4, (B, T, 2))


PRODUCTION = {"gru": ("gru", False), "gru_reset_before": ("gru_reset_before", False),
              "simple_rnn": ("simple_rnn", False), "gru_backwards": ("gru", True),
              "lstm": ("lstm", False)}


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
@pytest.mark.parametrize("case", PRODUCTION)
def test_production_size(case, optimizer):
    """Batch 32, 50 steps, 64 units, a vocabulary of 1000, graphmask's initial weights:
    predictions and states over padded batches, then train steps with a reset between
    them (tolerances: ``test_keras_production.py``'s)."""
    kind, back = PRODUCTION[case]
    sizes = {"b": 32, "t": 50, "units": 64, "vocab": 1000, "emb": 32}
    g, k = _twin(kind, False, back, own_init=True, **sizes)
    rng = np.random.default_rng(3)

    def batch(padding, rng):
        return _batch(padding, rng, 32, 50, 1000)

    # the state is carried over 4 x 50 steps: a SimpleRNN (its orthogonal recurrent
    # kernel does not damp rounding) is measured up to 1.1e-6 off Keras there; atol 5e-6
    for padding in PADDINGS:
        x = batch(padding, rng)
        tw.assert_close(g.predict(x, batch_size=32, verbose=0), tw.keras_predict(k, x),
                        tw.RTOL, 5e-6, what=f"{case} production {padding}")
        tw.assert_close(_states(g, False), _states(k, False), tw.RTOL, 5e-6,
                        what=f"{case} production states {padding}")
    _train_and_compare(g, k, False, optimizer, f"{case} production", rng, batch, PADDINGS, 2,
                       (32, 50, 2), adam_tol=3e-3)


@pytest.mark.parametrize("case", ["gru", "simple_rnn_backwards", "rnn_gru_cell"])
def test_fit_with_validation_and_multi_batch_predict(case):
    """``fit`` over epochs (no shuffling) carries the state from batch to batch and
    through the validation batches at each epoch's end, and never resets it; ``predict``
    over several batches carries it too: as Keras."""
    kind, bidi, back = CASES[case]
    g, k = _twin(kind, bidi, back)
    rng = np.random.default_rng(4)
    x = np.concatenate([_batch(p, rng) for p in PADDINGS])
    y = rng.standard_normal((len(x), T, 2)).astype(np.float32)
    xv, yv = x[:2 * B], y[:2 * B] * 0.5
    go, ko = tw.optimizer_pair("SGD", learning_rate=0.1)
    g.compile(optimizer=go, loss="mse")
    k.compile(optimizer=ko, loss="mse")
    hist = [model.fit(x, y, batch_size=B, epochs=2, shuffle=False, verbose=0,
                      validation_data=(xv, yv)).history for model in (g, k)]
    for key in ("loss", "val_loss"):
        tw.assert_close(hist[0][key], hist[1][key], tw.TRAIN_RTOL, tw.TRAIN_ATOL,
                        what=f"{case} {key}")
    for a, b in zip(g.get_weights(), k.get_weights()):
        tw.assert_close(a, b, tw.TRAIN_RTOL, tw.TRAIN_ATOL, what=f"{case} weights after fit")
    tw.assert_close(_states(g, bidi), _states(k, bidi), tw.TRAIN_RTOL, 1e-4,
                    what=f"{case} states after fit")
    tw.assert_close(g.predict(x, batch_size=B, verbose=0),
                    np.asarray(k.predict(x, batch_size=B, verbose=0)), tw.TRAIN_RTOL,
                    1e-5, what=f"{case} predict over {len(x) // B} batches")
    tw.assert_close(_states(g, bidi), _states(k, bidi), tw.TRAIN_RTOL, 1e-4,
                    what=f"{case} states after predict")


@pytest.mark.parametrize("kind", ["gru", "simple_rnn"])
def test_initial_state_replaces_the_carried_state(kind):
    """Keras starts a stateful layer from ``initial_state`` when one is given, and
    carries the final state of that call. (No mask: Keras hands a layer called with an
    initial state none, graphmask applies it; see docs/recurrent.md.)"""
    models = []
    for lib in (gm, keras):
        L = keras.layers if lib is keras else gm
        Input, Model = (keras.Input, keras.Model) if lib is keras else (gm.Input, gm.Model)
        x = Input(batch_shape=(B, T, E), name="x")
        h = Input(batch_shape=(B, H), name="h")
        layer = _layer(L, kind, H, False)
        models.append(Model([x, h], layer(x, initial_state=h)))
    g, k = models
    g.set_weights(k.get_weights())
    rng = np.random.default_rng(5)
    for step in range(3):
        x = rng.standard_normal((B, T, E)).astype(np.float32)
        h = rng.standard_normal((B, H)).astype(np.float32) * (step > 0)
        tw.assert_close(g.predict([x, h], batch_size=B, verbose=0),
                        np.asarray(k.predict([x, h], batch_size=B, verbose=0)),
                        what=f"{kind} step {step}")
        tw.assert_close(g.get_layer("rnn").states[0],
                        keras.ops.convert_to_numpy(k.get_layer("rnn").states[0]),
                        what=f"{kind} state after step {step}")


def test_stacked_cells_carry_every_state():
    """``RNN([LSTMCell, GRUCell], stateful=True)``: predictions and the nested states
    ``[[h1, c1], [h2]]`` over padded batches (no reset: Keras 3.15's ``reset_state``
    fails on the nested states, graphmask's resets every cell, see
    tests/layers/test_stateful.py)."""
    models = []
    for lib in (gm, keras):
        L = keras.layers if lib is keras else gm
        Input, Model = (keras.Input, keras.Model) if lib is keras else (gm.Input, gm.Model)
        ids = Input(batch_shape=(B, T), dtype="int32", name="ids")
        rnn = L.RNN([L.LSTMCell(H), L.GRUCell(3)], stateful=True, return_sequences=True,
                    name="rnn")
        models.append(Model(ids, rnn(L.Embedding(V, E, mask_zero=True, name="emb")(ids))))
    g, k = models
    rng = np.random.default_rng(0)
    k.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                   for w in k.get_weights()])
    g.set_weights(k.get_weights())
    for padding in PADDINGS:
        x = _batch(padding, rng)
        tw.assert_close(g.predict(x, batch_size=B, verbose=0), tw.keras_predict(k, x),
                        what=f"stack {padding}")
        ours = [s for cell in g.get_layer("rnn").states for s in cell]
        theirs = [keras.ops.convert_to_numpy(s) for cell in k.get_layer("rnn").states
                  for s in cell]
        tw.assert_close(ours, theirs, what=f"stack states {padding}")
