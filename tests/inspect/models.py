"""Small models for the inspection tests and the ``graphmask show`` CLI round trip.

Each function builds a fresh model; layer names are given explicitly where a test
compares exact text, so the expectations do not depend on naming counters.
"""
from graphmask import LSTM, Add, Dense, Embedding, GlobalAveragePooling1D, Input, Masking, Model


def seed_model():
    """The seed check: Embedding(5, 5, mask_zero=True) -> Dense(3), masked mse."""
    x = Input(shape=(4,), name="input_layer")
    e = Embedding(5, 5, mask_zero=True, name="embedding")(x)
    d = Dense(3, name="dense")(e)
    m = Model(inputs=x, outputs=d)
    m.compile(loss="mse", optimizer="adam")
    return m


def masking_lstm_dense():
    x = Input(shape=(6, 2), name="features")
    mk = Masking(mask_value=-1.0, name="masking")(x)
    r = LSTM(4, return_sequences=True, name="lstm")(mk)
    return Model(x, Dense(1, name="dense")(r))


def lstm_last():
    x = Input(shape=(6,), dtype="int32", name="ids")
    e = Embedding(9, 3, mask_zero=True, name="embedding")(x)
    h = LSTM(4, name="lstm")(e)
    return Model(x, Dense(1, name="dense")(h))


def pooling():
    x = Input(shape=(6,), dtype="int32", name="ids")
    e = Embedding(9, 3, mask_zero=True, name="embedding")(x)
    p = GlobalAveragePooling1D(name="pool")(e)
    return Model(x, Dense(1, name="dense")(p))


def add_two():
    a = Input(shape=(4,), dtype="int32", name="a")
    b = Input(shape=(4,), dtype="int32", name="b")
    ea = Embedding(5, 2, mask_zero=True, name="emb_a")(a)
    eb = Embedding(5, 2, mask_zero=True, name="emb_b")(b)
    s = Add(name="add")([ea, eb])
    return Model([a, b], LSTM(3, name="lstm")(s))


def not_a_model():
    return 42
