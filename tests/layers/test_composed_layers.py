"""Built-in layers composed of ``graphmask.ops`` (traced, no kernels of their own):
LayerNormalization; the merges Subtract, Multiply, Average, Maximum, Minimum, Dot;
RepeatVector, Reshape, Permute.

Each is checked against its NumPy definition (Keras 3's formulas written out), with the
masks Keras 3 gives (right and left padding, holes, rows with no kept step), the errors
(exact messages, nothing built on a refused call), saving and loading, and gradients in
float64 against central finite differences. Float32 forward passes are compared with
``rtol=1e-5, atol=1e-6``: one pass of a few float32 operations on values of size ~1
(measured error <= 2.4e-7); float64 ones with ``rtol=1e-12``.
"""
import re

import numpy as np
import pytest

import graphmask as gm
from graphmask import (
    LSTM,
    Average,
    Dense,
    Dot,
    Embedding,
    Input,
    Lambda,
    LayerNormalization,
    Maximum,
    Minimum,
    Model,
    Multiply,
    Permute,
    RepeatVector,
    Reshape,
    Subtract,
    ops,
)
from graphmask.errors import ConfigError, MaskError, ShapeError

RTOL, ATOL = 1e-5, 1e-6

IDS_A = np.array([[3, 1, 4, 0, 0],      # right padding
                  [0, 0, 2, 5, 1],      # left padding
                  [1, 0, 3, 0, 4],      # holes
                  [0, 0, 0, 0, 0],      # no kept step
                  [2, 2, 0, 0, 0]])
IDS_B = np.array([[5, 0, 0, 2, 0],
                  [0, 6, 1, 0, 0],
                  [0, 0, 0, 0, 0],
                  [3, 0, 1, 0, 0],      # kept where A keeps nothing
                  [4, 1, 6, 1, 2]])


class ShowMask(gm.layers.Layer):
    """The mask its input carries, as float32 values (to read a mask out of a model)."""

    def call(self, x, mask=None):
        return ops.cast(mask, "float32")

    def compute_mask(self, inputs, previous_mask):
        return None


def _rand(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _two_embeddings(dtype="float32", masked_b=True):
    a, b = Input((5,), dtype="int32", name="ids_a"), Input((5,), dtype="int32", name="ids_b")
    ea = Embedding(7, 3, mask_zero=True, name="emb_a", dtype=dtype)(a)
    eb = Embedding(7, 3, mask_zero=masked_b, name="emb_b", dtype=dtype)(b)
    return (a, b), (ea, eb)


def _tables(model):
    return (model.get_layer("emb_a").get_weights()[0],
            model.get_layer("emb_b").get_weights()[0])


# ---- LayerNormalization ------------------------------------------------------------------
def _layer_norm(x, axes, eps, gamma=None, beta=None):
    """Keras 3's formula: (x - mean) / sqrt(var + eps) * gamma + beta (biased variance)."""
    x = x.astype(np.float64)
    mean = x.mean(axis=tuple(axes), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=tuple(axes), keepdims=True)
    out = (x - mean) / np.sqrt(var + eps)
    shape = [1] * x.ndim
    for a in axes:
        shape[a] = x.shape[a]
    if gamma is not None:
        out = out * np.reshape(gamma, shape)
    if beta is not None:
        out = out + np.reshape(beta, shape)
    return out


def test_layer_normalization_matches_the_formula_and_orders_gamma_then_beta():
    x = Input((4, 3))
    ln = LayerNormalization(name="ln")
    model = Model(x, ln(x))
    assert [v.name for v in model.weights] == ["ln/gamma", "ln/beta"]
    assert [v.shape for v in model.weights] == [(3,), (3,)]
    np.testing.assert_array_equal(ln.get_weights()[0], np.ones(3, np.float32))
    np.testing.assert_array_equal(ln.get_weights()[1], np.zeros(3, np.float32))
    gamma, beta = _rand((3,), 1), _rand((3,), 2)
    ln.set_weights([gamma, beta])
    a = _rand((5, 4, 3))
    out = model.predict(a)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _layer_norm(a, [2], 1e-3, gamma, beta), RTOL, ATOL)


@pytest.mark.parametrize("axis, gamma_shape", [([1, 2], (2, 3)), ([-2, -1], (2, 3)),
                                               (1, (2,)), ([-1, 1], (3, 2))])
def test_layer_normalization_over_several_axes_builds_keras_shapes(axis, gamma_shape):
    """Weights span the axes in the order of sorted(axis) as given; Keras 3 reshapes them
    to the input's axis order, so for [-1, 1] the (3, 2) gamma is read as (2, 3)."""
    x = Input((2, 3))
    ln = LayerNormalization(axis=axis, epsilon=0.01, name="ln")
    model = Model(x, ln(x))
    assert [v.shape for v in ln.weights] == [gamma_shape, gamma_shape]
    gamma = np.arange(1, 7, dtype=np.float32).reshape(gamma_shape) if len(gamma_shape) > 1 \
        else np.array([0.5, 2.0], np.float32)
    beta = -gamma / 10
    ln.set_weights([gamma, beta])
    a = _rand((4, 2, 3))
    positional = sorted(d % 3 for d in ([axis] if isinstance(axis, int) else axis))
    want = _layer_norm(a, positional, 0.01, gamma, beta)
    np.testing.assert_allclose(model.predict(a), want, RTOL, ATOL)
    assert ln.get_config()["axis"] == sorted([axis] if isinstance(axis, int) else axis)


def test_layer_normalization_without_center_or_scale_has_fewer_weights():
    x = Input((4, 3))
    only_gamma = LayerNormalization(center=False, name="g")
    only_beta = LayerNormalization(scale=False, name="b")
    neither = LayerNormalization(center=False, scale=False, name="n")
    model = Model(x, [only_gamma(x), only_beta(x), neither(x)])
    assert [v.name for v in model.weights] == ["g/gamma", "b/beta"]
    only_gamma.set_weights([np.array([1.0, 2.0, 3.0], np.float32)])
    only_beta.set_weights([np.array([0.5, -1.0, 0.0], np.float32)])
    a = _rand((2, 4, 3), 3)
    g, b, n = model.predict(a)
    np.testing.assert_allclose(g, _layer_norm(a, [2], 1e-3, gamma=[1.0, 2.0, 3.0]), RTOL, ATOL)
    np.testing.assert_allclose(b, _layer_norm(a, [2], 1e-3, beta=[0.5, -1.0, 0.0]), RTOL, ATOL)
    np.testing.assert_allclose(n, _layer_norm(a, [2], 1e-3), RTOL, ATOL)


def test_rms_scaling_is_keras_deprecated_variance_scaling_with_gamma_only():
    x = Input((4, 3))
    with pytest.warns(UserWarning, match=re.escape(
            "LayerNormalization 'rms': rms_scaling=True is deprecated in Keras 3: it divides "
            "by sqrt(variance + epsilon), not by the root mean square")):
        ln = LayerNormalization(rms_scaling=True, name="rms")
    model = Model(x, ln(x))
    assert [v.name for v in model.weights] == ["rms/gamma"]
    gamma = np.array([1.0, -2.0, 0.5], np.float32)
    ln.set_weights([gamma])
    a = _rand((3, 4, 3), 4) + 2.0  # off-centre: centring would change the result
    a64 = a.astype(np.float64)
    want = a64 / np.sqrt(a64.var(axis=-1, keepdims=True) + 1e-3) * gamma
    np.testing.assert_allclose(model.predict(a), want, RTOL, ATOL)
    assert ln.get_config()["rms_scaling"] is True


def test_layer_normalization_passes_the_mask_to_the_next_layer():
    ids = Input((5,), dtype="int32")
    e = Embedding(7, 3, mask_zero=True, name="emb")(ids)
    y = LayerNormalization(name="ln")(e)
    assert y.keras_mask is e.keras_mask
    model = Model(ids, [ShowMask()(y), LSTM(2, name="lstm")(y)])
    mask, _ = model.predict(IDS_A)
    np.testing.assert_array_equal(mask, (IDS_A != 0).astype(np.float32))
    lstm = model.graph.nodes_by_op("lstm")[0]
    src = model.graph.in_ports(lstm)["mask"][0]
    assert model.graph.node(src)["op"] == "mask_not_equal"


def test_layer_normalization_of_ints_computes_in_float32_and_float64_stays_float64():
    ids = Input((4,), dtype="int32")
    model = Model(ids, LayerNormalization(name="ln")(ids))
    a = np.array([[1, 2, 3, 4], [5, 5, 5, 9]], np.int32)
    out = model.predict(a)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _layer_norm(a, [1], 1e-3), RTOL, ATOL)
    x = Input((4,), dtype="float64")
    model = Model(x, LayerNormalization(name="ln64", dtype="float64")(x))
    b = _rand((3, 4), 5, np.float64)
    out = model.predict(b)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, _layer_norm(b, [1], 1e-3), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    ({"axis": "last"}, "LayerNormalization 'ln': axis must be an int or a non-empty list of "
                       "ints, got 'last'"),
    ({"axis": []}, "LayerNormalization 'ln': axis must be an int or a non-empty list of "
                   "ints, got []"),
    ({"epsilon": -1.0}, "LayerNormalization 'ln': epsilon must be a finite number >= 0, "
                        "got -1.0"),
    ({"center": "yes"}, "LayerNormalization 'ln': center must be True or False, got 'yes'"),
    ({"gamma_regularizer": "l2"}, "LayerNormalization 'ln': ['gamma_regularizer'] are not "
                                  "supported by graphmask (leave them at None)"),
    ({"gamma_initializer": "onez"}, "LayerNormalization 'ln': unknown gamma_initializer "
                                    "'onez' (did you mean 'one'?)"),
])
def test_layer_normalization_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError) as e:
        LayerNormalization(name="ln", **kwargs)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("axis, shape, message", [
    (0, (4, 3), "LayerNormalization 'ln': axis 0 is out of range for an input of rank 3 (the "
                "batch axis 0 cannot be normalised); axis=0"),
    (3, (4, 3), "LayerNormalization 'ln': axis 3 is out of range for an input of rank 3 (the "
                "batch axis 0 cannot be normalised); axis=3"),
    ([1, -2], (4, 3), "LayerNormalization 'ln': axis=[1, -2] names an axis twice for an "
                      "input of rank 3"),
    (1, (None, 3), "LayerNormalization 'ln': the normalised axes [1] of input shape (None, "
                   "None, 3) must have known sizes"),
])
def test_layer_normalization_refuses_bad_axes_before_creating_weights(axis, shape, message):
    ln = LayerNormalization(axis=axis, name="ln")
    with pytest.raises(ShapeError) as e:
        ln(Input(shape))
    assert str(e.value) == message
    assert ln.weights == [] and not ln.built


def test_a_built_layer_normalization_refuses_other_sizes():
    ln = LayerNormalization(name="ln")
    ln(Input((4, 3)))
    with pytest.raises(ShapeError) as e:
        ln(Input((4, 5)))
    assert str(e.value) == ("LayerNormalization 'ln': was built for sizes (3,) on axes [-1], "
                            "got input shape (None, 4, 5)")


# ---- merges: numbers and masks -------------------------------------------------------------
def _merge_model(cls, masked_b=True, **kwargs):
    (a, b), (ea, eb) = _two_embeddings(masked_b=masked_b)
    y = cls(name="merge", **kwargs)([ea, eb])
    outputs = [y] + ([ShowMask(name="show")(y)] if y.keras_mask is not None else [])
    return Model([a, b], outputs if len(outputs) > 1 else y), y


def _masked_reference(name, xa, xb, ma, mb):
    """Keras 3's merges on two masked inputs, case by case."""
    both, either = ma & mb, ma | mb
    a_kept, b_kept = ma[..., None], mb[..., None]
    if name == "Subtract":
        return xa - xb
    if name == "Average":
        return (xa + xb) / 2
    if name == "Multiply":
        return np.where(either[..., None], np.where(a_kept, xa, 1) * np.where(b_kept, xb, 1), 0)
    pick = np.maximum if name == "Maximum" else np.minimum
    return np.where(both[..., None], pick(xa, xb), np.where(b_kept, xb, xa))


@pytest.mark.parametrize("cls", [Subtract, Average, Multiply, Maximum, Minimum])
def test_merges_of_two_masked_inputs_match_keras_formulas_and_or_the_masks(cls):
    model, y = _merge_model(cls)
    ta, tb = _tables(model)
    rng = np.random.default_rng(7)
    model.get_layer("emb_a").set_weights([rng.standard_normal(ta.shape).astype(np.float32)])
    model.get_layer("emb_b").set_weights([rng.standard_normal(tb.shape).astype(np.float32)])
    ta, tb = _tables(model)
    out, mask = model.predict([IDS_A, IDS_B])
    ma, mb = IDS_A != 0, IDS_B != 0
    want = _masked_reference(cls.__name__, ta[IDS_A], tb[IDS_B], ma, mb)
    np.testing.assert_allclose(out, want, RTOL, ATOL)
    np.testing.assert_array_equal(mask, (ma | mb).astype(np.float32))
    # the output mask is Keras's compute_mask: one logical_or of the two masks
    assert y.keras_mask.call.op == "prim.logical_or"


@pytest.mark.parametrize("cls", [Subtract, Average, Multiply, Maximum, Minimum])
def test_a_merge_with_an_unmasked_input_gives_no_mask(cls):
    model, y = _merge_model(cls, masked_b=False)
    assert y.keras_mask is None
    ta, tb = _tables(model)
    xa, xb = ta[IDS_A], tb[IDS_B]
    ma = (IDS_A != 0)[..., None]
    want = {"Subtract": xa - xb, "Average": (xa + xb) / 2,
            "Multiply": np.where(ma, xa, 1) * xb,  # not zeroed: not every input is masked
            "Maximum": np.where(ma, np.maximum(xa, xb), xb),
            "Minimum": np.where(ma, np.minimum(xa, xb), xb)}[cls.__name__]
    np.testing.assert_allclose(model.predict([IDS_A, IDS_B]), want, RTOL, ATOL)


@pytest.mark.parametrize("cls, pick", [(Maximum, np.max), (Minimum, np.min)])
def test_maximum_of_three_masked_inputs_takes_the_kept_ones(cls, pick):
    a, b, c = (Input((5,), dtype="int32") for _ in range(3))
    embs = [Embedding(7, 2, mask_zero=True, name=f"e{i}") for i in range(3)]
    y = cls()([embs[0](a), embs[1](b), embs[2](c)])
    model = Model([a, b, c], [y, ShowMask()(y)])
    ids = [IDS_A, IDS_B, np.roll(IDS_A, 2, axis=1)]
    out, mask = model.predict(ids)
    vals = np.stack([e.get_weights()[0][i] for e, i in zip(embs, ids)])  # (3, B, T, 2)
    keep = np.stack([i != 0 for i in ids])[..., None]                      # (3, B, T, 1)
    fill = -np.inf if pick is np.max else np.inf
    over_kept = pick(np.where(keep, vals, fill), axis=0)
    want = np.where(keep.any(axis=0), over_kept, vals[0])  # nothing kept: the first input
    np.testing.assert_allclose(out, want, RTOL, ATOL)
    np.testing.assert_array_equal(mask, keep.any(axis=0)[..., 0].astype(np.float32))


def test_merges_of_inputs_with_different_ranks_broadcast_as_keras():
    """The lower-rank input gets axes of size 1 after the batch axis: (B, 3) -> (B, 1, 3)."""
    seq, vec = Input((4, 3)), Input((3,))
    outs = [cls()([seq, vec]) for cls in (Subtract, Average, Multiply, Maximum, Minimum)]
    model = Model([seq, vec], outs)
    s, v = _rand((2, 4, 3), 8), _rand((2, 3), 9)
    w = v[:, None, :]
    for got, want in zip(model.predict([s, v]), [s - w, (s + w) / 2, s * w, np.maximum(s, w),
                                                  np.minimum(s, w)]):
        np.testing.assert_allclose(got, want, RTOL, ATOL)


def test_a_masked_sequence_merged_with_a_vector_keeps_its_mask_in_the_merge():
    """Keras expands only the lower-rank input; the sequence is passed as it is, so
    Multiply / Maximum / Minimum still see its mask (the output has none: the vector is
    unmasked)."""
    ids, vec = Input((5,), dtype="int32"), Input((3,))
    e = Embedding(7, 3, mask_zero=True, name="emb")(ids)
    outs = [cls()([e, vec]) for cls in (Multiply, Maximum, Minimum)]
    assert all(o.keras_mask is None for o in outs)
    model = Model([ids, vec], outs)
    v = _rand((5, 3), 10)
    seq, w = model.get_layer("emb").get_weights()[0][IDS_A], v[:, None, :]
    m = (IDS_A != 0)[..., None]
    mul, top, low = model.predict([IDS_A, v])
    np.testing.assert_allclose(mul, np.where(m, seq, 1) * w, RTOL, ATOL)
    np.testing.assert_allclose(top, np.where(m, np.maximum(seq, w), w), RTOL, ATOL)
    np.testing.assert_allclose(low, np.where(m, np.minimum(seq, w), w), RTOL, ATOL)


def test_average_and_multiply_take_any_number_of_inputs():
    xs = [Input((3,)) for _ in range(3)]
    model = Model(xs, [Average()(xs), Multiply()(xs), Average()(xs[:1])])
    vals = [_rand((2, 3), i) for i in range(3)]
    avg, prod, one = model.predict(vals)
    np.testing.assert_allclose(avg, sum(vals) / 3, RTOL, ATOL)
    np.testing.assert_allclose(prod, vals[0] * vals[1] * vals[2], RTOL, ATOL)
    np.testing.assert_array_equal(one, vals[0])


def test_a_merge_casts_float_inputs_to_its_dtype_as_keras():
    a, b = Input((3,), dtype="float64"), Input((3,))
    y = Subtract(name="sub")([a, b])
    assert y.dtype == "float32"
    y64 = Subtract(name="sub64", dtype="float64")([a, b])
    assert y64.dtype == "float64"


def test_merges_called_eagerly_on_arrays_with_masks():
    xa, xb = _rand((2, 4, 3), 1), _rand((2, 4, 3), 2)
    ma = np.array([[1, 1, 0, 0], [0, 1, 1, 0]], bool)
    mb = np.array([[1, 0, 1, 0], [0, 0, 0, 0]], bool)
    out = Maximum()([xa, xb], mask=[ma, mb])
    np.testing.assert_allclose(out, _masked_reference("Maximum", xa, xb, ma, mb), RTOL, ATOL)
    out = Multiply()([xa, xb], mask=[ma, mb])
    np.testing.assert_allclose(out, _masked_reference("Multiply", xa, xb, ma, mb), RTOL, ATOL)
    np.testing.assert_allclose(Subtract()([xa, xb]), xa - xb, RTOL, ATOL)


@pytest.mark.parametrize("call, exc, message", [
    (lambda x, y: Subtract(name="m")([x]), ConfigError,
     "Subtract 'm': must be called on a list of exactly 2 tensors, got 1"),
    (lambda x, y: Subtract(name="m")([x, x, y]), ConfigError,
     "Subtract 'm': must be called on a list of exactly 2 tensors, got 3"),
    (lambda x, y: Maximum(name="m")(x), ConfigError,
     "Maximum 'm': must be called on a list of at least 1 tensors, got <SymbolicTensor "
     "shape=(3, 4, 3) dtype=float32 from 'x'>"),
    (lambda x, y: Multiply(name="m")([x, y]), ShapeError,
     "Multiply 'm': inputs have incompatible shapes (4, 3) and (4, 2) (without the batch "
     "axis)"),
    (lambda x, y: Minimum(name="m")([x, Input((4, 3), batch_size=2)]), ShapeError, None),
])
def test_merges_refuse_bad_inputs_with_messages_naming_the_layer(call, exc, message):
    x, y = Input((4, 3), name="x", batch_size=3), Input((4, 2))
    with pytest.raises(exc) as e:
        call(x, y)
    if message is None:
        message = ("Minimum 'm': cannot merge tensors with different batch sizes: shapes "
                   "[(3, 4, 3), (2, 4, 3)]")
    assert message in str(e.value)


def test_a_mask_that_does_not_cover_the_input_is_a_clear_error():
    x = Input((4, 3))
    m = Input((4, 3), dtype="bool")
    with pytest.raises(MaskError) as e:
        Maximum(name="m")([x, x], mask=[m, m])
    assert str(e.value) == ("Maximum 'm': the mask of input 0 has shape (None, 4, 3), which "
                            "does not fit input shape (None, 4, 3) (a mask covers every axis "
                            "but the last)")


# ---- Dot -------------------------------------------------------------------------------------
@pytest.mark.parametrize("axes, sa, sb, fn", [
    (2, (4, 3), (5, 3), lambda a, b: np.einsum("btd,bsd->bts", a, b)),
    ((1, 1), (4, 3), (4, 2), lambda a, b: np.einsum("btd,bte->bde", a, b)),
    ((2, 1), (4, 3), (3, 5), lambda a, b: np.einsum("btd,bds->bts", a, b)),
    (-1, (3,), (3,), lambda a, b: np.einsum("bd,bd->b", a, b)[:, None]),
    ((1, 2), (3,), (4, 3), lambda a, b: np.einsum("bd,btd->bt", a, b)),
    ((2, 1), (4, 3), (3,), lambda a, b: np.einsum("btd,bd->bt", a, b)),
    ((1, 3), (2,), (3, 4, 2), lambda a, b: np.einsum("bd,btsd->bts", a, b)),
])
def test_dot_matches_einsum_and_keras_output_shapes(axes, sa, sb, fn):
    a, b = Input(sa), Input(sb)
    y = Dot(axes=axes)([a, b])
    va, vb = _rand((2,) + sa, 1), _rand((2,) + sb, 2)
    want = fn(va, vb)
    assert y.shape == (None,) + want.shape[1:]
    np.testing.assert_allclose(Model([a, b], y).predict([va, vb]), want, RTOL, ATOL)


def test_dot_normalize_gives_cosine_similarity_and_zero_vectors_stay_zero():
    a, b = Input((4, 3)), Input((5, 3))
    model = Model([a, b], Dot(axes=2, normalize=True)([a, b]))
    va, vb = _rand((2, 4, 3), 3), _rand((2, 5, 3), 4)
    va[0, 1] = 0.0  # Keras: x * min(1/||x||, 1e7), so a zero vector gives 0, not NaN
    na = va / np.maximum(np.linalg.norm(va, axis=-1, keepdims=True), 1e-7)
    nb = vb / np.linalg.norm(vb, axis=-1, keepdims=True)
    out = model.predict([va, vb])
    np.testing.assert_allclose(out, np.einsum("btd,bsd->bts", na, nb), RTOL, ATOL)
    np.testing.assert_array_equal(out[0, 1], np.zeros(5, np.float32))


def test_a_mask_reaching_dot_is_an_error_unless_dropped_on_purpose():
    (a, b), (ea, eb) = _two_embeddings()
    with pytest.raises(MaskError) as e:
        Dot(axes=2, name="dot")([ea, eb])
    assert str(e.value) == (
        "the mask created by layer 'emb_a' (ids != 0) reaches layer 'dot' (Dot), which cannot "
        "take a mask: Keras 3's Dot computes over the padded positions and gives its output "
        "no mask, without a warning. Call it with mask=[None, None] to do so on purpose.")
    y = Dot(axes=2, name="dot_all")([ea, eb], mask=[None, None])
    assert y.keras_mask is None
    model = Model([a, b], y)
    ta, tb = _tables(model)
    want = np.einsum("btd,bsd->bts", ta[IDS_A], tb[IDS_B])  # padded positions included
    np.testing.assert_allclose(model.predict([IDS_A, IDS_B]), want, RTOL, ATOL)


@pytest.mark.parametrize("make, exc, message", [
    (lambda: Dot(axes="last", name="d"), ConfigError,
     "Dot 'd': axes must be an int or a list of two ints, got 'last'"),
    (lambda: Dot(axes=(1, 2, 3), name="d"), ConfigError,
     "Dot 'd': axes must be an int or a list of two ints, got (1, 2, 3)"),
    (lambda: Dot(axes=1, normalize="yes", name="d"), ConfigError,
     "Dot 'd': normalize must be True or False, got 'yes'"),
    (lambda: Dot(axes=0, name="d")([Input((4, 3)), Input((4, 3))]), ShapeError,
     "Dot 'd': axes=0: axis 0 of input 0 (shape (None, 4, 3)) is out of range or the batch "
     "axis"),
    (lambda: Dot(axes=(2, 3), name="d")([Input((4, 3)), Input((4, 3))]), ShapeError,
     "Dot 'd': axes=[2, 3]: axis 3 of input 1 (shape (None, 4, 3)) is out of range or the "
     "batch axis"),
    (lambda: Dot(axes=2, name="d")([Input((4, 3)), Input((4, 2))]), ShapeError,
     "Dot 'd': axes=2: sizes 3 (axis 2 of shape (None, 4, 3)) and 2 (axis 2 of shape (None, "
     "4, 2)) differ"),
    (lambda: Dot(axes=1, name="d")([Input((4, 3))]), ConfigError,
     "Dot 'd': must be called on a list of exactly 2 tensors, got [<SymbolicTensor"),
])
def test_dot_refuses_bad_axes_and_inputs(make, exc, message):
    with pytest.raises(exc) as e:
        make()
    assert str(e.value).startswith(message)


# ---- RepeatVector, Reshape, Permute --------------------------------------------------------
def test_repeat_vector_reshape_and_permute_compute_as_numpy():
    v, s = Input((3,)), Input((4, 6))
    model = Model([v, s], [RepeatVector(4)(v), Reshape((2, -1, 3))(s), Reshape((24,))(s),
                           Permute((2, 1))(s)])
    vv, ss = _rand((2, 3), 1), _rand((2, 4, 6), 2)
    rep, r1, r2, perm = model.predict([vv, ss])
    np.testing.assert_array_equal(rep, np.repeat(vv[:, None, :], 4, axis=1))
    np.testing.assert_array_equal(r1, ss.reshape(2, 2, 4, 3))
    np.testing.assert_array_equal(r2, ss.reshape(2, 24))
    np.testing.assert_array_equal(perm, ss.transpose(0, 2, 1))
    assert [t.shape for t in model.outputs] == [(None, 4, 3), (None, 2, 4, 3), (None, 24),
                                                (None, 6, 4)]


def test_permute_of_a_rank_4_input_and_reshape_with_a_fixed_batch():
    x = Input((2, 3, 4))
    a = _rand((2, 2, 3, 4), 3)
    model = Model(x, Permute((3, 1, 2))(x))
    np.testing.assert_array_equal(model.predict(a), a.transpose(0, 3, 1, 2))
    t = Input((None, 8), batch_size=2)
    y = Reshape((-1, 4, 2))(t)
    assert y.shape == (2, None, 4, 2)
    b = _rand((2, 5, 8), 4)
    np.testing.assert_array_equal(Model(t, y).predict(b, batch_size=2), b.reshape(2, 5, 4, 2))
    np.testing.assert_array_equal(Reshape((-1, 4, 2))(b), b.reshape(2, 5, 4, 2))  # eager


@pytest.mark.parametrize("layer", [RepeatVector(2, name="layer"),
                                   Reshape((15,), name="layer"),
                                   Permute((2, 1), name="layer")])
def test_a_mask_reaching_repeat_vector_reshape_or_permute_names_both_layers(layer):
    ids = Input((5,), dtype="int32")
    e = Embedding(7, 3, mask_zero=True, name="emb")(ids)
    x = e if not isinstance(layer, RepeatVector) else \
        Lambda(lambda t: t[:, 0, :], mask=lambda inputs, mask: mask[:, 0], name="first")(e)
    creator = "layer 'emb' (ids != 0)" if x is e else "layer 'first' (prim.getitem)"
    with pytest.raises(MaskError) as err:
        layer(x)
    assert str(err.value) == (
        f"the mask created by {creator} reaches layer 'layer' ({type(layer).__name__}), "
        f"which cannot take a mask. Keras 3 would only warn and drop it, and padded "
        f"positions would count in everything after it. Consume the mask first (LSTM, "
        f"GlobalAveragePooling1D) or do not create it.")
    assert layer.weights == [] and layer._nodes == []


@pytest.mark.parametrize("make, exc, message", [
    (lambda: RepeatVector(0, name="r"), ConfigError,
     "RepeatVector 'r': n must be a positive int, got 0"),
    (lambda: RepeatVector(2.0, name="r"), ConfigError,
     "RepeatVector 'r': n must be a positive int, got 2.0"),
    (lambda: RepeatVector(2, name="r")(Input((4, 3))), ShapeError,
     "RepeatVector 'r': input must have rank 2 (batch, features), got shape (None, 4, 3)"),
    (lambda: Reshape(5, name="r"), ConfigError,
     "Reshape 'r': target_shape must be a tuple of ints, got 5"),
    (lambda: Reshape((-1, -1), name="r"), ConfigError,
     "Reshape 'r': target_shape may hold one unknown size (-1), got (-1, -1)"),
    (lambda: Reshape((2, -3), name="r"), ConfigError,
     "Reshape 'r': target_shape entries must be sizes >= 0 or -1 for one unknown size, got "
     "(2, -3)"),
    (lambda: Reshape((5,), name="r")(Input((4, 3))), ShapeError,
     "Reshape 'r': cannot reshape a sample of shape (4, 3) (12 values) to target_shape (5,) "
     "(5 values)"),
    (lambda: Reshape((-1, 5), name="r")(Input((4, 3))), ShapeError,
     "Reshape 'r': cannot reshape a sample of shape (4, 3) (12 values) to target_shape "
     "(-1, 5)"),
    (lambda: Reshape((-1, 4, 2), name="r")(Input((None, 8))), ShapeError,
     "Reshape 'r': target_shape (-1, 4, 2) has an unknown size and so has input shape "
     "(None, None, 8) besides the batch axis; graphmask's reshape infers one size only: "
     "give the target's sizes, or fix the batch size with Input(..., batch_size=)"),
    (lambda: Permute((1, 3), name="p"), ConfigError,
     "Permute 'p': dims must be a permutation of 1 .. 2 (axis 0 is the batch), got (1, 3)"),
    (lambda: Permute((2, 1), name="p")(Input((4,))), ShapeError,
     "Permute 'p': dims=(2, 1) needs an input of rank 3, got shape (None, 4)"),
])
def test_reshaping_layers_refuse_bad_arguments(make, exc, message):
    with pytest.raises(exc) as e:
        make()
    assert str(e.value) == message


# ---- configs and saving --------------------------------------------------------------------
def test_configs_hold_keras_arguments_and_rebuild_equal_layers():
    layers = [LayerNormalization(axis=[1, 2], epsilon=0.01, center=False, name="ln"),
              Subtract(name="s"), Multiply(name="m"), Average(name="a"), Maximum(name="mx"),
              Minimum(name="mn"), Dot(axes=(1, 2), normalize=True, name="d"),
              RepeatVector(3, name="rv"), Reshape((-1, 2), name="rs"),
              Permute((2, 1), name="p")]
    cfgs = [layer.get_config() for layer in layers]
    assert cfgs[0] == {"name": "ln", "trainable": True, "dtype": "float32", "axis": [1, 2],
                       "epsilon": 0.01, "center": False, "scale": True, "rms_scaling": False,
                       "beta_initializer": "zeros", "gamma_initializer": "ones",
                       "beta_regularizer": None, "gamma_regularizer": None,
                       "beta_constraint": None, "gamma_constraint": None}
    assert cfgs[1] == {"name": "s", "trainable": True, "dtype": "float32"}
    assert cfgs[6]["axes"] == [1, 2] and cfgs[6]["normalize"] is True
    assert cfgs[7]["n"] == 3 and cfgs[8]["target_shape"] == [-1, 2]
    assert cfgs[9]["dims"] == [2, 1]
    for layer, cfg in zip(layers, cfgs):
        assert type(layer).from_config(cfg).get_config() == cfg


def test_a_model_of_every_composed_layer_saves_and_loads(tmp_path):
    (a, b), (ea, eb) = _two_embeddings()
    ln = LayerNormalization(name="ln")(ea)
    merged = [cls(name=cls.__name__.lower())([ln, eb])
              for cls in (Subtract, Multiply, Average, Maximum, Minimum)]
    seq = LSTM(4, return_sequences=True, name="lstm")(gm.Add(name="add")(merged))
    dot = Dot(axes=1, name="dot")([seq, eb], mask=[None, None])  # (B, 4, 3)
    vec = LSTM(3, name="last")(seq)
    out = Dense(2, name="head")(Reshape((-1,), name="flat")(Permute((2, 1), name="perm")(
        Dot(axes=(2, 2), normalize=True, name="cos")([RepeatVector(5, name="rep")(vec), dot]))))
    model = Model([a, b], out)
    model.compile(optimizer="adam", loss="mse")
    y = _rand((5, 2), 11)
    model.train_on_batch([IDS_A, IDS_B], y)
    model.save(tmp_path / "composed.gmz")
    back = gm.load_model(tmp_path / "composed.gmz")
    assert [type(layer).__name__ for layer in back.layers] == \
        [type(layer).__name__ for layer in model.layers]
    assert [v.name for v in back.weights] == [v.name for v in model.weights]
    np.testing.assert_array_equal(back.predict([IDS_A, IDS_B]), model.predict([IDS_A, IDS_B]))
    np.testing.assert_array_equal(back.train_on_batch([IDS_A, IDS_B], y),
                                  model.train_on_batch([IDS_A, IDS_B], y))


# ---- gradients in float64 ------------------------------------------------------------------
def _check_gradients(model, x, y, eps=1e-6):
    """Every entry of every weight: the gradient equals a central finite difference."""
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
    return grads


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape) * 0.7 for w in model.get_weights()])


@pytest.mark.parametrize("cls", [Subtract, Average, Multiply, Maximum, Minimum])
def test_masked_merge_gradients_match_finite_differences(cls):
    (a, b), (ea, eb) = _two_embeddings(dtype="float64")
    ln = LayerNormalization(name="ln", dtype="float64")(eb)
    y = Dense(2, name="head", dtype="float64")(cls(name="merge", dtype="float64")([ea, ln]))
    model = Model([a, b], y)
    _randomize(model, 12)
    target = np.random.default_rng(13).standard_normal((5, 5, 2))
    grads = _check_gradients(model, [IDS_A, IDS_B], target)
    if cls in (Multiply, Maximum, Minimum):  # padded values of a masked input are not read
        np.testing.assert_array_equal(grads["emb_a/embeddings"][0], np.zeros(3))
    assert np.all(grads["ln/gamma"] != 0) and np.all(grads["ln/beta"] != 0)


def test_dot_layer_norm_and_reshaping_gradients_match_finite_differences():
    seq, vec = Input((4, 3), dtype="float64"), Input((3,), dtype="float64")
    kw = {"dtype": "float64"}
    h = LayerNormalization(axis=[1, 2], name="ln", **kw)(Dense(3, name="proj", **kw)(seq))
    rep = RepeatVector(4, name="rep", **kw)(Dense(3, name="vproj", **kw)(vec))
    scores = Dot(axes=2, normalize=True, name="cos", **kw)([h, rep])          # (B, 4, 4)
    mixed = Dot(axes=(1, 1), name="mix", **kw)([Permute((2, 1), **kw)(scores), h])
    out = Dense(2, name="head", **kw)(Reshape((-1,), **kw)(mixed))
    model = Model([seq, vec], out)
    _randomize(model, 14)
    rng = np.random.default_rng(15)
    x = [rng.standard_normal((3, 4, 3)), rng.standard_normal((3, 3))]
    _check_gradients(model, x, rng.standard_normal((3, 2)))


def test_rms_scaling_gradients_match_finite_differences():
    x = Input((4, 3), dtype="float64")
    with pytest.warns(UserWarning):
        ln = LayerNormalization(rms_scaling=True, name="rms", dtype="float64")
    model = Model(x, Dense(1, name="head", dtype="float64")(ln(x)))
    _randomize(model, 16)
    rng = np.random.default_rng(17)
    _check_gradients(model, rng.standard_normal((3, 4, 3)) + 1.0, rng.standard_normal((3, 4, 1)))


# ---- layer order -------------------------------------------------------------------------
def test_weights_follow_keras_layer_order():
    (a, b), (ea, eb) = _two_embeddings()
    h = LayerNormalization(name="ln")(Dense(3, name="d1")(ea))
    y = Dense(2, name="head")(Multiply(name="mul")([h, eb]))
    model = Model([a, b], y)
    # the order Keras 3.15 gives the same model (tests/conformance/test_keras_composed_layers.py
    # compares the orders of several models with Keras itself)
    assert [v.name for v in model.weights] == [
        "emb_a/embeddings", "d1/kernel", "d1/bias", "ln/gamma", "ln/beta", "emb_b/embeddings",
        "head/kernel", "head/bias"]
