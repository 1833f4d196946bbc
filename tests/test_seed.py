"""The two examples from the project's brief, with exact expectations."""
import numpy as np

from graphmask import LSTM, Dense, Embedding, Input, Model


def test_lstm_repeats_previous_output_at_masked_steps():
    x = Input(shape=(4,), dtype="int32")
    e = Embedding(5, 5, mask_zero=True)(x)
    rnn = LSTM(3, return_sequences=True)(e)
    m = Model(inputs=x, outputs=rnn)
    out = m.predict(np.array([[1, 0, 2, 0]]))
    assert out.shape == (1, 4, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 1], out[0, 0])
    np.testing.assert_array_equal(out[0, 3], out[0, 2])
    assert not np.array_equal(out[0, 2], out[0, 0])


def test_masked_mse_is_mean_over_kept_steps():
    x = Input(shape=(4,))  # float32 input, as in Keras: ids arrive as whole floats
    e = Embedding(5, 5, mask_zero=True)(x)
    d = Dense(3)(e)
    m2 = Model(inputs=x, outputs=d)
    m2.compile(loss="mse", optimizer="adam")
    ids = np.array([[1, 2, 0, 0]])
    y = np.arange(12).reshape(1, 4, 3)
    got = m2.evaluate(ids, y)
    emb, kernel, bias = m2.get_weights()
    pred = emb[ids[0]] @ kernel + bias
    expected = np.mean((y[0, :2] - pred[:2]) ** 2)
    assert isinstance(got, float)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    unmasked = np.mean((y[0] - pred) ** 2)
    assert abs(got - unmasked) > 1.0  # padding really is excluded
