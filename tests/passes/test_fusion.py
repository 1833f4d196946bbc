"""The elementwise fusion pass (``passes/fusion.py``) and its op (``fused_elementwise``).

Every model here is compiled twice, with and without fusion, and compared:

* forward values bit for bit: the fused kernel runs the same float32/float64 operations
  in the same order as the primitives' ufuncs;
* gradients of full-shape values bit for bit; gradients of broadcast inputs (a bias
  row, a scale) to 1e-5 relative: the kernel sums them in float64 where NumPy sums
  float32 pairwise, so they differ by the float32 rounding of a sum (a few ulps of a
  sum of at most B * T * D = 120 terms here), and SGD/Adam steps carry that difference
  into the weights (Adam divides by the gradient's root mean square, so a relative
  difference stays relative).
"""
import contextlib
import io
import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphmask as gm
from graphmask import ops, passes
from graphmask.inspect import debugprint
from graphmask.ops import fused as F
from graphmask.ops import get_op
from graphmask.passes import fusion
from graphmask.viz.html import explorer_data
from graphmask.viz.view import build_view
from tests.ops.harness import check_op

B, T, D = 4, 6, 5


@pytest.fixture(autouse=True)
def _pipeline_with_fusion(monkeypatch):
    """The pass in the pipeline (after ``masks``) whatever the default, switched on."""
    names = [n for n, _ in passes.PIPELINE]
    if "fusion" not in names:
        i = names.index("masks") + 1
        monkeypatch.setattr(passes, "PIPELINE", passes.PIPELINE[:i]
                            + [("fusion", fusion.fuse_elementwise)] + passes.PIPELINE[i:])
    with fusion.enabled(True):
        yield


# ------------------------------------------------------------------------ layers
class Chain(gm.layers.Layer):
    """``max(relu((x - mean) * gamma + beta) * scale, (x - mean) * gamma + beta)``:
    a column (the mean), two rows and a scalar broadcast into one chain."""

    def __init__(self, weight_dtype="float32", **kw):
        super().__init__(**kw)
        self.weight_dtype = weight_dtype

    def build(self, input_shape):
        dt = self.weight_dtype
        self.gamma = self.add_weight(shape=(input_shape[-1],), initializer="random_normal",
                                     dtype=dt, name="gamma")
        self.beta = self.add_weight(shape=(input_shape[-1],), initializer="random_normal",
                                    dtype=dt, name="beta")
        self.scale = self.add_weight(shape=(), initializer="ones", dtype=dt, name="scale")

    def call(self, x):
        c = x - ops.mean(x, axis=-1, keepdims=True)
        y = c * self.gamma + self.beta
        return ops.maximum(ops.relu(y) * self.scale, y)


class Pair(gm.layers.Layer):
    """Full-shape operands only: ``max(a * b - a, relu(b))``, and ``a * b`` returned
    as a second output (a member read outside the group)."""

    def call(self, inputs):
        a, b = inputs
        ab = a * b
        return [ops.maximum(ab - a, ops.relu(b)), ab]


def _switch(fuse):
    """Fusion on or off while a model compiles (``None``: as the switch stands)."""
    return contextlib.nullcontext() if fuse is None else fusion.enabled(fuse)


def _chain_model(fuse, dtype="float32", optimizer="sgd"):
    gm.clear_session()
    gm.set_random_seed(3)
    with _switch(fuse):
        x = gm.Input(shape=(T, D), dtype=dtype)
        m = gm.Model(x, Chain(dtype, name="chain")(x))
        m.compile(optimizer=optimizer, loss="mse")
    return m


def _pair_model(fuse, optimizer="sgd"):
    gm.clear_session()
    gm.set_random_seed(4)
    with fusion.enabled(fuse):
        x = gm.Input(shape=(T, D))
        a = gm.Dense(D, name="a")(x)
        b = gm.Dense(D, name="b")(x)
        out, ab = Pair(name="pair")([a, b])
        m = gm.Model(x, [out, ab])
        m.compile(optimizer=optimizer, loss=["mse", "mse"])
    return m


def _data(dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, T, D)).astype(dtype),
            rng.standard_normal((B, T, D)).astype(dtype))


def _ops(m):
    return [m.graph.node(n)["op"] for n in m.graph.order()
            if m.graph.node(n)["phase"] == "forward"]


def _fused(m):
    g = m.graph
    return [(g.node(n)["layer"], F.chain_label(g.node(n)["attrs"]), len(g.node(n)["specs"]))
            for n in g.nodes_by_op(F.NAME)]


# ------------------------------------------------------------------------ the pass fuses
def test_a_chain_with_column_row_and_scalar_operands_becomes_one_node():
    on, off = _chain_model(True), _chain_model(False)
    assert _fused(on) == [("chain", "subtract -> multiply -> add -> relu -> multiply -> "
                                    "maximum", 1)]
    assert _fused(off) == []
    def backward(m):
        g = m.graph
        return [g.node(n)["op"] if g.node(n)["op"] != "vjp" else g.node(n)["attrs"]["op"]
                for n in g.order() if g.node(n)["phase"] == "backward"]

    # forward: the 6 members became 1 node; backward: 5 VJPs (the subtraction of the
    # input's mean needs none) and the add_n of y's two cotangents became 1 VJP
    assert len(on.graph) == len(off.graph) - 5 - 5
    assert backward(off) == ["constant", "weighted_mean", "loss_score", "prim.maximum",
                             "prim.multiply", "prim.relu", "add_n", "prim.add",
                             "prim.multiply"]
    assert backward(on) == ["constant", "weighted_mean", "loss_score", F.NAME]
    assert [o for o in _ops(on) if o.startswith("prim.")] == ["prim.mean"]
    assert on.graph.meta["fusion"][0]["chain"] == ("subtract -> multiply -> add -> relu -> "
                                                   "multiply -> maximum")


def test_layer_normalization_fuses_its_three_chains_around_the_reductions():
    """The mean/variance reductions split LayerNormalization's maths in three chains; no
    group may swallow both sides of a reduction (that would close a cycle)."""
    gm.clear_session()
    x = gm.Input(shape=(T, D))
    m = gm.Model(x, gm.LayerNormalization(name="ln")(x))
    m.compile(optimizer="sgd", loss="mse")
    assert _fused(m) == [("ln", "subtract -> square", 2), ("ln", "add -> sqrt -> divide", 1),
                         ("ln", "multiply -> multiply -> add", 1)]


def test_a_lone_elementwise_op_is_left_alone():
    """W3's attention: ``where`` between an einsum and a softmax has no neighbour to fuse."""
    gm.clear_session()

    class Pool(gm.layers.Layer):
        def build(self, input_shape):
            self.q = self.add_weight(shape=(input_shape[-1],), name="q")

        def call(self, x, mask=None):
            s = ops.where(mask, ops.einsum("btd,d->bt", x, self.q), -1e9)
            return ops.einsum("bt,btd->bd", ops.softmax(s, axis=-1), x)

        def compute_mask(self, inputs, previous_mask):
            return None

    ids = gm.Input(shape=(T,), dtype="int32")
    e = gm.Embedding(20, D, mask_zero=True)(ids)
    m = gm.Model(ids, gm.Dense(2)(Pool()(e)))
    m.compile(optimizer="sgd", loss="mse")
    assert _fused(m) == [] and m.graph.meta["fusion"] == []


def test_members_of_different_layers_are_not_fused_together():
    gm.clear_session()
    x = gm.Input(shape=(T, D))
    y = gm.Lambda(lambda v: v * 2.0 + 1.0, name="first")(x)
    z = gm.Lambda(lambda v: ops.relu(v) - 3.0, name="second")(y)
    m = gm.Model(x, z)
    m.compile(optimizer="sgd", loss="mse")
    assert _fused(m) == [("first", "multiply -> add", 1), ("second", "relu -> subtract", 1)]


def test_compiling_twice_gives_the_same_graph():
    a, b = _chain_model(True), _chain_model(True)
    ga, gb = a.graph, b.graph
    assert ga.order() == gb.order()
    assert [(ga.node(n)["op"], ga.node(n)["attrs"]) for n in ga.order()] == \
        [(gb.node(n)["op"], gb.node(n)["attrs"]) for n in gb.order()]


def test_the_switch_turns_the_pass_off_and_back_on():
    assert fusion.enabled() is True
    with fusion.enabled(False):
        assert fusion.enabled() is False
        assert _fused(_chain_model(None)) == []
    assert fusion.enabled() is True
    assert len(_fused(_chain_model(None))) == 1


def test_a_bad_switch_value_is_refused_naming_it(monkeypatch):
    with pytest.raises(gm.errors.ConfigError, match=r"on must be True, False or None, got 'no'"):
        fusion.enabled("no")
    assert fusion.enabled() is True
    monkeypatch.setenv("GRAPHMASK_FUSION", "maybe")
    with pytest.raises(gm.errors.ConfigError, match=r"GRAPHMASK_FUSION='maybe': expected 1 or 0"):
        fusion._from_environment()
    for value, on in (("1", True), ("off", False), (" Yes ", True), ("", fusion.DEFAULT)):
        monkeypatch.setenv("GRAPHMASK_FUSION", value)
        assert fusion._from_environment() is on


# ------------------------------------------------------------------------ equal results
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_and_evaluate_are_bit_identical(dtype):
    x, y = _data(dtype)
    on, off = _chain_model(True, dtype), _chain_model(False, dtype)
    assert on.predict_on_batch(x).dtype == np.dtype(dtype)
    np.testing.assert_array_equal(on.predict_on_batch(x), off.predict_on_batch(x))
    assert on.evaluate(x, y, verbose=0) == off.evaluate(x, y, verbose=0)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_steps_match_the_unfused_graph(optimizer):
    x, y = _data()
    on, off = _chain_model(True, optimizer=optimizer), _chain_model(False, optimizer=optimizer)
    for _ in range(3):
        assert on.train_on_batch(x, y) == pytest.approx(off.train_on_batch(x, y), rel=1e-6)
    for w_on, w_off in zip(on.get_weights(), off.get_weights()):
        np.testing.assert_allclose(w_on, w_off, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_full_shape_gradients_are_bit_identical(optimizer):
    """No broadcast input in the chain: every gradient is the same float operations."""
    x, _ = _data()
    on, off = _pair_model(True, optimizer), _pair_model(False, optimizer)
    assert _fused(on) == [("pair", "multiply -> subtract -> relu -> maximum", 2)]
    ys = [np.zeros((B, T, D), "float32"), np.ones((B, T, D), "float32")]
    for _ in range(3):
        assert on.train_on_batch(x, ys) == off.train_on_batch(x, ys)
    for w_on, w_off in zip(on.get_weights(), off.get_weights()):
        np.testing.assert_array_equal(w_on, w_off)


def test_a_member_read_outside_the_group_stays_an_output():
    """``a * b`` is both inside the chain and a model output: the fused kernel writes it."""
    x, _ = _data()
    on, off = _pair_model(True), _pair_model(False)
    got, want = on.predict_on_batch(x), off.predict_on_batch(x)
    assert len(got) == 2
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    fid = on.graph.nodes_by_op(F.NAME)[0]
    assert on.graph.meta["outputs"] == [(fid, 1), (fid, 0)]  # outputs in the members' order


def test_an_intermediate_read_by_another_op_of_the_layer_is_kept():
    def fn(v):
        c = v * 3.0 - 1.0
        return ops.relu(c) + ops.sum(c, axis=-1, keepdims=True)

    def model(fuse):
        gm.clear_session()
        with fusion.enabled(fuse):
            x = gm.Input(shape=(T, D))
            m = gm.Model(x, gm.Lambda(fn, name="f")(x))
            m.compile(optimizer="sgd", loss="mse")
        return m

    on, off = model(True), model(False)
    # c feeds the sum and relu: it is an output of the group; the add reads the sum of
    # c, so it cannot join (the sum would have to run inside the group)
    assert _fused(on) == [("f", "multiply -> subtract -> relu", 2)]
    x, _ = _data()
    np.testing.assert_array_equal(on.predict_on_batch(x), off.predict_on_batch(x))


def test_masks_flow_through_a_fused_layer_unchanged():
    class Shift(gm.layers.Layer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.supports_masking = True

        def build(self, input_shape):
            self.b = self.add_weight(shape=(input_shape[-1],), name="b")

        def call(self, x):
            return ops.relu(x * 2.0 + self.b) - 0.5

    def model(fuse):
        gm.clear_session()
        gm.set_random_seed(2)
        with fusion.enabled(fuse):
            ids = gm.Input(shape=(T,), dtype="int32")
            e = gm.Embedding(20, D, mask_zero=True, name="emb")(ids)
            pooled = gm.GlobalAveragePooling1D(name="pool")(Shift(name="shift")(e))
            m = gm.Model(ids, gm.Dense(2, name="out")(pooled))
            m.compile(optimizer="sgd", loss="mse")
        return m

    on, off = model(True), model(False)
    assert _fused(on) == [("shift", "multiply -> add -> relu -> subtract", 1)]
    g_on, g_off = on.graph, off.graph
    fid = g_on.nodes_by_op(F.NAME)[0]
    emb = g_on.nodes_by_op("embedding")[0]
    mask = g_on.node(emb)["masks"][0]
    assert mask is not None
    assert [d["mask"] for src, _p, d in g_on.in_edges(fid) if src == emb] == [mask]

    def pool_mask(g):
        pool = g.nodes_by_op("global_average_pooling_1d")[0]
        return [(g.node(src)["op"], d["kind"]) for src, _p, d in g.in_edges(pool)]

    assert pool_mask(g_on) == pool_mask(g_off)
    ids = np.array([[3, 4, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6], [7, 0, 0, 0, 0, 0],
                    [9, 9, 9, 0, 0, 0]], "int32")
    np.testing.assert_array_equal(on.predict_on_batch(ids), off.predict_on_batch(ids))
    y = np.ones((B, 2), "float32")
    assert on.train_on_batch(ids, y) == off.train_on_batch(ids, y)


def test_a_broadcast_the_kernel_cannot_fold_runs_the_members_one_by_one():
    """A (T, 1) weight against (B, T, D) broadcasts in three runs of axes, which the
    kernel's two-axis layout cannot fold: the fused op runs its members' own kernels one
    by one (the unfused computation), so the results are the unfused graph's."""
    class PerStep(gm.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(T, 1), initializer="random_normal", name="w")

        def call(self, x):
            return ops.relu(x * self.w) + 1.0

    def model(fuse):
        gm.clear_session()
        gm.set_random_seed(6)
        with fusion.enabled(fuse):
            x = gm.Input(shape=(T, D))
            m = gm.Model(x, PerStep(name="per_step")(x))
            m.compile(optimizer="sgd", loss="mse")
        return m

    on, off = model(True), model(False)
    x, y = _data()
    fid = on.graph.nodes_by_op(F.NAME)[0]
    attrs = on.graph.node(fid)["attrs"]
    w = np.ones((T, 1), "float32")
    assert get_op(F.NAME)._plan(attrs, {"x0": x, "x1": w, "x2": np.float32(1)}) is None
    np.testing.assert_array_equal(on.predict_on_batch(x), off.predict_on_batch(x))
    for _ in range(2):
        assert on.train_on_batch(x, y) == off.train_on_batch(x, y)
    np.testing.assert_array_equal(on.get_weights()[0], off.get_weights()[0])


def test_a_call_that_depends_on_training_is_fused_in_both_graphs():
    """``fit`` runs the training branch, ``predict`` the other: each graph fuses its own."""
    class Noisy(gm.layers.Layer):
        def call(self, x, training=None):
            y = x * 2.0 + 1.0
            return ops.relu(y) - 0.5 if training else ops.maximum(y, 0.0) * 3.0

    def model(fuse):
        gm.clear_session()
        gm.set_random_seed(8)
        with fusion.enabled(fuse):
            x = gm.Input(shape=(T, D))
            m = gm.Model(x, gm.Dense(2, name="out")(Noisy(name="noisy")(x)))
            m.compile(optimizer="sgd", loss="mse")
        return m

    on, off = model(True), model(False)
    chains = [F.chain_label(g.node(n)["attrs"]) for g in (on.graph, on.inference_graph)
              for n in g.nodes_by_op(F.NAME)]
    assert chains == ["multiply -> add -> relu -> subtract", "multiply -> add -> maximum -> "
                                                               "multiply"]
    x, _ = _data()
    y = np.ones((B, T, 2), "float32")
    np.testing.assert_array_equal(on.predict_on_batch(x), off.predict_on_batch(x))
    assert on.train_on_batch(x, y) == off.train_on_batch(x, y)
    for w_on, w_off in zip(on.get_weights(), off.get_weights()):
        np.testing.assert_array_equal(w_on, w_off)


def test_threads_predicting_at_once_get_the_sequential_results():
    """Each thread has its own register file: concurrent runs of one fused kernel."""
    m = _chain_model(True)
    xs = [np.random.default_rng(s).standard_normal((700, T, D)).astype("float32")
          for s in range(8)]  # 21,000 values: several blocks each
    want = [m.predict_on_batch(x) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(m.predict_on_batch, xs * 3))
    for k, out in enumerate(got):
        np.testing.assert_array_equal(out, want[k % len(xs)])


# ------------------------------------------------------------------------ views
def test_debugprint_and_the_picture_show_the_fused_chain():
    m = _chain_model(True)
    text = debugprint(m, file=io.StringIO())
    fid = m.graph.nodes_by_op(F.NAME)[0]
    members = m.graph.node(fid)["fused"]
    line = next(s for s in text.splitlines() if f"[{fid}] {F.NAME}" in s)
    assert "'chain'" in line
    assert ("fused: subtract -> multiply -> add -> relu -> multiply -> maximum "
            f"(members {members})") in line
    view = build_view(m, expand=True)
    assert any("fused: subtract -> multiply -> add -> relu -> multiply -> maximum" in s
               for n in view.nodes.values() for s in n.lines)
    data, _ = explorer_data(m)  # the interactive explorer's node details
    node = data["nodes"][f"n{fid}"]
    assert (node["op"], node["fused"], node["layer"]) == (
        "fused: subtract -> multiply -> add -> relu -> multiply -> maximum", members, "chain")


# ------------------------------------------------------------------------ the op itself
def _ln_tail_attrs(dtype="float64"):
    return {"dtype": dtype, "n_in": 4, "outputs": [2], "members": [
        {"node": 1, "op": "prim.multiply", "attrs": {}, "args": {"x": ["in", 0],
                                                                  "y": ["in", 1]}},
        {"node": 2, "op": "prim.multiply", "attrs": {}, "args": {"x": ["m", 0],
                                                                  "y": ["in", 2]}},
        {"node": 3, "op": "prim.add", "attrs": {}, "args": {"x": ["m", 1], "y": ["in", 3]}}]}


@pytest.mark.parametrize("shapes", [
    [(3, 4, 5), (3, 4, 1), (5,), (5,)],      # full, column, row, row
    [(3, 4, 5), (3, 4, 5), (), (1, 1, 5)],   # full, full, scalar, row
    [(3, 4, 5), (1, 4, 1), (5,), ()],        # three runs of axes: the members one by one
])
def test_the_op_passes_the_shared_harness(shapes):
    rng = np.random.default_rng(0)
    inputs = {f"x{k}": rng.standard_normal(s) for k, s in enumerate(shapes)}
    check_op(F.NAME, _ln_tail_attrs(), inputs)


def test_where_clip_and_ties_in_the_kernel_match_the_primitives():
    rng = np.random.default_rng(1)
    attrs = {"dtype": "float32", "n_in": 3, "outputs": [3], "members": [
        {"node": 1, "op": "prim.clip", "attrs": {"min": -0.1, "max": 0.5},
         "args": {"x": ["in", 0]}},
        {"node": 2, "op": "prim.where", "attrs": {},
         "args": {"condition": ["in", 1], "x": ["m", 0], "y": ["in", 2]}},
        {"node": 3, "op": "prim.abs", "attrs": {}, "args": {"x": ["m", 1]}},
        {"node": 4, "op": "prim.minimum", "attrs": {},
         "args": {"x": ["m", 2], "y": ["in", 2]}}]}
    x = rng.standard_normal((6, 7)).astype("float32")
    x[0, :3] = [np.float32(-0.1), np.float32(0.5), 0.0]   # at the bounds, at 0
    cond = rng.random((6, 7)) > 0.3
    y = np.abs(rng.standard_normal((6, 7))).astype("float32")
    y[1, :2] = np.clip(np.abs(x[1, :2]), -0.1, 0.5)        # ties of minimum
    inputs = {"x0": x, "x1": cond, "x2": y}
    op = get_op(F.NAME)
    unfused = op._members(attrs, inputs, kernel=True)[3]
    np.testing.assert_array_equal(op.forward(attrs, inputs)[0], unfused)
    g = rng.standard_normal((6, 7)).astype("float32")
    got = op.vjp(attrs, inputs, [unfused], [g], ["x0", "x2"])
    want = op._members_vjp(attrs, inputs, [g], ["x0", "x2"], kernel=True)
    for p in ("x0", "x2"):
        np.testing.assert_array_equal(got[p], want[p])


def test_the_kernel_computes_in_the_dtype_the_members_would():
    """A float32 chain run on float64 values (as the float64 gradient checks do) computes
    in float64; a float32 scalar beside float64 arrays is cast up as the ufunc casts it;
    when the members would compute in different dtypes the members run one by one."""
    attrs = {"dtype": "float32", "n_in": 3, "outputs": [1], "members": [
        {"node": 1, "op": "prim.add", "attrs": {}, "args": {"x": ["in", 0], "y": ["in", 1]}},
        {"node": 2, "op": "prim.multiply", "attrs": {},
         "args": {"x": ["m", 0], "y": ["in", 2]}}]}
    op = get_op(F.NAME)
    rng = np.random.default_rng(2)
    x64, y64 = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    eps = np.array(1e-5, "float32")
    for x, y, fused in ((x64, y64, True), (x64.astype("float32"), y64, False)):
        inputs = {"x0": x, "x1": eps, "x2": y}
        assert (op._plan(attrs, inputs) is not None) == fused
        got = op.forward(attrs, inputs)[0]
        want = op._members(attrs, inputs, kernel=True)[1]
        assert got.dtype == want.dtype == np.float64
        np.testing.assert_array_equal(got, want)
        g = rng.standard_normal((4, 6))
        dx = op.vjp(attrs, inputs, [got], [g], ["x0", "x2"])
        want_dx = op._members_vjp(attrs, inputs, [g], ["x0", "x2"], kernel=True)
        for p in ("x0", "x2"):
            assert dx[p].dtype == inputs[p].dtype
            np.testing.assert_array_equal(dx[p], want_dx[p])


_EDGES = np.array([-0.0, 0.0, 1.0, -1.0, np.nan, 0.5, np.inf], "float32")


@pytest.mark.parametrize("op_name, attrs", [
    ("prim.maximum", {}), ("prim.minimum", {}), ("prim.relu", {}), ("prim.abs", {}),
    ("prim.clip", {"min": -0.0, "max": 0.0}), ("prim.clip", {"min": 0.0, "max": 0.5}),
    ("prim.sqrt", {}), ("prim.divide", {}), ("prim.square", {})])
def test_signed_zeros_nan_and_inf_are_the_ufuncs_bit_for_bit(op_name, attrs):
    """``np.maximum`` gives its second operand on ties (``max(-0, 0)`` is ``0``,
    ``max(0, -0)`` is ``-0``), ``np.clip`` keeps a value equal to a bound: the kernel
    follows, so even the sign of a zero and a NaN's bits match the unfused graph."""
    a, b = (np.tile(np.array(v, "float32"), 3) for v in zip(*itertools.product(_EDGES, _EDGES)))
    binary = op_name in ("prim.maximum", "prim.minimum", "prim.divide")
    args = {"x": ["in", 0], "y": ["in", 1]} if binary else {"x": ["in", 0]}
    chain = {"dtype": "float32", "n_in": 2 if binary else 1, "outputs": [1], "members": [
        {"node": 1, "op": op_name, "attrs": attrs, "args": args},
        {"node": 2, "op": "prim.negative", "attrs": {}, "args": {"x": ["m", 0]}}]}
    inputs = {"x0": a, "x1": b} if binary else {"x0": a}
    op = get_op(F.NAME)
    with np.errstate(all="ignore"):
        got = op.forward(chain, inputs)[0]
        want = op._members(chain, inputs, kernel=True)[1]
        np.testing.assert_array_equal(got.view("uint32"), want.view("uint32"))
        g = np.linspace(-2, 2, a.size).astype("float32")
        wrt = ["x0", "x1"] if binary else ["x0"]
        dx = op.vjp(chain, inputs, [got], [g], wrt)
        want_dx = op._members_vjp(chain, inputs, [g], wrt, kernel=True)
    for p in wrt:
        np.testing.assert_array_equal(dx[p].view("uint32"), want_dx[p].view("uint32"))


def test_an_empty_batch_gives_empty_values_and_zero_gradients():
    op = get_op(F.NAME)
    attrs = _ln_tail_attrs("float32")
    rng = np.random.default_rng(3)
    inputs = {"x0": np.zeros((0, 4, 5), "float32"), "x1": np.zeros((0, 4, 1), "float32"),
              "x2": rng.standard_normal(5).astype("float32"),
              "x3": rng.standard_normal(5).astype("float32")}
    (out,) = op.forward(attrs, inputs)
    assert out.shape == (0, 4, 5) and out.dtype == np.float32
    grads = op.vjp(attrs, inputs, [out], [np.zeros((0, 4, 5), "float32")],
                   ["x0", "x1", "x2", "x3"])
    assert [grads[p].shape for p in ("x0", "x1", "x2", "x3")] == [(0, 4, 5), (0, 4, 1),
                                                                  (5,), (5,)]
    np.testing.assert_array_equal(grads["x2"], np.zeros(5, "float32"))


def test_a_bad_broadcast_is_an_error_naming_the_chain():
    op = get_op(F.NAME)
    with pytest.raises(gm.ops.OpError, match=r"multiply -> multiply -> add.*cannot broadcast"):
        op.forward(_ln_tail_attrs(), {"x0": np.ones((2, 3)), "x1": np.ones((4, 1)),
                                      "x2": np.ones(3), "x3": np.ones(3)})


_dims = st.lists(st.integers(1, 5), min_size=0, max_size=4)


@settings(max_examples=40, deadline=None)
@given(out=_dims, pattern=st.lists(st.lists(st.booleans(), min_size=4, max_size=4),
                                   min_size=3, max_size=3),
       drop=st.lists(st.integers(0, 4), min_size=3, max_size=3))
def test_random_broadcasts_match_the_members(out, pattern, drop):
    """Inputs keep or broadcast each axis of the output (and may lose leading axes):
    values bit for bit, full-size gradients bit for bit, broadcast ones to 1e-12 (float64
    sums in another order)."""
    shapes = []
    for keep, lead in zip(pattern, drop):
        s = tuple(d if k else 1 for d, k in zip(out, keep))
        shapes.append(s[min(lead, len(s)):])
    attrs = {"dtype": "float64", "n_in": 3, "outputs": [2], "members": [
        {"node": 1, "op": "prim.multiply", "attrs": {}, "args": {"x": ["in", 0],
                                                                  "y": ["in", 1]}},
        {"node": 2, "op": "prim.subtract", "attrs": {}, "args": {"x": ["m", 0],
                                                                  "y": ["in", 2]}},
        {"node": 3, "op": "prim.maximum", "attrs": {}, "args": {"x": ["m", 1],
                                                                 "y": ["in", 0]}}]}
    rng = np.random.default_rng(len(out))
    inputs = {f"x{k}": rng.standard_normal(s) for k, s in enumerate(shapes)}
    op = get_op(F.NAME)
    full = np.broadcast_shapes(*shapes)
    (got,) = op.forward(attrs, inputs)
    want = op._members(attrs, inputs, kernel=True)[2]
    assert got.shape == want.shape == full
    np.testing.assert_array_equal(got, want)
    g = rng.standard_normal(full)
    wrt = ["x0", "x1", "x2"]
    dx, want_dx = op.vjp(attrs, inputs, [got], [g], wrt), op._members_vjp(
        attrs, inputs, [g], wrt, kernel=True)
    for p in wrt:
        assert dx[p].shape == inputs[p].shape
        if inputs[p].shape == full:
            np.testing.assert_array_equal(dx[p], want_dx[p])
        else:
            np.testing.assert_allclose(dx[p], want_dx[p], rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------ random chains
_UNARY = ["negative", "abs", "relu", "square", "sqrt", "clip"]
_BINARY = ["add", "subtract", "multiply", "divide", "maximum", "minimum", "where"]


def _apply(step, vals, weights, cond):
    kind, i, j, w = step
    a = vals[i % len(vals)]
    b = vals[j % len(vals)] if w is None else weights[w]
    if kind == "square":
        return ops.square(ops.clip(a, -2.0, 2.0))
    if kind == "sqrt":
        return ops.sqrt(ops.abs(a) + 1.0)
    if kind == "clip":
        return ops.clip(a, -1.5, 1.5)
    if kind in _UNARY:
        return getattr(ops, kind)(a)
    if kind == "divide":
        return a / (ops.abs(b) + 1.0)
    if kind == "where":
        return ops.where(cond, a, b)
    return getattr(ops, kind)(a, b)


class RandomChain(gm.layers.Layer):
    """A program of elementwise steps on the input, its column mean and weights shaped
    as a row ``(D,)``, a scalar ``()`` and a full ``(T, D)`` (a row of the batch)."""

    def __init__(self, program, **kw):
        super().__init__(**kw)
        self.program = program

    def build(self, input_shape):
        self.ws = [self.add_weight(shape=s, initializer="random_normal", name=f"w{k}")
                   for k, s in enumerate([(D,), (), (T, D)])]

    def call(self, x):
        vals = [x, ops.mean(x, axis=-1, keepdims=True)]
        cond = ops.greater(x, 0.0)
        for step in self.program:
            vals.append(_apply(step, vals, self.ws, cond))
        return vals[-1] + x  # an output of the full shape


_step = st.tuples(st.sampled_from(_UNARY + _BINARY), st.integers(0, 20), st.integers(0, 20),
                  st.one_of(st.none(), st.integers(0, 2)))


@settings(max_examples=15, deadline=None)
@given(program=st.lists(_step, min_size=2, max_size=7), optimizer=st.sampled_from(
    ["sgd", "adam"]))
def test_random_chains_give_the_results_of_the_unfused_graph(program, optimizer):
    x, y = _data(seed=len(program))

    def model(fuse):
        gm.clear_session()
        gm.set_random_seed(9)
        with fusion.enabled(fuse):
            inp = gm.Input(shape=(T, D))
            m = gm.Model(inp, RandomChain(program, name="random")(inp))
            m.compile(optimizer=optimizer, loss="mse")
        return m

    on, off = model(True), model(False)
    assert len(on.graph) <= len(off.graph)
    np.testing.assert_array_equal(on.predict_on_batch(x), off.predict_on_batch(x))
    assert on.evaluate(x, y, verbose=0) == off.evaluate(x, y, verbose=0)
    for _ in range(2):
        on.train_on_batch(x, y)
        off.train_on_batch(x, y)
    for w_on, w_off in zip(on.get_weights(), off.get_weights()):
        np.testing.assert_allclose(w_on, w_off, rtol=1e-5, atol=1e-6)
