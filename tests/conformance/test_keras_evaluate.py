"""evaluate / test_on_batch: losses, masks, sample weights and metrics vs Keras 3."""
import os

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

from hypothesis import given, settings
from hypothesis import strategies as st

import graphmask as gm
from tests.conformance import twin as tw

B, T, C, V = 6, 5, 3, 7
ALL_LOSSES = ["mse", "mae", "bce", "cce", "scce", ("bce", True), ("cce", True), ("scce", True)]
# few examples in the default profile; the profile's own count under HYPOTHESIS_PROFILE=thorough
N_EXAMPLES = 8 if os.environ.get("HYPOTHESIS_PROFILE", "default") == "default" \
    else settings().max_examples


def _key(loss):
    return loss if isinstance(loss, str) else loss[0]


def _seq_twin(loss, return_sequences=True, mask_zero=True, units=C, seed=0):
    spec = [("embedding", {"input_dim": V, "output_dim": 3, "mask_zero": mask_zero}),
            ("lstm", {"units": 4, "return_sequences": return_sequences}),
            ("dense", {"units": units, "activation": tw.head_activation(loss)})]
    return tw.build_twin(spec, (T,), "int32", seed=seed)


def _data(loss, mask_kind, out_shape, seed=0):
    rng = np.random.default_rng(seed)
    x = tw.ids_for(tw.mask_pattern(mask_kind, out_shape[0], T, rng), V, rng)
    return x, tw.targets_for(_key(loss), out_shape, rng), rng


def _evaluate_both(t, x, y, sw=None, ksw=None, batch_size=2):
    ours = t.gm.evaluate(x, y, sample_weight=sw, batch_size=batch_size, return_dict=True)
    theirs = t.keras.evaluate(x, y, sample_weight=sw if ksw is None else ksw,
                              batch_size=batch_size, verbose=0, return_dict=True)
    assert set(ours) == set(theirs), (ours, theirs)
    for k in ours:
        tw.assert_close(ours[k], theirs[k], what=k)
    return ours, theirs


@pytest.mark.parametrize("mask_kind", ["mixed", "batch"])
@pytest.mark.parametrize("loss", ALL_LOSSES, ids=str)
def test_masked_sequence_loss(loss, mask_kind):
    t = _seq_twin(loss)
    t.compile("sgd", loss)
    x, y, rng = _data(loss, mask_kind, (B, T, C))
    ours, _ = _evaluate_both(t, x, y)
    if mask_kind == "batch":  # docs/masking.md: an all-masked batch has a loss of exactly 0
        assert ours["loss"] == 0.0
    _evaluate_both(t, x, y, sw=rng.random((B, T)).astype(np.float32))


@pytest.mark.parametrize("loss", ["mse", "cce", ("scce", True)], ids=str)
def test_per_sample_weight_with_mask_broadcasts_over_time(loss, mask_kind="mixed"):
    """docs/masking.md: Keras 3 fails to broadcast a (B,) sample_weight against a (B, T) mask;
    graphmask broadcasts it over t. We compare with Keras given the (B, T) broadcast."""
    t = _seq_twin(loss)
    t.compile("sgd", loss)
    x, y, rng = _data(loss, mask_kind, (B, T, C))
    sw = rng.random(B).astype(np.float32)
    _evaluate_both(t, x, y, sw=sw, ksw=np.repeat(sw[:, None], T, axis=1))


@pytest.mark.parametrize("loss", ["mse", "bce", ("cce", True), "scce"], ids=str)
def test_per_sample_weight_without_mask(loss):
    """No mask anywhere: Keras 3 fails to broadcast a (B,) weight against (B, T) scores here
    too; graphmask broadcasts it over t. Keras gets the (B, T) broadcast."""
    t = _seq_twin(loss, mask_zero=False)
    t.compile("sgd", loss)
    x, y, rng = _data(loss, "none", (B, T, C))
    sw = rng.random(B).astype(np.float32)
    _evaluate_both(t, x, y, sw=sw, ksw=np.repeat(sw[:, None], T, axis=1))


@pytest.mark.parametrize("mask_kind", ["mixed"])
@pytest.mark.parametrize("loss", ALL_LOSSES, ids=str)
def test_last_output_loss(loss, mask_kind):
    """return_sequences=False: the mask is consumed by the LSTM; the loss is unmasked."""
    t = _seq_twin(loss, return_sequences=False)
    t.compile("sgd", loss)
    x, y, rng = _data(loss, mask_kind, (B, C))
    _evaluate_both(t, x, y)
    _evaluate_both(t, x, y, sw=rng.random(B).astype(np.float32))


@pytest.mark.parametrize("loss", ["mse", "bce", "cce"])
def test_masking_layer_model_loss(loss):
    rng = np.random.default_rng(3)
    t = tw.build_twin([("masking", {"mask_value": 0.0}),
                       ("lstm", {"units": 3, "return_sequences": True, "go_backwards": True}),
                       ("dense", {"units": C, "activation": tw.head_activation(loss)})], (T, 2))
    t.compile("sgd", loss)
    x = tw.features_for(tw.mask_pattern("mixed", B, T, rng), 2, rng)
    y = tw.targets_for(loss, (B, T, C), rng)
    _evaluate_both(t, x, y)


def test_dense_on_rank3_embedding_loss():
    """Dense straight on the embedding output keeps the mask for the loss."""
    t = tw.build_twin([("embedding", {"input_dim": V, "output_dim": 4, "mask_zero": True}),
                       ("dense", {"units": C})], (T,), "int32")
    t.compile("sgd", "mse")
    x, y, _ = _data("mse", "left", (B, T, C))
    _evaluate_both(t, x, y)


def test_seed_check_from_semantics():
    t = tw.build_twin([("embedding", {"input_dim": 5, "output_dim": 5, "mask_zero": True}),
                       ("dense", {"units": 3})], (4,), "int32")
    t.compile("sgd", "mse")
    x = np.array([[1, 2, 0, 0]], np.int32)
    y = np.arange(12, dtype=np.float32).reshape(1, 4, 3)
    ours, _ = _evaluate_both(t, x, y, batch_size=1)
    p = t.gm.predict(x)
    np.testing.assert_allclose(ours["loss"], np.mean((p[0, :2] - y[0, :2]) ** 2), rtol=1e-6)


@pytest.mark.parametrize("mask_kind", ["none", "mixed"])
@pytest.mark.parametrize("loss,units,metrics", [
    ("mse", 1, ["accuracy", "mae"]),
    ("mse", C, ["accuracy", "mse"]),
    ("bce", 1, ["accuracy", "binary_crossentropy", "BinaryAccuracy"]),
    ("cce", C, ["acc", "categorical_crossentropy", "CategoricalAccuracy", "mae"]),
    ("scce", C, ["accuracy", "sparse_categorical_crossentropy"]),
    (("scce", True), C, ["SparseCategoricalAccuracy"]),
], ids=str)
def test_metrics_with_mask(loss, units, metrics, mask_kind):
    """Metrics over several batches use the loss's kept positions, as Keras 3's do."""
    t = _seq_twin(loss, units=units)
    t.compile("sgd", loss, metrics=metrics)
    x, y, _ = _data(loss, mask_kind, (B, T, units))
    _evaluate_both(t, x, y)


@pytest.mark.parametrize("loss,metrics", [
    ("mse", ["mae"]), ("cce", ["accuracy"]),
    ("scce", ["accuracy", "sparse_categorical_crossentropy"])], ids=str)
def test_weighted_metrics_with_sample_weight(loss, metrics):
    """``weighted_metrics=`` see the sample weight and the mask, as in Keras 3.
    One batch: Keras's evaluate rescales weighted metrics per batch by total/valid of the
    mask, which graphmask (and keras.metrics used directly) do not."""
    t = _seq_twin(loss)
    t.gm.compile(optimizer="sgd", loss=tw.loss_pair(loss)[0], weighted_metrics=metrics)
    t.keras.compile(optimizer="sgd", loss=tw.loss_pair(loss)[1], weighted_metrics=metrics)
    x, y, rng = _data(loss, "holes", (B, T, C))
    _evaluate_both(t, x, y, sw=rng.random((B, T)).astype(np.float32), batch_size=B)


def test_test_on_batch_matches():
    t = _seq_twin("cce")
    t.compile("sgd", "cce", metrics=["accuracy"])
    x, y, _ = _data("cce", "holes", (B, T, C))
    ours = t.gm.test_on_batch(x, y, return_dict=True)
    theirs = t.keras.test_on_batch(x, y, return_dict=True)
    for k in ours:
        tw.assert_close(ours[k], theirs[k], what=k)


# ---- random small models, losses and masks ---------------------------------------------
@st.composite
def evaluate_cases(draw):
    loss = draw(st.sampled_from(ALL_LOSSES))
    use_ids = draw(st.booleans())
    t, b = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    layers = []
    if use_ids:
        layers.append(("embedding", {"input_dim": V, "output_dim": draw(st.integers(1, 3)),
                                     "mask_zero": True}))
        shape, dtype = (t,), "int32"
    else:
        layers.append(("masking", {"mask_value": 0.0}))
        shape, dtype = (t, draw(st.integers(1, 3))), "float32"
    n_lstm = draw(st.integers(0, 2))
    seq = True
    for i in range(n_lstm):
        seq = i < n_lstm - 1 or draw(st.booleans())
        layers.append(("lstm", {"units": draw(st.integers(1, 3)), "return_sequences": seq,
                                "go_backwards": draw(st.booleans())}))
    units = draw(st.integers(2, 3)) if _key(loss) in ("cce", "scce") else draw(st.integers(1, 3))
    layers.append(("dense", {"units": units, "activation": tw.head_activation(loss)}))
    mask_kind = draw(st.sampled_from(tw.MASK_KINDS))
    weights = draw(st.sampled_from([None, "per_position"] if seq else [None, "per_sample"]))
    batch_size = draw(st.integers(1, b))
    return loss, layers, shape, dtype, mask_kind, weights, batch_size, b, draw(st.integers(0, 999))


@settings(deadline=None, max_examples=N_EXAMPLES)
@given(evaluate_cases())
def test_random_models_evaluate(case):
    loss, layers, shape, dtype, mask_kind, weights, batch_size, b, seed = case
    gm.clear_session()
    t = tw.build_twin(layers, shape, dtype, seed=seed)
    t.compile("sgd", loss)
    rng = np.random.default_rng(seed)
    mask = tw.mask_pattern(mask_kind, b, shape[0], rng)
    x = tw.ids_for(mask, V, rng) if dtype == "int32" else \
        tw.features_for(mask, shape[-1], rng)
    out_shape = (b, *t.gm.outputs[0].shape[1:])
    y = tw.targets_for(_key(loss), out_shape, rng)
    sw = None
    if weights is not None:
        sw = rng.random(out_shape[:-1]).astype(np.float32)
    _evaluate_both(t, x, y, sw=sw, batch_size=batch_size)
