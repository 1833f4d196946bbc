"""Training: weights after train_on_batch steps and after fit, vs Keras 3 on copied weights."""

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

from tests.conformance import twin as tw

B, T, C, V = 6, 5, 3, 9
STEPS = 3

OPTIMIZERS = [
    ("SGD", {"learning_rate": 0.1}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    ("Adam", {"learning_rate": 0.01}),
    ("Adam", {"learning_rate": 0.01, "amsgrad": True}),
    ("Adam", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.95, "epsilon": 1e-5}),
    ("RMSprop", {"learning_rate": 0.01}),
    ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5}),
    ("RMSprop", {"learning_rate": 0.01, "rho": 0.8, "centered": True}),
]


def _ids_twin(seed=0):
    spec = [("embedding", {"input_dim": V, "output_dim": 3, "mask_zero": True}),
            ("lstm", {"units": 4, "return_sequences": True}),
            ("dense", {"units": C, "activation": "softmax"})]
    return tw.build_twin(spec, (T,), "int32", seed=seed)


def _masking_twin(seed=0):
    spec = [("masking", {"mask_value": 0.0}),
            ("lstm", {"units": 3, "return_sequences": True, "go_backwards": True}),
            ("lstm", {"units": 4}),
            ("dense", {"units": 2})]
    return tw.build_twin(spec, (T, 2), "float32", seed=seed)


def _assert_same_weights(t, what=""):
    names = [v.name for v in t.gm.weights]
    for name, a, b in zip(names, t.gm.get_weights(), tw.keras_weights(t.keras)):
        tw.assert_close(a, b, tw.TRAIN_RTOL, tw.TRAIN_ATOL, f"{what} {name}")


def _ids_batches(n_batches, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        # ids only from 1..V-3: the last embedding rows get no gradient, yet must still move
        # with momentum / Adam moments, as in Keras (docs/masking.md, "Optimizers")
        x = tw.ids_for(tw.mask_pattern("mixed", B, T, rng), V - 2, rng)
        y = tw.targets_for("cce", (B, T, C), rng)
        out.append((x, y, rng.random((B, T)).astype(np.float32)))
    return out


@pytest.mark.parametrize("name,cfg", OPTIMIZERS, ids=lambda v: str(v))
def test_train_on_batch_steps(name, cfg):
    t = _ids_twin()
    t.compile(name, "cce", **cfg)
    for step, (x, y, sw) in enumerate(_ids_batches(STEPS)):
        ours = t.gm.train_on_batch(x, y, sample_weight=sw)
        theirs = t.keras.train_on_batch(x, y, sample_weight=sw)
        tw.assert_close(ours, theirs, tw.TRAIN_RTOL, tw.TRAIN_ATOL, f"loss at step {step}")
        _assert_same_weights(t, f"step {step}")


@pytest.mark.parametrize("loss", ["mse", "mae"])
@pytest.mark.parametrize("name,cfg", [OPTIMIZERS[1], OPTIMIZERS[4], OPTIMIZERS[6]],
                         ids=lambda v: str(v))
def test_train_on_batch_masking_stacked(name, cfg, loss):
    t = _masking_twin()
    t.compile(name, loss, **cfg)
    rng = np.random.default_rng(2)
    for step in range(STEPS):
        x = tw.features_for(tw.mask_pattern("mixed", B, T, rng), 2, rng)
        y = rng.standard_normal((B, 2)).astype(np.float32)
        sw = rng.random(B).astype(np.float32)
        ours = t.gm.train_on_batch(x, y, sample_weight=sw)
        theirs = t.keras.train_on_batch(x, y, sample_weight=sw)
        tw.assert_close(ours, theirs, tw.TRAIN_RTOL, tw.TRAIN_ATOL, f"loss at step {step}")
        _assert_same_weights(t, f"step {step}")


@pytest.mark.parametrize("loss", ["bce", ("scce", True)], ids=str)
def test_train_on_batch_other_losses(loss):
    key = loss if isinstance(loss, str) else loss[0]
    units = 1 if key == "bce" else C
    spec = [("embedding", {"input_dim": V, "output_dim": 3, "mask_zero": True}),
            ("dense", {"units": 4, "activation": "tanh"}),
            ("lstm", {"units": 4, "return_sequences": True, "go_backwards": True}),
            ("dense", {"units": units, "activation": tw.head_activation(loss)})]
    t = tw.build_twin(spec, (T,), "int32")
    t.compile("Adam", loss, learning_rate=0.02)
    rng = np.random.default_rng(3)
    for step in range(STEPS):
        x = tw.ids_for(tw.mask_pattern("mixed", B, T, rng), V, rng)
        y = tw.targets_for(key, (B, T, units), rng)
        tw.assert_close(t.gm.train_on_batch(x, y), t.keras.train_on_batch(x, y),
                        tw.TRAIN_RTOL, tw.TRAIN_ATOL, f"loss at step {step}")
        _assert_same_weights(t, f"step {step}")


def test_train_on_all_masked_batch_changes_nothing_but_momentum():
    """An all-masked batch: loss 0 and zero gradients in both libraries (no NaN)."""
    t = _ids_twin()
    t.compile("SGD", "cce", learning_rate=0.1, momentum=0.9)
    (x, y, sw), = _ids_batches(1)
    t.gm.train_on_batch(x, y, sample_weight=sw)
    t.keras.train_on_batch(x, y, sample_weight=sw)
    x0 = np.zeros_like(x)
    assert t.gm.train_on_batch(x0, y) == 0.0
    tw.assert_close(t.gm.train_on_batch(x0, y), 0.0)
    t.keras.train_on_batch(x0, y)
    t.keras.train_on_batch(x0, y)
    _assert_same_weights(t, "after masked steps")


@pytest.mark.parametrize("name,cfg", [OPTIMIZERS[2], OPTIMIZERS[3], OPTIMIZERS[7]],
                         ids=lambda v: str(v))
def test_fit_two_epochs(name, cfg):
    t = _ids_twin()
    t.compile(name, "cce", metrics=["accuracy"], **cfg)
    data = _ids_batches(2, seed=5)
    x = np.concatenate([d[0] for d in data])
    y = np.concatenate([d[1] for d in data])
    ours = t.gm.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    theirs = t.keras.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    tw.assert_close(ours.history["loss"], theirs.history["loss"], tw.TRAIN_RTOL, tw.TRAIN_ATOL)
    tw.assert_close(ours.history["accuracy"], theirs.history["accuracy"], tw.TRAIN_RTOL,
                    tw.TRAIN_ATOL)
    _assert_same_weights(t, "after fit")


def test_fit_with_per_position_weights():
    t = _ids_twin()
    t.compile("RMSprop", ("cce", False), learning_rate=0.01)
    data = _ids_batches(2, seed=6)
    x, y, sw = (np.concatenate([d[i] for d in data]) for i in range(3))
    ours = t.gm.fit(x, y, sample_weight=sw, batch_size=3, epochs=2, shuffle=False, verbose=0)
    theirs = t.keras.fit(x, y, sample_weight=sw, batch_size=3, epochs=2, shuffle=False,
                         verbose=0)
    tw.assert_close(ours.history["loss"], theirs.history["loss"], tw.TRAIN_RTOL, tw.TRAIN_ATOL)
    _assert_same_weights(t, "after fit")


def test_predict_after_training_matches():
    t = _masking_twin()
    t.compile("Adam", "mse", learning_rate=0.05)
    rng = np.random.default_rng(7)
    x = tw.features_for(tw.mask_pattern("mixed", B, T, rng), 2, rng)
    y = rng.standard_normal((B, 2)).astype(np.float32)
    for _ in range(STEPS):
        t.gm.train_on_batch(x, y)
        t.keras.train_on_batch(x, y)
    tw.assert_close(t.gm.predict(x), tw.keras_predict(t.keras, x), tw.TRAIN_RTOL, tw.TRAIN_ATOL)
