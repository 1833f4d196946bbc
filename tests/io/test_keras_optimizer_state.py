"""The optimizer's state in ``.keras`` files, without Keras: the layout Keras 3 writes
(``optimizer/vars``: step count, learning rate, slots interleaved per weight within each
``add_optimizer_variables`` call), graphmask's round trip resuming training exactly, and
the files that do not fit. tests/conformance/test_keras_optimizer_files.py runs the same
resumption against Keras itself."""
import warnings

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="Keras files need h5py (pip install "
                                          "'graphmask[keras]')")

import graphmask as gm  # noqa: E402
from graphmask.errors import FileFormatError  # noqa: E402
from graphmask.io import keras_optimizer  # noqa: E402

B, T, V = 6, 5, 9


def _data():
    rng = np.random.default_rng(0)
    x = rng.integers(1, V, (B, T)).astype("int32")
    x[:, 3:] = 0
    return x, rng.normal(size=(B, T, 2)).astype("float32")


def _model(optimizer):
    gm.clear_session()
    gm.set_random_seed(3)
    ids = gm.Input((T,), dtype="int32")
    h = gm.LSTM(3, return_sequences=True)(gm.Embedding(V, 2, mask_zero=True)(ids))
    model = gm.Model(ids, gm.Dense(2)(h))
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _vars(path):
    with h5py.File(path, "r") as f:
        g = f["optimizer/vars"]
        return [g[str(i)][()] for i in range(len(g))]


def _weights_h5(path):
    import io
    import zipfile
    return io.BytesIO(zipfile.ZipFile(path).read("model.weights.h5"))


def test_adam_layout_is_keras(tmp_path):
    x, y = _data()
    model = _model(gm.optimizers.Adam(0.01))
    for _ in range(3):
        model.train_on_batch(x, y)
    path = tmp_path / "m.keras"
    model.save(path)
    saved = _vars(_weights_h5(path))
    weights = model.trainable_weights
    assert len(saved) == 2 + 2 * len(weights)
    assert saved[0] == 3 and saved[0].dtype == np.int64
    assert saved[1] == np.float32(0.01) and saved[1].dtype == np.float32
    state = model.optimizer.get_state()  # [steps, momentum of each weight, velocity ...]
    n = len(weights)
    for i, v in enumerate(weights):  # interleaved: momentum then velocity of each weight
        np.testing.assert_array_equal(saved[2 + 2 * i], state[1 + i], err_msg=v.name)
        np.testing.assert_array_equal(saved[3 + 2 * i], state[1 + n + i], err_msg=v.name)
        assert saved[2 + 2 * i].shape == tuple(v.shape)


@pytest.mark.parametrize("optimizer, groups", [
    (gm.optimizers.SGD(), []),
    (gm.optimizers.SGD(momentum=0.9), [("momentum",)]),
    (gm.optimizers.Adam(amsgrad=True), [("momentum", "velocity"), ("velocity_hat",)]),
    (gm.optimizers.RMSprop(momentum=0.5, centered=True),
     [("velocity",), ("momentum",), ("average_gradient",)]),
    (gm.optimizers.Adadelta(), [("accumulated_grad", "accumulated_delta_var")]),
    (gm.optimizers.Adamax(), [("momentum", "norm")]),
])
def test_slot_groups_follow_keras_calls(optimizer, groups):
    assert keras_optimizer.slot_groups(optimizer) == groups


@pytest.mark.parametrize("make", [
    lambda: gm.optimizers.SGD(0.05, momentum=0.9), lambda: gm.optimizers.Adam(0.01),
    lambda: gm.optimizers.Adam(0.01, amsgrad=True),
    lambda: gm.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
    lambda: gm.optimizers.Nadam(0.01), lambda: gm.optimizers.Adagrad(0.05),
    lambda: gm.optimizers.Adadelta(1.0), lambda: gm.optimizers.Adamax(0.01),
    lambda: gm.optimizers.Lion(0.001), lambda: gm.optimizers.AdamW(0.01)])
def test_training_resumes_exactly_after_a_keras_file(tmp_path, make):
    x, y = _data()
    model = _model(make())
    for _ in range(3):
        model.train_on_batch(x, y)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = gm.saving.load_model(path)
    assert loaded.optimizer.iterations == 3
    for _ in range(2):
        assert loaded.train_on_batch(x, y) == model.train_on_batch(x, y)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_fresh_optimizer_would_not_resume_the_same(tmp_path):
    """The check above can fail: without the saved moments Adam's next steps differ."""
    x, y = _data()
    model = _model(gm.optimizers.Adam(0.01))
    for _ in range(3):
        model.train_on_batch(x, y)
    fresh = _model(gm.optimizers.Adam(0.01))
    fresh.set_weights(model.get_weights())
    fresh.train_on_batch(x, y)
    model.train_on_batch(x, y)  # the loss before the step is the same: compare weights
    assert max(float(np.abs(a - b).max())
               for a, b in zip(fresh.get_weights(), model.get_weights())) > 1e-3


def test_untrained_and_uncompiled_models(tmp_path):
    x, _ = _data()
    model = _model(gm.optimizers.Adam(0.02))
    model.save(tmp_path / "a.keras")
    saved = _vars(_weights_h5(tmp_path / "a.keras"))
    assert [float(a) for a in saved] == [0.0, np.float32(0.02)]  # as Keras: no slots yet
    loaded = gm.saving.load_model(tmp_path / "a.keras")
    assert loaded.optimizer.iterations == 0 and not loaded.optimizer.built
    ids = gm.Input((T,), dtype="int32")
    bare = gm.Model(ids, gm.Dense(1)(gm.Embedding(V, 2)(ids)))
    bare.save(tmp_path / "b.keras")
    with h5py.File(_weights_h5(tmp_path / "b.keras"), "r") as f:
        assert "optimizer" not in f


def test_a_schedule_has_no_learning_rate_variable(tmp_path):
    x, y = _data()
    sched = gm.optimizers.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
    model = _model(gm.optimizers.SGD(sched, momentum=0.9))
    model.train_on_batch(x, y)
    model.save(tmp_path / "s.keras")
    saved = _vars(_weights_h5(tmp_path / "s.keras"))
    assert len(saved) == 1 + len(model.trainable_weights) and saved[0] == 1


def test_a_learning_rate_changed_during_training_is_restored(tmp_path):
    x, y = _data()
    model = _model(gm.optimizers.Adam(0.01))
    model.train_on_batch(x, y)
    model.optimizer.learning_rate = 0.003  # as ReduceLROnPlateau does
    model.save(tmp_path / "r.keras")
    assert gm.saving.load_model(tmp_path / "r.keras").optimizer.learning_rate == \
        pytest.approx(0.003)


def _rewrite_vars(path, arrays):
    """A copy of the .keras file at ``path`` whose optimizer/vars hold ``arrays``."""
    import io
    import zipfile
    zin = zipfile.ZipFile(path)
    buf = io.BytesIO(zin.read("model.weights.h5"))
    with h5py.File(buf, "a") as f:
        del f["optimizer"]
        g = f.require_group("optimizer/vars")
        for i, a in enumerate(arrays):
            g.create_dataset(str(i), data=a)
    out = path.with_name("changed.keras")
    with zipfile.ZipFile(out, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, buf.getvalue() if name == "model.weights.h5"
                          else zin.read(name))
    return out


def test_state_that_does_not_fit_warns_and_starts_fresh_as_keras(tmp_path):
    x, y = _data()
    model = _model(gm.optimizers.Adam(0.01))
    model.train_on_batch(x, y)
    model.save(tmp_path / "m.keras")
    saved = _vars(_weights_h5(tmp_path / "m.keras"))
    changed = _rewrite_vars(tmp_path / "m.keras", saved[:-1])  # one slot short
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = gm.saving.load_model(changed)
    assert any(f"holds {len(saved) - 1} arrays, the compiled Adam has {len(saved)}"
               in str(w.message) for w in caught)
    assert loaded.optimizer.iterations == 0


def test_a_slot_of_the_wrong_shape_is_an_error_naming_it(tmp_path):
    x, y = _data()
    model = _model(gm.optimizers.Adam(0.01))
    model.train_on_batch(x, y)
    model.save(tmp_path / "m.keras")
    saved = _vars(_weights_h5(tmp_path / "m.keras"))
    saved[2] = np.zeros((1, 1), np.float32)
    changed = _rewrite_vars(tmp_path / "m.keras", saved)
    name = model.trainable_weights[0].name
    with pytest.raises(FileFormatError, match=rf"optimizer/vars/2 \(momentum of "
                                              rf"'{name}'\) has shape \(1, 1\)"):
        gm.saving.load_model(changed)
