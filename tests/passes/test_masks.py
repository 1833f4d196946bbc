"""Mask annotations on every edge, mask nodes, and compile-time mask errors."""
import pytest

from graphmask import (
    LSTM,
    Add,
    Dense,
    Embedding,
    Flatten,
    GlobalAveragePooling1D,
    Input,
    Masking,
    Model,
)
from graphmask.errors import MaskError


def _edges(model):
    """{(src layer/op, dst layer/op, port): mask producer's (layer, op) or None}."""
    g = model.graph
    out = {}
    for u, v, k, d in g.nx.edges(keys=True, data=True):
        src = (g.node(u)["layer"], g.node(u)["op"])
        dst = (g.node(v)["layer"], g.node(v)["op"])
        m = d["mask"]
        out[(src, dst, k)] = None if m is None else (g.node(m)["layer"], g.node(m)["op"])
    return out


def test_embedding_lstm_dense_annotations():
    x = Input(shape=(4,), dtype="int32")
    e = Embedding(5, 5, mask_zero=True)(x)
    r = LSTM(3, return_sequences=True)(e)
    d = Dense(2)(r)
    m = Model(x, d)
    mask = ("embedding", "mask_not_equal")
    assert _edges(m) == {
        (("input_layer", "input"), ("embedding", "embedding"), "ids"): None,
        (("input_layer", "input"), mask, "x"): None,
        (("embedding", "variable"), ("embedding", "embedding"), "embeddings"): None,
        (("embedding", "embedding"), ("lstm", "lstm"), "x"): mask,
        (mask, ("lstm", "lstm"), "mask"): mask,
        (("lstm", "variable"), ("lstm", "lstm"), "kernel"): None,
        (("lstm", "variable"), ("lstm", "lstm"), "recurrent_kernel"): None,
        (("lstm", "variable"), ("lstm", "lstm"), "bias"): None,
        (("lstm", "lstm"), ("dense", "dense"), "x"): mask,
        (("dense", "variable"), ("dense", "dense"), "kernel"): None,
        (("dense", "variable"), ("dense", "dense"), "bias"): None,
    }
    g = m.graph
    dense = g.nodes_by_op("dense")[0]
    mask_node = g.nodes_by_op("mask_not_equal")[0]
    assert g.node(dense)["masks"] == [mask_node]
    edge_kinds = {d["kind"] for _, v, k, d in g.nx.in_edges(g.nodes_by_op("lstm")[0],
                                                            keys=True, data=True) if k == "mask"}
    assert edge_kinds == {"mask"}


def test_lstm_without_sequences_drops_mask():
    x = Input(shape=(6,), dtype="int32")
    h = LSTM(4)(Embedding(9, 3, mask_zero=True)(x))
    d = Dense(1)(h)
    g = Model(x, d).graph
    assert g.node(g.nodes_by_op("lstm")[0])["masks"] == [None]
    assert g.node(g.nodes_by_op("dense")[0])["masks"] == [None]


def test_no_mask_without_mask_zero():
    x = Input(shape=(6,), dtype="int32")
    r = LSTM(4, return_sequences=True)(Embedding(9, 3)(x))
    g = Model(x, r).graph
    assert g.nodes_by_op("mask_not_equal") == []
    assert all(d["mask"] is None for *_, d in g.nx.edges(keys=True, data=True))
    assert "mask" not in g.in_ports(g.nodes_by_op("lstm")[0])


def test_masking_creates_and_uses_mask():
    x = Input(shape=(5, 2))
    mk = Masking(mask_value=-1.0)(x)
    r = LSTM(3, return_sequences=True)(mk)
    g = Model(x, r).graph
    (mnode,) = g.nodes_by_op("mask_any_not_equal")
    assert g.node(mnode)["attrs"] == {"value": -1.0}
    masking = g.nodes_by_op("masking")[0]
    lstm = g.nodes_by_op("lstm")[0]
    assert g.in_ports(masking)["mask"] == (mnode, 0)
    assert g.in_ports(lstm)["mask"] == (mnode, 0)
    assert g.node(masking)["masks"] == [mnode]


def test_mask_into_flatten_is_a_compile_error_naming_both_layers():
    x = Input(shape=(4,), dtype="int32")
    f = Flatten(name="flat")(Embedding(5, 2, mask_zero=True, name="emb")(x))
    with pytest.raises(MaskError) as e:
        _ = Model(x, f).graph
    msg = str(e.value)
    assert "'emb'" in msg and "'flat'" in msg and "cannot take a mask" in msg


def test_pooling_consumes_mask():
    x = Input(shape=(4,), dtype="int32")
    p = GlobalAveragePooling1D()(Embedding(5, 2, mask_zero=True)(x))
    g = Model(x, Dense(1)(p)).graph
    pool = g.nodes_by_op("global_average_pooling_1d")[0]
    assert "mask" in g.in_ports(pool)
    assert g.node(pool)["masks"] == [None]


def test_merge_masks_or_and_unmasked_input_gives_none():
    a = Input(shape=(4,), dtype="int32")
    b = Input(shape=(4,), dtype="int32")
    ea = Embedding(5, 2, mask_zero=True)(a)
    eb = Embedding(5, 2, mask_zero=True)(b)
    g = Model([a, b], Add()([ea, eb])).graph
    (orn,) = g.nodes_by_op("mask_or")
    assert g.node(g.nodes_by_op("add")[0])["masks"] == [orn]
    c = Input(shape=(4,), dtype="int32")
    ec = Embedding(5, 2)(c)
    g2 = Model([a, c], Add()([ea, ec])).graph
    assert g2.node(g2.nodes_by_op("add")[0])["masks"] == [None]
    assert g2.nodes_by_op("mask_or") == []
