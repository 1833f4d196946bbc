"""Keras 3 files without Keras: archives built by hand (config JSON as Keras 3 writes it,
weights with h5py in Keras's layout), graphmask's own round trips, and every bad file."""
import io
import json
import sys
import zipfile

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="Keras files need h5py (pip install "
                                          "'graphmask[keras]')")

import graphmask as gm  # noqa: E402
from graphmask.errors import ConfigError, FileFormatError, ShapeError  # noqa: E402
from graphmask.io import keras_format, keras_h5  # noqa: E402
from graphmask.io.keras_config import UnsupportedLayers  # noqa: E402

POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
          "registered_name": None, "shared_object_id": 1234}


def tensor(layer, shape, dtype="float32", node=0, index=0):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": shape, "dtype": dtype, "keras_history": [layer, node, index]}}


def entry(cls, name, config, args=None, kwargs=None, module="keras.layers"):
    e = {"module": module, "class_name": cls, "registered_name": None, "name": name,
         "config": {"name": name, **config}, "inbound_nodes": []}
    if args is not None:
        e["inbound_nodes"] = [{"args": args, "kwargs": kwargs or {}}]
    return e


def functional_config():
    """What Keras 3.15 writes for Input(int ids) -> Embedding(mask_zero) -> LSTM(seq) ->
    Dense -> GlobalAveragePooling1D: the masks as NotEqual operations passed as mask=."""
    glorot = {"module": "keras.initializers", "class_name": "GlorotUniform",
              "config": {"seed": None}, "registered_name": None, "shared_object_id": 7}
    ids = tensor("input_layer", [None, 5], "int32")
    mask = tensor("not_equal", [None, 5], "bool")
    layers = [
        {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
         "name": "input_layer", "inbound_nodes": [],
         "config": {"batch_shape": [None, 5], "dtype": "int32", "sparse": False,
                    "ragged": False, "name": "input_layer", "optional": False}},
        entry("Embedding", "embedding", {"trainable": True, "dtype": POLICY, "input_dim": 10,
                                         "output_dim": 4, "mask_zero": True,
                                         "embeddings_regularizer": None,
                                         "quantization_config": None}, [ids]),
        entry("NotEqual", "not_equal", {}, [ids, 0], module="keras.src.ops.numpy"),
        entry("LSTM", "lstm", {"trainable": True, "dtype": POLICY, "units": 3,
                               "return_sequences": True, "kernel_initializer": glorot,
                               "dropout": 0.0, "seed": None, "use_cudnn": "auto"},
              [tensor("embedding", [None, 5, 4])], {"training": False, "mask": mask}),
        entry("Dense", "dense", {"dtype": POLICY, "units": 2, "activation": "tanh",
                                 "kernel_regularizer": None},
              [tensor("lstm", [None, 5, 3])]),
        entry("GlobalAveragePooling1D", "pool", {"data_format": "channels_last",
                                                 "keepdims": False},
              [tensor("dense", [None, 5, 2])], {"mask": mask}),
    ]
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "registered_name": "Functional",
            "config": {"name": "tagger", "trainable": True, "layers": layers,
                       "input_layers": ["input_layer", 0, 0],
                       "output_layers": ["pool", 0, 0]}}


def weights_h5(groups: dict) -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.require_group("vars")
        for path, arrays in groups.items():
            g = f.require_group(path)
            for i, a in enumerate(arrays):
                g.create_dataset(str(i), data=a)
    return buf.getvalue()


def functional_weights(seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(10, 4)).astype("float32")
    lstm = [rng.normal(size=s).astype("float32") * 0.5 for s in ((4, 12), (3, 12), (12,))]
    dense = [rng.normal(size=(3, 2)).astype("float32"), rng.normal(size=2).astype("float32")]
    return {"layers/input_layer/vars": [], "layers/embedding/vars": [emb],
            "layers/lstm/vars": [], "layers/lstm/cell/vars": lstm,
            "layers/dense/vars": dense, "layers/global_average_pooling1d/vars": []}


def write_keras(path, config, weights: bytes, version="3.15.1", skip=()):
    members = {"metadata.json": json.dumps({"keras_version": version, "date_saved": "x"}),
               "config.json": json.dumps(config), "model.weights.h5": weights}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            if name not in skip:
                zf.writestr(name, data)
    return str(path)


def twin_of_functional(groups):
    """The same model built with graphmask's API, weights set from the groups."""
    ids = gm.Input((5,), dtype="int32")
    h = gm.Embedding(10, 4, mask_zero=True)(ids)
    h = gm.LSTM(3, return_sequences=True)(h)
    h = gm.Dense(2, activation="tanh")(h)
    model = gm.Model(ids, gm.GlobalAveragePooling1D()(h))
    model.set_weights(groups["layers/embedding/vars"] + groups["layers/lstm/cell/vars"]
                      + groups["layers/dense/vars"])
    return model


X = np.array([[3, 1, 4, 0, 0], [9, 0, 0, 0, 0], [2, 6, 5, 3, 5]])


def test_reads_a_functional_keras_file(tmp_path):
    groups = functional_weights()
    path = write_keras(tmp_path / "m.keras", functional_config(), weights_h5(groups))
    model = gm.load_model(path)
    assert [la.name for la in model.layers] == ["input_layer", "embedding", "lstm", "dense",
                                                "pool"]
    assert model.name == "tagger"
    want = twin_of_functional(groups).predict(X)
    np.testing.assert_array_equal(model.predict(X), want)  # same kernels, same weights
    # the mask is derived again: padding does not change the pooled rows
    longer = np.concatenate([X, np.zeros((3, 2), X.dtype)], axis=1)
    assert model.inputs[0].shape == (None, 5)
    assert not model.compiled
    del longer


def test_layout_of_written_weights_is_keras(tmp_path):
    ids = gm.Input((4,), dtype="int32")
    h = gm.Embedding(7, 3, mask_zero=True, name="e")(ids)
    h = gm.TimeDistributed(gm.Dense(2, name="inner"), name="td")(h)
    h = gm.Dense(5, name="first")(h)
    h = gm.Dense(1, name="second")(h)
    model = gm.Model(ids, gm.LSTM(2, name="rnn")(h))
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: found.__setitem__(n, o.shape)
                     if isinstance(o, h5py.Dataset) else None)
    assert found == {"layers/embedding/vars/0": (7, 3),
                     "layers/time_distributed/layer/vars/0": (3, 2),
                     "layers/time_distributed/layer/vars/1": (2,),
                     "layers/dense/vars/0": (2, 5), "layers/dense/vars/1": (5,),
                     "layers/dense_1/vars/0": (5, 1), "layers/dense_1/vars/1": (1,),
                     "layers/lstm/cell/vars/0": (1, 8), "layers/lstm/cell/vars/1": (2, 8),
                     "layers/lstm/cell/vars/2": (8,)}
    other = gm.models.clone_model(model) if hasattr(gm.models, "clone_model") else None
    del other
    fresh = _rebuilt(model)
    fresh.load_weights(path)
    for a, b in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def _rebuilt(model):
    from graphmask.io.keras_format import keras_config, model_from_config
    return model_from_config(keras_config(model), "rebuilt")


def test_functional_round_trip(tmp_path):
    gm.set_random_seed(3)
    ids = gm.Input((6,), dtype="int32", name="ids")
    e = gm.Embedding(12, 4, mask_zero=True)(ids)
    a = gm.LSTM(3, return_sequences=True)(e)
    b = gm.Dense(3, activation="relu")(e)
    s = gm.Add()([a, b])
    s = gm.LayerNormalization()(s)
    out = gm.Dense(2, activation="softmax")(gm.GlobalAveragePooling1D()(s))
    model = gm.Model(ids, out, name="two_branch")
    model.compile(optimizer=gm.optimizers.Adam(0.01), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        cfg = json.loads(zf.read("config.json"))
    assert cfg["class_name"] == "Functional"
    assert cfg["compile_config"]["optimizer"]["class_name"] == "Adam"
    back = gm.load_model(path)
    x = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9]])
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    assert [v.name for v in back.weights] == [v.name for v in model.weights]
    assert back.compiled and back.optimizer.learning_rate == pytest.approx(0.01)
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert back.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))


def test_sequential_round_trip(tmp_path):
    gm.set_random_seed(4)
    model = gm.Sequential([gm.Input((5, 3)), gm.Masking(), gm.LSTM(4), gm.Dense(2)],
                          name="seq")
    path = tmp_path / "s.keras"
    model.save(path)
    back = gm.load_model(path)
    assert type(back).__name__ == "Sequential" and back.name == "seq"
    x = np.random.default_rng(0).normal(size=(3, 5, 3)).astype("float32")
    x[0, 3:] = 0.0
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    with h5py.File(io.BytesIO(zipfile.ZipFile(path).read("model.weights.h5"))) as f:
        assert "layers/input_layer" not in f  # Keras's Sequential lists no InputLayer
        assert f["layers/lstm/cell/vars/0"].shape == (3, 16)


def test_load_weights_from_keras_layout_by_structure_not_names(tmp_path):
    groups = functional_weights(seed=5)
    path = tmp_path / "x.weights.h5"
    path.write_bytes(weights_h5(groups))
    model = twin_of_functional(functional_weights(seed=9))  # other names, other weights
    model.load_weights(path)
    np.testing.assert_array_equal(model.get_weights()[0], groups["layers/embedding/vars"][0])
    np.testing.assert_array_equal(model.get_weights()[3], groups["layers/lstm/cell/vars"][2])


# ---- bad files ---------------------------------------------------------------------------
def test_not_a_zip(tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(b"\x89HDF\r\n not a zip")
    with pytest.raises(FileFormatError, match="not a Keras 3 '.keras' file: not a zip"):
        gm.load_model(path)


def test_newer_keras_format(tmp_path):
    path = write_keras(tmp_path / "m.keras", functional_config(),
                       weights_h5(functional_weights()), version="4.0.0")
    with pytest.raises(FileFormatError, match=r"written by Keras 4\.0\.0, a newer format"):
        gm.load_model(path)


@pytest.mark.parametrize("member", ["config.json", "metadata.json", "model.weights.h5"])
def test_missing_member(tmp_path, member):
    path = write_keras(tmp_path / "m.keras", functional_config(),
                       weights_h5(functional_weights()), skip=(member,))
    with pytest.raises(FileFormatError, match=member.replace(".", r"\.")):
        gm.load_model(path)


def test_missing_weight(tmp_path):
    groups = functional_weights()
    groups["layers/lstm/cell/vars"] = groups["layers/lstm/cell/vars"][:2]
    path = write_keras(tmp_path / "m.keras", functional_config(), weights_h5(groups))
    with pytest.raises(FileFormatError,
                       match=r"'layers/lstm/cell/vars' holds arrays \['0', '1'\], the model "
                             r"expects 3 \('lstm/kernel', 'lstm/recurrent_kernel', "
                             r"'lstm/bias'\)"):
        gm.load_model(path)


def test_missing_group_and_extra_group(tmp_path):
    groups = functional_weights()
    del groups["layers/dense/vars"]
    groups["layers/dense_7/vars"] = [np.zeros((3, 2), "float32")]
    path = write_keras(tmp_path / "m.keras", functional_config(), weights_h5(groups))
    with pytest.raises(FileFormatError, match="no group 'layers/dense/vars'"):
        gm.load_model(path)
    groups = functional_weights()
    groups["layers/conv1d/vars"] = [np.zeros((3, 2), "float32")]
    path = write_keras(tmp_path / "n.keras", functional_config(), weights_h5(groups))
    with pytest.raises(FileFormatError, match=r"arrays the model config does not have: "
                                              r"\['layers/conv1d/vars/0'\]"):
        gm.load_model(path)


def test_weight_of_wrong_shape(tmp_path):
    groups = functional_weights()
    groups["layers/embedding/vars"] = [np.zeros((11, 4), "float32")]
    path = write_keras(tmp_path / "m.keras", functional_config(), weights_h5(groups))
    with pytest.raises(ShapeError, match=r"layers/embedding/vars/0 \(weight "
                                         r"'embedding/embeddings'\) has shape \(11, 4\), the "
                                         r"model expects \(10, 4\)"):
        gm.load_model(path)


def test_unsupported_layers_are_all_listed(tmp_path):
    cfg = functional_config()
    layers = cfg["config"]["layers"]
    layers[4] = entry("Conv2D", "conv", {"filters": 2}, [tensor("lstm", [None, 5, 3])])
    layers.append(entry("Lambda", "fn", {"function": {"class_name": "__lambda__"}},
                        [tensor("conv", [None, 5, 2])]))
    path = write_keras(tmp_path / "m.keras", cfg, weights_h5(functional_weights()))
    with pytest.raises(UnsupportedLayers) as info:
        gm.load_model(path)
    msg = str(info.value)
    assert "cannot build 2 layer(s) of this Keras model: 'conv' (Conv2D); 'fn' (Lambda: " \
           "Keras stores a Lambda's function as Python bytecode" in msg


def test_an_operation_on_data_is_refused(tmp_path):
    cfg = functional_config()
    cfg["config"]["layers"][4]["inbound_nodes"][0]["args"] = [tensor("not_equal", [None, 5])]
    path = write_keras(tmp_path / "m.keras", cfg, weights_h5(functional_weights()))
    with pytest.raises(UnsupportedLayers, match=r"the operation 'not_equal' \(NotEqual\) is "
                                                r"applied outside any layer"):
        gm.load_model(path)


def test_an_unsupported_argument_names_layer_argument_value(tmp_path):
    cfg = functional_config()
    cfg["config"]["layers"][4]["config"]["kernel_regularizer"] = {"class_name": "L2"}
    path = write_keras(tmp_path / "m.keras", cfg, weights_h5(functional_weights()))
    with pytest.raises(ConfigError, match=r"layer 'dense' \(Dense\): .*kernel_regularizer"):
        gm.load_model(path)
    cfg = functional_config()
    cfg["config"]["layers"][5]["config"]["data_format"] = "channels_first"
    path = write_keras(tmp_path / "n.keras", cfg, weights_h5(functional_weights()))
    with pytest.raises(ConfigError, match=r"layer 'pool' \(GlobalAveragePooling1D\): argument "
                                          r"data_format='channels_first' is not supported"):
        gm.load_model(path)


def test_keras2_nodes_and_subclassed_models_are_refused(tmp_path):
    cfg = functional_config()
    cfg["config"]["layers"][1]["inbound_nodes"] = [[["input_layer", 0, 0, {}]]]
    path = write_keras(tmp_path / "m.keras", cfg, weights_h5(functional_weights()))
    with pytest.raises(FileFormatError, match="not a Keras 3 node"):
        gm.load_model(path)
    path = write_keras(tmp_path / "n.keras", {"class_name": "MyModel", "config": {}}, b"")
    with pytest.raises(FileFormatError, match="'MyModel' is not a Functional or Sequential"):
        gm.load_model(path)


def test_writing_a_lambda_is_refused_before_anything_is_written(tmp_path):
    x = gm.Input((3,))
    model = gm.Model(x, gm.Lambda(lambda t: t * 2.0, name="double")(x))
    path = tmp_path / "m.keras"
    with pytest.raises(ConfigError, match=r"layer 'double' \(Lambda\) cannot be written to a "
                                          r"Keras file"):
        model.save(path)
    assert not path.exists()


def test_legacy_h5_names_are_still_refused(tmp_path):
    model = gm.Sequential([gm.Input((3,)), gm.Dense(1)])
    with pytest.raises(ConfigError, match="'.h5', a Keras file name"):
        model.save(tmp_path / "m.h5")
    with pytest.raises(ConfigError, match="'.h5', a Keras file name"):
        model.save_weights(tmp_path / "m.h5")


def test_without_h5py_the_message_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    model = gm.Sequential([gm.Input((3,)), gm.Dense(1)])
    with pytest.raises(ImportError, match=r"pip install 'graphmask\[keras\]'"):
        model.save(tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()
    with pytest.raises(ImportError, match="needs h5py"):
        keras_format.load_keras_model(tmp_path / "m.keras")


def test_keras_snake_names():
    assert [keras_h5.keras_snake(n) for n in ("GlobalAveragePooling1D", "LSTM", "InputLayer",
                                              "LayerNormalization", "Conv1D", "GRU")] == \
        ["global_average_pooling1d", "lstm", "input_layer", "layer_normalization", "conv1d",
         "gru"]
