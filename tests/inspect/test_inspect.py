"""graphmask.inspect: mask edge records, explain_mask chains, concrete masks, debugprint."""
import numpy as np
import pytest

from graphmask import LSTM, Dense, Embedding, Input, Model
from graphmask.errors import ConfigError
from graphmask.inspect.explain import (
    concrete_masks,
    debugprint,
    explain_mask,
    mask_edges,
    mask_status,
)
from tests.inspect import models


def _short(records):
    return [(r.src_layer, r.src_op, r.dst_layer, r.dst_op, r.dst_port, r.kind, r.phase,
             r.mask_layer, r.mask_computes) for r in records]


def test_mask_edges_of_the_seed_model():
    m = models.seed_model()
    assert _short(mask_edges(m)) == [
        ("embedding", "embedding", "dense", "dense", "x", "data", "forward",
         "embedding", "ids != 0"),
        ("dense", "dense", "dense:loss", "loss_score", "y_pred", "data", "forward",
         "embedding", "ids != 0"),
        ("embedding", "mask_not_equal", "dense:loss", "masked_mean", "mask", "mask", "forward",
         "embedding", "ids != 0"),
        ("embedding", "mask_not_equal", "dense:loss", "vjp", "in:mask", "mask", "backward",
         "embedding", "ids != 0"),
    ]
    assert len(mask_edges(m, backward=False)) == 3
    rec = mask_edges(m)[0].as_dict()
    g = m.graph
    assert g.node(rec["mask"])["op"] == "mask_not_equal"
    assert g.node(rec["mask"])["mask_of"] == rec["src"]
    everything = mask_edges(m, include_unmasked=True)
    assert len(everything) == g.nx.number_of_edges()


def test_mask_edges_without_a_mask_is_empty():
    x = Input(shape=(4,), dtype="int32")
    m = Model(x, Dense(2)(Embedding(5, 3)(x)))
    assert mask_edges(m) == []
    assert explain_mask(m, "dense") == "no mask reaches layer 'dense' and it creates none"


def test_explain_mask_seed_chain():
    m = models.seed_model()
    chain = ("created by 'embedding' as ids != 0 -> passed by 'dense' -> "
             "used by the masked mse loss")
    assert explain_mask(m, "embedding") == chain
    assert explain_mask(m, "dense") == chain
    assert explain_mask(m, m.get_layer("dense")) == chain
    assert explain_mask(m, "input_layer") == ("no mask reaches layer 'input_layer' and it "
                                              "creates none")


def test_explain_mask_through_dense_and_lstm_to_the_loss():
    x = Input(shape=(5,), dtype="int32", name="ids")
    e = Embedding(7, 4, mask_zero=True, name="embedding")(x)
    d = Dense(4, name="dense")(e)
    r = LSTM(3, return_sequences=True, name="lstm")(d)
    m = Model(x, r)
    m.compile(loss="mse", metrics=["mae"])
    assert explain_mask(m, "lstm").splitlines() == [
        ("created by 'embedding' as ids != 0 -> passed by 'dense' -> used and passed by 'lstm' "
        "-> used by the masked 'mae' metric of 'lstm'"),
        ("created by 'embedding' as ids != 0 -> passed by 'dense' -> used and passed by 'lstm' "
        "-> used by the masked mse loss"),
    ]


def test_explain_mask_consumed_dropped_merged():
    assert explain_mask(models.lstm_last(), "lstm") == \
        "created by 'embedding' as ids != 0 -> consumed by 'lstm'"
    assert explain_mask(models.lstm_last(), "dense") == \
        "no mask reaches layer 'dense' and it creates none"
    assert explain_mask(models.pooling(), "pool") == \
        "created by 'embedding' as ids != 0 -> consumed by 'pool'"
    assert explain_mask(models.masking_lstm_dense(), "dense") == (
        "created by 'masking' as any(x != -1.0) -> used and passed by 'lstm' -> "
        "passed by 'dense'")
    assert explain_mask(models.add_two(), "lstm").splitlines() == [
        ("created by 'emb_a' as ids != 0 -> merged by 'add' (OR with the mask of 'emb_b') -> "
        "consumed by 'lstm'"),
        ("created by 'emb_b' as ids != 0 -> merged by 'add' (OR with the mask of 'emb_a') -> "
        "consumed by 'lstm'"),
    ]
    assert explain_mask(models.add_two(), "emb_b") == (
        "created by 'emb_b' as ids != 0 -> merged by 'add' (OR with the mask of 'emb_a') -> "
        "consumed by 'lstm'")


def test_explain_mask_unknown_layer():
    with pytest.raises(ConfigError, match="no layer named 'nope'"):
        explain_mask(models.seed_model(), "nope")


def test_mask_status():
    m = models.add_two()
    (add,) = mask_status(m, "add")
    assert add.status == "merged" and len(add.received) == 2
    assert m.graph.node(add.out)["op"] == "mask_or"
    (lstm,) = mask_status(m, "lstm")
    assert (lstm.status, lstm.used, lstm.out) == ("consumed", add.out, None)


def test_concrete_masks_equal_ids_not_zero():
    m = models.seed_model()
    ids = np.array([[1, 2, 0, 0], [0, 3, 0, 4], [0, 0, 0, 0]])
    got = concrete_masks(m, ids)
    assert list(got) == ["embedding"]
    assert got["embedding"].dtype == bool
    np.testing.assert_array_equal(got["embedding"], ids != 0)


def test_concrete_masks_of_masking_and_merge():
    feats = np.zeros((2, 6, 2), np.float32) - 1.0
    feats[0, :3] = 0.5
    feats[1, 4, 1] = 2.0
    got = concrete_masks(models.masking_lstm_dense(), feats)
    np.testing.assert_array_equal(got["masking"], np.any(feats != -1.0, axis=-1))
    a = np.array([[1, 0, 0, 0], [0, 0, 2, 0]])
    b = np.array([[0, 3, 0, 0], [0, 0, 0, 0]])
    got = concrete_masks(models.add_two(), [a, b])
    assert sorted(got) == ["add", "emb_a", "emb_b"]
    np.testing.assert_array_equal(got["add"], (a != 0) | (b != 0))
    np.testing.assert_array_equal(got["emb_b"], b != 0)


def test_debugprint_marks_mask_edges_with_stable_ids():
    m = models.seed_model()
    g = m.graph
    (mid,) = g.nodes_by_op("mask_not_equal")
    (mm,) = g.nodes_by_op("masked_mean")
    text = debugprint(m)
    assert text == debugprint(models.seed_model())  # same model, same ids, same text
    lines = text.splitlines()
    assert lines[0] == "# output"
    assert lines[1] == f"[5] dense 'dense'  (None, 4, 3) float32  carries mask [{mid}]"
    assert f"├─ x {{mask [{mid}]}}: [2] embedding 'embedding'  (None, 4, 5) float32  " \
           f"carries mask [{mid}]" in lines
    assert f"├─ mask ~mask~> [{mid}] mask_not_equal 'embedding'  (None, 4) bool  MASK " \
           f"(ids != 0) made for [2]" in lines
    assert f"[{mm}] masked_mean 'dense:loss'  () float32" in lines
    assert sum("~mask~>" in ln for ln in lines) == 2  # the loss and its VJP
    assert "# gradient of 'dense/kernel'" in lines
    forward_only = debugprint(m, backward=False)
    assert "vjp" not in forward_only and sum("~mask~>" in ln for ln in
                                             forward_only.splitlines()) == 1
