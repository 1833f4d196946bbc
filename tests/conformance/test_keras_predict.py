"""predict: graphmask vs Keras 3 on copied weights (masks of every shape)."""
import os

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

from hypothesis import given, settings
from hypothesis import strategies as st

import graphmask as gm
from tests.conformance import twin as tw

B, T = 5, 6
# few examples in the default profile; the profile's own count under HYPOTHESIS_PROFILE=thorough
N_EXAMPLES = 8 if os.environ.get("HYPOTHESIS_PROFILE", "default") == "default" \
    else settings().max_examples


def _ids_model(layers, input_dim=9, emb=3, dtype="int32", seed=0):
    spec = [("embedding", {"input_dim": input_dim, "output_dim": emb, "mask_zero": True}), *layers]
    return tw.build_twin(spec, (T,), dtype, seed=seed)


@pytest.mark.parametrize("mask_kind", tw.MASK_KINDS)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_embedding_lstm_dense(mask_kind, return_sequences, go_backwards):
    rng = np.random.default_rng(1)
    t = _ids_model([("lstm", {"units": 4, "return_sequences": return_sequences,
                                  "go_backwards": go_backwards}),
                    ("dense", {"units": 3, "activation": "tanh"})])
    x = tw.ids_for(tw.mask_pattern(mask_kind, B, T, rng), 9, rng)
    tw.assert_close(t.gm.predict(x), tw.keras_predict(t.keras, x))


@pytest.mark.parametrize("mask_kind", ["right", "left", "holes", "rows"])
def test_masking_layer_float_input(mask_kind):
    rng = np.random.default_rng(2)
    t = tw.build_twin([("masking", {"mask_value": -1.0}),
                       ("lstm", {"units": 3, "return_sequences": True}),
                       ("dense", {"units": 2})], (T, 4))
    x = tw.features_for(tw.mask_pattern(mask_kind, B, T, rng), 4, rng, mask_value=-1.0)
    tw.assert_close(t.gm.predict(x), tw.keras_predict(t.keras, x))


def test_masking_layer_alone_zeroes_masked_steps():
    rng = np.random.default_rng(3)
    t = tw.build_twin([("masking", {"mask_value": 0.5})], (T, 2))
    x = tw.features_for(tw.mask_pattern("holes", B, T, rng), 2, rng, mask_value=0.5)
    tw.assert_close(t.gm.predict(x), tw.keras_predict(t.keras, x))


@pytest.mark.parametrize("mask_kind", ["right", "left", "holes", "rows"])
def test_stacked_lstms(mask_kind):
    rng = np.random.default_rng(4)
    t = _ids_model([("lstm", {"units": 4, "return_sequences": True}),
                    ("lstm", {"units": 3, "return_sequences": True, "go_backwards": True}),
                    ("lstm", {"units": 2})])
    x = tw.ids_for(tw.mask_pattern(mask_kind, B, T, rng), 9, rng)
    tw.assert_close(t.gm.predict(x), tw.keras_predict(t.keras, x))


@pytest.mark.parametrize("return_sequences", [False, True])
def test_lstm_return_state(return_sequences):
    rng = np.random.default_rng(5)
    t = _ids_model([("lstm", {"units": 3, "return_sequences": return_sequences,
                                  "return_state": True})])
    x = tw.ids_for(tw.mask_pattern("holes", B, T, rng), 9, rng)
    ours, theirs = t.gm.predict(x), tw.keras_predict(t.keras, x)
    assert len(ours) == 3
    tw.assert_close(ours, theirs)


def test_dense_on_rank3_passes_mask():
    rng = np.random.default_rng(6)
    t = _ids_model([("dense", {"units": 4, "activation": "relu"}),
                    ("lstm", {"units": 3, "return_sequences": True}),
                    ("dense", {"units": 2, "activation": "sigmoid"})])
    x = tw.ids_for(tw.mask_pattern("left", B, T, rng), 9, rng)
    tw.assert_close(t.gm.predict(x), tw.keras_predict(t.keras, x))


def test_embedding_mask_zero_float32_input():
    """Whole-number float ids are accepted and cast, as Keras does."""
    rng = np.random.default_rng(7)
    t = _ids_model([("lstm", {"units": 3})], dtype="float32")
    x = tw.ids_for(tw.mask_pattern("right", B, T, rng), 9, rng, dtype="float32")
    tw.assert_close(t.gm.predict(x), tw.keras_predict(t.keras, x))


def test_embedding_fractional_float_ids_raise():
    """docs/masking.md: float ids that are not whole numbers are an error (Keras truncates)."""
    t = _ids_model([("lstm", {"units": 3})], dtype="float32")
    x = np.full((2, T), 1.5, np.float32)
    with pytest.raises(gm.errors.GraphmaskError):
        t.gm.predict(x)


@pytest.mark.parametrize("bad", [9, -1])
def test_out_of_range_ids_raise(bad):
    """docs/masking.md: an id outside [0, input_dim) is an error in graphmask (Keras-torch wraps
    -1 to the last row and fails in an undocumented way on ids >= input_dim)."""
    t = _ids_model([("lstm", {"units": 3})])
    x = np.ones((2, T), np.int32)
    x[1, 2] = bad
    with pytest.raises(gm.errors.IdRangeError):
        t.gm.predict(x)


@pytest.mark.parametrize("mask_kind", ["right", "left", "holes"])
def test_global_average_pooling_with_mask(mask_kind):
    rng = np.random.default_rng(8)
    t = _ids_model([("lstm", {"units": 3, "return_sequences": True}), ("gap1d",),
                    ("dense", {"units": 2})])
    x = tw.ids_for(tw.mask_pattern(mask_kind, B, T, rng), 9, rng)
    tw.assert_close(t.gm.predict(x), tw.keras_predict(t.keras, x))


def test_global_average_pooling_all_masked_row_is_zero():
    """docs/masking.md: Keras gives NaN for an all-masked row, graphmask gives 0. The other rows
    match Keras."""
    rng = np.random.default_rng(9)
    t = _ids_model([("gap1d",)])
    mask = tw.mask_pattern("rows", B, T, rng)
    x = tw.ids_for(mask, 9, rng)
    ours, theirs = t.gm.predict(x), tw.keras_predict(t.keras, x)
    dead = ~mask.any(axis=1)
    assert dead.any() and np.all(ours[dead] == 0.0)
    tw.assert_close(ours[~dead], theirs[~dead])


def test_zero_output_for_mask_return_sequences():
    rng = np.random.default_rng(10)
    t = _ids_model([("lstm", {"units": 3, "return_sequences": True, "zero_output_for_mask": True})])
    x = tw.ids_for(tw.mask_pattern("holes", B, T, rng), 9, rng)
    ours = t.gm.predict(x)
    tw.assert_close(ours, tw.keras_predict(t.keras, x))
    assert np.all(ours[x == 0] == 0.0)


def test_zero_output_for_mask_last_output_is_not_zeroed():
    """docs/masking.md: Keras zeroes the last output with return_sequences=False when the last
    step is masked (a Keras bug); graphmask returns the output of the last kept step, i.e.
    the same as Keras with zero_output_for_mask=False."""
    rng = np.random.default_rng(11)
    t = _ids_model([("lstm", {"units": 3, "zero_output_for_mask": True})])
    ref = _ids_model([("lstm", {"units": 3})])
    tw.copy_weights(t.gm, ref.keras)
    x = tw.ids_for(tw.mask_pattern("right", B, T, rng), 9, rng)
    assert (x[:, -1] == 0).any()
    ours = t.gm.predict(x)
    tw.assert_close(ours, tw.keras_predict(ref.keras, x))
    assert np.all(np.abs(ours).sum(axis=1) > 0)


def test_default_initial_weights_copy_over():
    """Without randomizing: graphmask's own initializers, copied as they are."""
    rng = np.random.default_rng(12)
    spec = [("embedding", {"input_dim": 9, "output_dim": 3, "mask_zero": True}),
            ("lstm", {"units": 4}), ("dense", {"units": 2})]
    t = tw.build_twin(spec, (T,), "int32", randomize=None)
    x = tw.ids_for(tw.mask_pattern("right", B, T, rng), 9, rng)
    tw.assert_close(t.gm.predict(x), tw.keras_predict(t.keras, x))
    lstm_bias = t.gm.get_layer("lstm_1").get_weights()[2]
    assert np.all(lstm_bias[4:8] == 1.0) and np.all(lstm_bias[:4] == 0) \
        and np.all(lstm_bias[8:] == 0)


# ---- random small models -----------------------------------------------------------------
@st.composite
def models_and_batches(draw):
    use_ids = draw(st.booleans())
    t = draw(st.integers(1, 5))
    b = draw(st.integers(1, 4))
    layers = []
    if use_ids:
        dim = draw(st.integers(2, 6))
        layers.append(("embedding", {"input_dim": dim, "output_dim": draw(st.integers(1, 3)),
                                         "mask_zero": True}))
        shape, dtype = (t,), "int32"
    else:
        f = draw(st.integers(1, 3))
        mv = draw(st.sampled_from([0.0, -1.0]))
        layers.append(("masking", {"mask_value": mv}))
        shape, dtype = (t, f), "float32"
    if draw(st.booleans()):
        layers.append(("dense", {"units": draw(st.integers(1, 3)),
                                     "activation": draw(st.sampled_from([None, "tanh", "relu"]))}))
    n_lstm = draw(st.integers(0, 2))
    for i in range(n_lstm):
        last = i == n_lstm - 1
        layers.append(("lstm", {"units": draw(st.integers(1, 3)),
                                    "return_sequences": (not last) or draw(st.booleans()),
                                    "go_backwards": draw(st.booleans())}))
    head = draw(st.sampled_from([None, "sigmoid", "softmax"]))
    layers.append(("dense", {"units": draw(st.integers(1, 3)), "activation": head}))
    mask_kind = draw(st.sampled_from(["none", "right", "left", "holes"]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    mask = tw.mask_pattern(mask_kind, b, t, rng)
    if use_ids:
        x = tw.ids_for(mask, layers[0][1]["input_dim"], rng)
    else:
        x = tw.features_for(mask, shape[-1], rng, layers[0][1]["mask_value"])
    return layers, shape, dtype, x, seed


@pytest.mark.filterwarnings("ignore:You are using a softmax")  # units=1 softmax on purpose
@settings(deadline=None, max_examples=N_EXAMPLES)
@given(models_and_batches())
def test_random_models_predict(case):
    layers, shape, dtype, x, seed = case
    gm.clear_session()
    t = tw.build_twin(layers, shape, dtype, seed=seed)
    tw.assert_close(t.gm.predict(x), tw.keras_predict(t.keras, x), what=str(layers))
