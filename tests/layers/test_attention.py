"""MultiHeadAttention, Attention, AdditiveAttention and EinsumDense: NumPy definitions
under right/left/holes/empty-row masks, Keras's masks and empty-row results, exact
errors, configs and saving, dropout, float64 gradients against finite differences, one
group in summary/explain_mask.

Float32 forward passes are compared with ``rtol=1e-5, atol=1e-6`` (one pass of einsums
and a softmax on values of size ~1; measured error <= 3e-7); float64 ones with
``rtol=1e-10``.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphmask as gm
from graphmask.errors import ConfigError, ShapeError

B, T, S, V, E = 5, 4, 6, 9, 8
# right, left, holes, an empty row, a full row
Q_IDS = np.array([[1, 2, 0, 0], [0, 3, 4, 5], [6, 0, 7, 0], [0, 0, 0, 0], [8, 1, 2, 3]])
V_IDS = np.array([[1, 2, 3, 0, 0, 0], [0, 0, 4, 5, 6, 7], [8, 0, 1, 0, 2, 0],
                  [0, 0, 0, 0, 0, 0], [3, 4, 5, 6, 7, 8]])


def _rand(shape, seed, dtype=np.float32, scale=0.7):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([(rng.standard_normal(w.shape) * 0.7).astype(w.dtype)
                       for w in model.get_weights()])


# ---- the NumPy definition ------------------------------------------------------------------
def _softmax_rows(scores, keep, empty):
    """Softmax over the kept keys; an empty row is 1/S ("uniform") or 0 ("zero")."""
    z = np.where(keep, scores, -np.inf)
    m = z.max(axis=-1, keepdims=True)
    e = np.where(keep, np.exp(z - np.where(np.isfinite(m), m, 0)), 0)
    s = e.sum(axis=-1, keepdims=True)
    p = np.divide(e, s, out=np.zeros_like(e), where=s > 0)
    if empty == "uniform":
        p = np.where(s > 0, p, 1.0 / scores.shape[-1])
    return p


def np_mha(weights, q_in, v_in, k_in, keep, empty, key_dim, use_bias=True):
    if use_bias:
        qk, qb, kk, kb, vk, vb, ok, ob = weights
    else:
        (qk, kk, vk, ok), qb = weights, 0
        kb = vb = ob = 0
    q = np.einsum("btc,cnh->btnh", q_in, qk) + qb
    k = np.einsum("bsc,cnh->bsnh", k_in, kk) + kb
    v = np.einsum("bsc,cnh->bsnh", v_in, vk) + vb
    scores = np.einsum("bsnh,btnh->bnts", k, q) / np.sqrt(key_dim)
    probs = _softmax_rows(scores, keep[:, None], empty)
    out = np.einsum("bnts,bsnh->btnh", probs, v)
    return np.einsum("btnh,nhe->bte", out, ok) + ob, probs


def _cross_model(**layer_kw):
    call_kw = {k: layer_kw.pop(k) for k in ("use_causal_mask", "return_attention_scores")
               if k in layer_kw}
    q, v = gm.Input((T,), dtype="int32", name="q"), gm.Input((S,), dtype="int32", name="v")
    eq = gm.Embedding(V, E, mask_zero=True, name="emb_q")
    ev = gm.Embedding(V, E, mask_zero=True, name="emb_v")
    out = gm.MultiHeadAttention(2, 3, name="mha", **layer_kw)(eq(q), ev(v), **call_kw)
    model = gm.Model([q, v], out)
    _randomize(model, 1)
    tq, tv = eq.get_weights()[0], ev.get_weights()[0]
    return model, tq[Q_IDS], tv[V_IDS]


def _masks(causal=False, window=0):
    keep = (Q_IDS != 0)[:, :, None] & (V_IDS != 0)[:, None, :]
    t, s = np.arange(T)[:, None], np.arange(S)[None, :]
    if causal:
        keep = keep & (t >= s)
    if window:
        keep = keep & (np.abs(t - s) < window)
    return keep


@pytest.mark.parametrize("kw,empty", [
    ({}, "uniform"),                                   # Keras's dot_product_attention path
    ({"return_attention_scores": True}, "zero"),       # Keras's masked-Softmax path
    ({"dropout": 0.4}, "zero"),                        # dropout: the Softmax path too
    ({"use_causal_mask": True}, "uniform"),
    ({"sliding_window": 2, "use_causal_mask": True}, "uniform"),
])
def test_mha_matches_the_numpy_definition(kw, empty):
    model, q_in, v_in = _cross_model(**kw)
    out = model.predict([Q_IDS, V_IDS])
    keep = _masks(kw.get("use_causal_mask", False), kw.get("sliding_window", 0))
    want, probs = np_mha(model.get_layer("mha").get_weights(), q_in, v_in, v_in, keep,
                         empty, 3)
    if kw.get("return_attention_scores"):
        out, scores = out
        np.testing.assert_allclose(scores, probs, rtol=1e-5, atol=1e-6)
        assert scores.shape == (B, 2, T, S)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    assert np.isfinite(out).all()


def test_mha_key_mask_and_attention_mask_combine_with_the_others():
    q = gm.Input((T,), dtype="int32")
    v = gm.Input((S,), dtype="int32")
    k = gm.Input((S,), dtype="int32")
    allowed = gm.Input((T, S), dtype="bool")
    emb = gm.Embedding(V, E, mask_zero=True, name="emb")
    out = gm.MultiHeadAttention(2, 3, name="mha")(emb(q), emb(v), key=emb(k),
                                                   attention_mask=allowed)
    model = gm.Model([q, v, k, allowed], out)
    _randomize(model, 2)
    k_ids = np.roll(V_IDS, 1, axis=1)
    allow = np.random.default_rng(3).random((B, T, S)) < 0.7
    table = emb.get_weights()[0]
    keep = _masks() & (k_ids != 0)[:, None, :] & allow
    want, _ = np_mha(model.get_layer("mha").get_weights(), table[Q_IDS], table[V_IDS],
                     table[k_ids], keep, "uniform", 3)
    np.testing.assert_allclose(model.predict([Q_IDS, V_IDS, k_ids, allow]), want,
                               rtol=1e-5, atol=1e-6)


def test_mha_variants_and_weights_in_keras_order():
    x = gm.Input((T, E))
    layer = gm.MultiHeadAttention(3, 2, value_dim=4, output_shape=5, use_bias=False,
                                  use_gate=True, name="att")
    out = layer(x, x)
    assert out.shape == (None, T, 5) and out.keras_mask is None
    assert [(v.name, v.shape) for v in layer.weights] == [
        ("att/query/kernel", (E, 3, 2)), ("att/key/kernel", (E, 3, 2)),
        ("att/gate/kernel", (E, 3, 4)), ("att/value/kernel", (E, 3, 4)),
        ("att/attention_output/kernel", (3, 4, 5))]
    model = gm.Model(x, out)
    _randomize(model, 4)
    xs = _rand((2, T, E), 5)
    qk, kk, gk, vk, ok = layer.get_weights()
    q = np.einsum("btc,cnh->btnh", xs, qk)
    k = np.einsum("bsc,cnh->bsnh", xs, kk)
    v = np.einsum("bsc,cnh->bsnh", xs, vk)
    p = _softmax_rows(np.einsum("bsnh,btnh->bnts", k, q) / np.sqrt(2),
                      np.ones((2, 1, T, T), bool), "uniform")
    gate = 1 / (1 + np.exp(-np.einsum("btc,cnh->btnh", xs, gk)))
    want = np.einsum("btnh,nhe->bte", np.einsum("bnts,bsnh->btnh", p, v) * gate, ok)
    np.testing.assert_allclose(model.predict(xs), want, rtol=1e-5, atol=1e-6)
    assert layer.count_params() == 2 * (E * 3 * 2) + 2 * (E * 3 * 4) + 3 * 4 * 5


def test_mha_output_carries_the_query_mask_and_the_scores_none():
    q, v = gm.Input((T,), dtype="int32"), gm.Input((S,), dtype="int32")
    hq = gm.Embedding(V, E, mask_zero=True)(q)
    hv = gm.Embedding(V, E, mask_zero=True)(v)
    out, scores = gm.MultiHeadAttention(2, 3)(hq, hv, return_attention_scores=True)
    assert out.keras_mask is hq.keras_mask
    assert scores.keras_mask is None
    # an unmasked query gives an unmasked output, even with a masked value
    plain = gm.MultiHeadAttention(2, 3)(gm.Input((T, E)), hv)
    assert plain.keras_mask is None


def test_two_attention_layers_have_distinct_weight_names_and_save_and_load(tmp_path):
    ids = gm.Input((T,), dtype="int32")
    x = gm.Embedding(V, E, mask_zero=True)(ids)
    h = gm.MultiHeadAttention(2, 3, dropout=0.1, seed=7, name="a1")(x, x)
    h = gm.MultiHeadAttention(2, 3, name="a2")(h, h, use_causal_mask=True)
    h = gm.Attention(use_scale=True, score_mode="concat", name="dot")([h, x])
    h = gm.AdditiveAttention(name="add")([h, x])
    model = gm.Model(ids, gm.GlobalAveragePooling1D()(h))
    names = [v.name for v in model.weights]
    assert len(set(names)) == len(names)
    assert "a1/query/kernel" in names and "a2/query/kernel" in names
    _randomize(model, 6)
    model.save(tmp_path / "m.gmz")
    back = gm.load_model(tmp_path / "m.gmz")
    np.testing.assert_array_equal(back.predict(Q_IDS), model.predict(Q_IDS))
    cfg = back.get_layer("a1").get_config()
    assert (cfg["num_heads"], cfg["key_dim"], cfg["value_dim"], cfg["dropout"],
            cfg["seed"], cfg["attention_axes"]) == (2, 3, 3, 0.1, 7, [1])


# ---- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,message", [
    ({"num_heads": 0, "key_dim": 4}, "num_heads must be a positive int, got 0"),
    ({"num_heads": 2.0, "key_dim": 4}, "num_heads must be a positive int, got 2.0"),
    ({"num_heads": 2, "key_dim": -1}, "key_dim must be a positive int, got -1"),
    ({"num_heads": 2, "key_dim": None}, "key_dim must be a positive int, got None"),
    ({"num_heads": 2, "key_dim": 4, "value_dim": 0},
     "value_dim must be a positive int or None, got 0"),
    ({"num_heads": 2, "key_dim": 4, "dropout": 1.0},
     r"dropout must be a number in \[0, 1\), got 1.0"),
    ({"num_heads": 2, "key_dim": 4, "output_shape": (3, 2)},
     r"output_shape must be a positive int \(the output's last axis\), got \(3, 2\)"),
    ({"num_heads": 2, "key_dim": 4, "attention_axes": (2,)},
     r"attention_axes=\(2,\) is not supported"),
    ({"num_heads": 2, "key_dim": 4, "sliding_window": 0},
     "sliding_window must be a positive int or None, got 0"),
    ({"num_heads": 2, "key_dim": 4, "flash_attention": True},
     "flash_attention=True is not supported"),
    ({"num_heads": 2, "key_dim": 4, "kernel_regularizer": "l2"},
     r"\['kernel_regularizer'\] are not supported by graphmask"),
])
def test_mha_argument_errors_name_the_layer(kw, message):
    with pytest.raises(ConfigError, match=message):
        gm.MultiHeadAttention(name="mha", **kw)


def test_mha_call_errors_name_the_layer():
    x = gm.Input((T, E))
    mha = gm.MultiHeadAttention(2, 3, name="mha")
    with pytest.raises(ShapeError, match=r"MultiHeadAttention 'mha': attention_mask must "
                                         r"have shape \(batch, T, S\) = \(None, 4, 4\) .*"
                                         r"got \(None, 4, 3\)"):
        mha(x, x, attention_mask=gm.Input((T, 3), dtype="bool"))
    with pytest.raises(ShapeError, match=r"MultiHeadAttention 'mha': query must have shape "
                                         r"\(batch, time, features\), got \(None, 8\)"):
        mha(gm.Input((E,)), x)
    with pytest.raises(ShapeError, match=r"MultiHeadAttention 'mha': value and key must have "
                                         r"the same length, got value shape \(None, 4, 8\) "
                                         r"and key shape \(None, 5, 8\)"):
        mha(x, x, key=gm.Input((5, E)))
    mha(x, x)  # builds for 8 features
    with pytest.raises(ShapeError, match=r"MultiHeadAttention 'mha': was built for "
                                         r"query/value/key features 8/8/8, got shapes "
                                         r"\(None, 4, 3\)"):
        mha(gm.Input((T, 3)), x)
    with pytest.raises(ConfigError, match="MultiHeadAttention 'mha': use_causal_mask must be "
                                          "True or False, got 'yes'"):
        mha(x, x, use_causal_mask="yes")
    assert len(mha.weights) == 8  # nothing changed by the refused calls


def test_attention_errors_name_the_layer():
    q, v = gm.Input((T, E)), gm.Input((S, E))
    with pytest.raises(ConfigError, match=r"Attention 'att': score_mode must be one of "
                                          r"\['dot', 'concat'\], got 'sum'"):
        gm.Attention(score_mode="sum", name="att")
    att = gm.Attention(name="att")
    with pytest.raises(ConfigError, match=r"Attention 'att': must be called on a list "
                                          r"\[query, value\] or \[query, value, key\]"):
        att([q])
    with pytest.raises(ShapeError, match=r"Attention 'att': query and key must have the same "
                                         r"features size, got shapes \(None, 4, 8\) and "
                                         r"\(None, 6, 3\)"):
        att([q, v, gm.Input((S, 3))])
    with pytest.raises(ShapeError, match=r"Attention 'att': value and key must have the same "
                                         r"length, got shapes \(None, 6, 8\) and "
                                         r"\(None, 5, 8\)"):
        att([q, v, gm.Input((5, E))])
    with pytest.raises(ConfigError, match=r"AdditiveAttention: unexpected argument\(s\) "
                                          r"\['score_mode'\]"):
        gm.AdditiveAttention(score_mode="dot")


# ---- Attention / AdditiveAttention -----------------------------------------------------------
def _np_luong(q, v, k, qm, vm, scores, causal):
    keep = np.broadcast_to(vm[:, None, :], scores.shape)
    if causal:
        keep = keep & (np.arange(q.shape[1])[:, None] >= np.arange(k.shape[1])[None, :])
    z = np.where(keep, scores, scores - 1e9)
    z = z - z.max(axis=-1, keepdims=True)
    w = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    return np.where(qm[..., None], w @ v, 0), w


@pytest.mark.parametrize("cls,kw", [("Attention", {}), ("Attention", {"use_scale": True}),
                                    ("Attention", {"score_mode": "concat"}),
                                    ("Attention", {"score_mode": "concat", "use_scale": True}),
                                    ("AdditiveAttention", {}),
                                    ("AdditiveAttention", {"use_scale": False})])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_layers_match_the_numpy_definition(cls, kw, causal):
    q_ids, v_ids = gm.Input((T,), dtype="int32"), gm.Input((S,), dtype="int32")
    eq = gm.Embedding(V, E, mask_zero=True, name="eq")
    ev = gm.Embedding(V, E, mask_zero=True, name="ev")
    layer = getattr(gm, cls)(name="att", **kw)
    out, w = layer([eq(q_ids), ev(v_ids)], return_attention_scores=True,
                   use_causal_mask=causal)
    assert out.keras_mask is not None and w.keras_mask is None
    model = gm.Model([q_ids, v_ids], [out, w])
    _randomize(model, 7)
    q, v = eq.get_weights()[0][Q_IDS], ev.get_weights()[0][V_IDS]
    own = layer.get_weights()
    pairs = q[:, :, None, :] + v[:, None, :, :]
    if cls == "AdditiveAttention":
        scale = own[0] if kw.get("use_scale", True) else 1.0
        scores = (scale * np.tanh(pairs)).sum(-1)
    elif kw.get("score_mode") == "concat":
        scale = own[0] if kw.get("use_scale") else 1.0
        scores = own[-1] * np.tanh(scale * pairs).sum(-1)
    else:
        scores = q @ v.transpose(0, 2, 1) * (own[0] if kw.get("use_scale") else 1.0)
    want, weights = _np_luong(q, v, v, Q_IDS != 0, V_IDS != 0, scores, causal)
    got, got_w = model.predict([Q_IDS, V_IDS])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_w, weights, rtol=1e-5, atol=1e-6)
    assert not got[Q_IDS == 0].any()  # padded queries are 0, as Keras


def test_attention_weights_and_config_as_keras():
    att = gm.Attention(use_scale=True, score_mode="concat", dropout=0.2, seed=3, name="a")
    att([gm.Input((T, E)), gm.Input((S, E))])
    assert [(v.name, v.shape) for v in att.weights] == [("a/scale", ()),
                                                        ("a/concat_score_weight", ())]
    assert att.get_config() == {"name": "a", "trainable": True, "dtype": "float32",
                                "use_scale": True, "score_mode": "concat", "dropout": 0.2,
                                "seed": 3}
    add = gm.AdditiveAttention(name="b")
    add([gm.Input((T, E)), gm.Input((S, E))])
    assert [(v.name, v.shape) for v in add.weights] == [("b/scale", (E,))]
    assert "score_mode" not in add.get_config()
    assert type(add).from_config(add.get_config()).get_config() == add.get_config()


# ---- dropout -----------------------------------------------------------------------------------
def _dropout_model(rate):
    gm.set_random_seed(11)
    ids = gm.Input((T,), dtype="int32")
    x = gm.Embedding(V, E, mask_zero=True)(ids)
    h = gm.MultiHeadAttention(2, 3, dropout=rate, name="mha")(x, x)
    model = gm.Model(ids, gm.Dense(1)(gm.GlobalAveragePooling1D()(h)))
    _randomize(model, 8)
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_mha_dropout_only_while_training_and_seeded():
    y = _rand((B, 1), 9)
    a, b, off = _dropout_model(0.5), _dropout_model(0.5), _dropout_model(0.0)
    # predict and evaluate: no dropout (the layers' empty rows differ: Softmax vs uniform
    # path, but the pooled output reads kept rows only)
    np.testing.assert_allclose(a.predict(Q_IDS), off.predict(Q_IDS), rtol=1e-6, atol=1e-7)
    gm.set_random_seed(5)
    la = a.train_on_batch(Q_IDS, y)
    gm.set_random_seed(5)
    lb = b.train_on_batch(Q_IDS, y)
    assert la == lb
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    gm.set_random_seed(5)
    assert off.train_on_batch(Q_IDS, y) != la


# ---- gradients in float64 ------------------------------------------------------------------
def _check_gradients(model, x, y, eps=1e-6):
    model.compile(optimizer="sgd", loss="mse")
    _, grads = model.loss_and_gradients(x, y)
    weights = model.get_weights()
    for i, var in enumerate(model.weights):
        fd = np.zeros_like(weights[i])
        for idx in np.ndindex(weights[i].shape):
            plus = [w.copy() for w in weights]
            minus = [w.copy() for w in weights]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            model.set_weights(plus)
            lp = model.test_on_batch(x, y)
            model.set_weights(minus)
            lm = model.test_on_batch(x, y)
            fd[idx] = (lp - lm) / (2 * eps)
        model.set_weights(weights)
        np.testing.assert_allclose(grads[var.name], fd, rtol=1e-6, atol=1e-9, err_msg=var.name)


def test_gradients_match_finite_differences_in_float64():
    kw = {"dtype": "float64"}
    q, v = gm.Input((3,), dtype="int32"), gm.Input((4,), dtype="int32")
    eq = gm.Embedding(5, 3, mask_zero=True, name="eq", **kw)(q)
    ev = gm.Embedding(5, 3, mask_zero=True, name="ev", **kw)(v)
    h = gm.MultiHeadAttention(2, 2, name="mha", **kw)(eq, ev, use_causal_mask=True)
    h = gm.Attention(score_mode="concat", use_scale=True, name="att", **kw)([h, ev])
    h = gm.AdditiveAttention(name="add", **kw)([h, eq])
    model = gm.Model([q, v], gm.Dense(1, name="head", **kw)(h))
    _randomize(model, 10)
    x = [np.array([[1, 2, 0], [0, 3, 4], [0, 0, 0]]), np.array([[1, 0, 2, 3], [4, 4, 0, 0],
                                                                 [1, 2, 3, 4]])]
    _check_gradients(model, x, np.random.default_rng(11).standard_normal((3, 3, 1)))


# ---- inspection ----------------------------------------------------------------------------------
def test_one_group_in_summary_and_explain_mask():
    ids = gm.Input((T,), dtype="int32")
    x = gm.Embedding(V, E, mask_zero=True, name="emb")(ids)
    h = gm.MultiHeadAttention(2, 4, name="mha")(x, x)
    model = gm.Model(ids, gm.Dense(2, name="head")(h))
    text = model.summary(return_string=True)
    rows = [line for line in text.splitlines() if "(MultiHeadAttention)" in line]
    assert len(rows) == 1 and "288" in rows[0]  # Keras's count: 4 * (8 * 8 + 8)
    assert not any("einsum" in line or "masked_softmax" in line for line in text.splitlines())
    assert gm.inspect.explain_mask(model, "mha") == (
        "created by 'emb' as ids != 0 -> read and passed by 'mha' (call takes mask) -> "
        "passed by 'head'")


# ---- EinsumDense ---------------------------------------------------------------------------------
def test_einsum_dense_shapes_bias_and_values():
    x = gm.Input((T, E))
    layer = gm.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3), bias_axes="e",
                           activation="relu", name="proj")
    out = layer(x)
    assert out.shape == (None, T, 2, 3)
    assert [(v.name, v.shape) for v in layer.weights] == [("proj/kernel", (E, 2, 3)),
                                                          ("proj/bias", (3,))]
    wide = gm.EinsumDense("abc,cd->abd", output_shape=(T, 5), bias_axes="bd", name="wide")
    assert wide(x).shape == (None, T, 5)
    assert [v.shape for v in wide.weights] == [(E, 5), (T, 5)]
    model = gm.Model(x, out)
    _randomize(model, 12)
    xs = _rand((2, T, E), 13)
    k, b = layer.get_weights()
    np.testing.assert_allclose(model.predict(xs),
                               np.maximum(np.einsum("abc,cde->abde", xs, k) + b, 0),
                               rtol=1e-5, atol=1e-6)
    cfg = layer.get_config()
    assert (cfg["equation"], cfg["output_shape"], cfg["bias_axes"], cfg["activation"]) == (
        "abc,cde->abde", [None, 2, 3], "e", "relu")
    assert gm.EinsumDense.from_config(cfg).get_config() == cfg


def test_einsum_dense_glorot_fans_over_the_kernel_axes():
    """Keras's EinsumDense counts fan_in over the kernel axes shared with the input and
    fan_out over those shared with the output: (64, 4, 16) -> fans 64 and 64."""
    gm.set_random_seed(0)
    layer = gm.EinsumDense("abc,cde->abde", output_shape=(None, 4, 16), name="p")
    layer(gm.Input((3, 64)))
    limit = np.sqrt(6 / (64 + 64))
    k = layer.get_weights()[0]
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.95 * limit


@pytest.mark.parametrize("args,message", [
    (("ab...,bc->ac", 3), r"equation must have the form '<input>,<kernel>-><output>' .*"
                          r"\('\.\.\.' is not supported by graphmask"),
    (("abc,cd->abz", 3), "output letter 'z' of equation 'abc,cd->abz' is in neither"),
    (("abc,cdz->abd", 3), "kernel letter 'z' of equation 'abc,cdz->abd' is in neither"),
    (("abc,cd->abd", (3, 4, 5)), r"output_shape \(3, 4, 5\) must give the 2 output axes"),
    (("abc,cd->abd", (None, 0)), "output_shape must be a positive int"),
])
def test_einsum_dense_errors_name_the_layer(args, message):
    with pytest.raises(ConfigError, match="EinsumDense 'ed': " + message):
        gm.EinsumDense(*args, name="ed")


def test_einsum_dense_shape_errors():
    layer = gm.EinsumDense("abc,cd->abd", output_shape=(None, 4), bias_axes="d", name="ed")
    with pytest.raises(ShapeError, match=r"EinsumDense 'ed': equation 'abc,cd->abd' expects "
                                         r"an input of rank 3, got shape \(None, 8\)"):
        layer(gm.Input((E,)))
    bad = gm.EinsumDense("abc,cd->abd", output_shape=(7, 4), name="ed2")
    with pytest.raises(ShapeError, match=r"EinsumDense 'ed2': output_shape gives axis 'b' "
                                         r"size 7, but the input has 4"):
        bad(gm.Input((T, E)))


# ---- graphmask.testing.models() --------------------------------------------------------------
def test_testing_models_build_attention_and_keep_padding_invariance():
    from graphmask.testing import check_padding_invariance
    from graphmask.testing.models import build_model, describe

    spec = ("ids", 6, 3, 0.0, 0, ((2, True, False, False),), 2, "mse", False,
            ("mha", 2, 2, True))
    assert describe(spec) == ("Embedding(6, 3, mask_zero=True) -> MultiHeadAttention(2, 2, "
                              "use_causal_mask) -> LSTM(2, return_sequences) -> Dense(2, "
                              "linear); loss='mse'")
    model, _ = build_model(spec, seed=3)
    assert type(model.get_layer("attention")).__name__ == "MultiHeadAttention"
    batch = np.array([[3, 1, 4, 0, 0], [5, 0, 2, 0, 0], [0, 0, 0, 0, 0]])
    report = check_padding_invariance(model, batch, y=np.zeros((3, 5, 2), np.float32))
    assert str(report).splitlines()[0] == "check_padding_invariance: 4 part(s) checked, 0 skipped"


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_models_with_attention_pass_the_padding_checks(data):
    from graphmask.testing import check_padding_invariance
    from graphmask.testing.models import models

    case = data.draw(models(inputs=("ids",), attention=True, batch_norm=False))
    x = data.draw(case.inputs(min_len=2, max_len=5))
    check_padding_invariance(case.model, x)


def test_mha_explicit_training_pins_its_dropout():
    """Keras's explicit ``training=``: True drops in predict too, False never drops."""
    def model(training):
        ids = gm.Input((T,), dtype="int32")
        x = gm.Embedding(V, E, mask_zero=True)(ids)
        h = gm.MultiHeadAttention(2, 3, dropout=0.5)(x, x, training=training)
        m = gm.Model(ids, gm.Dense(1)(gm.GlobalAveragePooling1D()(h)))
        _randomize(m, 14)
        m.compile(optimizer="sgd", loss="mse")
        return m
    on = model(True)
    assert not np.array_equal(on.predict(Q_IDS), on.predict(Q_IDS))
    off = model(False)
    y = _rand((B, 1), 15)
    before = off.test_on_batch(Q_IDS, y)
    assert off.train_on_batch(Q_IDS, y) == pytest.approx(before, rel=1e-6)
