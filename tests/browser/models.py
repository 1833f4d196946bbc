"""Models the explorer is checked on (besides ``tests/inspect/models.py``'s): two inputs
and two outputs, and a long chain of layers for the page-size measurement."""
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
)


def two_heads():
    """Token ids (Embedding mask_zero) + features (Masking) -> Add -> LSTM -> a tagger per
    step (sequence output) and a classifier on the masked average; two mse losses."""
    gm.set_random_seed(3)
    a = Input(shape=(5,), dtype="int32", name="tokens")
    b = Input(shape=(5, 3), name="feats")
    ea = Embedding(10, 4, mask_zero=True, name="tok_emb")(a)
    fb = Dense(4, name="feat_proj")(Masking(0.0, name="feat_mask")(b))
    seq = LSTM(6, return_sequences=True, name="enc")(Add(name="add")([ea, fb]))
    tag = Dense(3, name="tagger")(seq)
    cls = Dense(2, name="classifier")(GlobalAveragePooling1D(name="pool")(seq))
    m = Model([a, b], [tag, cls], name="two_heads")
    m.compile(loss=["mse", "mse"], optimizer="adam")
    return m


def chain(n: int = 500):
    """``Embedding(mask_zero)`` then ``n - 2`` Dense layers then ``Dense(1)``: ``n``
    layers after the input, compiled with mse (so with a backward graph)."""
    x = Input(shape=(8,), dtype="int32", name="ids")
    h = Embedding(20, 4, mask_zero=True, name="emb")(x)
    for i in range(n - 2):
        h = Dense(4, name=f"d{i}")(h)
    m = Model(x, Dense(1, name="out")(h), name=f"chain{n}")
    m.compile(loss="mse", optimizer="sgd")
    return m


def nested():
    """A model used as a layer whose own layer is a custom layer (a call inside a call),
    then attention pooling; one layer's name holds HTML-like text."""
    from tests.inspect.models import AttnPool, Block

    gm.set_random_seed(5)
    xi = Input(shape=(5, 4), name="inner_in")
    inner = Model(xi, Block(4, name="blk")(xi), name="inner")
    x = Input(shape=(5,), dtype="int32", name="ids")
    h = inner(Embedding(9, 4, mask_zero=True, name="emb")(x))
    return Model(x, Dense(1, name="out<!--<script>")(AttnPool(name="attn")(h)),
                 name="nested")
