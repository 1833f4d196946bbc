"""Custom layers with Keras 3's protocol: tracing, mask hand-over, compute_mask, nested
layers and their weights, the mask policy, and errors that name the layer."""
import numpy as np
import pytest

import graphmask as gm
from graphmask import LSTM, Dense, Embedding, Input, Model, ops
from graphmask.errors import ConfigError, MaskError, ShapeError

IDS = np.array([[3, 1, 4, 0, 0],      # right padding
                [0, 0, 2, 5, 1],      # left padding
                [1, 0, 3, 0, 4],      # holes
                [0, 0, 0, 0, 0]])     # empty row


class MaskedMean(gm.layers.Layer):
    """Mean over time of the kept steps (0 for an empty row)."""

    def call(self, x, mask=None):
        m = ops.expand_dims(ops.cast(mask, x.dtype), -1)
        total = ops.sum(x * m, axis=1)
        count = ops.maximum(ops.sum(m, axis=1), 1.0)
        return total / count


class MeanIgnoringMask(gm.layers.Layer):
    """The bug the mask policy exists for: it neither takes nor passes the mask."""

    def call(self, x):
        return ops.mean(x, axis=1)


class DropFirstStep(gm.layers.Layer):
    """Slices the first timestep off the values and off the mask alike."""

    def call(self, x):
        return x[:, 1:, :]

    def compute_mask(self, inputs, previous_mask):
        return None if previous_mask is None else previous_mask[:, 1:]


class Block(gm.layers.Layer):
    """A gated residual block made of nested built-in layers and its own weight."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.proj = Dense(units, name=f"{self.name}_proj")
        self.gate = Dense(units, activation="sigmoid", name=f"{self.name}_gate")
        self.supports_masking = True

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(self.units,), initializer="ones", name="scale")
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                     name="count")

    def call(self, x):
        return x + self.gate(x) * self.proj(x) * self.scale


def _emb_model(layer, units=3):
    x = Input((5,), dtype="int32")
    e = Embedding(7, units, mask_zero=True, name="emb")(x)
    return Model(x, layer(e)), x


def test_masked_mean_gets_the_embedding_mask_and_computes_over_kept_steps():
    model, _ = _emb_model(MaskedMean(name="mean"))
    emb = model.get_layer("emb").get_weights()[0]
    vec = emb[IDS]
    keep = (IDS != 0)[..., None]
    want = (vec * keep).sum(1) / np.maximum(keep.sum(1), 1)
    np.testing.assert_allclose(model.predict(IDS), want, rtol=1e-6, atol=1e-7)
    assert np.all(model.predict(IDS)[3] == 0.0)  # the empty row: 0, not NaN


def test_the_mask_argument_is_the_embedding_mask_tensor():
    seen = {}

    class Spy(gm.layers.Layer):
        def call(self, x, mask=None):
            seen["mask"] = mask
            return x

    x = Input((5,), dtype="int32")
    e = Embedding(7, 3, mask_zero=True)(x)
    Spy()(e)
    assert seen["mask"] is e.keras_mask
    assert seen["mask"].call.op == "mask_not_equal" and seen["mask"].dtype == "bool"
    unmasked = Input((5, 3))
    Spy()(unmasked)
    assert seen["mask"] is None


def test_explicit_mask_wins_and_two_tensor_arguments_get_their_own_masks():
    seen = {}

    class Pair(gm.layers.Layer):
        def call(self, query, value, query_mask=None, value_mask=None):
            seen.update(q=query_mask, v=value_mask)
            return query

    class One(gm.layers.Layer):
        def call(self, x, mask=None):
            seen["one"] = mask
            return x

    a, b = Input((5,), dtype="int32"), Input((4,), dtype="int32")
    ea = Embedding(7, 3, mask_zero=True)(a)
    eb = Embedding(7, 3, mask_zero=True)(b)
    Pair()(ea, eb)
    assert seen["q"] is ea.keras_mask and seen["v"] is eb.keras_mask
    mine = ops.not_equal(a, 3)
    One()(ea, mask=mine)
    assert seen["one"] is mine


def test_supports_masking_follows_keras3_defaults():
    assert MeanIgnoringMask().supports_masking is False
    assert DropFirstStep().supports_masking is True  # compute_mask is overridden
    assert MaskedMean().supports_masking is False
    layer = MeanIgnoringMask()
    layer.supports_masking = True
    assert layer.supports_masking is True
    assert Dense(2).supports_masking is True


def test_a_mask_reaching_a_layer_that_ignores_it_is_an_error_naming_both_layers():
    x = Input((5,), dtype="int32")
    e = Embedding(7, 3, mask_zero=True, name="emb")(x)
    with pytest.raises(MaskError, match=r"layer 'emb' \(ids != 0\) reaches layer 'bad' "
                                        r"\(MeanIgnoringMask\)"):
        MeanIgnoringMask(name="bad")(e)


def test_compute_mask_that_drops_the_first_step_reaches_the_next_lstm():
    x = Input((5,), dtype="int32")
    e = Embedding(7, 3, mask_zero=True, name="emb")(x)
    d = DropFirstStep(name="drop")(e)
    assert d.shape == (None, 4, 3) and d.keras_mask.shape == (None, 4)
    model = Model(x, LSTM(2, return_sequences=True, name="lstm")(d))
    # the same LSTM on the sliced ids with the sliced mask
    y = Input((4,), dtype="int32")
    ref = Model(y, LSTM(2, return_sequences=True, name="lstm2")(
        Embedding(7, 3, mask_zero=True, name="emb2")(y)))
    ref.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(IDS), ref.predict(IDS[:, 1:]), rtol=1e-6,
                               atol=1e-7)


def test_nested_layers_are_tracked_and_weights_are_in_keras_order():
    block = Block(3, name="block")
    model, _ = _emb_model(block)
    names = [v.name for v in block.weights]
    assert names == ["block/scale", "block/count", "block_proj/kernel", "block_proj/bias",
                     "block_gate/kernel", "block_gate/bias"]
    assert [v.name for v in block.trainable_weights] == [
        "block/scale", "block_proj/kernel", "block_proj/bias", "block_gate/kernel",
        "block_gate/bias"]
    assert [layer.name for layer in model.layers] == ["input_layer", "emb", "block"]
    assert [v.name for v in model.weights] == ["emb/embeddings"] + names
    # the output: x + sigmoid(x Wg + bg) * (x Wp + bp) * scale
    emb, scale, _count, wp, bp, wg, bg = model.get_weights()
    x = emb[IDS]
    want = x + 1 / (1 + np.exp(-(x @ wg + bg))) * (x @ wp + bp) * scale
    np.testing.assert_allclose(model.predict(IDS), want, rtol=1e-5, atol=1e-6)


def test_block_passes_the_mask_and_freezing_it_freezes_its_nested_layers():
    x = Input((5,), dtype="int32")
    e = Embedding(7, 3, mask_zero=True)(x)
    block = Block(3)
    out = block(e)
    assert out.keras_mask is not None
    block.trainable = False
    assert block.trainable_weights == [] and block.proj.trainable is False


def test_custom_layer_gradients_equal_the_builtin_dense():
    class MyDense(gm.layers.Layer):
        def __init__(self, units, **kw):
            super().__init__(**kw)
            self.units = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
            self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

        def call(self, x):
            return ops.matmul(x, self.kernel) + self.bias

    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(6, 4)).astype("float32"), rng.normal(size=(6, 2))
    a = Input((4,))
    mine = Model(a, MyDense(2, name="mine")(a))
    b = Input((4,))
    ref = Model(b, Dense(2, name="ref")(b))
    ref.set_weights(mine.get_weights())
    for m in (mine, ref):
        m.compile(loss="mse", optimizer="sgd")
    la, ga = mine.loss_and_gradients(xs, ys)
    lb, gb = ref.loss_and_gradients(xs, ys)
    assert la == pytest.approx(lb, rel=1e-6)
    np.testing.assert_allclose(ga["mine/kernel"], gb["ref/kernel"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ga["mine/bias"], gb["ref/bias"], rtol=1e-5, atol=1e-7)


def test_training_argument_reaches_call():
    seen = []

    class Spy(gm.layers.Layer):
        def call(self, x, training=None):
            seen.append(training)
            return x

    Spy()(Input((3,)))
    Spy()(Input((3,)), training=True)
    Spy()(np.ones((1, 3)), training=True)
    Spy()(np.ones((1, 3)))
    # symbolic, not given: traced for predict (False) and for fit (True); given: once;
    # eager and not given: the signature's default
    assert seen == [False, True, True, True, None]


def test_call_returning_a_non_tensor_names_the_layer():
    class Bad(gm.layers.Layer):
        def call(self, x):
            return 3.0

    with pytest.raises(ConfigError, match=r"layer 'bad' \(Bad\): call\(\) must return "
                                          r"symbolic tensors"):
        Bad(name="bad")(Input((3,)))


def test_exception_inside_call_names_the_layer():
    class Boom(gm.layers.Layer):
        def call(self, x):
            raise KeyError("oops")

    with pytest.raises(ConfigError, match=r"layer 'boom' \(Boom\): call\(\) raised "
                                          r"KeyError: 'oops'"):
        Boom(name="boom")(Input((3,)))


def test_incompatible_shapes_in_ops_name_the_layer_and_the_op():
    class AddWrong(gm.layers.Layer):
        def call(self, x):
            return x + x[:, :2]

    with pytest.raises(ShapeError, match=r"layer 'wrong' \(AddWrong\): .*add.*"
                                         r"\[input shapes \{'x': \(None, 3\), "
                                         r"'y': \(None, 2\)\}\]"):
        AddWrong(name="wrong")(Input((3,)))


def test_add_weight_with_a_bad_initializer_names_layer_and_weight():
    class W(gm.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(2,), initializer="glorot_unifrom", name="w")

        def call(self, x):
            return x

    with pytest.raises(ConfigError, match=r"'w_layer'.*initializer of weight 'w'.*"
                                          r"glorot_unifrom"):
        W(name="w_layer")(Input((3,)))


def test_a_mask_of_the_wrong_shape_passed_as_mask_is_refused():
    x = Input((5, 3))
    wrong = ops.greater(Input((4,)), 0.0)
    with pytest.raises(MaskError, match=r"mask of shape \(None, 4\) does not fit the "
                                        r"tensor of shape \(None, 5, 3\)"):
        LSTM(2)(x, mask=wrong)
    with pytest.raises(MaskError, match="mask= must have dtype bool"):
        LSTM(2)(x, mask=Input((5,)))


def test_the_graph_groups_a_custom_layers_primitives_under_its_name():
    x = Input((5,), dtype="int32")
    e = Embedding(7, 3, mask_zero=True, name="emb")(x)
    model = Model(x, Block(3, name="blk")(e))
    g = model.graph
    ops_of = {}
    for nid in g.order():
        n = g.node(nid)
        ops_of.setdefault(n["layer"], []).append(n["op"])
    assert "prim.add" in ops_of["blk"] and "prim.multiply" in ops_of["blk"]
    nested = [g.node(n) for n in g.order() if g.node(n)["layer"] == "blk_proj"]
    assert nested and all(n.get("scope") == ["blk"] for n in nested)


def test_dropout_training_follows_fit_eager_calls_and_an_explicit_argument():
    x = np.ones((4, 50), dtype="float32")
    drop = gm.Dropout(0.5)
    np.testing.assert_array_equal(drop(x), x)
    np.testing.assert_array_equal(drop(x, training=False), x)
    out = drop(x, training=True)
    assert set(np.unique(out)) <= {0.0, 2.0} and 0 < (out == 0).sum() < out.size
    # Keras: an explicit training=True pins dropout on, in predict too
    inp = Input((50,))
    pinned = Model(inp, gm.Dropout(0.5)(inp, training=True)).predict(x)
    assert set(np.unique(pinned)) <= {0.0, 2.0} and 0 < (pinned == 0).sum() < pinned.size
    with pytest.raises(ConfigError, match=r"layer 'dropout_\d+' \(Dropout\): training must be "
                                          r"True, False or None, got 'yes'"):
        gm.Dropout(0.5)(Input((3,)), training="yes")


def test_two_weights_with_one_name_are_an_error_not_silently_shared():
    class Block(gm.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.proj = Dense(3, name="proj")

        def call(self, x):
            return self.proj(x)

    x = Input((3,))
    with pytest.raises(ConfigError, match=r"two different weights are named 'proj/kernel': "
                                          r"one in layer 'b2', one in layer 'b1'"):
        Model(x, Block(name="b1")(Block(name="b2")(x)))
    shared = Block(name="b3")  # one layer called twice: one set of weights, as in Keras
    m = Model(x, shared(shared(x)))
    assert [w.name for w in m.weights] == ["proj/kernel", "proj/bias"]
