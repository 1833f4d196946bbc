"""``LSTM(stateful=True)``: the last state of a batch starts the next one (sample i of a
batch continues sample i of the previous batch), masked steps do not advance it,
``reset_states()`` zeroes it, the batch size is fixed; also inside ``Bidirectional``."""
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
