"""Keras 3 files against real Keras: models trained and saved by Keras load in graphmask
with equal predictions, graphmask's .keras and .weights.h5 files load in Keras, and
from_keras/to_keras in memory. Every layer graphmask has appears in at least one model."""
import numpy as np
import pytest

from tests.conformance.oracle import import_keras

keras = import_keras()
pytest.importorskip("h5py", reason="Keras files need h5py (pip install 'graphmask[keras]')")

import graphmask as gm
from graphmask.io.interop import from_keras, to_keras

L = keras.layers
B, T, V = 5, 6, 11
RTOL, ATOL = 1e-5, 1e-6  # float32 kernels in two libraries: same math, other summation order


def _ids(seed=0):  # no all-padding row: Keras pools it to NaN, graphmask to 0
    rng = np.random.default_rng(seed)
    x = rng.integers(1, V, size=(B, T))
    for b, n in enumerate([6, 4, 1, 3, 2]):
        x[b, n:] = 0
    return x.astype("int32")


def _floats(seed=0, f=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, f)).astype("float32")
    for b, n in enumerate([6, 2, 5, 1, 3]):
        x[b, n:] = 0.0
    return x


def tagger():
    ids = keras.Input((T,), dtype="int32")
    e = L.Embedding(V, 4, mask_zero=True)(ids)
    h = L.LSTM(5, return_sequences=True, go_backwards=False)(e)
    h = L.Dropout(0.3)(h)
    h = L.LayerNormalization()(h)
    return keras.Model(ids, L.TimeDistributed(L.Dense(3, activation="softmax"))(h)), _ids()


def merges():
    ids = keras.Input((T,), dtype="int32")
    e = L.Embedding(V, 4, mask_zero=True)(ids)
    pooled = []
    # each merge reads its own pair of masked branches (graphmask cannot yet order
    # model.layers when several merges read the same two masked tensors)
    for merge in (L.Multiply, L.Average, L.Maximum, L.Minimum):
        a = L.Dense(4, activation="tanh")(e)
        pooled.append(L.GlobalAveragePooling1D()(merge()([a, L.Activation("relu")(a)])))
    last = L.LSTM(3, return_sequences=False, unit_forget_bias=False)(e)
    return keras.Model(ids, L.Concatenate()(pooled + [last])), _ids(1)


def masking_and_shapes():
    x = keras.Input((T, 4))
    m = L.Masking()(x)
    h = L.LSTM(3, return_sequences=True, go_backwards=True)(m)
    h = L.GlobalAveragePooling1D()(h)
    r = L.RepeatVector(2)(h)
    r = L.Permute((2, 1))(r)
    r = L.Reshape((6,))(r)
    plain = L.GlobalMaxPooling1D()(x)
    flat = L.Flatten()(L.Dense(2)(x))
    proj = L.Dense(6)(plain)
    dot = L.Dot(axes=1, normalize=True)([L.Subtract()([proj, r]), r])
    return keras.Model(x, L.Concatenate()([dot, flat, plain])), _floats(2)


def two_inputs_two_outputs():
    a = keras.Input((T,), dtype="int32", name="words")
    b = keras.Input((T, 4), name="feats")
    ea = L.Embedding(V, 4, mask_zero=True, name="emb")(a)
    shared = L.Dense(4, name="shared")
    s = L.Add()([shared(ea), shared(L.Masking()(b))])
    seq = L.LSTM(2, return_sequences=True, name="rnn")(s)
    vec = L.GlobalAveragePooling1D(name="pool")(seq)
    return keras.Model([a, b], [seq, L.Dense(1, name="head")(vec)]), [_ids(3), _floats(3)]


def sequential():
    model = keras.Sequential([keras.Input((T,), dtype="int32"),
                              L.Embedding(V, 3, mask_zero=True),
                              L.LSTM(4, return_sequences=True),
                              L.GlobalAveragePooling1D(), L.Dense(2)])
    return model, _ids(4)


MODELS = [tagger, merges, masking_and_shapes, two_inputs_two_outputs, sequential]


def _predict_keras(model, x):
    return model.predict(x, verbose=0)


def _assert_close(a, b):
    a = a if isinstance(a, list) else [a]
    b = b if isinstance(b, list) else [b]
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=RTOL, atol=ATOL)


def _trained(build):
    keras.utils.set_random_seed(0)
    model, x = build()
    ys = [np.random.default_rng(1).normal(size=(B, *o.shape[1:])).astype("float32")
          for o in model.outputs]
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, ys if len(ys) > 1 else ys[0], epochs=2, batch_size=2, verbose=0)
    return model, x


@pytest.mark.parametrize("build", MODELS, ids=lambda f: f.__name__)
def test_keras_file_loads_in_graphmask(tmp_path, build):
    k, x = _trained(build)
    path = tmp_path / "model.keras"
    k.save(path)
    model = gm.load_model(path)
    assert [la.name for la in model.layers] == [la.name for la in k.layers]
    _assert_close(model.predict(x), _predict_keras(k, x))
    assert model.compiled and type(model.optimizer).__name__ == "Adam"
    # and back: graphmask's file loads in Keras with the same predictions
    out = tmp_path / "back.keras"
    model.save(out)
    again = keras.saving.load_model(out)
    _assert_close(_predict_keras(again, x), model.predict(x))
    assert type(again).__name__ == type(k).__name__


@pytest.mark.parametrize("build", [tagger, sequential], ids=lambda f: f.__name__)
def test_weights_files_both_ways(tmp_path, build):
    k, x = _trained(build)
    path = tmp_path / "k.weights.h5"
    k.save_weights(path)
    model = from_keras(build()[0])  # fresh weights, same architecture
    model.load_weights(path)
    _assert_close(model.predict(x), _predict_keras(k, x))
    model.set_weights([w * 0.5 for w in model.get_weights()])
    mine = tmp_path / "g.weights.h5"
    model.save_weights(mine)
    k.load_weights(mine)
    _assert_close(_predict_keras(k, x), model.predict(x))


def test_from_keras_and_to_keras_in_memory():
    k, x = _trained(two_inputs_two_outputs)
    model = from_keras(k)
    _assert_close(model.predict(x), _predict_keras(k, x))
    back = to_keras(model)
    _assert_close(_predict_keras(back, x), model.predict(x))
    assert [w.shape for w in back.get_weights()] == [w.shape for w in k.get_weights()]


def test_graphmask_trained_model_predicts_the_same_in_keras(tmp_path):
    gm.set_random_seed(0)
    ids = gm.Input((T,), dtype="int32")
    h = gm.Embedding(V, 4, mask_zero=True)(ids)
    h = gm.LSTM(4, return_sequences=True)(h)
    out = gm.Dense(2)(gm.GlobalAveragePooling1D()(h))
    model = gm.Model(ids, out)
    model.compile(optimizer="adam", loss="mse")
    x = _ids(5)
    model.fit(x, np.ones((B, 2), "float32"), epochs=2, batch_size=2, verbose=0)
    path = tmp_path / "g.keras"
    model.save(path)
    k = keras.saving.load_model(path)
    _assert_close(_predict_keras(k, x), model.predict(x))
    y = np.ones((B, 2), "float32")
    assert k.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0),
                                                        rel=1e-5)


def test_keras_lambda_is_refused_with_its_name(tmp_path):
    x = keras.Input((3,))
    k = keras.Model(x, L.Lambda(lambda t: t * 2.0, name="double")(L.Dense(3)(x)))
    path = tmp_path / "m.keras"
    k.save(path)
    with pytest.raises(gm.errors.FileFormatError,
                       match=r"'double' \(Lambda: Keras stores a Lambda's function as Python "
                             r"bytecode"):
        gm.load_model(path)


def _review_model(drop_mask: bool):
    ids = keras.Input((T,), dtype="int32")
    x = L.Embedding(V, 4, mask_zero=True, name="emb")(ids)
    if drop_mask:  # the planted bug: a layer without masking support drops the mask
        x = L.Reshape((T, 4), name="reshape")(x)
    x = L.LSTM(3, return_sequences=True, name="rnn")(x)
    x = L.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(ids, L.Dense(1, name="out")(x))


def test_graphmask_check_finds_a_planted_mask_bug_in_a_keras_model(tmp_path, capsys):
    from graphmask.cli import main
    good, bad = tmp_path / "good.keras", tmp_path / "bad.keras"
    _review_model(False).save(good)
    with pytest.warns(UserWarning, match="does not support masking"):
        _review_model(True).save(bad)
    assert main(["check", str(good), "--examples", "3"]) == 0
    assert main(["check", str(bad), "--examples", "3"]) == 1
    out = capsys.readouterr().out
    assert "[mask-dropped] the mask made by layer 'emb' reaches layer 'reshape'" in out
    assert "[mask-missing] layer 'rnn' (LSTM) reads a padding mask but receives none" in out


def _two_heads(lib):
    Lx = gm if lib == "graphmask" else L
    ids = (gm.Input if lib == "graphmask" else keras.Input)((T,), dtype="int32")
    h = Lx.LSTM(4, return_sequences=True)(Lx.Embedding(V, 3, mask_zero=True)(ids))
    tags = Lx.Dense(2, name="tags")(h)
    score = Lx.Dense(1, activation="sigmoid", name="score")(Lx.LSTM(3)(h))
    return (gm.Model if lib == "graphmask" else keras.Model)(ids, [tags, score])


COMPILE = dict(loss={"tags": "mse", "score": "binary_crossentropy"},
               loss_weights={"tags": 0.3, "score": 2.0},
               metrics={"tags": ["mae"], "score": ["accuracy"]},
               weighted_metrics={"tags": ["mse"], "score": ["mae"]})


@pytest.mark.parametrize("writer", ["graphmask", "keras"])
def test_compile_config_crosses_with_loss_weights_and_metrics(tmp_path, writer):
    """Loss dict by output name, loss weights, per-output metrics and weighted metrics
    survive a .keras file both ways: evaluate gives the same named results."""
    rng = np.random.default_rng(0)
    x = _ids()
    y = [rng.normal(size=(B, T, 2)).astype("float32"),
         (rng.random((B, 1)) < 0.5).astype("float32")]
    sw = [rng.random((B, T)).astype("float32"), rng.random(B).astype("float32")]
    if writer == "graphmask":
        gm.clear_session()
        saved = _two_heads("graphmask")
        saved.compile(optimizer="sgd", **COMPILE)
        saved.save(tmp_path / "m.keras")
        other = keras.saving.load_model(tmp_path / "m.keras")
    else:
        keras.utils.set_random_seed(0)
        saved = _two_heads("keras")
        saved.compile(optimizer="sgd", **COMPILE)
        saved.save(tmp_path / "m.keras")
        other = gm.saving.load_model(tmp_path / "m.keras")
    ours = saved.evaluate(x, y, sample_weight=sw, verbose=0, return_dict=True)
    theirs = other.evaluate(x, y, sample_weight=sw, verbose=0, return_dict=True)
    assert sorted(ours) == sorted(theirs)
    for k in ours:
        np.testing.assert_allclose(float(ours[k]), float(theirs[k]), rtol=1e-5, atol=1e-6,
                                   err_msg=k)
