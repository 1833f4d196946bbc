"""The Keras API people port, against Keras 3: pad_sequences / to_categorical, class_weight
training, generator and PyDataset training (each batch padded on its own), steps_per_epoch,
ReduceLROnPlateau / LearningRateScheduler histories and Input(batch_shape)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()

import graphmask as gm  # noqa: E402
from tests.conformance import twin as tw  # noqa: E402

V, C = 9, 3
SEQ_SPEC = [("embedding", {"input_dim": V, "output_dim": 3, "mask_zero": True}),
            ("lstm", {"units": 4, "return_sequences": True}),
            ("dense", {"units": C, "activation": "softmax"})]


def _close_weights(t, rtol=1e-4, atol=2e-5, what=""):
    for v, a, b in zip(t.gm.weights, t.gm.get_weights(), tw.keras_weights(t.keras)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{what} {v.name}")


# ---- utils ---------------------------------------------------------------------------------
SEQS = [[1, 2, 3], [4, 5], [], [6, 7, 8, 9, 10], [3]]


def test_pad_sequences_and_to_categorical_match_keras():
    for kwargs in ({}, {"padding": "post"}, {"maxlen": 3}, {"maxlen": 3, "truncating": "post"},
                   {"maxlen": 4, "padding": "post", "truncating": "post", "value": -1},
                   {"dtype": "float32", "value": 0.5}):
        ours = gm.utils.pad_sequences(SEQS, **kwargs)
        theirs = keras.utils.pad_sequences(SEQS, **kwargs)
        assert ours.dtype == theirs.dtype, kwargs
        np.testing.assert_array_equal(ours, theirs, err_msg=str(kwargs))
    for x, n in (([0, 2, 1], None), ([[1], [0]], 4), ([[1, 2], [0, 1]], 3)):
        ours, theirs = gm.utils.to_categorical(x, n), keras.utils.to_categorical(x, n)
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs, err_msg=str(x))


def test_input_batch_shape_matches_keras():
    g, k = gm.Input(batch_shape=(4, None, 2)), keras.Input(batch_shape=(4, None, 2))
    assert g.shape == tuple(k.shape)


# ---- class_weight ----------------------------------------------------------------------------
def _dense_twin(units, activation, seed=0):
    return tw.build_twin([("dense", {"units": 5, "activation": "tanh"}),
                          ("dense", {"units": units, "activation": activation})], (4,),
                         seed=seed)


@pytest.mark.parametrize("case", ["sparse", "one_hot", "binary"])
def test_class_weight_training_matches_keras(case):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 4)).astype(np.float32)
    if case == "binary":
        t, loss = _dense_twin(1, "sigmoid"), "binary_crossentropy"
        y = (rng.random((24, 1)) < 0.3).astype(np.float32)
        cw = {0: 0.5, 1: 3.0}
    else:
        t = _dense_twin(C, "softmax")
        ids = rng.integers(0, C, size=24)
        y = ids.astype(np.int32) if case == "sparse" else np.eye(C, dtype=np.float32)[ids]
        loss = "sparse_categorical_crossentropy" if case == "sparse" else \
            "categorical_crossentropy"
        cw = {0: 0.2, 2: 4.0}  # class 1 missing: weight 1
    t.gm.compile(gm.optimizers.SGD(0.1), loss, metrics=["accuracy"])
    t.keras.compile(keras.optimizers.SGD(0.1), loss, metrics=["accuracy"])
    hg = t.gm.fit(x, y, batch_size=8, epochs=3, shuffle=False, class_weight=cw, verbose=0)
    hk = t.keras.fit(x, y, batch_size=8, epochs=3, shuffle=False, class_weight=cw, verbose=0)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(hg.history[key], hk.history[key], rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    _close_weights(t, what=f"class_weight {case}")


def test_class_weight_on_sequence_labels_is_per_position():
    """Keras 3 has no per-position class_weight (it argmaxes over time); graphmask's equals
    Keras trained with the per-position sample_weight class_weight[y]."""
    rng = np.random.default_rng(1)
    t = tw.build_twin(SEQ_SPEC, (5,), "int32", seed=2)
    x = tw.ids_for(tw.mask_pattern("mixed", 12, 5, rng), V, rng)
    y = rng.integers(0, C, size=(12, 5)).astype(np.int32)
    cw = {0: 2.0, 1: 0.5}
    sw = np.vectorize(lambda c: cw.get(int(c), 1.0))(y).astype(np.float32)
    t.gm.compile(gm.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    t.keras.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    hg = t.gm.fit(x, y, batch_size=4, epochs=2, shuffle=False, class_weight=cw, verbose=0)
    hk = t.keras.fit(x, y, batch_size=4, epochs=2, shuffle=False, sample_weight=sw, verbose=0)
    np.testing.assert_allclose(hg.history["loss"], hk.history["loss"], rtol=1e-5)
    _close_weights(t, what="per-position class_weight")


# ---- generators and PyDataset -----------------------------------------------------------------
def _ragged_batches(n, seed=3):
    """Batches padded on their own: lengths differ from batch to batch."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        t = 3 + (k * 2) % 5
        seqs = [rng.integers(1, V, size=rng.integers(1, t + 1)) for _ in range(4)]
        x = gm.utils.pad_sequences(seqs, maxlen=t, padding="post")
        out.append((x, rng.integers(0, C, size=x.shape).astype(np.int32)))
    return out


def _seq_twin(seed=0):
    spec = [("embedding", {"input_dim": V, "output_dim": 3, "mask_zero": True}),
            ("lstm", {"units": 4, "return_sequences": True}),
            ("dense", {"units": C, "activation": "softmax"})]
    return tw.build_twin(spec, (None,), "int32", seed=seed)


def _compile(t, lr=0.01):
    t.gm.compile(gm.optimizers.Adam(lr), "sparse_categorical_crossentropy",
                 metrics=["accuracy"])
    t.keras.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy",
                    metrics=["accuracy"])


def test_generator_training_with_steps_per_epoch_matches_keras():
    items = _ragged_batches(6)
    t = _seq_twin()
    _compile(t)
    hg = t.gm.fit((b for b in items), steps_per_epoch=3, epochs=2, shuffle=False, verbose=0)
    hk = t.keras.fit((b for b in items), steps_per_epoch=3, epochs=2, shuffle=False,
                     verbose=0)
    np.testing.assert_allclose(hg.history["loss"], hk.history["loss"], rtol=1e-4)
    _close_weights(t, what="generator")
    _check_padding_invariant_metrics(t, _ragged_batches(3, seed=5))


def _uniform(batches):
    """The same batches, every one padded to the longest length (right padding)."""
    t = max(x.shape[1] for x, _ in batches)
    return (np.concatenate([np.pad(x, ((0, 0), (0, t - x.shape[1]))) for x, _ in batches]),
            np.concatenate([np.pad(y, ((0, 0), (0, t - y.shape[1]))) for _, y in batches]))


def _check_padding_invariant_metrics(t, batches):
    """Masked metrics over batches of different lengths: graphmask counts kept positions,
    so its value is the one Keras gives when every batch has the same length (Keras
    weighs each batch's positions by 1 / its length; docs/keras_api.md)."""
    n = len(batches[0][0])
    eg = t.gm.evaluate((b for b in batches), verbose=0, return_dict=True)
    ek = t.keras.evaluate(*_uniform(batches), batch_size=n, verbose=0, return_dict=True)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(eg[key], ek[key], rtol=1e-5, err_msg=key)


def test_pydataset_training_and_validation_match_keras():
    items, val = _ragged_batches(4, seed=7), _ragged_batches(3, seed=8)

    def dataset(base, data):
        class D(base):
            def __init__(self):
                super().__init__()

            def __len__(self):
                return len(data)

            def __getitem__(self, i):
                return data[i]
        return D()

    t = _seq_twin(seed=1)
    _compile(t)
    hg = t.gm.fit(dataset(gm.utils.PyDataset, items), epochs=2, shuffle=False,
                  validation_data=dataset(gm.utils.PyDataset, val), verbose=0)
    hk = t.keras.fit(dataset(keras.utils.PyDataset, items), epochs=2, shuffle=False,
                     validation_data=dataset(keras.utils.PyDataset, val), verbose=0)
    assert sorted(hg.history) == sorted(hk.history)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(hg.history[key], hk.history[key], rtol=1e-4, err_msg=key)
    _close_weights(t, what="PyDataset")
    _check_padding_invariant_metrics(t, val)


# ---- learning-rate callbacks -----------------------------------------------------------------
def test_reduce_lr_on_plateau_and_scheduler_histories_match_keras():
    """A steadily falling loss whose small improvements count as plateaus (min_delta): the
    learning rate halves at epochs 2, 4 and 6 (the last clamped at min_lr) between the
    scheduler's 0.9 steps. The run is well conditioned (a diverging run would amplify float32
    rounding differences between any two implementations), so the losses agree closely and
    every plateau decision has a wide margin (improvements 0.025, 0.011, 0.004 against 0.05)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 4)).astype(np.float32)
    y = rng.standard_normal((16, 1)).astype(np.float32)
    t = _dense_twin(1, None)
    t.gm.compile(gm.optimizers.SGD(0.1), "mse")
    t.keras.compile(keras.optimizers.SGD(0.1), "mse")

    def cbs(lib):
        c = lib.callbacks
        return [c.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_lr=0.01,
                                    min_delta=0.05),
                c.LearningRateScheduler(lambda e, lr: lr * 0.9 if e % 2 else lr)]

    hg = t.gm.fit(x, y, batch_size=4, epochs=8, shuffle=False, verbose=0, callbacks=cbs(gm))
    hk = t.keras.fit(x, y, batch_size=4, epochs=8, shuffle=False, verbose=0,
                     callbacks=cbs(keras))
    np.testing.assert_allclose(hk.history["learning_rate"],
                               [0.1, 0.09, 0.045, 0.0405, 0.02025, 0.018225, 0.01, 0.009],
                               rtol=1e-6)  # the schedule this test is built to exercise
    np.testing.assert_allclose(hg.history["learning_rate"], hk.history["learning_rate"],
                               rtol=1e-6)
    np.testing.assert_allclose(hg.history["loss"], hk.history["loss"], rtol=1e-5)


def test_array_steps_per_epoch_and_validation_steps_match_keras():
    """Arrays with steps_per_epoch: an epoch goes on where the last one stopped."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((20, 4)).astype(np.float32)
    y = rng.standard_normal((20, 1)).astype(np.float32)
    t = _dense_twin(1, None, seed=5)
    t.gm.compile(gm.optimizers.SGD(0.05), "mse")
    t.keras.compile(keras.optimizers.SGD(0.05), "mse")
    kw = dict(batch_size=4, epochs=3, steps_per_epoch=2, shuffle=False, verbose=0,
              validation_data=(x[:8], y[:8]), validation_steps=1)
    hg, hk = t.gm.fit(x, y, **kw), t.keras.fit(x, y, **kw)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(hg.history[key], hk.history[key], rtol=1e-5, err_msg=key)
    _close_weights(t, what="steps_per_epoch")
