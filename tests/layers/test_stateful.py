"""``LSTM(stateful=True)``: the last state of a batch starts the next one (sample i of a
batch continues sample i of the previous batch), masked steps do not advance it,
``reset_states()`` zeroes it, the batch size is fixed; also inside ``Bidirectional``."""
import threading

import numpy as np
import pytest

import graphmask as gm
from graphmask.errors import GraphmaskError, ShapeError

B, T, F, H = 3, 4, 2, 5


def _x(seed):
    return np.random.default_rng(seed).standard_normal((B, T, F)).astype(np.float32)


def _stateful(**kw):
    x = gm.Input(batch_shape=(B, T, F))
    lstm = gm.LSTM(H, stateful=True, return_sequences=True, name="lstm", **kw)
    model = gm.Model(x, lstm(gm.Masking(0.0)(x)))
    rng = np.random.default_rng(1)
    model.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(np.float32)
                       for w in model.get_weights()])
    return model, lstm


def _reference(lstm, x, state):
    """The same weights without state: one call from ``state``."""
    ref = gm.LSTM(H, return_sequences=True, return_state=True)
    ref(x, initial_state=state)
    ref.set_weights(lstm.get_weights())
    mask = (x != 0).any(-1)
    return ref(x, initial_state=state, mask=mask)


def test_the_state_is_carried_between_batches():
    model, lstm = _stateful()
    assert lstm.states[0].shape == (B, H) and not np.any(lstm.states)
    zeros = [np.zeros((B, H), np.float32)] * 2
    state = zeros
    for seed in range(3):
        x = _x(seed)
        y, h, c = _reference(lstm, x, state)
        np.testing.assert_allclose(model.predict(x), y, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(lstm.states[0], h, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(lstm.states[1], c, rtol=1e-6, atol=1e-7)
        state = [h, c]
    lstm.reset_states()
    assert not np.any(lstm.states)
    np.testing.assert_allclose(model.predict(_x(0)), _reference(lstm, _x(0), zeros)[0],
                               rtol=1e-6, atol=1e-7)


def test_masked_steps_do_not_advance_the_state():
    model, lstm = _stateful()
    model.predict(_x(0))
    before = lstm.states
    x = _x(1)
    x[0, 2:] = 0.0     # right padding
    x[1, :3] = 0.0     # left padding
    x[2] = 0.0         # nothing kept: the state stays
    model.predict(x)
    after = lstm.states
    np.testing.assert_array_equal(after[0][2], before[0][2])
    np.testing.assert_array_equal(after[1][2], before[1][2])
    # row 0's state is that of its two kept steps
    lstm.reset_states()
    model.predict(_x(0))
    short = np.zeros_like(x)
    short[0, :2] = x[0, :2]
    short[1, 3:] = x[1, 3:]
    y, h, c = _reference(lstm, short, before)
    np.testing.assert_allclose(after[0][:2], h[:2], rtol=1e-6, atol=1e-7)


def test_training_advances_the_state_and_matches_a_stateless_step():
    model, lstm = _stateful()
    model.compile(optimizer="sgd", loss="mse")
    y = np.random.default_rng(5).standard_normal((B, T, H)).astype(np.float32)
    model.train_on_batch(_x(0), y)
    assert np.any(lstm.states)
    h0, c0 = lstm.states
    # the loss of the next batch is that of a stateless LSTM started from (h0, c0)
    x = gm.Input(batch_shape=(B, T, F))
    h_in, c_in = gm.Input(batch_shape=(B, H)), gm.Input(batch_shape=(B, H))
    ref = gm.LSTM(H, return_sequences=True, name="ref")
    twin = gm.Model([x, h_in, c_in], ref(gm.Masking(0.0)(x), initial_state=[h_in, c_in]))
    twin.set_weights(model.get_weights())
    twin.compile(optimizer="sgd", loss="mse")
    assert model.evaluate(_x(1), y) == pytest.approx(twin.evaluate([_x(1), h0, c0], y),
                                                      rel=1e-6)


def test_fixed_batch_size_and_errors():
    with pytest.raises(ShapeError, match=r"LSTM 'st': stateful=True needs a fixed batch size, "
                                         r"got input shape \(None, 4, 2\); give the input "
                                         r"one, e.g. Input\(shape, batch_size=32\)"):
        gm.LSTM(H, stateful=True, name="st")(gm.Input((T, F)))
    model, lstm = _stateful()
    model.predict(_x(0))
    before = lstm.states
    with pytest.raises(ShapeError, match=r"expects shape \(3, 4, 2\), got \(2, 4, 2\)"):
        model.predict_on_batch(_x(1)[:2])
    with pytest.raises(GraphmaskError, match=r"a stateful layer needs the same batch size at "
                                             r"every call: its state holds 3 samples, the "
                                             r"batch has 2"):
        lstm(_x(1)[:2])  # an eager call: the op checks the batch before it runs
    for a, b in zip(before, lstm.states):
        np.testing.assert_array_equal(a, b)


def test_config_states_and_bidirectional():
    plain = gm.LSTM(H)
    assert plain.states is None and plain.get_config()["stateful"] is False
    plain.reset_states()  # a no-op, as Keras's
    lstm = gm.LSTM(H, stateful=True, name="s")
    assert gm.LSTM.from_config(lstm.get_config()).stateful
    x = gm.Input(batch_shape=(B, T, F))
    bidi = gm.Bidirectional(gm.LSTM(H, stateful=True, return_sequences=True), name="bi")
    model = gm.Model(x, bidi(x))
    assert bidi.stateful
    model.predict(_x(0))
    assert np.any(bidi.forward_layer.states) and np.any(bidi.backward_layer.states)
    first = model.predict(_x(1))
    bidi.reset_states()
    assert not np.any(bidi.forward_layer.states) and not np.any(bidi.backward_layer.states)
    model.predict(_x(0))
    np.testing.assert_array_equal(model.predict(_x(1)), first)
    with pytest.raises(gm.errors.ConfigError, match=r"Bidirectional 'b2': reset_state\(\) "
                                                    r"needs a stateful layer"):
        gm.Bidirectional(gm.LSTM(H), name="b2").reset_states()


# ---- GRU and SimpleRNN (one state h), the same rules -----------------------------------------
ONE_STATE = {
    "gru": lambda **kw: gm.GRU(H, **kw),
    "gru_reset_before": lambda **kw: gm.GRU(H, reset_after=False, **kw),
    "simple_rnn": lambda **kw: gm.SimpleRNN(H, **kw),
}


def _padded(seed):
    """A batch with right padding, left padding and one empty row (Masking(0.0))."""
    x = _x(seed)
    x[0, 3:] = 0.0
    x[1, :2] = 0.0
    x[2] = 0.0
    return x


def _one_state(kind, go_backwards=False, return_state=False, **kw):
    x = gm.Input(batch_shape=(B, T, F), name="x")
    layer = ONE_STATE[kind](stateful=True, return_sequences=True, go_backwards=go_backwards,
                            return_state=return_state, name="rnn", **kw)
    model = gm.Model(x, layer(gm.Masking(0.0)(x)))
    rng = np.random.default_rng(1)
    model.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(np.float32)
                       for w in model.get_weights()])
    return model, layer


def _stateless(kind, layer, x, h, go_backwards=False):
    """The same weights without state: one call from ``h`` -> (sequence, final h)."""
    ref = ONE_STATE[kind](return_sequences=True, return_state=True, go_backwards=go_backwards)
    ref(x, initial_state=h)
    ref.set_weights(layer.get_weights())
    return ref(x, initial_state=h, mask=(x != 0).any(-1))


def _last_kept(y, x, go_backwards):
    """Per row: the output at the row's last kept step in processing order (None if the
    row has no kept step); y is in processing order."""
    mask = (x != 0).any(-1)
    if go_backwards:
        mask = mask[:, ::-1]
    return [y[i, np.flatnonzero(mask[i])[-1]] if mask[i].any() else None
            for i in range(len(y))]


@pytest.mark.parametrize("go_backwards", [False, True], ids=["forwards", "backwards"])
@pytest.mark.parametrize("kind", ONE_STATE)
def test_one_state_layers_carry_h_between_batches(kind, go_backwards):
    model, layer = _one_state(kind, go_backwards)
    assert len(layer.states) == 1 and layer.states[0].shape == (B, H)
    assert not np.any(layer.states[0])
    h = np.zeros((B, H), np.float32)
    for seed in range(3):
        x = _padded(seed) if seed != 1 else _x(seed)
        before = layer.states[0]
        y = model.predict(x, verbose=0)
        y_ref, h_ref = _stateless(kind, layer, x, h, go_backwards)
        np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(layer.states[0], h_ref, rtol=1e-6, atol=1e-7)
        # the carried state is exactly the output of the last kept step; an empty row
        # keeps the state it had
        for i, last in enumerate(_last_kept(y, x, go_backwards)):
            np.testing.assert_array_equal(layer.states[0][i],
                                          before[i] if last is None else last)
        h = h_ref
    layer.reset_states()
    assert not np.any(layer.states[0])
    np.testing.assert_allclose(model.predict(_x(0), verbose=0),
                               _stateless(kind, layer, _x(0), np.zeros((B, H), np.float32),
                                          go_backwards)[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ONE_STATE)
def test_one_state_return_state_is_the_carried_h(kind):
    model, layer = _one_state(kind, return_state=True)
    previous = np.zeros((B, H), np.float32)
    for seed in range(2):
        y, h = model.predict(_padded(seed), verbose=0)
        np.testing.assert_array_equal(h, layer.states[0])
        np.testing.assert_array_equal(h[2], previous[2])  # the empty row keeps its state
        previous = h


def _twin_from_state(kind, model):
    """A stateless twin whose second input is the state to start from."""
    x = gm.Input(batch_shape=(B, T, F))
    h_in = gm.Input(batch_shape=(B, H))
    ref = ONE_STATE[kind](return_sequences=True, name="ref")
    twin = gm.Model([x, h_in], ref(gm.Masking(0.0)(x), initial_state=h_in))
    twin.set_weights(model.get_weights())
    twin.compile(optimizer="sgd", loss="mse")
    return twin


@pytest.mark.parametrize("kind", ONE_STATE)
def test_one_state_training_starts_from_the_carried_h(kind):
    model, layer = _one_state(kind)
    model.compile(optimizer="sgd", loss="mse")
    y = np.random.default_rng(5).standard_normal((B, T, H)).astype(np.float32)
    model.train_on_batch(_padded(0), y)
    (h0,) = layer.states
    assert np.any(h0) and not np.any(h0[2])  # row 2 is empty: still zeros
    twin = _twin_from_state(kind, model)
    assert model.evaluate(_padded(1), y, verbose=0) == pytest.approx(
        twin.evaluate([_padded(1), h0], y, verbose=0), rel=1e-6)
    (h1,) = layer.states  # evaluate advanced it, as Keras's
    model.train_on_batch(_x(2), y)
    twin.train_on_batch([_x(2), h1], y)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["gru", "simple_rnn"])
def test_fit_carries_the_state_as_train_on_batch_does(kind):
    xs = np.concatenate([_padded(0), _x(1)])
    ys = np.random.default_rng(5).standard_normal((2 * B, T, H)).astype(np.float32)
    states, weights = [], []
    for use_fit in (True, False):
        model, layer = _one_state(kind)
        model.compile(optimizer="adam", loss="mse")
        if use_fit:
            model.fit(xs, ys, batch_size=B, shuffle=False, epochs=1, verbose=0)
        else:
            model.train_on_batch(xs[:B], ys[:B])
            model.train_on_batch(xs[B:], ys[B:])
        states.append(layer.states[0])
        weights.append(model.get_weights())
    np.testing.assert_array_equal(states[0], states[1])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ONE_STATE)
def test_one_state_initial_state_replaces_the_carried_one(kind):
    x = gm.Input(batch_shape=(B, T, F))
    h_in = gm.Input(batch_shape=(B, H))
    layer = ONE_STATE[kind](stateful=True, return_sequences=True, name="rnn")
    model = gm.Model([x, h_in], layer(gm.Masking(0.0)(x), initial_state=h_in))
    h = np.random.default_rng(3).standard_normal((B, H)).astype(np.float32)
    model.predict([_padded(0), np.zeros_like(h)], verbose=0)
    y = model.predict([_padded(1), h], verbose=0)  # Keras: starts from h, not the carried
    y_ref, h_ref = _stateless(kind, layer, _padded(1), h)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(layer.states[0], h_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(layer.states[0][2], h[2])  # the empty row: h itself


@pytest.mark.parametrize("kind", ["gru", "simple_rnn"])
def test_one_state_batch_size_errors_change_nothing(kind):
    cls = type(ONE_STATE[kind]())
    with pytest.raises(ShapeError, match=rf"{cls.__name__} 'st': stateful=True needs a fixed "
                                         r"batch size, got input shape \(None, 4, 2\)"):
        ONE_STATE[kind](stateful=True, name="st")(gm.Input((T, F)))
    model, layer = _one_state(kind)
    model.predict(_x(0), verbose=0)
    (before,) = layer.states
    with pytest.raises(ShapeError, match=r"expects shape \(3, 4, 2\), got \(2, 4, 2\)"):
        model.predict_on_batch(_x(1)[:2])
    msg = (rf"{cls.__name__} 'rnn': a stateful layer needs the same batch size at every "
           r"call: its state holds 3 samples, the batch has 2")
    with pytest.raises(ShapeError, match=msg):
        layer(_x(1)[:2])  # eager
    with pytest.raises(ShapeError, match=msg):
        layer(gm.Input(batch_shape=(2, T, F)))  # symbolic: refused at the call, as Keras
    np.testing.assert_array_equal(layer.states[0], before)


def test_one_state_config_states_and_bidirectional():
    for make in ONE_STATE.values():
        plain = make()
        assert plain.states is None and plain.get_config()["stateful"] is False
        plain.reset_states()  # a no-op, as Keras's
        layer = make(stateful=True)
        back = type(layer).from_config(layer.get_config())
        assert back.stateful and back.get_config() == {**layer.get_config()}
    x = gm.Input(batch_shape=(B, T, F))
    bidi = gm.Bidirectional(gm.GRU(H, stateful=True, return_sequences=True), name="bi")
    model = gm.Model(x, bidi(gm.Masking(0.0)(x)))
    assert bidi.stateful and len(bidi.states) == 2 and not np.any(bidi.states)
    model.predict(_padded(0), verbose=0)
    fwd, bwd = bidi.states
    np.testing.assert_array_equal(fwd, bidi.forward_layer.states[0])
    np.testing.assert_array_equal(bwd, bidi.backward_layer.states[0])
    assert np.any(fwd) and np.any(bwd) and not np.any(fwd[2]) and not np.any(bwd[2])
    first = model.predict(_x(1), verbose=0)
    bidi.reset_states()
    assert not np.any(bidi.states)
    model.predict(_padded(0), verbose=0)
    np.testing.assert_array_equal(model.predict(_x(1), verbose=0), first)
    assert gm.Bidirectional(gm.GRU(H), name="b2").states is None


@pytest.mark.parametrize("suffix", ["gmz", "keras"])
def test_saving_keeps_stateful_and_starts_from_zeros(tmp_path, suffix):
    model, layer = _one_state("gru")
    model.predict(_padded(0), verbose=0)
    assert np.any(layer.states[0])
    model.save(tmp_path / f"m.{suffix}")
    back = gm.load_model(tmp_path / f"m.{suffix}")
    loaded = back.get_layer("rnn")
    assert loaded.stateful and not np.any(loaded.states[0])  # the state is not saved
    layer.reset_states()
    np.testing.assert_array_equal(back.predict(_x(1), verbose=0),
                                  model.predict(_x(1), verbose=0))
    np.testing.assert_array_equal(loaded.states[0], layer.states[0])


CONCURRENT = {"lstm": gm.LSTM, "gru": gm.GRU, "simple_rnn": gm.SimpleRNN}


@pytest.mark.parametrize("kind", CONCURRENT)
def test_concurrent_predicts_on_one_stateful_layer_are_serialised(kind):
    """Every call starts from the state the previous one left: with the same batch in
    every thread, the calls give the outputs of as many calls in a row (each once, in
    some order), and the state after them is that of the last one."""
    x_in = gm.Input(batch_shape=(256, 8, 16))
    layer = CONCURRENT[kind](32, stateful=True, name="rnn")
    model = gm.Model(x_in, layer(x_in))
    x = np.random.default_rng(0).standard_normal((256, 8, 16)).astype(np.float32)
    n = 6
    expected = [model.predict_on_batch(x) for _ in range(n)]
    assert all(not np.array_equal(a, b) for a, b in zip(expected, expected[1:]))
    final = layer.states
    layer.reset_states()
    got, errors = [None] * n, []
    barrier = threading.Barrier(n)

    def work(i):
        try:
            barrier.wait()
            got[i] = model.predict_on_batch(x)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    which = sorted(next((j for j, e in enumerate(expected) if np.array_equal(y, e)), -1)
                   for y in got)
    assert which == list(range(n))
    for a, b in zip(layer.states, final):
        np.testing.assert_array_equal(a, b)


# ---- RNN(cell, stateful=True) on the built-in cells ------------------------------------------
CELLS = {"lstm": (gm.LSTMCell, gm.LSTM), "gru": (gm.GRUCell, gm.GRU),
         "simple_rnn": (gm.SimpleRNNCell, gm.SimpleRNN)}


def _masked_model(layer):
    x = gm.Input(batch_shape=(B, T, F))
    return gm.Model(x, layer(gm.Masking(0.0)(x)))


@pytest.mark.parametrize("kind", CELLS)
def test_rnn_of_a_builtin_cell_is_stateful_as_its_layer(kind):
    cell_cls, layer_cls = CELLS[kind]
    rnn = gm.RNN(cell_cls(H), stateful=True, return_sequences=True, name="rnn")
    layer = layer_cls(H, stateful=True, return_sequences=True, name="layer")
    a, b = _masked_model(rnn), _masked_model(layer)
    b.set_weights(a.get_weights())
    assert rnn.get_config()["stateful"] is True
    assert gm.RNN.from_config(rnn.get_config()).stateful
    for seed in range(3):
        np.testing.assert_array_equal(a.predict(_padded(seed), verbose=0),
                                      b.predict(_padded(seed), verbose=0))
        assert len(rnn.states) == (2 if kind == "lstm" else 1)
        for s, t in zip(rnn.states, layer.states):
            np.testing.assert_array_equal(s, t)
    rnn.reset_states()
    assert not np.any(rnn.states)
    layer.reset_states()
    np.testing.assert_array_equal(a.predict(_x(1), verbose=0), b.predict(_x(1), verbose=0))


def test_stateful_stack_of_builtin_cells():
    stacked = gm.RNN([gm.LSTMCell(H), gm.GRUCell(2)], stateful=True, return_sequences=True,
                     name="stack")
    assert stacked.states is None  # not built yet
    a = _masked_model(stacked)
    x = gm.Input(batch_shape=(B, T, F))
    lstm = gm.LSTM(H, stateful=True, return_sequences=True)
    gru = gm.GRU(2, stateful=True, return_sequences=True)
    b = gm.Model(x, gru(lstm(gm.Masking(0.0)(x))))
    b.set_weights(a.get_weights())
    for seed in range(2):
        np.testing.assert_array_equal(a.predict(_padded(seed), verbose=0),
                                      b.predict(_padded(seed), verbose=0))
    (h1, c1), (h2,) = stacked.states  # Keras's nesting: one list per cell
    np.testing.assert_array_equal(h1, lstm.states[0])
    np.testing.assert_array_equal(c1, lstm.states[1])
    np.testing.assert_array_equal(h2, gru.states[0])
    stacked.reset_states()  # every cell's (Keras 3.15 fails here: a list has no assign)
    assert not any(np.any(s) for cell in stacked.states for s in cell)
    with pytest.raises(ShapeError, match=r"RNN 'free': stateful=True needs a fixed batch "
                                         r"size, got input shape \(None, 4, 2\)"):
        gm.RNN([gm.LSTMCell(H), gm.GRUCell(2)], stateful=True, name="free")(
            gm.Input((T, F)))


def test_stateful_rnn_errors_and_bidirectional():
    with pytest.raises(ShapeError, match=r"RNN 'r': stateful=True needs a fixed batch size"):
        gm.RNN(gm.GRUCell(H), stateful=True, name="r")(gm.Input((T, F)))
    rnn = gm.RNN(gm.SimpleRNNCell(H), stateful=True, name="r")
    _masked_model(rnn)
    with pytest.raises(ShapeError, match=r"RNN 'r': a stateful layer needs the same batch "
                                         r"size at every call: its state holds 3 samples, "
                                         r"the batch has 2"):
        rnn(_x(0)[:2])
    bidi = gm.Bidirectional(gm.RNN(gm.GRUCell(H), stateful=True, return_sequences=True),
                            name="bi")
    model = _masked_model(bidi)
    model.predict(_padded(0), verbose=0)
    assert len(bidi.states) == 2 and all(np.any(s) for s in bidi.states)
    bidi.reset_states()
    assert not np.any(bidi.states)


def test_a_stateful_layer_called_twice_in_one_model_runs_its_calls_in_order():
    """Two calls of one stateful layer are never run side by side (the scheduler pairs
    independent recurrent loops): the second starts from the state the first left, on
    every run."""
    a, b = gm.Input(batch_shape=(B, T, F)), gm.Input(batch_shape=(B, T, F))
    shared = gm.GRU(H, stateful=True, name="shared")
    model = gm.Model([a, b], gm.Concatenate()([shared(a), shared(b)]))
    xa, xb = _x(0), _x(1)
    ya, yb = shared(xa), shared(xb)  # eager: a, then b
    after = shared.states[0]
    for _ in range(10):
        shared.reset_states()
        np.testing.assert_array_equal(model.predict([xa, xb], verbose=0),
                                      np.concatenate([ya, yb], axis=-1))
        np.testing.assert_array_equal(shared.states[0], after)


def test_the_carried_state_goes_with_the_layer():
    import gc

    from graphmask.ops import rnn_state
    layer = gm.GRU(H, stateful=True)
    model = _masked_model(layer)
    model.predict(_x(0), verbose=0)
    key = layer._state_key
    assert rnn_state.get_state(key) is not None
    del layer, model
    gc.collect()
    assert rnn_state.get_state(key) is None
