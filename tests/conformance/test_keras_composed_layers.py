"""LayerNormalization, the merges (Subtract, Multiply, Average, Maximum, Minimum, Dot) and
RepeatVector / Reshape / Permute against Keras 3 (torch backend).

Each model is built twice from the same builder, once with ``graphmask`` and once with
``keras.layers``; Keras's random weights (normal * 0.5) are copied into graphmask
unchanged, so the weight lists must already agree name by name. Then, under right, left,
holes and empty-row padding (``tw.mask_pattern``): ``predict``, ``evaluate`` with a mean
squared error (masked wherever the output carries a mask), the loss and the gradient of
every weight against torch autograd, and the weights after four ``train_on_batch``
steps (one per padding kind) with SGD and with Adam. Eager calls on arrays too.

One deliberate difference: a mask reaching ``Dot`` is a ``MaskError`` in graphmask
(Keras computes over the padded positions and drops the mask without a warning), so the
graphmask model passes ``mask=[None, None]`` where the Keras model passes nothing; the
numbers must then be Keras's. One Keras bug is not copied: on torch,
``LayerNormalization`` over a single axis that is not the last normalises the last axis
instead (``test_keras_torch_layer_norm_over_one_inner_axis_normalises_the_last_axis``).

Float32 tolerances (measured over all the cases here, seeds as here):

* predict and eager calls: ``tw.RTOL, tw.ATOL`` (1e-5, 1e-6) for one float32 forward
  pass; measured |ours - Keras| <= 4.8e-7 on outputs of size ~1 (LayerNormalization:
  graphmask's two-pass variance against torch's fused ``layer_norm``).
* gradients: relative 1e-4, absolute 1e-6 (sums over batch and time); measured
  |ours - Keras| <= 4.2e-7, relative <= 1.3e-5 on entries above 1e-3.
* evaluate: relative 1e-5; measured 2.2e-7.
* weights after SGD steps (learning rate 0.1): ``tw.TRAIN_RTOL, tw.TRAIN_ATOL``
  (1e-4, 2e-6); measured 6e-8.
* weights after Adam steps: absolute ``ADAM_TOL * lr * steps`` (1e-3 * 0.01 * 4 =
  4e-5), relative 1e-4; measured 1.2e-6, while the four steps move each model's
  largest-moving weight by at least 0.038. Adam's step ``lr * m / (sqrt(v) + eps)``
  does not scale with the gradient, so an entry whose gradient is of the size of
  float32 rounding moves by up to ``lr`` in a direction rounding decides, while a
  skipped or misapplied update is off by ``lr``.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

import graphmask as gm  # noqa: E402
from tests.conformance import twin as tw  # noqa: E402

B, T, V, E, H = 6, 5, 7, 3, 4  # batch, time steps, vocabulary, embedding width, units
PADDINGS = ("right", "left", "holes", "rows")  # rows: holes and rows with no kept step
ADAM_TOL = 1e-3
OPTIMIZERS = {"SGD": {"learning_rate": 0.1}, "Adam": {"learning_rate": 0.01}}
MERGES = ("Subtract", "Multiply", "Average", "Maximum", "Minimum")

pytestmark = pytest.mark.filterwarnings(
    "ignore:You passed `rms_scaling=True`:UserWarning",
    "ignore:LayerNormalization .*rms_scaling=True is deprecated:UserWarning")


# ---- the models: one builder per case, run with either library ----------------------------
class Lib:
    """``layers``, ``Input``, ``Model`` of one library, and how it calls ``Dot`` on
    inputs that may carry masks (graphmask: ``mask=[None, None]``, see the docstring)."""

    def __init__(self, name):
        self.name = name
        if name == "graphmask":
            self.layers, self.Input, self.Model = gm, gm.Input, gm.Model
        else:
            self.layers, self.Input, self.Model = keras.layers, keras.Input, keras.Model

    def dot(self, xs, **kwargs):
        if self.name == "graphmask":
            return self.layers.Dot(**kwargs)(xs, mask=[None, None])
        return self.layers.Dot(**kwargs)(xs)


def _ids(lib, name="ids"):
    return lib.Input((T,), dtype="int32", name=name)


def _emb(lib, x, name, mask_zero=True):
    return lib.layers.Embedding(V, E, mask_zero=mask_zero, name=name)(x)


def _seq_head(lib, x):
    h = lib.layers.LSTM(H, return_sequences=True, name="lstm")(x)
    return lib.layers.Dense(2, name="head")(h)


def layer_norm_lstm(lib):
    ids = _ids(lib)
    x = lib.layers.LayerNormalization(name="ln")(_emb(lib, ids, "emb"))
    h = lib.layers.LSTM(H, return_sequences=True, name="lstm")(x)
    h = lib.layers.LayerNormalization(axis=[1, 2], epsilon=0.01, name="ln_seq")(h)
    return lib.Model(ids, lib.layers.Dense(2, name="head")(h))


def layer_norm_variants(lib):
    x = lib.Input((3, 4), name="x")
    h = lib.layers.LayerNormalization(axis=[-1, 1], epsilon=0.01, name="ln_mixed")(x)
    h = lib.layers.LayerNormalization(center=False, name="ln_gamma")(h)
    h = lib.layers.LayerNormalization(scale=False, name="ln_beta")(h)
    h = lib.layers.LayerNormalization(rms_scaling=True, name="ln_rms")(h)
    return lib.Model(x, lib.layers.Dense(2, name="head")(h))


def layer_norm_inner_axes(lib):
    """Axes [1, 3] of a rank-4 input: not contiguous, so Keras's torch backend takes its
    general path (a single inner axis it would get wrong: see the last test)."""
    x = lib.Input((2, 3, 4), name="x")
    h = lib.layers.LayerNormalization(axis=[1, 3], name="ln")(x)
    return lib.Model(x, lib.layers.Dense(2, name="head")(lib.layers.Reshape((-1,))(h)))


def _merge_case(cls, masked_b=True):
    def build(lib):
        a, b = _ids(lib, "ids_a"), _ids(lib, "ids_b")
        xa = lib.layers.LayerNormalization(name="ln")(_emb(lib, a, "emb_a"))
        xb = lib.layers.Dense(E, name="proj")(_emb(lib, b, "emb_b", masked_b))
        merged = getattr(lib.layers, cls)(name="merge")([xa, xb])
        return lib.Model([a, b], _seq_head(lib, merged))
    return build


def three_way_extremes(lib):
    ids = [_ids(lib, f"ids_{i}") for i in range(3)]
    xs = [_emb(lib, x, f"emb_{i}") for i, x in enumerate(ids)]
    top = lib.layers.Maximum(name="max")(xs)
    low = lib.layers.Minimum(name="min")(xs)
    mean = lib.layers.Average(name="avg")(xs)
    prod = lib.layers.Multiply(name="mul")(xs)
    return lib.Model(ids, _seq_head(lib, lib.layers.Concatenate(name="cat")(
        [top, low, mean, prod])))


def sequence_times_vector(lib):
    """Different ranks: the (B, H) vector gets an axis after the batch, as in Keras."""
    ids = _ids(lib)
    x = _emb(lib, ids, "emb")
    vec = lib.layers.Dense(E, name="vec")(lib.layers.LSTM(H, name="summary")(x))
    merged = [getattr(lib.layers, cls)(name=cls.lower())([x, vec]) for cls in MERGES]
    return lib.Model(ids, _seq_head(lib, lib.layers.Add(name="add")(merged)))


def dot_attention(lib):
    q, v = _ids(lib, "q"), _ids(lib, "v")
    hq = lib.layers.LSTM(H, return_sequences=True, name="enc_q")(_emb(lib, q, "emb_q"))
    hv = lib.layers.LSTM(H, return_sequences=True, name="enc_v")(_emb(lib, v, "emb_v"))
    scores = lib.dot([hq, hv], axes=2, name="scores")                 # (B, T, T)
    context = lib.dot([scores, hv], axes=(2, 1), name="context")      # (B, T, H)
    cos = lib.dot([hq, hv], axes=(2, 2), normalize=True, name="cos")  # (B, T, T)
    both = lib.layers.Concatenate(name="cat")([context, cos])
    return lib.Model([q, v], lib.layers.Dense(2, name="head")(both))


def dot_of_vectors(lib):
    a, b = _ids(lib, "ids_a"), _ids(lib, "ids_b")
    va = lib.layers.LSTM(H, name="enc_a")(_emb(lib, a, "emb_a"))
    vb = lib.layers.LSTM(H, name="enc_b")(_emb(lib, b, "emb_b"))
    sim = lib.layers.Dot(axes=1, normalize=True, name="cos")([va, vb])   # (B, 1)
    raw = lib.layers.Dot(axes=-1, name="dot")([va, vb])                  # (B, 1)
    return lib.Model([a, b], lib.layers.Concatenate(name="cat")([sim, raw]))


def repeat_permute_reshape(lib):
    ids = _ids(lib)
    summary = lib.layers.LSTM(H, name="enc")(_emb(lib, ids, "emb"))       # (B, H)
    steps = lib.layers.RepeatVector(T, name="repeat")(summary)           # (B, T, H)
    h = lib.layers.LSTM(H, return_sequences=True, name="dec")(steps)
    h = lib.layers.Permute((2, 1), name="permute")(h)                   # (B, H, T)
    h = lib.layers.Reshape((-1,), name="flat")(h)                       # (B, H * T)
    return lib.Model(ids, lib.layers.Dense(2, name="head")(h))


def split_heads(lib):
    x = lib.Input((T, 6), name="x")
    h = lib.layers.Reshape((T, 2, 3), name="split")(x)
    h = lib.layers.Permute((2, 1, 3), name="heads")(h)                  # (B, 2, T, 3)
    h = lib.layers.LayerNormalization(axis=[2, 3], name="ln")(h)
    h = lib.layers.Permute((2, 1, 3), name="back")(h)
    h = lib.layers.Reshape((T, -1), name="join")(h)
    return lib.Model(x, lib.layers.Dense(2, name="head")(h))


CASES = {
    "layer_norm_lstm": layer_norm_lstm,
    "layer_norm_variants": layer_norm_variants,
    "layer_norm_inner_axes": layer_norm_inner_axes,
    **{f"{cls.lower()}_masked": _merge_case(cls) for cls in MERGES},
    **{f"{cls.lower()}_one_unmasked": _merge_case(cls, masked_b=False) for cls in MERGES},
    "three_way_extremes": three_way_extremes,
    "sequence_times_vector": sequence_times_vector,
    "dot_attention": dot_attention,
    "dot_of_vectors": dot_of_vectors,
    "repeat_permute_reshape": repeat_permute_reshape,
    "split_heads": split_heads,
}


# ---- twins and data ------------------------------------------------------------------------
def _keras_names(variables):
    return ["/".join(p for p in v.path.split("/") if p != "lstm_cell") for v in variables]


def twin(case: str, seed: int = 0):
    """The case in both libraries with the same weights (Keras's, copied as they are)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rms_scaling's deprecation
        g, k = CASES[case](Lib("graphmask")), CASES[case](Lib("keras"))
    ours, theirs = [v.name for v in g.weights], _keras_names(k.weights)
    assert ours == theirs, f"{case}: weight order differs\ngraphmask: {ours}\nKeras:     {theirs}"
    rng = np.random.default_rng(seed)
    k.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                   for w in k.get_weights()])
    g.set_weights(k.get_weights())
    return g, k


def batch(k, padding: str, rng):
    xs = []
    for inp in k.inputs:
        shape = (B,) + tuple(inp.shape[1:])
        if "int" in str(inp.dtype):
            xs.append(tw.ids_for(tw.mask_pattern(padding, B, shape[1], rng), V, rng))
        else:
            xs.append(rng.standard_normal(shape).astype(np.float32))
    return xs[0] if len(xs) == 1 else xs


def targets(k, rng):
    return rng.standard_normal((B,) + tuple(k.outputs[0].shape[1:])).astype(np.float32)


def _k(x):
    return keras.ops.convert_to_numpy(x)


def _keras_loss_and_gradients(k, xs, y):
    """Keras's compiled loss of one batch (as its train step computes it) and the
    gradient of every trainable weight from torch autograd; no weight changes."""
    conv = keras.ops.convert_to_tensor
    xt = [conv(x) for x in xs] if isinstance(xs, list) else conv(xs)
    k.zero_grad()
    value = k.compute_loss(x=xt, y=conv(y), y_pred=k(xt, training=True), training=True)
    value.backward()
    grads = [np.zeros(tuple(v.shape), np.float32) if v.value.grad is None
             else v.value.grad.detach().numpy().copy() for v in k.trainable_weights]
    k.zero_grad()
    return float(value.detach()), grads


# ---- tests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_layers_and_weights_in_keras_order(case):
    g, k = twin(case)
    assert [layer.name for layer in g.layers] == [layer.name for layer in k.layers]
    for gl, kl in zip(g.layers, k.layers):
        assert [v.name for v in gl.weights] == _keras_names(kl.weights), gl.name
        assert [v.shape for v in gl.weights] == [tuple(w.shape) for w in kl.weights], gl.name


@pytest.mark.parametrize("case", CASES)
def test_predict_and_masked_evaluate(case):
    g, k = twin(case)
    g.compile(loss="mse")
    k.compile(loss="mse")
    rng = np.random.default_rng(1)
    for padding in PADDINGS:
        xs, y = batch(k, padding, rng), targets(k, rng)
        tw.assert_close(g.predict(xs), k.predict(xs, batch_size=B, verbose=0),
                        what=f"{case} predict, {padding} padding")
        tw.assert_close(g.evaluate(xs, y, batch_size=B),
                        k.evaluate(xs, y, batch_size=B, verbose=0), rtol=1e-5, atol=0,
                        what=f"{case} evaluate, {padding} padding")


def test_the_output_masks_are_keras_masks():
    """The masked cases' losses differ from unmasked ones (so evaluate above compares
    masked losses), and an unmasked input leaves the merge's output unmasked."""
    for case in CASES:
        g, k = twin(case)
        masked = g.outputs[0].keras_mask is not None
        assert masked == (case.endswith("_masked") or case in (
            "layer_norm_lstm", "three_way_extremes")), case
        assert masked == (getattr(k.outputs[0], "_keras_mask", None) is not None), case


@pytest.mark.parametrize("case", CASES)
def test_loss_and_gradients_match_torch_autograd(case):
    g, k = twin(case)
    g.compile(optimizer="sgd", loss="mse")
    k.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(3)
    xs, y = batch(k, "mixed", rng), targets(k, rng)
    loss, grads = g.loss_and_gradients(xs, y)
    k_loss, k_grads = _keras_loss_and_gradients(k, xs, y)
    assert loss == pytest.approx(k_loss, rel=1e-5)
    for var, theirs in zip(g.trainable_weights, k_grads):
        tw.assert_close(grads[var.name], theirs, rtol=1e-4, atol=1e-6,
                        what=f"{case} gradient of {var.name}")


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("case", CASES)
def test_train_on_batch(case, optimizer):
    g, k = twin(case)
    tw.check_train_steps(g, k, optimizer, OPTIMIZERS[optimizer], PADDINGS, batch, targets,
                         case, ADAM_TOL)


# ---- eager calls ---------------------------------------------------------------------------
def _arrays(seed=4):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, T, E)).astype(np.float32),
            rng.standard_normal((B, T, E)).astype(np.float32),
            rng.standard_normal((B, E)).astype(np.float32))


EAGER = {  # name -> (make the layer from a layers namespace, call it on (x, y, v))
    "layer_norm": (lambda L: L.LayerNormalization(axis=[1, 2]), lambda f, x, y, v: f(x)),
    "subtract": (lambda L: L.Subtract(), lambda f, x, y, v: f([x, y])),
    "multiply_by_vector": (lambda L: L.Multiply(), lambda f, x, y, v: f([x, v])),
    "average": (lambda L: L.Average(), lambda f, x, y, v: f([x, y, x])),
    "maximum": (lambda L: L.Maximum(), lambda f, x, y, v: f([x, y])),
    "minimum": (lambda L: L.Minimum(), lambda f, x, y, v: f([v, x])),
    "dot": (lambda L: L.Dot(axes=(1, 1)), lambda f, x, y, v: f([x, y])),
    "dot_normalize": (lambda L: L.Dot(axes=(2, 1), normalize=True),
                      lambda f, x, y, v: f([x, v])),
    "repeat_vector": (lambda L: L.RepeatVector(3), lambda f, x, y, v: f(v)),
    "reshape": (lambda L: L.Reshape((E, -1)), lambda f, x, y, v: f(x)),
    "permute": (lambda L: L.Permute((2, 1)), lambda f, x, y, v: f(x)),
}


@pytest.mark.parametrize("name", EAGER)
def test_eager_calls_match_keras(name):
    make, call = EAGER[name]
    x, y, v = _arrays()
    kl, gl = make(keras.layers), make(gm)
    theirs = _k(call(kl, x, y, v))
    if kl.weights:
        call(gl, x, y, v)  # builds graphmask's weights
        rng = np.random.default_rng(5)
        kl.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                        for w in kl.get_weights()])
        theirs = _k(call(kl, x, y, v))
        gl.set_weights(kl.get_weights())
    ours = call(gl, x, y, v)
    assert isinstance(ours, np.ndarray) and ours.shape == theirs.shape
    tw.assert_close(ours, theirs, what=name)


def test_keras_drops_a_mask_at_dot_where_graphmask_refuses_it():
    """The one deliberate difference: Keras's Dot on masked inputs says nothing and its
    output has no mask; graphmask raises until the mask is dropped on purpose."""
    kq = keras.Input((T,), dtype="int32")
    ke = keras.layers.Embedding(V, E, mask_zero=True)(kq)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kout = keras.layers.Dot(axes=2)([ke, ke])
    assert getattr(kout, "_keras_mask", None) is None
    gq = gm.Input((T,), dtype="int32")
    ge = gm.Embedding(V, E, mask_zero=True, name="emb")(gq)
    with pytest.raises(gm.errors.MaskError, match="reaches layer 'dot_k' \\(Dot\\)"):
        gm.Dot(axes=2, name="dot_k")([ge, ge])


def test_keras_torch_layer_norm_over_one_inner_axis_normalises_the_last_axis():
    """Keras 3.15 on torch hands a single axis to torch's ``layer_norm``, which always
    normalises the trailing axes: ``axis=1`` of a (B, 4, 4) input normalises axis 2
    instead (and a (B, 3, 4) input is an error). graphmask computes the documented
    formula over axis 1; Keras's other backends do too."""
    x = np.random.default_rng(6).standard_normal((2, 4, 4)).astype(np.float32)

    def formula(axis):
        mean = x.mean(axis=axis, keepdims=True)
        return (x - mean) / np.sqrt(x.var(axis=axis, keepdims=True) + 1e-3)

    theirs = _k(keras.layers.LayerNormalization(axis=1)(x))
    tw.assert_close(theirs, formula(2))
    tw.assert_close(gm.LayerNormalization(axis=1)(x), formula(1))
    with pytest.raises(RuntimeError, match="normalized_shape"):
        keras.layers.LayerNormalization(axis=1)(x[:, :3])
