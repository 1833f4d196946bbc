"""``model.layers`` (and so ``get_weights``) in Keras 3's order, without Keras.

Every expected list below is what Keras 3.15 gives for the same model (checked against
Keras in tests/conformance/test_keras_layer_order.py). Keras sorts layers by depth in
its graph of operations, where the ops a layer's ``compute_mask`` records and the masks
handed to LSTM / TimeDistributed / GlobalAveragePooling1D are nodes and edges too.
"""
import pytest

import graphmask as gm
from graphmask import (
    LSTM,
    Add,
    Concatenate,
    Dense,
    Dropout,
    Embedding,
    GlobalAveragePooling1D,
    Input,
    Masking,
    Model,
    TimeDistributed,
)
from graphmask import ops as gops
from graphmask.errors import GraphError
from graphmask.layers import order
from graphmask.layers.order import KERAS_RULES, KerasRule, keras_layer_order

T, V = 4, 6


def names(model):
    return [layer.name for layer in model.layers]


def test_the_issue_example_concatenate_of_a_masked_and_an_unmasked_branch():
    ids, feats = Input((3,), dtype="int32", name="ids"), Input((3, 2), name="feats")
    d1 = Dense(3, name="d1")(Embedding(5, 2, mask_zero=True, name="emb")(ids))
    d2 = Dense(3, name="d2")(feats)
    m = Model([ids, feats], LSTM(1, name="out")(Concatenate(name="cat")([d2, d1])))
    assert names(m) == ["ids", "emb", "feats", "d1", "d2", "cat", "out"]
    # d1 and d2 have same-shaped weights: the order decides which gets which
    assert [w.shape for w in m.get_weights()] == [(5, 2), (2, 3), (3,), (2, 3), (3,),
                                                 (6, 4), (1, 4), (4,)]
    assert [v.name for v in m.weights][1:5] == ["d1/kernel", "d1/bias", "d2/kernel",
                                                "d2/bias"]


def test_masking_on_one_branch_of_a_concatenate():
    a, b = Input((T, 2), name="a"), Input((T, 2), name="b")
    cat = Concatenate(name="cat")([Dense(3, name="da")(a), Masking(name="mb")(b)])
    m = Model([a, b], LSTM(2, name="l")(cat))
    assert names(m) == ["b", "a", "mb", "da", "cat", "l"]


def test_add_of_two_masked_branches_and_a_second_output():
    ids, x = Input((T,), dtype="int32", name="ids"), Input((T, 2), name="x")
    ea = Embedding(V, 2, mask_zero=True, name="ea")(ids)
    s = Add(name="sum")([ea, Masking(name="mb")(x)])
    m = Model([ids, x], [LSTM(3, name="l")(s), Dense(2, name="head")(ea)])
    assert names(m) == ["x", "ids", "ea", "mb", "sum", "l", "head"]


def _stack(x, first, suffix):
    h = LSTM(3, return_sequences=True, name=f"l1{suffix}")(first(x))
    h = LSTM(3, return_sequences=True, name=f"l2{suffix}")(Dropout(0.3, name=f"dr{suffix}")(h))
    h = TimeDistributed(Dense(2), name=f"td{suffix}")(h)
    return GlobalAveragePooling1D(name=f"pool{suffix}")(h)


def test_stacked_lstms_dropout_time_distributed_pooling():
    ids, x = Input((T,), dtype="int32", name="ids"), Input((T, 2), name="x")
    pe = _stack(ids, Embedding(V, 3, mask_zero=True, name="e"), "")
    px = _stack(x, Masking(name="mk"), "x")
    m = Model([ids, x], Dense(2, name="out")(Concatenate(name="cat")([pe, px])))
    assert names(m) == ["x", "ids", "e", "mk", "l1", "l1x", "dr", "drx", "l2", "l2x", "td",
                        "tdx", "pool", "poolx", "cat", "out"]


def _masked_lstm_next_to_an_embedding_branch(x_dtype="float32", lstm_dtype=None,
                                             keyword=False):
    x, y = Input((T, 2), dtype=x_dtype, name="x"), Input((T,), dtype="int32", name="y")
    lx_layer = LSTM(2, name="lx", dtype=lstm_dtype)
    mk = Masking(name="mk")(x)
    lx = lx_layer(mk, training=False) if keyword else lx_layer(mk)
    e = Embedding(V, 2, mask_zero=True, name="e")(y)
    ly = LSTM(2, name="ly")(Dense(2, name="d1")(e))
    return Model([x, y], [lx, ly])


def test_masking_reads_a_float64_input_after_keras_casts_it():
    assert names(_masked_lstm_next_to_an_embedding_branch()) == [
        "x", "y", "e", "mk", "d1", "lx", "ly"]
    x, y = Input((T, 2), dtype="float64", name="x"), Input((T,), dtype="int32", name="y")
    lx = LSTM(2, name="lx")(Masking(name="mk")(x))
    ly = LSTM(2, name="ly")(Dense(2, name="d2")(Dense(2, name="d1")(
        Embedding(V, 2, mask_zero=True, name="e")(y))))
    assert names(Model([x, y], [lx, ly])) == ["x", "y", "e", "d1", "mk", "d2", "lx", "ly"]


def test_no_mask_edge_when_keras_converts_the_lstm_input():
    # another dtype than the layer's, or a keyword argument: Keras does not record the
    # mask it hands to the LSTM on the layer's node
    want = ["y", "x", "e", "mk", "d1", "lx", "ly"]
    assert names(_masked_lstm_next_to_an_embedding_branch(lstm_dtype="float64")) == want
    assert names(_masked_lstm_next_to_an_embedding_branch(keyword=True)) == want


def test_an_input_the_outputs_do_not_use_comes_first_at_depth_zero():
    x, u = Input((T, 2), name="x"), Input((3,), name="u")
    out = Dense(2, name="out")(Dense(2, name="h")(x))
    assert [layer.name for layer in keras_layer_order([x, u], [out])] == ["x", "h", "u", "out"]


def test_functional_ops_are_operations_not_layers():
    x, y = Input((T, 2), name="x"), Input((T,), dtype="int32", name="y")
    h = gops.tanh(gops.add(Dense(2, name="d")(x), x))
    de = Dense(2, name="de")(Embedding(V, 2, mask_zero=True, name="e")(y))
    m = Model([x, y], LSTM(2, name="l")(Add(name="sum")([h, de])))
    assert names(m) == ["x", "d", "y", "e", "de", "sum", "l"]


def test_an_explicit_mask_is_an_input_of_the_layer_node():
    ids, x = Input((T,), dtype="int32", name="ids"), Input((T, 2), name="x")
    e = Embedding(V, 2, mask_zero=True, name="e")(ids)
    keep = gops.logical_not(gops.logical_not(gops.not_equal(ids, 1)))
    lx = LSTM(2, name="lx")(Dense(2, name="d")(Dense(2, name="d0")(x)), mask=keep)
    le = LSTM(2, name="le")(Dense(2, name="de")(e), mask=e._keras_mask)
    assert names(Model([ids, x], [lx, le])) == ["ids", "x", "d0", "e", "d", "de", "lx", "le"]


class MaskedMean(gm.layers.Layer):
    def call(self, x, mask=None):
        m = gops.expand_dims(gops.cast(mask, x.dtype), -1)
        return gops.sum(x * m, axis=1) / gops.maximum(gops.sum(m, axis=1), 1.0)


class DropFirstStep(gm.layers.Layer):
    def call(self, x):
        return x[:, 1:, :]

    def compute_mask(self, inputs, previous_mask):
        return None if previous_mask is None else previous_mask[:, 1:]


def test_custom_layers_are_one_node_and_their_compute_mask_ops_count():
    ids, f = Input((T,), dtype="int32", name="ids"), Input((T, 3), name="f")
    d = DropFirstStep(name="drop")(Embedding(V, 3, mask_zero=True, name="e")(ids))
    seq = LSTM(3, return_sequences=True, name="l")(Dense(3, name="blk")(d))
    side = Dense(3, name="side")(Dense(3, name="pre")(f))
    m = Model([ids, f], [MaskedMean(name="mean")(seq), LSTM(3, name="l2")(seq, training=False),
                         MaskedMean(name="side_mean")(Masking(name="mk")(side))])
    assert names(m) == ["ids", "f", "e", "pre", "drop", "side", "blk", "l", "mk", "mean", "l2",
                        "side_mean"]


def test_a_layer_type_without_a_rule_is_an_error_naming_the_layer(monkeypatch):
    monkeypatch.delitem(KERAS_RULES, "masking")
    x = Input((T, 2), name="x")
    with pytest.raises(GraphError, match=r"layer 'mk' \(Masking, op 'masking'\).*KERAS_RULES"):
        Model(x, LSTM(2, name="l")(Masking(name="mk")(x)))


def test_a_new_rule_is_one_entry(monkeypatch):
    # were Dense's call to take the mask (as LSTM's), Masking's two mask ops would stand
    # between the input and the Dense: one entry in the table changes the order
    def build():
        x, y = Input((T, 2), name="x"), Input((T, 2), name="y")
        dx = Dense(2, name="dx")(Masking(name="mk")(x))
        return Model([x, y], [Dense(2, name="b")(Dense(2, name="a")(y)), dx])

    assert names(build()) == ["y", "x", "a", "mk", "b", "dx"]
    monkeypatch.setitem(KERAS_RULES, "dense", KerasRule(mask_arg=True))
    assert names(build()) == ["x", "y", "a", "mk", "b", "dx"]


def test_a_mask_keras_does_not_have_is_an_error(monkeypatch):
    # if Keras's Embedding made no mask, graphmask's mask of it would have no counterpart
    monkeypatch.setitem(KERAS_RULES, "embedding", KerasRule(compute_mask=None))
    ids = Input((T,), dtype="int32", name="ids")
    e = Embedding(V, 2, mask_zero=True, name="e")(ids)
    with pytest.raises(GraphError, match=r"layer 'e' \(Embedding, op 'mask_not_equal'\)"):
        Model(ids, LSTM(2, name="l")(e, mask=e._keras_mask))


def test_rules_cover_every_layer_op():
    assert set(order.KERAS_RULES) >= {
        "input", "embedding", "dense", "activation", "dropout", "masking", "flatten",
        "global_max_pooling_1d", "global_average_pooling_1d", "lstm", "add", "concatenate"}
    assert set(order.WRAPPER_RULES) == {"TimeDistributed"}


def test_a_mask_standing_for_two_keras_masks_is_an_error_when_used_as_a_tensor():
    # graphmask keeps e's mask for a Concatenate of two branches carrying it; Keras makes a
    # new one (any of the concatenated masks), so cat's mask has two counterparts
    ids = Input((T,), dtype="int32", name="ids")
    e = Embedding(V, 2, mask_zero=True, name="e")(ids)
    cat = Concatenate(name="cat")([Dense(2, name="a")(e), Dense(2, name="b")(e)])
    assert cat._keras_mask is e._keras_mask
    assert names(Model(ids, LSTM(2, name="l")(cat))) == ["ids", "e", "a", "b", "cat", "l"]
    with pytest.raises(GraphError, match=r"layer 'l2' \(LSTM.*mask made by layer 'e'"):
        Model(ids, LSTM(2, name="l2")(cat, mask=cat._keras_mask))


class EmbedWithItsOwnMask(gm.layers.Layer):
    """Returns a nested Embedding's output, which already carries a mask."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.emb = Embedding(V, 2, mask_zero=True, name=f"{self.name}_emb")

    def call(self, x):
        return self.emb(x)

    def compute_mask(self, inputs, previous_mask):
        return gops.greater_equal(inputs, 2)


def test_a_compute_mask_graphmask_did_not_trace_is_an_error():
    ids = Input((T,), dtype="int32", name="ids")
    with pytest.raises(GraphError, match=r"custom layer 'half'.*already carried a mask"):
        Model(ids, LSTM(2, name="l")(EmbedWithItsOwnMask(name="half")(ids)))


def test_a_compute_mask_traced_with_another_mask_than_keras_passes_is_an_error():
    # Keras gives Concatenate(masked, unmasked) an all-true mask, graphmask none
    ids, x = Input((T,), dtype="int32", name="ids"), Input((T, 2), name="x")
    e = Embedding(V, 2, mask_zero=True, name="e")(ids)
    cat = Concatenate(name="cat")([e, Dense(2, name="d")(x)])
    with pytest.raises(GraphError, match=r"custom layer 'drop'.*traced with other masks"):
        Model([ids, x], LSTM(2, name="l")(DropFirstStep(name="drop")(cat)))


def test_a_model_called_as_a_layer_is_one_node_taking_the_mask():
    inner_in = Input((T, 2), name="inner_in")
    inner = Model(inner_in, Dense(2, name="inner_d")(LSTM(3, name="inner_l")(inner_in)),
                  name="inner")
    x, y = Input((T, 2), name="x"), Input((T, 2), name="y")
    top = Dense(2, name="top")(inner(Masking(name="mk")(x)))
    other = Dense(2, name="b")(Dense(2, name="a2")(Dense(2, name="a")(y)))
    assert names(Model([x, y], [other, top])) == ["x", "y", "a", "mk", "a2", "inner", "b",
                                                  "top"]
