"""Custom layers written once, run by Keras 3 and by graphmask: code ports by its import.

``BODY`` below is ordinary Keras 3 code: custom layers (``build`` with ``add_weight``,
``call`` with ``mask`` / ``{arg}_mask``, ``compute_mask``, ``supports_masking``, nested
built-in layers, an ``if training:`` branch), a ``Lambda`` with ``mask=``, a model called
as a layer and an encoder-decoder with ``initial_state``, and the models built from them.
It is executed twice, after ``from keras import Input, Model, layers, ops`` and after
``from graphmask import Input, Model, layers, ops``; nothing else differs
(``test_the_source_names_no_library``).

For each model: the layers and weights in the same order (Keras's
``get_weights()`` is copied into graphmask as is; a mismatch fails with both name
lists), then ``predict``, ``evaluate`` with a mean squared error (masked wherever the
output carries a mask) under right, left, holes and empty-row padding, and the weights
after four ``train_on_batch`` steps (one per padding kind) with SGD and with Adam. Then
the same layers called eagerly on NumPy arrays in both libraries, and Keras's own tests
of the mask hand-over (Keras's ``layer_test.py``: ``test_masking``,
``test_masking_with_explicit_kwarg_propagation``, ``test_end_to_end_masking``) ported
with their expected values. Not ported: ``test_keras_mask_with_autocast`` (float16
layers), the ``MaskUnsetDuringCallLayer`` part of ``test_masking`` (it needs
``backend.set_keras_mask``) and ``test_layer_build_with_attention_mask_arg`` (``build``
receiving ``{arg}_shape`` for each tensor argument): graphmask has none of these.

Float32 tolerances (measured on these models, seeds as here):

* predict and eager calls: ``tw.RTOL, tw.ATOL`` (1e-5, 1e-6): one float32 forward
  pass; measured ``|ours - Keras| <= 2.4e-7`` on outputs of magnitude ~1.
* evaluate: relative 1e-5; measured 1.7e-7.
* weights after SGD steps (learning rate 0.1): ``tw.TRAIN_RTOL, tw.TRAIN_ATOL``
  (1e-4, 2e-6); measured 6e-8, while the four steps move each model's largest-moving
  weight by 0.05 to 0.48.
* weights after Adam steps: absolute ``ADAM_TOL * learning_rate * steps``
  (1e-3 * 0.01 * 4 = 4e-5), relative 1e-4. Adam's step ``lr * m / (sqrt(v) + eps)``
  does not scale with the gradient, so an entry whose gradient is of the size of float32
  rounding moves by up to ``lr`` in a direction rounding decides; measured 3.6e-7
  (9e-6 of ``lr * steps``), while one skipped or misapplied update is off by ``lr``.

Keras 3.15 behaviours met here (graphmask does not copy them):

* ``LSTM(...)(x, initial_state=[h, c])``: with two tensor arguments Keras's
  ``Layer.__call__`` hands over ``{arg}_mask`` only, and LSTM's ``call`` has no
  ``sequences_mask``: the decoder runs over the padding (its output still carries the
  mask, so the loss is masked). graphmask applies ``x``'s mask. Portable code passes
  ``mask=`` explicitly, as ``encoder_decoder_model`` does (``test_keras_initial_state.py``
  pins the difference down).
* A functional model called eagerly with a NumPy ``mask=`` fails inside Keras's LSTM
  (``'numpy.ndarray' object has no attribute 'type'``): Keras is given a tensor there.
* Masks may be float in Keras (``mask=np.ones(4)``); graphmask requires bool masks.
* A functional model called as a layer: Keras's symbolic output carries no mask, yet
  when the model runs the inner layers' mask travels on the output tensor and the loss
  is masked; graphmask's output carries the mask. Predictions and losses agree.

Three former gaps, now closed and kept as tests: ``model(x, mask=m)`` on arrays,
tensors passed by keyword only (``layer(x1=a, x2=b)`` hands over ``x1_mask`` /
``x2_mask``), and ``compute_mask`` returning more masks than outputs (paired in order,
as Keras's ``_set_mask_metadata``).
"""
from __future__ import annotations

import functools
import re

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

import graphmask as gm  # noqa: E402
from graphmask import ops  # noqa: E402
from tests.conformance import twin as tw  # noqa: E402

# Keras warns when a mask reaches a layer that reads it but does not pass it on
pytestmark = pytest.mark.filterwarnings(
    "ignore:Layer '.*' \\(of type .*\\) was passed an input with a mask:UserWarning")

B = 6                 # batch
PADDINGS = ("right", "left", "holes", "rows")  # rows: holes and two rows with no kept step
ADAM_TOL = 1e-3
OPTIMIZERS = {"SGD": {"learning_rate": 0.1}, "Adam": {"learning_rate": 0.01}}

HEADER = "from {lib} import Input, Model, layers, ops\n"
BODY = '''
Layer = layers.Layer
T, V, E, H = 5, 7, 3, 4  # time steps, vocabulary, embedding width, LSTM units


# ---- 1. masked mean and masked max over time -------------------------------------------
class MaskedMean(Layer):
    """Mean over the kept steps (0 for a row with none)."""

    def call(self, x, mask=None):
        m = ops.expand_dims(ops.cast(mask, x.dtype), -1)
        return ops.sum(x * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)


class MaskedMax(Layer):
    """Max over the kept steps: masked steps become a large negative (0 for an empty row)."""

    def call(self, x, mask=None):
        m = ops.expand_dims(mask, -1)
        top = ops.max(ops.where(m, x, -1e9), axis=1)
        return ops.where(ops.any(m, axis=1), top, 0.0)


# ---- 2. attention pooling with a learned query ------------------------------------------
class AttentionPool(Layer):
    """softmax over the kept steps of x . query, then the weighted sum of the steps."""

    def build(self, input_shape):
        self.query = self.add_weight(shape=(input_shape[-1],), initializer="glorot_uniform",
                                     name="query")

    def call(self, x, mask=None):
        scores = ops.where(mask, ops.matmul(x, self.query), -1e9)
        weights = ops.softmax(scores, axis=-1) * ops.cast(mask, x.dtype)
        return ops.sum(x * ops.expand_dims(weights, -1), axis=1)


# ---- 3. a gated residual block of built-in Dense layers ---------------------------------
class GatedResidual(Layer):
    """x + sigmoid(x Wg + bg) * tanh(x Wp + bp); passes the mask on."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.proj = layers.Dense(units, activation="tanh", name=self.name + "_proj")
        self.gate = layers.Dense(units, activation="sigmoid", name=self.name + "_gate")
        self.supports_masking = True

    def call(self, x):
        return x + self.gate(x) * self.proj(x)


# ---- 4. a compute_mask that changes the mask --------------------------------------------
class DropFirstStep(Layer):
    """Drops the first step of the values and, in compute_mask, of the mask."""

    def call(self, x):
        return x[:, 1:, :]

    def compute_mask(self, inputs, previous_mask):
        if previous_mask is None:
            return None
        return previous_mask[:, 1:]


# ---- 5. attention between two masked sequences ------------------------------------------
class CrossAttention(Layer):
    """Each query step attends to the kept value steps; the output keeps the query's mask."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.key = layers.Dense(units, use_bias=False, name=self.name + "_key")
        self.supports_masking = True

    def call(self, query, value, query_mask=None, value_mask=None):
        keys = self.key(value)
        scores = ops.matmul(query, ops.transpose(keys, (0, 2, 1)))
        if value_mask is None:
            return query + ops.matmul(ops.softmax(scores, axis=-1), value)
        keep = ops.expand_dims(value_mask, 1)
        weights = ops.softmax(ops.where(keep, scores, -1e9), axis=-1)
        weights = weights * ops.cast(keep, query.dtype)
        return query + ops.matmul(weights, value)


# ---- 10. a call that computes something else while training -----------------------------
class TrainingShift(Layer):
    """While training (fit): x / 2 + shift, a weight only training reads; else x."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, input_shape):
        self.shift = self.add_weight(shape=(input_shape[-1],), initializer="ones",
                                     name="shift")

    def call(self, x, training=None):
        if training:
            return x * 0.5 + self.shift
        return x


# ---- 6. Lambda functions, one reading the mask -------------------------------------------
def zero_masked(x, mask):
    return x * ops.expand_dims(ops.cast(mask, x.dtype), -1)


def pass_mask(inputs, mask):
    return mask


# ---- 7. a layer nesting built-in layers, with its own weight ----------------------------
class Encoder(Layer):
    """LSTM(tanh(Dense(x))) * scale, the mask handed to the LSTM."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.proj = layers.Dense(units, activation="tanh", name=self.name + "_proj")
        self.rnn = layers.LSTM(units, return_sequences=True, name=self.name + "_rnn")
        self.supports_masking = True

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(self.units,), initializer="ones", name="scale")

    def call(self, x, mask=None):
        return self.rnn(self.proj(x), mask=mask) * self.scale


# ---- the models --------------------------------------------------------------------------
def ids_input(name="ids"):
    return Input(shape=(T,), dtype="int32", name=name)


def embed(ids, name="emb"):
    return layers.Embedding(V, E, mask_zero=True, name=name)(ids)


def head(x):
    return layers.Dense(2, name="head")(x)


def pooling_model():
    ids = ids_input()
    e = embed(ids)
    return Model(ids, [MaskedMean(name="mean")(e), MaskedMax(name="max")(e)])


def attention_pool_model():
    ids = ids_input()
    return Model(ids, AttentionPool(name="attn")(embed(ids)))


def gated_model():
    ids = ids_input()
    x = GatedResidual(E, name="gated")(embed(ids))
    return Model(ids, head(layers.LSTM(H, return_sequences=True, name="lstm")(x)))


def drop_first_model():
    ids = ids_input()
    x = DropFirstStep(name="drop")(embed(ids))
    return Model(ids, head(layers.LSTM(H, return_sequences=True, name="lstm")(x)))


def cross_attention_model():
    q, v = ids_input("q"), ids_input("v")
    return Model([q, v], head(CrossAttention(E, name="cross")(embed(q, "emb_q"),
                                                              embed(v, "emb_v"))))


def lambda_model():
    ids = ids_input()
    x = layers.Lambda(zero_masked, output_shape=(T, E), mask=pass_mask, name="zero")(
        embed(ids))
    x = layers.Lambda(lambda t: ops.tanh(t) * 2.0, mask=pass_mask, name="squash")(x)
    return Model(ids, head(layers.LSTM(H, return_sequences=True, name="lstm")(x)))


def nested_layers_model():
    ids = ids_input()
    return Model(ids, head(Encoder(H, name="enc")(embed(ids))))


def inner_model():
    x = Input(shape=(T, E), name="inner_in")
    h = layers.LSTM(H, return_sequences=True, name="inner_lstm")(x)
    return Model(x, layers.Dense(H, activation="tanh", name="inner_dense")(h), name="inner")


def model_as_layer_model():
    ids = ids_input()
    return Model(ids, head(inner_model()(embed(ids))))


def training_branch_model():
    ids = ids_input()
    x = TrainingShift(name="shift")(embed(ids))
    return Model(ids, head(layers.LSTM(H, return_sequences=True, name="lstm")(x)))


def encoder_decoder_model():
    src, tgt = ids_input("src"), ids_input("tgt")
    _, h, c = layers.LSTM(H, return_state=True, name="encoder")(embed(src, "emb_src"))
    y = embed(tgt, "emb_tgt")
    y = layers.LSTM(H, return_sequences=True, name="decoder")(y, initial_state=[h, c],
                                                              mask=y._keras_mask)
    return Model([src, tgt], head(y))
'''

CASES = {  # the brief's cases 1-9: case -> builder in BODY
    "masked_mean_and_max": "pooling_model",
    "attention_pooling": "attention_pool_model",
    "gated_residual": "gated_model",
    "compute_mask_drops_first_step": "drop_first_model",
    "two_tensor_attention": "cross_attention_model",
    "lambda_with_mask": "lambda_model",
    "nested_dense_and_lstm": "nested_layers_model",
    "model_as_layer": "model_as_layer_model",
    "encoder_decoder_initial_state": "encoder_decoder_model",
    "training_branch": "training_branch_model",  # `if training:` in call (fit vs predict)
}


@functools.cache
def lib(name: str) -> dict:
    """BODY executed after the import line of ``name`` ("keras" or "graphmask")."""
    namespace: dict = {}
    exec(compile(HEADER.format(lib=name) + BODY, f"<custom layers on {name}>", "exec"),
         namespace)
    return namespace


def _k(x):
    """Keras's result (tensors, nested in lists) as NumPy arrays."""
    if isinstance(x, (list, tuple)):
        return [_k(v) for v in x]
    return keras.ops.convert_to_numpy(x)


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _weight_names(g_vars, k_vars):
    """graphmask's and Keras's weight names, each reduced to ``layer/weight`` (Keras's
    paths also name the enclosing layers and the LSTM cell)."""
    return _gm_names(g_vars), _keras_names(k_vars)


def _gm_names(variables):
    return ["/".join(v.name.split("/")[-2:]) for v in variables]


def _keras_names(variables):
    return ["/".join([p for p in v.path.split("/") if p != "lstm_cell"][-2:])
            for v in variables]


# ---- the twins ---------------------------------------------------------------------------
def twin(case: str, seed: int = 0):
    """The case's model in both libraries, Keras's weights (random normal * 0.5) copied
    into graphmask unchanged: their order must already agree."""
    builder = CASES[case]
    g, k = lib("graphmask")[builder](), lib("keras")[builder]()
    ours, theirs = _weight_names(g.weights, k.weights)
    assert ours == theirs, f"{case}: weight order differs\ngraphmask: {ours}\nKeras:     {theirs}"
    rng = np.random.default_rng(seed)
    k.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                   for w in k.get_weights()])
    g.set_weights(k.get_weights())
    return g, k


def batch(k, padding: str, rng):
    """Ids with ``padding`` zeros for each input of the model (drawn independently)."""
    xs = [tw.ids_for(tw.mask_pattern(padding, B, int(i.shape[1]), rng), 7, rng)
          for i in k.inputs]
    return xs[0] if len(xs) == 1 else xs


def targets(k, rng):
    ys = [rng.standard_normal((B,) + tuple(o.shape[1:])).astype(np.float32)
          for o in k.outputs]
    return ys[0] if len(ys) == 1 else ys


def test_the_source_names_no_library():
    # the code ports by its import line alone
    assert not re.search(r"\b(keras|graphmask|import)\b", BODY)
    assert sorted(k for k in lib("keras") if not k.startswith("__")) == \
        sorted(k for k in lib("graphmask") if not k.startswith("__"))
    assert lib("keras")["ops"] is keras.ops and lib("graphmask")["ops"] is ops
    assert lib("keras")["Layer"] is keras.layers.Layer
    assert lib("graphmask")["Layer"] is gm.layers.Layer


@pytest.mark.parametrize("case", CASES)
def test_layers_and_weights_in_keras_order(case):
    g, k = twin(case)
    assert [layer.name for layer in g.layers] == [layer.name for layer in k.layers]
    for gl, kl in zip(g.layers, k.layers):
        ours, theirs = _weight_names(gl.weights, kl.weights)
        assert ours == theirs, f"{case}: layer {gl.name!r}\ngraphmask: {ours}\nKeras: {theirs}"
        ours, theirs = _weight_names(gl.trainable_weights, kl.trainable_weights)
        assert ours == theirs, f"{case}: layer {gl.name!r} trainable weights"


def test_nested_weights_are_own_first_then_nested_layers_in_keras_order():
    g, k = twin("nested_dense_and_lstm")
    want = ["enc/scale", "enc_proj/kernel", "enc_proj/bias", "enc_rnn/kernel",
            "enc_rnn/recurrent_kernel", "enc_rnn/bias"]
    assert _gm_names(g.get_layer("enc").weights) == want
    assert _keras_names(k.get_layer("enc").weights) == want
    assert [v.name for v in g.get_layer("enc").weights][:3] == [
        "enc/scale", "enc_proj/kernel", "enc_proj/bias"]


@pytest.mark.parametrize("case", CASES)
def test_predict_and_masked_evaluate(case):
    g, k = twin(case)
    rng = np.random.default_rng(1)
    g.compile(loss="mse")
    k.compile(loss="mse")
    for padding in PADDINGS:
        xs, ys = batch(k, padding, rng), targets(k, rng)
        tw.assert_close(_as_list(g.predict(xs)), _as_list(_k(k.predict(xs, batch_size=B,
                                                                          verbose=0))),
                        what=f"{case} predict, {padding} padding")
        tw.assert_close(g.evaluate(xs, ys, batch_size=B),
                        k.evaluate(xs, ys, batch_size=B, verbose=0), rtol=1e-5, atol=0,
                        what=f"{case} evaluate, {padding} padding")


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("case", CASES)
def test_train_on_batch(case, optimizer):
    g, k = twin(case)
    tw.check_train_steps(g, k, optimizer, OPTIMIZERS[optimizer], PADDINGS, batch, targets,
                         case, ADAM_TOL)


# ---- eager calls on NumPy arrays ---------------------------------------------------------
def _eager_data(seed=4):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, 5, 3)).astype(np.float32)
    v = rng.standard_normal((B, 5, 3)).astype(np.float32)
    return x, v, tw.mask_pattern("mixed", B, 5, rng), tw.mask_pattern("rows", B, 5, rng)


EAGER = {  # layer -> (make it from a namespace, call it on (x, v, mask, value mask))
    "masked_mean": (lambda ns: ns["MaskedMean"](name="mean"),
                    lambda layer, x, v, m, mv: layer(x, mask=m)),
    "masked_max": (lambda ns: ns["MaskedMax"](name="max"),
                   lambda layer, x, v, m, mv: layer(x, mask=m)),
    "attention_pool": (lambda ns: ns["AttentionPool"](name="attn"),
                       lambda layer, x, v, m, mv: layer(x, mask=m)),
    "gated_residual": (lambda ns: ns["GatedResidual"](3, name="gated"),
                       lambda layer, x, v, m, mv: layer(x)),
    "drop_first_step": (lambda ns: ns["DropFirstStep"](name="drop"),
                        lambda layer, x, v, m, mv: layer(x)),
    "two_tensor_attention": (lambda ns: ns["CrossAttention"](3, name="cross"),
                             lambda layer, x, v, m, mv: layer(x, v, query_mask=m,
                                                              value_mask=mv)),
    "lambda_reading_the_mask": (lambda ns: ns["layers"].Lambda(ns["zero_masked"],
                                                               output_shape=(5, 3),
                                                               mask=ns["pass_mask"]),
                                lambda layer, x, v, m, mv: layer(x, mask=m)),
    "nested_dense_and_lstm": (lambda ns: ns["Encoder"](4, name="enc"),
                              lambda layer, x, v, m, mv: layer(x, mask=m)),
}


@pytest.mark.parametrize("name", EAGER)
def test_eager_calls_match_keras(name):
    make, call = EAGER[name]
    x, v, m, mv = _eager_data()
    kl, gl = make(lib("keras")), make(lib("graphmask"))
    theirs = _k(call(kl, x, v, m, mv))
    if kl.weights:
        call(gl, x, v, m, mv)  # builds graphmask's weights
        rng = np.random.default_rng(5)
        kl.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                        for w in kl.get_weights()])
        theirs = _k(call(kl, x, v, m, mv))
        ours, want = _weight_names(gl.weights, kl.weights)
        assert ours == want
        gl.set_weights(kl.get_weights())
    ours = call(gl, x, v, m, mv)
    assert isinstance(ours, np.ndarray) and ours.shape == theirs.shape
    tw.assert_close(ours, theirs, what=name)


def test_eager_model_call_with_a_mask_matches_keras():
    x, _, m, _ = _eager_data()
    km, g = lib("keras")["inner_model"](), lib("graphmask")["inner_model"]()
    g.set_weights(km.get_weights())
    theirs = _k(km(x, mask=keras.ops.convert_to_tensor(m)))  # a NumPy mask fails in Keras
    tw.assert_close(g(x, mask=m), theirs)


# ---- Keras's own tests of the mask hand-over (its layer_test.py) ------------------------
class _Spy(gm.layers.Layer):
    """Records the mask arguments its call receives; supports masking."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.seen = []


class BasicMaskedLayer(_Spy):
    def call(self, x, mask=None):
        self.seen.append(mask)
        return x


class NestedInputMaskedLayer(_Spy):
    def call(self, x, mask=None):
        self.seen.append((x, mask))
        return x


class PositionalInputsMaskedLayer(_Spy):
    def call(self, x1, x2, x1_mask=None, x2_mask=None):
        self.seen.append((x1_mask, x2_mask))
        return x1 + x2


class PositionalNestedInputsMaskedLayer(_Spy):
    def call(self, x1, x2, x1_mask=None, x2_mask=None):
        self.seen.append((x1, x1_mask, x2_mask))
        return x1[0] + x1[1] + x2


def _masked(shape=(4,), name=None):
    """A symbolic tensor carrying a mask of one value per sample (as Keras's test sets a
    (4,) mask on a (4, 4) tensor), and that mask."""
    x = gm.Input(shape, name=name)
    mask = ops.greater(x[:, 0], 0.0)
    return BasicMaskedLayer()(x, mask=mask), mask


def test_keras_masking_basic_layer_receives_the_mask():
    y, mask = _masked()
    layer = BasicMaskedLayer()
    out = layer(y)
    assert layer.seen == [mask] and out.keras_mask is mask
    explicit = ops.less(gm.Input((4,))[:, 0], 0.0)
    layer(gm.Input((4,)), mask=explicit)
    assert layer.seen[-1] is explicit
    # eagerly: layer(np.ones((4, 4)), mask=np.ones((4,))), with a bool mask
    eager = BasicMaskedLayer()
    np.testing.assert_array_equal(eager(np.ones((4, 4), np.float32), mask=np.ones(4, bool)),
                                  np.ones((4, 4), np.float32))
    assert len(eager.seen) == 1 and eager.seen[0] is not None


def test_keras_masking_nested_inputs_get_a_list_of_masks():
    (a, ma), (b, mb) = _masked(name="a"), _masked(name="b")
    layer = NestedInputMaskedLayer()
    layer([a, b])
    x, mask = layer.seen[-1]
    assert isinstance(x, list) and len(x) == 2
    assert isinstance(mask, list) and mask == [ma, mb]
    m1, m2 = ops.less(gm.Input((4,))[:, 0], 0.0), ops.less(gm.Input((4,))[:, 1], 0.0)
    layer([gm.Input((4,)), gm.Input((4,))], mask=[m1, m2])
    assert layer.seen[-1][1] == [m1, m2]
    out = NestedInputMaskedLayer()([np.ones((4, 4), np.float32)] * 2,
                                   mask=[np.ones(4, bool), np.ones(4, bool)])
    assert isinstance(out, list) and len(out) == 2
    np.testing.assert_array_equal(out[1], np.ones((4, 4)))


def test_keras_masking_positional_inputs_get_their_own_masks():
    (a, ma), (b, mb) = _masked(name="a"), _masked(name="b")
    layer = PositionalInputsMaskedLayer()
    layer(a, b)
    assert layer.seen[-1] == (ma, mb)


def test_keras_masking_keyword_inputs_get_their_own_masks():
    (a, ma), (b, mb) = _masked(name="a"), _masked(name="b")
    layer = PositionalInputsMaskedLayer()
    layer(x1=a, x2=b)
    assert layer.seen[-1] == (ma, mb)


def test_keras_masking_positional_nested_inputs_keep_their_structure():
    # the hand-over alone: Keras's layer without supports_masking (graphmask then keeps
    # no output mask, as Keras would)
    (a1, m1), (a2, m2), (b, mb) = _masked(name="a1"), _masked(name="a2"), _masked(name="b")
    layer = PositionalNestedInputsMaskedLayer()
    layer.supports_masking = False
    out = layer((a1, a2), b)
    x1, x1_mask, x2_mask = layer.seen[-1]
    assert isinstance(x1, tuple) and x1 == (a1, a2)
    assert isinstance(x1_mask, tuple) and x1_mask == (m1, m2)
    assert x2_mask is mb
    assert out.keras_mask is None


def test_keras_masking_positional_nested_inputs_with_supports_masking():
    (a1, m1), (a2, m2), (b, mb) = _masked(name="a1"), _masked(name="a2"), _masked(name="b")
    layer = PositionalNestedInputsMaskedLayer()
    out = layer((a1, a2), b)
    assert layer.seen[-1][1] == (m1, m2) and layer.seen[-1][2] is mb
    assert out.keras_mask is m1


def test_keras_masking_with_explicit_kwarg_propagation():
    # an unmasked input and an explicit mask: call receives it, the output carries it
    x = gm.Input((4,), name="x")
    assert x.keras_mask is None
    explicit = ops.greater(x[:, 1], 0.0)
    layer = BasicMaskedLayer()
    y = layer(x, mask=explicit)
    assert layer.seen == [explicit]
    assert y.keras_mask is explicit
    # and the values: a layer after it reads the propagated mask
    seq, keep = gm.Input((3, 2), name="seq"), gm.Input((3,), dtype="bool", name="keep")
    model = gm.Model([seq, keep], lib("graphmask")["MaskedMean"]()(
        BasicMaskedLayer()(seq, mask=keep)))
    data = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    kept = np.array([[1, 0, 1], [1, 1, 1], [0, 0, 0], [0, 1, 0]], bool)
    want = (data * kept[..., None]).sum(1) / np.maximum(kept.sum(1), 1)[:, None]
    np.testing.assert_allclose(model.predict([data, kept]), want, rtol=1e-6)
    np.testing.assert_array_equal(want[2], [0.0, 0.0])
    # eagerly, Keras's case: ones((4, 4)) and the mask [True, True, False, False]
    eager = BasicMaskedLayer()
    out = eager(np.ones((4, 4), np.float32), mask=np.array([True, True, False, False]))
    assert eager.seen[0] is not None
    np.testing.assert_array_equal(out, np.ones((4, 4)))


def test_keras_end_to_end_masking():
    # masking survives compilation: the masked steps of Embedding(mask_zero) do not count
    model = gm.Sequential([gm.Embedding(2, 2, mask_zero=True, embeddings_initializer="ones")])
    model.compile(loss="mse")
    targets = np.array([[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [1.0, 1.0]]], np.float32)
    assert model.evaluate(np.array([[1, 0, 0, 1]]), targets, verbose=0) == 0.0
    k = keras.Sequential([keras.layers.Embedding(2, 2, mask_zero=True,
                                                 embeddings_initializer="ones")])
    k.compile(loss="mse")
    assert k.evaluate(np.array([[1, 0, 0, 1]]), targets, verbose=0) == 0.0


@pytest.mark.parametrize("name", ["MaskedMean", "MaskedMax", "AttentionPool",
                                  "DropFirstStep", "Encoder", "GatedResidual",
                                  "CrossAttention"])
def test_supports_masking_defaults_match_keras(name):
    # Keras 3: true when compute_mask is overridden, unless the layer sets it
    args = (3,) if name in ("Encoder", "GatedResidual", "CrossAttention") else ()
    theirs = lib("keras")[name](*args).supports_masking
    assert lib("graphmask")[name](*args).supports_masking is theirs
    assert theirs is (name not in ("MaskedMean", "MaskedMax", "AttentionPool"))


def test_lambda_supports_masking_when_given_a_mask_as_in_keras():
    for mask in (None, lib("graphmask")["pass_mask"]):
        theirs = keras.layers.Lambda(keras.ops.tanh, mask=mask).supports_masking
        assert gm.Lambda(ops.tanh, mask=mask).supports_masking is theirs is (mask is not None)
