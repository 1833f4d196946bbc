"""Training resumes across libraries through ``.keras`` files: a model trained a few
steps in graphmask and saved continues in Keras 3 exactly as it continues in graphmask
(the optimizer's step count, learning rate and moments travel in Keras's layout), and
the other way round, for every optimizer both have. A fresh optimizer on either side
would differ by far more than the tolerance (see
tests/io/test_keras_optimizer_state.py::test_a_fresh_optimizer_would_not_resume_the_same).
"""
import warnings

import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()
pytest.importorskip("h5py", reason="Keras files need h5py (pip install 'graphmask[keras]')")

import graphmask as gm  # noqa: E402
from tests.conformance import twin as tw  # noqa: E402

B, T, V = 8, 6, 20
OPTIMIZERS = [("SGD", {"learning_rate": 0.05, "momentum": 0.9}),
              ("Adam", {"learning_rate": 0.01}),
              ("Adam", {"learning_rate": 0.01, "amsgrad": True}),
              ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "centered": True}),
              ("Nadam", {"learning_rate": 0.01}), ("Adadelta", {"learning_rate": 1.0}),
              ("Adagrad", {"learning_rate": 0.05}), ("Adamax", {"learning_rate": 0.01}),
              ("Lion", {"learning_rate": 0.001}), ("AdamW", {"learning_rate": 0.01})]
RTOL, ATOL = 1e-5, 1e-6  # two more float32 steps in two libraries


def _data():
    rng = np.random.default_rng(0)
    mask = tw.mask_pattern("holes", B, T, rng)
    return tw.ids_for(mask, V, rng), rng.normal(size=(B, T, 3)).astype("float32")


def _build(lib):
    L = gm if lib == "graphmask" else keras.layers
    ids = (gm.Input if lib == "graphmask" else keras.Input)((T,), dtype="int32")
    h = L.LSTM(5, return_sequences=True)(L.Embedding(V, 4, mask_zero=True)(ids))
    return (gm.Model if lib == "graphmask" else keras.Model)(ids, L.Dense(3)(h))


def _no_skip_warning(caught):
    skipped = [str(w.message) for w in caught if "Skipping" in str(w.message)]
    assert not skipped, skipped


@pytest.mark.parametrize("name, cfg", OPTIMIZERS,
                         ids=[f"{n}{'-' + '-'.join(c) if len(c) > 1 else ''}"
                              for n, c in OPTIMIZERS])
def test_graphmask_file_resumes_in_keras(tmp_path, name, cfg):
    x, y = _data()
    gm.clear_session()
    gm.set_random_seed(1)
    g = _build("graphmask")
    g.compile(optimizer=getattr(gm.optimizers, name)(**cfg), loss="mse")
    for _ in range(3):
        g.train_on_batch(x, y)
    g.save(tmp_path / "g.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        k = keras.saving.load_model(tmp_path / "g.keras")
    _no_skip_warning(caught)
    assert int(k.optimizer.iterations) == 3
    for step in range(2):
        tw.assert_close(g.train_on_batch(x, y), float(k.train_on_batch(x, y)), RTOL, ATOL,
                        f"{name} loss at resumed step {step}")
    tw.assert_close(g.get_weights(), tw.keras_weights(k), RTOL, ATOL, f"{name} weights")


@pytest.mark.parametrize("name, cfg", OPTIMIZERS,
                         ids=[f"{n}{'-' + '-'.join(c) if len(c) > 1 else ''}"
                              for n, c in OPTIMIZERS])
def test_keras_file_resumes_in_graphmask(tmp_path, name, cfg):
    x, y = _data()
    keras.utils.set_random_seed(1)
    k = _build("keras")
    k.compile(optimizer=getattr(keras.optimizers, name)(**cfg), loss="mse")
    for _ in range(3):
        k.train_on_batch(x, y)
    k.save(tmp_path / "k.keras")
    g = gm.saving.load_model(tmp_path / "k.keras")
    assert g.optimizer.iterations == 3
    for step in range(2):
        tw.assert_close(g.train_on_batch(x, y), float(k.train_on_batch(x, y)), RTOL, ATOL,
                        f"{name} loss at resumed step {step}")
    tw.assert_close(g.get_weights(), tw.keras_weights(k), RTOL, ATOL, f"{name} weights")
