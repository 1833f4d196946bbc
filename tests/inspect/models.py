"""Small models for the inspection tests and the ``graphmask show`` CLI round trip.

Each function builds a fresh model; layer names are given explicitly where a test
compares exact text, so the expectations do not depend on naming counters.
"""
import graphmask as gm
from graphmask import (
    LSTM,
    Add,
    Dense,
    Embedding,
    GlobalAveragePooling1D,
    Input,
    Masking,
    Model,
    ops,
)


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


class AttnPool(gm.layers.Layer):
    """Attention pooling over time that reads the mask: padded steps get no weight."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 1), name="w")

    def call(self, x, mask=None):
        scores = ops.squeeze(ops.matmul(x, self.w), -1)
        scores = ops.where(mask, scores, -1e9)
        weights = ops.softmax(scores, axis=-1)
        return ops.sum(x * ops.expand_dims(weights, -1), axis=1)


class DropFirstStep(gm.layers.Layer):
    """Slices the first timestep off the values, and off the mask in compute_mask."""

    def call(self, x):
        return x[:, 1:, :]

    def compute_mask(self, inputs, previous_mask):
        return None if previous_mask is None else previous_mask[:, 1:]


class Block(gm.layers.Layer):
    """A gated residual block of nested Dense layers; passes the mask on."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.proj = Dense(units, name=f"{self.name}_proj")
        self.gate = Dense(units, activation="sigmoid", name=f"{self.name}_gate")
        self.supports_masking = True

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(self.units,), initializer="ones", name="scale")

    def call(self, x):
        return x + self.gate(x) * self.proj(x) * self.scale


def custom_layers():
    """Embedding -> DropFirstStep -> Block -> LSTM -> AttnPool -> a model used as a layer
    -> Dense, compiled with mse: one custom layer of each mask rule."""
    xi = Input(shape=(4,), name="head_in")
    head = Model(xi, Dense(3, name="head_dense")(xi), name="head")
    x = Input(shape=(6,), dtype="int32", name="ids")
    e = Embedding(9, 4, mask_zero=True, name="emb")(x)
    d = DropFirstStep(name="drop")(e)
    b = Block(4, name="block")(d)
    r = LSTM(4, return_sequences=True, name="lstm")(b)
    p = AttnPool(name="attn")(r)
    m = Model(x, Dense(1, name="out")(head(p)), name="custom")
    m.compile(loss="mse", optimizer="adam")
    return m


class Encoder(gm.layers.Layer):
    """Ids -> embeddings (mask_zero) -> Dense: the mask comes from a layer inside."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.emb = Embedding(9, 4, mask_zero=True, name=f"{self.name}_emb")
        self.dense = Dense(4, name=f"{self.name}_dense")

    def call(self, ids):
        return self.dense(self.emb(ids))


def custom_masked_loss():
    """Encoder (its Embedding makes the mask) -> Block -> Dense, masked mse loss."""
    x = Input(shape=(5,), dtype="int32", name="ids")
    h = Block(4, name="block")(Encoder(name="encoder")(x))
    m = Model(x, Dense(2, name="out")(h), name="masked")
    m.compile(loss="mse", optimizer="adam")
    return m
