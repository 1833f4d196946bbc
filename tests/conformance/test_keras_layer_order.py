"""``model.layers`` and ``get_weights()`` in exactly Keras 3's order.

Keras 3 orders a functional model's layers by depth in its graph of *operations*, which
also holds the ops each layer's ``compute_mask`` records (``not_equal``, ``any``,
``logical_or``, ``ones_like`` ...) and the masks handed to ``LSTM``,
``TimeDistributed`` and ``GlobalAveragePooling1D``. The same model is built in both
libraries from one declarative spec; layer names, weight shapes, and predictions after
``gm_model.set_weights(keras_model.get_weights())`` must agree: a same-shaped weight
given to the wrong layer changes the predictions. Besides hand-picked models, a seeded
generator draws random branching models (several inputs, masked and unmasked branches,
merges, shared layers, functional ops, several outputs).
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

import graphmask as gm  # noqa: E402
from tests.conformance import twin as tw  # noqa: E402

T, V, B = 4, 6, 7  # time steps, vocabulary, batch

# Keras warns when a mask reaches a layer that drops it (a GlobalMaxPooling1D after a
# Concatenate that Keras masks with all-true values, a custom layer reading its mask)
pytestmark = pytest.mark.filterwarnings(
    "ignore:Layer '.*' \\(of type .*\\) was passed an input with a mask:UserWarning")

# ---- one spec, two models ---------------------------------------------------------------
# A spec is {"nodes": [...], "outputs": [ref, ...]}. Each node is
# (kind, name, cfg, refs): refs are (node index, output index) pairs; a merge gets the
# list of its refs, other layers their only ref. Kinds: input, embedding, masking, dense,
# activation, dropout, lstm, gap, gmp, flatten, add, concatenate, td (cfg: inner kind and
# inner cfg), shared (cfg: "of", the node whose layer is called again), op (cfg: "fn", a
# function of graphmask.ops / keras.ops applied outside any layer).

_CLASSES = {
    "embedding": "Embedding", "masking": "Masking", "dense": "Dense",
    "activation": "Activation", "dropout": "Dropout", "lstm": "LSTM",
    "gap": "GlobalAveragePooling1D", "gmp": "GlobalMaxPooling1D", "flatten": "Flatten",
    "add": "Add", "concatenate": "Concatenate", "td": "TimeDistributed",
    "subtract": "Subtract", "multiply": "Multiply",
}
_MERGES = ("add", "concatenate")  # the merges random_spec draws
_LIST_CALLS = _MERGES + ("subtract", "multiply")  # layers called on a list


def _lib(lib):
    if lib == "gm":
        import graphmask.ops as gops
        return gm, gm.Input, gm.Model, gops
    return keras.layers, keras.Input, keras.Model, keras.ops


def _op(ops, fn, xs):
    if fn == "add":
        return ops.add(xs[0], xs[1])
    if fn == "tanh":
        return ops.tanh(xs[0])
    if fn == "scale":
        return ops.multiply(xs[0], 0.5)
    raise ValueError(fn)


def build(spec, lib):
    """The spec's model with graphmask (``lib="gm"``) or Keras (``lib="keras"``)."""
    layers, Input, Model, ops = _lib(lib)
    outs, made = [], {}
    for i, (kind, name, cfg, refs) in enumerate(spec["nodes"]):
        xs = [outs[n][k] for n, k in refs]
        if kind == "input":
            y = Input(shape=cfg["shape"], dtype=cfg["dtype"], name=name)
        elif kind == "op":
            y = _op(ops, cfg["fn"], xs)
        else:
            if kind == "shared":
                layer = made[cfg["of"]]
            elif kind == "td":
                inner = getattr(layers, _CLASSES[cfg["inner"]])(name=f"{name}_in",
                                                                **cfg["inner_cfg"])
                layer = layers.TimeDistributed(inner, name=name)
            else:
                layer = getattr(layers, _CLASSES[kind])(name=name, **cfg)
            made[i] = layer
            y = layer(xs if kind in _LIST_CALLS else xs[0])
        outs.append(list(y) if isinstance(y, (list, tuple)) else [y])
    inputs = [outs[i][0] for i, node in enumerate(spec["nodes"]) if node[0] == "input"]
    return Model(inputs, [outs[n][k] for n, k in spec["outputs"]])


def data_for(spec, seed):
    """One batch for the spec's inputs: ids with padding zeros, features whose masked
    steps are all zero (what Masking masks). Every row keeps a step: Keras's
    GlobalAveragePooling1D gives NaN for an all-masked row, graphmask 0 (docs/errors.md)."""
    rng = np.random.default_rng(seed)
    xs = []
    for i, (kind, _, cfg, _) in enumerate(spec["nodes"]):
        if kind != "input":
            continue
        mask = tw.mask_pattern(("right", "left", "holes")[i % 3], B, T, rng)
        if len(cfg["shape"]) == 1:
            xs.append(tw.ids_for(mask, V, rng, cfg["dtype"]))
        else:
            xs.append(tw.features_for(mask, cfg["shape"][-1], rng).astype(cfg["dtype"]))
    return xs


def check_twins(spec, seed=0):
    """Same layer names, same weight shapes in the same order, same predictions after
    copying Keras's weights into graphmask."""
    g, k = build(spec, "gm"), build(spec, "keras")
    assert [layer.name for layer in g.layers] == [layer.name for layer in k.layers], spec
    assert [w.shape for w in g.get_weights()] == [w.shape for w in k.get_weights()], spec
    rng = np.random.default_rng(seed)
    k.set_weights([rng.standard_normal(w.shape).astype(w.dtype) * 0.5
                   for w in k.get_weights()])
    g.set_weights(k.get_weights())
    xs = data_for(spec, seed)
    ours, theirs = g.predict(xs, verbose=0), k.predict(xs, batch_size=B, verbose=0)
    ours = ours if isinstance(ours, list) else [ours]
    theirs = theirs if isinstance(theirs, (list, tuple)) else [theirs]
    tw.assert_close(ours, [np.asarray(t) for t in theirs], rtol=1e-4, atol=1e-5,
                    what=str(spec))


def _n(kind, name, cfg=None, refs=()):
    return (kind, name, dict(cfg or {}), [tuple(r) for r in refs])


IDS = {"shape": (T,), "dtype": "int32"}
FEATS = {"shape": (T, 2), "dtype": "float32"}

# ---- hand-picked models -------------------------------------------------------------------
HAND_PICKED = {
    # the issue's example: Keras [ids, emb, feats, d1, d2, cat, out]
    "issue_example": {"nodes": [
        _n("input", "ids", IDS), _n("input", "feats", {"shape": (T, 2), "dtype": "float32"}),
        _n("embedding", "emb", {"input_dim": V, "output_dim": 2, "mask_zero": True}, [(0, 0)]),
        _n("dense", "d1", {"units": 3}, [(2, 0)]),
        _n("dense", "d2", {"units": 3}, [(1, 0)]),
        _n("concatenate", "cat", {}, [(4, 0), (3, 0)]),
        _n("lstm", "out", {"units": 1}, [(5, 0)])], "outputs": [(6, 0)]},
    # Masking on one branch, an unmasked other branch: Concatenate's mask ops
    # (ones_like, expand_dims, zeros_like, logical_or, concatenate, any) reach the LSTM
    "masking_on_one_branch_concatenate": {"nodes": [
        _n("input", "a", FEATS), _n("input", "b", FEATS),
        _n("dense", "da", {"units": 3}, [(0, 0)]),
        _n("masking", "mb", {}, [(1, 0)]),
        _n("concatenate", "cat", {}, [(2, 0), (3, 0)]),
        _n("lstm", "l", {"units": 2}, [(4, 0)])], "outputs": [(5, 0)]},
    # Add of an Embedding(mask_zero) branch and a Masking branch (logical_or of the
    # masks), and a second output on the first branch
    "add_of_two_masked_branches_two_outputs": {"nodes": [
        _n("input", "ids", IDS), _n("input", "x", FEATS),
        _n("embedding", "ea", {"input_dim": V, "output_dim": 2, "mask_zero": True},
           [(0, 0)]),
        _n("masking", "mb", {}, [(1, 0)]),
        _n("add", "sum", {}, [(2, 0), (3, 0)]),
        _n("lstm", "l", {"units": 3}, [(4, 0)]),
        _n("dense", "head", {"units": 2}, [(2, 0)])], "outputs": [(5, 0), (6, 0)]},
    # a built-in Add and two composed merges (Subtract, Multiply) of the same two
    # branches sharing the Embedding's mask: each Keras merge makes its own mask op,
    # graphmask's Add reuses the shared mask (it once made the order undecidable)
    "merges_of_branches_sharing_a_mask": {"nodes": [
        _n("input", "ids", IDS),
        _n("embedding", "emb", {"input_dim": V, "output_dim": 2, "mask_zero": True},
           [(0, 0)]),
        _n("dense", "da", {"units": 3}, [(1, 0)]),
        _n("dense", "db", {"units": 3}, [(1, 0)]),
        _n("add", "sum", {}, [(2, 0), (3, 0)]),
        _n("subtract", "diff", {}, [(2, 0), (3, 0)]),
        _n("multiply", "prod", {}, [(3, 0), (2, 0)]),
        _n("lstm", "l1", {"units": 2}, [(4, 0)]),
        _n("lstm", "l2", {"units": 2}, [(5, 0)]),
        _n("lstm", "l3", {"units": 2}, [(6, 0)])], "outputs": [(7, 0), (8, 0), (9, 0)]},
    # two stacks (Embedding / Masking) of LSTM(return_sequences), Dropout, LSTM,
    # TimeDistributed(Dense), GlobalAveragePooling1D: every mask consumer reads the
    # mask op directly, so Masking's input ends deeper than the Embedding's
    "two_stacks_lstm_dropout_td_pooling": {"nodes": [
        _n("input", "ids", IDS), _n("input", "x", FEATS),
        _n("embedding", "e", {"input_dim": V, "output_dim": 3, "mask_zero": True}, [(0, 0)]),
        _n("lstm", "l1", {"units": 3, "return_sequences": True}, [(2, 0)]),
        _n("dropout", "dr", {"rate": 0.3}, [(3, 0)]),
        _n("lstm", "l2", {"units": 3, "return_sequences": True}, [(4, 0)]),
        _n("td", "td", {"inner": "dense", "inner_cfg": {"units": 2}}, [(5, 0)]),
        _n("gap", "pool", {}, [(6, 0)]),
        _n("masking", "mk", {}, [(1, 0)]),
        _n("lstm", "l1x", {"units": 3, "return_sequences": True}, [(8, 0)]),
        _n("dropout", "drx", {"rate": 0.3}, [(9, 0)]),
        _n("lstm", "l2x", {"units": 3, "return_sequences": True}, [(10, 0)]),
        _n("td", "tdx", {"inner": "dense", "inner_cfg": {"units": 2}}, [(11, 0)]),
        _n("gap", "poolx", {}, [(12, 0)]),
        _n("concatenate", "cat", {}, [(7, 0), (13, 0)]),
        _n("dense", "out", {"units": 2}, [(14, 0)])], "outputs": [(15, 0)]},
    "unmasked_pooling_and_flatten": {"nodes": [
        _n("input", "f", {"shape": (T, 3), "dtype": "float32"}),
        _n("input", "ids", IDS),
        _n("gmp", "maxp", {}, [(0, 0)]),
        _n("flatten", "flat", {}, [(0, 0)]),
        _n("dense", "df", {"units": 3}, [(3, 0)]),
        _n("embedding", "e", {"input_dim": V, "output_dim": 3, "mask_zero": True}, [(1, 0)]),
        _n("lstm", "l", {"units": 3}, [(5, 0)]),
        _n("add", "sum", {}, [(2, 0), (6, 0), (4, 0)])], "outputs": [(7, 0)]},
    "return_state_and_shared_dense": {"nodes": [
        _n("input", "x", IDS), _n("input", "f", {"shape": (T, 3), "dtype": "float32"}),
        _n("embedding", "e", {"input_dim": V, "output_dim": 3, "mask_zero": True}, [(0, 0)]),
        _n("lstm", "l", {"units": 3, "return_sequences": True, "return_state": True},
           [(2, 0)]),
        _n("dense", "shared", {"units": 3}, [(3, 0)]),
        _n("shared", "shared", {"of": 4}, [(1, 0)]),
        _n("concatenate", "cat", {}, [(5, 0), (4, 0)]),
        _n("lstm", "top", {"units": 2}, [(6, 0)])],
        "outputs": [(7, 0), (3, 1), (3, 2)]},
    # Keras casts a float64 input to the layer's float32 before Masking's compute_mask:
    # the cast is one more op between the input and the LSTM reading the mask
    "float64_input_masking": {"nodes": [
        _n("input", "x", {"shape": (T, 2), "dtype": "float64"}),
        _n("input", "y", IDS),
        _n("masking", "mk", {}, [(0, 0)]),
        _n("lstm", "lx", {"units": 2}, [(2, 0)]),
        _n("embedding", "e", {"input_dim": V, "output_dim": 2, "mask_zero": True}, [(1, 0)]),
        _n("dense", "d1", {"units": 2}, [(4, 0)]),
        _n("dense", "d2", {"units": 2}, [(5, 0)]),
        _n("lstm", "ly", {"units": 2}, [(6, 0)])], "outputs": [(3, 0), (7, 0)]},
    "functional_ops_between_layers": {"nodes": [
        _n("input", "x", FEATS), _n("input", "y", IDS),
        _n("dense", "d", {"units": 2}, [(0, 0)]),
        _n("op", "", {"fn": "add"}, [(2, 0), (0, 0)]),
        _n("op", "", {"fn": "tanh"}, [(3, 0)]),
        _n("embedding", "e", {"input_dim": V, "output_dim": 2, "mask_zero": True}, [(1, 0)]),
        _n("dense", "de", {"units": 2}, [(5, 0)]),
        _n("add", "sum", {}, [(4, 0), (6, 0)]),
        _n("lstm", "l", {"units": 2}, [(7, 0)])], "outputs": [(8, 0)]},
}


@pytest.mark.parametrize("name", sorted(HAND_PICKED))
def test_hand_picked_models_match_keras(name):
    check_twins(HAND_PICKED[name])


def test_the_issue_example_order():
    k = build(HAND_PICKED["issue_example"], "keras")
    assert [layer.name for layer in k.layers] == ["ids", "emb", "feats", "d1", "d2", "cat",
                                                   "out"]
    check_twins(HAND_PICKED["issue_example"])


# ---- random branching models ----------------------------------------------------------------
def random_spec(seed: int) -> dict:
    """A random branching model from ``seed``: 1-3 inputs (ids and float features), 4-11
    layer calls drawn among every kind graphmask builds, merges of tensors that fit,
    shared layers, functional ops; every tensor nobody reads is an output.

    It only builds what both libraries accept and compute alike: no mask into Flatten,
    GlobalMaxPooling1D or a functional op (graphmask refuses those masks, Keras drops
    them), merges only along the last axis.
    """
    rng = np.random.default_rng(seed)
    nodes, pool = [], []  # pool: each tensor made so far ("masked": graphmask masks it)

    def add(kind, cfg, refs, make):
        name = f"{kind}{len(nodes)}"
        nodes.append((kind, name, cfg, [tuple(r) for r in refs]))
        for r in refs:
            pool[r[2]]["used"] = True
        for out in make:
            pool.append({"ref": (len(nodes) - 1, out["k"]), "used": False, **out})
        return len(nodes) - 1

    def tensor(k=0, **kw):
        return {"k": k, **kw}

    def ref(t):
        return (*t["ref"], pool.index(t))

    n_ids = int(rng.integers(0, 3))
    n_feats = int(rng.integers(1 if n_ids == 0 else 0, 3))
    for _ in range(n_ids):
        add("input", dict(IDS), [], [tensor(0, rank=2, f=None, ids=True, masked=False)])
    for _ in range(n_feats):
        f = int(rng.integers(2, 4))
        dtype = "float64" if rng.random() < 0.2 else "float32"
        add("input", {"shape": (T, f), "dtype": dtype}, [],
            [tensor(0, rank=3, f=f, ids=False, masked=False)])

    def apply_one(t):
        if t["ids"]:
            mz = bool(rng.random() < 0.7)
            d = int(rng.integers(2, 4))
            add("embedding", {"input_dim": V, "output_dim": d, "mask_zero": mz}, [ref(t)],
                [tensor(0, rank=3, f=d, ids=False, masked=mz)])
            return
        rank, masked = t["rank"], t["masked"]
        kinds = ["dense", "dense", "activation", "dropout", "merge", "merge"]
        if rank == 3:
            kinds += ["masking", "lstm", "lstm", "td", "gap"]
            if not masked:
                kinds += ["gmp", "flatten"]
        if not masked:
            kinds += ["op"]
        shared = [i for i, (k, *_r) in enumerate(nodes) if k == "dense"
                  and nodes[i][2]["_in"] == t["f"]]
        if shared:
            kinds += ["shared"]
        kind = kinds[int(rng.integers(len(kinds)))]
        same = dict(rank=rank, ids=False)
        if kind == "dense":
            u = int(rng.integers(2, 4))
            add("dense", {"units": u, "_in": t["f"]}, [ref(t)],
                [tensor(0, f=u, masked=masked, **same)])
        elif kind == "shared":
            of = shared[int(rng.integers(len(shared)))]
            add("shared", {"of": of}, [ref(t)],
                [tensor(0, f=nodes[of][2]["units"], masked=masked, **same)])
        elif kind == "activation":
            add("activation", {"activation": "tanh"}, [ref(t)],
                [tensor(0, f=t["f"], masked=masked, **same)])
        elif kind == "dropout":
            add("dropout", {"rate": 0.25}, [ref(t)], [tensor(0, f=t["f"], masked=masked, **same)])
        elif kind == "masking":
            add("masking", {}, [ref(t)], [tensor(0, f=t["f"], masked=True, **same)])
        elif kind == "td":
            inner = ["dense", "activation", "dropout"][int(rng.integers(3))]
            cfg = {"dense": {"units": 2}, "activation": {"activation": "relu"},
                   "dropout": {"rate": 0.2}}[inner]
            f = 2 if inner == "dense" else t["f"]
            add("td", {"inner": inner, "inner_cfg": cfg}, [ref(t)],
                [tensor(0, f=f, masked=masked, **same)])
        elif kind == "lstm":
            u = int(rng.integers(2, 4))
            rs, st = bool(rng.random() < 0.5), bool(rng.random() < 0.25)
            outs = [tensor(0, rank=3 if rs else 2, f=u, ids=False, masked=masked and rs)]
            if st:
                outs += [tensor(k, rank=2, f=u, ids=False, masked=False) for k in (1, 2)]
            add("lstm", {"units": u, "return_sequences": rs, "return_state": st}, [ref(t)],
                outs)
        elif kind in ("gap", "gmp"):
            add(kind, {}, [ref(t)], [tensor(0, rank=2, f=t["f"], ids=False, masked=False)])
        elif kind == "flatten":
            add("flatten", {}, [ref(t)],
                [tensor(0, rank=2, f=T * t["f"], ids=False, masked=False)])
        elif kind == "op":
            fn = ["tanh", "scale", "add"][int(rng.integers(3))]
            partners = [p for p in pool if p is not t and not p["ids"] and not p["masked"]
                        and p["rank"] == rank and p["f"] == t["f"]]
            if fn == "add" and partners:
                p = partners[int(rng.integers(len(partners)))]
                add("op", {"fn": "add"}, [ref(t), ref(p)],
                    [tensor(0, f=t["f"], masked=False, **same)])
            else:
                add("op", {"fn": "scale" if fn == "add" else fn}, [ref(t)],
                    [tensor(0, f=t["f"], masked=False, **same)])
        else:  # merge
            op = "add" if rng.random() < 0.5 else "concatenate"
            partners = [p for p in pool if p is not t and not p["ids"] and p["rank"] == rank
                        and (op == "concatenate" or p["f"] == t["f"])]
            if not partners:
                add("dense", {"units": 2, "_in": t["f"]}, [ref(t)],
                    [tensor(0, f=2, masked=masked, **same)])
                return
            n = int(rng.integers(1, min(2, len(partners)) + 1))
            chosen = [partners[i] for i in rng.choice(len(partners), n, replace=False)]
            members = [t, *chosen]
            order = rng.permutation(len(members))
            members = [members[i] for i in order]
            kept = [m["masked"] for m in members]
            f = sum(m["f"] for m in members) if op == "concatenate" else t["f"]
            add(op, {}, [ref(m) for m in members],
                [tensor(0, f=f, masked=all(kept), **same)])

    for t in list(pool):  # every input is used
        apply_one(t)
    for _ in range(int(rng.integers(3, 9))):
        leaves = [p for p in pool if not p["used"]]
        candidates = leaves if leaves and rng.random() < 0.7 else \
            [p for p in pool if not p["ids"]] or pool
        apply_one(candidates[int(rng.integers(len(candidates)))])
    outputs = [p["ref"] for p in pool if not p["used"]]
    clean = []
    for kind, name, cfg, refs in nodes:
        cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
        clean.append((kind, name, cfg, refs and [r[:2] for r in refs]))
    return {"nodes": clean, "outputs": outputs}


@pytest.mark.parametrize("seed", range(40))
def test_random_branching_models_match_keras(seed):
    check_twins(random_spec(seed), seed)


# ---- keyword arguments, explicit masks, custom layers -------------------------------------
def _custom_classes(lib):
    """The same three custom layers written against graphmask's and Keras's Layer."""
    layers, _, _, ops = _lib(lib)
    Base = layers.Layer

    class MaskedMean(Base):
        """Mean over time of the kept steps: reads the mask its call is handed."""

        def call(self, x, mask=None):
            m = ops.expand_dims(ops.cast(mask, x.dtype), -1)
            return ops.sum(x * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)

    class DropFirstStep(Base):
        """Drops the first step of the values and, in compute_mask, of the mask."""

        def call(self, x):
            return x[:, 1:, :]

        def compute_mask(self, inputs, previous_mask):
            return None if previous_mask is None else previous_mask[:, 1:]

    class Block(Base):
        """A residual block of a nested Dense and its own weight; passes the mask."""

        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.proj = layers.Dense(units, name=f"{self.name}_proj")
            self.supports_masking = True

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones",
                                         name="scale")

        def call(self, x):
            return x + self.proj(x) * self.scale

    return MaskedMean, DropFirstStep, Block


def _build_custom(lib):
    layers, Input, Model, _ = _lib(lib)
    MaskedMean, DropFirstStep, Block = _custom_classes(lib)
    ids, f = Input(shape=(T,), dtype="int32", name="ids"), Input(shape=(T, 3), name="f")
    e = layers.Embedding(V, 3, mask_zero=True, name="e")(ids)
    d = DropFirstStep(name="drop")(e)
    b = Block(3, name="blk")(d)
    seq = layers.LSTM(3, return_sequences=True, name="l")(b)
    side = layers.Dense(3, name="side")(layers.Dense(3, name="pre")(f))
    m1 = MaskedMean(name="mean")(seq)
    m2 = layers.LSTM(3, name="l2")(seq, training=False)  # a keyword: no mask edge in Keras
    side_mean = MaskedMean(name="side_mean")(layers.Masking(name="mk")(side))
    return Model([ids, f], [m1, m2, side_mean])


def test_custom_layers_and_keyword_arguments_match_keras():
    g, k = _build_custom("gm"), _build_custom("keras")
    assert [layer.name for layer in g.layers] == [layer.name for layer in k.layers]
    assert [w.shape for w in g.get_weights()] == [w.shape for w in k.get_weights()]
    rng = np.random.default_rng(3)
    k.set_weights([rng.standard_normal(w.shape).astype(w.dtype) * 0.5
                   for w in k.get_weights()])
    g.set_weights(k.get_weights())
    ids = tw.ids_for(tw.mask_pattern("right", B, T, rng), V, rng)
    ids[:, 1] = np.maximum(ids[:, 1], 1)  # a kept step after the dropped first one
    f = tw.features_for(tw.mask_pattern("holes", B, T, rng), 3, rng)
    tw.assert_close(g.predict([ids, f], verbose=0),
                    [np.asarray(o) for o in k.predict([ids, f], batch_size=B, verbose=0)],
                    rtol=1e-4, atol=1e-5)


def _build_explicit_mask(lib):
    layers, Input, Model, ops = _lib(lib)
    ids = Input(shape=(T,), dtype="int32", name="ids")
    x = Input(shape=(T, 2), name="x")
    e = layers.Embedding(V, 2, mask_zero=True, name="e")(ids)
    d = layers.Dense(2, name="d")(layers.Dense(2, name="d0")(x))
    keep = ops.logical_not(ops.logical_not(ops.not_equal(ids, 1)))  # three ops deep
    lx = layers.LSTM(2, name="lx")(d, mask=keep)
    le = layers.LSTM(2, name="le")(layers.Dense(2, name="de")(e), mask=e._keras_mask)
    return Model([ids, x], [lx, le])


def test_explicit_masks_match_keras():
    g, k = _build_explicit_mask("gm"), _build_explicit_mask("keras")
    assert [layer.name for layer in g.layers] == [layer.name for layer in k.layers]
    rng = np.random.default_rng(4)
    k.set_weights([rng.standard_normal(w.shape).astype(w.dtype) * 0.5
                   for w in k.get_weights()])
    g.set_weights(k.get_weights())
    ids = tw.ids_for(tw.mask_pattern("holes", B, T, rng), V, rng)
    x = rng.standard_normal((B, T, 2)).astype(np.float32)
    tw.assert_close(g.predict([ids, x], verbose=0),
                    [np.asarray(o) for o in k.predict([ids, x], batch_size=B, verbose=0)],
                    rtol=1e-4, atol=1e-5)


def _build_nested(lib):
    layers, Input, Model, _ = _lib(lib)
    inner_in = Input(shape=(T, 2), name="inner_in")
    inner = Model(inner_in, layers.Dense(2, name="inner_d")(layers.LSTM(3, name="inner_l")(
        inner_in)), name="inner")
    x, y = Input(shape=(T, 2), name="x"), Input(shape=(T, 2), name="y")
    top = layers.Dense(2, name="top")(inner(layers.Masking(name="mk")(x)))
    other = layers.Dense(2, name="b")(layers.Dense(2, name="a2")(layers.Dense(2, name="a")(y)))
    return Model([x, y], [other, top])


def test_a_model_called_as_a_layer_matches_keras():
    # Keras's nested functional model takes the mask in call() (an edge from Masking's
    # mask ops) and does not support masking (its outputs carry none)
    g, k = _build_nested("gm"), _build_nested("keras")
    assert [layer.name for layer in g.layers] == [layer.name for layer in k.layers]
    assert [w.shape for w in g.get_weights()] == [w.shape for w in k.get_weights()]
    rng = np.random.default_rng(5)
    k.set_weights([rng.standard_normal(w.shape).astype(w.dtype) * 0.5
                   for w in k.get_weights()])
    g.set_weights(k.get_weights())
    xs = [tw.features_for(tw.mask_pattern(kind, B, T, rng), 2, rng) for kind in ("left", "holes")]
    tw.assert_close(g.predict(xs, verbose=0),
                    [np.asarray(o) for o in k.predict(xs, batch_size=B, verbose=0)],
                    rtol=1e-4, atol=1e-5)


def _build_lambdas(lib):
    layers, Input, Model, _ = _lib(lib)
    ids, y = Input(shape=(T,), dtype="int32", name="ids"), Input(shape=(T, 2), name="y")
    e = layers.Embedding(V, 3, mask_zero=True, name="e")(ids)
    cut = layers.Lambda(lambda x: x[:, 1:, :], mask=lambda inputs, mask: mask[:, 1:],
                        name="cut")(e)
    scaled = layers.Lambda(lambda x: x * 2.0, mask=lambda inputs, mask: None,
                           name="scale")(layers.Masking(name="mk")(y))
    o = layers.Dense(2, name="o")(layers.Dense(2, name="o0")(layers.Dense(2, name="o00")(y)))
    return Model([ids, y], [o, layers.LSTM(2, name="l")(cut),
                            layers.GlobalAveragePooling1D(name="p")(scaled)])


def test_lambda_layers_match_keras():
    # Lambda's call takes the mask; its mask= function is its compute_mask
    g, k = _build_lambdas("gm"), _build_lambdas("keras")
    assert [layer.name for layer in g.layers] == [layer.name for layer in k.layers]
    rng = np.random.default_rng(6)
    k.set_weights([rng.standard_normal(w.shape).astype(w.dtype) * 0.5
                   for w in k.get_weights()])
    g.set_weights(k.get_weights())
    ids = tw.ids_for(tw.mask_pattern("right", B, T, rng), V, rng)
    ids[:, 1] = np.maximum(ids[:, 1], 1)  # a kept step after the cut one
    y = tw.features_for(tw.mask_pattern("holes", B, T, rng), 2, rng)
    tw.assert_close(g.predict([ids, y], verbose=0),
                    [np.asarray(o) for o in k.predict([ids, y], batch_size=B, verbose=0)],
                    rtol=1e-4, atol=1e-5)


def _build_identity_dropping_layer(lib):
    layers, Input, Model, _ = _lib(lib)

    class Passthrough(layers.Layer):
        """call returns its input (mask and all), so compute_mask is never called: Keras 3
        keeps the mask an output already carries."""

        def call(self, x):
            return x

        def compute_mask(self, inputs, previous_mask):
            return None

    ids = Input(shape=(T,), dtype="int32", name="ids")
    e = layers.Embedding(V, 3, mask_zero=True, name="e")(ids)
    d = layers.Dense(3, name="d")(Passthrough(name="same")(e))
    return Model(ids, [layers.LSTM(2, name="l")(d), layers.Dense(2, name="o")(e)])


def test_a_layer_returning_its_input_keeps_its_mask_as_in_keras():
    g, k = _build_identity_dropping_layer("gm"), _build_identity_dropping_layer("keras")
    assert [layer.name for layer in g.layers] == [layer.name for layer in k.layers]
    rng = np.random.default_rng(8)
    k.set_weights([rng.standard_normal(w.shape).astype(w.dtype) * 0.5
                   for w in k.get_weights()])
    g.set_weights(k.get_weights())
    ids = tw.ids_for(tw.mask_pattern("holes", B, T, rng), V, rng)
    tw.assert_close(g.predict(ids, verbose=0),
                    [np.asarray(o) for o in k.predict(ids, batch_size=B, verbose=0)],
                    rtol=1e-4, atol=1e-5)
