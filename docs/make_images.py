"""Regenerate the pictures and the summary shown in docs/inspecting.md.

Run from the repository root: ``python docs/make_images.py``. Writes
docs/img/seed_flow.svg, docs/img/seed_flow.png, docs/img/seed_flow_backward.png,
docs/img/seed_masks.png, docs/img/transformer_flow.png and docs/img/tagger_flow.png
(docs/examples.md), and prints the seed model's summary and mask chain.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import graphmask  # noqa: E402 (after the sys.path line)
from graphmask import Dense, Embedding, Input, Model  # noqa: E402
from graphmask.inspect import concrete_masks, explain_mask  # noqa: E402
from graphmask.viz import draw_masks, render  # noqa: E402


def seed_model():
    """The seed check: Embedding(5, 5, mask_zero=True) -> Dense(3), compiled with mse."""
    graphmask.clear_session()
    graphmask.set_random_seed(0)
    x = Input(shape=(4,))
    e = Embedding(5, 5, mask_zero=True)(x)
    d = Dense(3)(e)
    m = Model(inputs=x, outputs=d)
    m.compile(loss="mse", optimizer="adam")
    return m


def transformer_model():
    """The classifier of docs/examples.md, untrained, without its positions and dropout."""
    from graphmask import Add, GlobalAveragePooling1D, LayerNormalization, MultiHeadAttention
    graphmask.clear_session()
    ids = Input(shape=(24,), dtype="int32", name="ids")
    x = Embedding(40, 32, mask_zero=True, name="tokens")(ids)
    a = MultiHeadAttention(2, 16, name="attention")(x, x)
    x = LayerNormalization(name="norm_1")(Add(name="residual_1")([x, a]))
    f = Dense(32, name="ffn_out")(Dense(64, activation="relu", name="ffn_in")(x))
    x = LayerNormalization(name="norm_2")(Add(name="residual_2")([x, f]))
    return Model(ids, Dense(1, name="label")(GlobalAveragePooling1D(name="pool")(x)))


def tagger_model():
    """The bidirectional GRU tagger of docs/examples.md, compiled as there, untrained."""
    from graphmask import GRU, Bidirectional
    graphmask.clear_session()
    ids = Input(shape=(10,), dtype="int32", name="ids")
    x = Embedding(6, 16, mask_zero=True, name="tokens")(ids)
    x = Bidirectional(GRU(32, return_sequences=True, name="gru"), name="bigru")(x)
    m = Model(ids, Dense(4, activation="softmax", name="tags")(x))
    m.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return m


def main():
    img = os.path.join(HERE, "img")
    os.makedirs(img, exist_ok=True)
    m = seed_model()
    render(m, os.path.join(img, "seed_flow.svg"))
    render(m, os.path.join(img, "seed_flow.png"), dpi=110)
    render(m, os.path.join(img, "seed_flow_backward.png"), backward=True, dpi=80)
    batch = np.array([[1, 2, 0, 0], [3, 0, 4, 0], [2, 2, 2, 1]])
    draw_masks(m, batch, os.path.join(img, "seed_masks.png"), dpi=100)
    render(transformer_model(), os.path.join(img, "transformer_flow.png"), dpi=80)
    render(tagger_model(), os.path.join(img, "tagger_flow.png"), dpi=80)
    m.summary()
    print(explain_mask(m, "dense"))
    print(concrete_masks(m, batch))


if __name__ == "__main__":
    main()
