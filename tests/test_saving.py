"""Save/load: exact round trips, continued training, bad files, no pickle, atomic writes."""
import io
import json
import os
import pathlib
import re
import zipfile

import numpy as np
import pytest

import graphmask as gm
from graphmask.errors import FileFormatError, ShapeError
from graphmask.io import saving
from graphmask.utils import rng

ROOT = pathlib.Path(__file__).resolve().parents[1]


def lm_model(vocab=12, compile_=True):
    x = gm.Input(shape=(None,), dtype="int32", name="ids")
    e = gm.Embedding(vocab, 5, mask_zero=True)(x)
    h = gm.LSTM(4, return_sequences=True)(e)
    y = gm.Dense(vocab, activation="softmax")(h)
    m = gm.Model(x, y)
    if compile_:
        m.compile(optimizer=gm.optimizers.Adam(learning_rate=0.01),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def lm_data(vocab=12, n=6, t=7):
    r = np.random.default_rng(5)
    x = r.integers(1, vocab, size=(n, t))
    for i in range(n):
        x[i, t - i % 4:] = 0  # right padding of different lengths
    y = r.integers(1, vocab, size=(n, t))
    return x, y


@pytest.fixture
def path(tmp_path):
    return tmp_path / "model.gmz"


def test_round_trip_predicts_identically(path):
    m = lm_model()
    x, y = lm_data()
    m.train_on_batch(x, y)
    m.save(path)
    m2 = gm.load_model(path)
    np.testing.assert_array_equal(m2.predict(x), m.predict(x))
    assert [layer.name for layer in m2.layers] == [layer.name for layer in m.layers]
    assert [layer.get_config() for layer in m2.layers] == [
        layer.get_config() for layer in m.layers]
    for a, b in zip(m.get_weights(), m2.get_weights()):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert m2.evaluate(x, y) == m.evaluate(x, y)


def test_continued_training_is_identical(path):
    m = lm_model()
    x, y = lm_data()
    for _ in range(2):
        m.train_on_batch(x, y)
    m.save(path)
    m2 = gm.load_model(path)
    assert m2.optimizer.iterations == m.optimizer.iterations == 2
    for _ in range(2):
        assert m2.train_on_batch(x, y) == m.train_on_batch(x, y)
    for a, b in zip(m.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)
    # fit with the same seed shuffles the same way in both
    gm.set_random_seed(7)
    h1 = m.fit(x, y, batch_size=2, epochs=2, verbose=0).history
    gm.set_random_seed(7)
    h2 = m2.fit(x, y, batch_size=2, epochs=2, verbose=0).history
    assert h1 == h2
    for a, b in zip(m.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_optimizer_config_and_state_restored(path):
    m = lm_model()
    m.compile(optimizer=gm.optimizers.RMSprop(learning_rate=0.003, momentum=0.5,
                                               centered=True), loss="mse", loss_weights=[0.5])
    x, _ = lm_data()
    y = np.random.default_rng(0).random((len(x), x.shape[1], 12)).astype("float32")
    m.train_on_batch(x, y)
    m.save(path)
    m2 = gm.load_model(path)
    assert type(m2.optimizer) is gm.optimizers.RMSprop
    assert m2.optimizer.get_config() == m.optimizer.get_config()
    s1, s2 = m.optimizer.get_state(), m2.optimizer.get_state()
    assert len(s1) == len(s2) == 1 + 3 * len(m.trainable_weights)
    for a, b in zip(s1, s2):
        np.testing.assert_array_equal(a, b)
    assert m2.evaluate(x, y) == m.evaluate(x, y)  # same loss and loss weight
    assert m2.train_on_batch(x, y) == m.train_on_batch(x, y)


def test_uncompiled_and_compile_false(path):
    m = lm_model(compile_=False)
    m.save(path)
    m2 = gm.load_model(path)
    assert not m2.compiled
    x, _ = lm_data()
    np.testing.assert_array_equal(m2.predict(x), m.predict(x))
    lm_model().save(path)  # overwrite with a compiled one
    assert not gm.load_model(path, compile=False).compiled
    assert saving.read_config(path)["compile"]["loss"][0]["class_name"] == \
        "SparseCategoricalCrossentropy"


def test_graph_with_shared_layer_merge_and_two_outputs(path):
    a = gm.Input(shape=(5, 3), name="a")
    b = gm.Input(shape=(5, 3), name="b")
    ma = gm.Masking(0.0)(a)
    shared = gm.Dense(4, activation="tanh", name="shared")
    s1, s2 = shared(ma), shared(b)  # one layer, two calls
    add = gm.Add()([s1, s2])
    cat = gm.Concatenate(axis=-1)([add, s2])
    pooled = gm.GlobalAveragePooling1D()(cat)
    out1 = gm.Dense(2, name="head")(pooled)
    out2 = gm.LSTM(3, return_sequences=False, name="rnn")(s1)
    m = gm.Model([a, b], [out1, out2], name="two_heads")
    m.compile(optimizer="sgd", loss=["mse", None], metrics=[[], ["mae"]])
    r = np.random.default_rng(1)
    xa, xb = r.random((4, 5, 3)).astype("float32"), r.random((4, 5, 3)).astype("float32")
    xa[:, 3:] = 0.0
    m.save(path)
    m2 = gm.load_model(path)
    assert m2.name == "two_heads"
    assert len(m2.get_layer("shared")._calls) == 2
    for p1, p2 in zip(m.predict([xa, xb]), m2.predict([xa, xb])):
        np.testing.assert_array_equal(p1, p2)
    y1, y2 = r.random((4, 2)), r.random((4, 3))
    assert m2.evaluate([xa, xb], [y1, y2]) == m.evaluate([xa, xb], [y1, y2])


def test_sequential_round_trip(path):
    from graphmask.models.sequential import Sequential
    m = Sequential([gm.Input(shape=(4,), dtype="int32"), gm.Embedding(5, 3, mask_zero=True),
                    gm.LSTM(2)])
    m.compile(loss="mse", optimizer="adam")
    x, y = np.array([[1, 2, 0, 0], [3, 0, 0, 0]]), np.ones((2, 2))
    m.train_on_batch(x, y)
    m.save(path)
    m2 = gm.load_model(path)
    np.testing.assert_array_equal(m2.predict(x), m.predict(x))
    assert m2.train_on_batch(x, y) == m.train_on_batch(x, y)


def test_save_and_load_weights(tmp_path):
    m = lm_model()
    x, y = lm_data()
    m.train_on_batch(x, y)
    p = tmp_path / "w.gmz"
    m.save_weights(p)
    other = lm_model()
    assert not np.array_equal(other.predict(x), m.predict(x))
    other.load_weights(p)
    np.testing.assert_array_equal(other.predict(x), m.predict(x))
    full = tmp_path / "full.gmz"
    m.save(full)
    third = lm_model()
    third.load_weights(full)  # a model file also holds weights
    np.testing.assert_array_equal(third.predict(x), m.predict(x))
    with pytest.raises(ShapeError, match="holds weights"):
        lm_model(vocab=9).load_weights(p)
    with pytest.raises(FileFormatError, match="only weights"):
        gm.load_model(p)


def test_loading_does_not_move_the_random_stream(path):
    lm_model().save(path)
    gm.set_random_seed(3)
    expected = rng().random(3)
    gm.set_random_seed(3)
    gm.load_model(path)
    np.testing.assert_array_equal(rng().random(3), expected)


def test_overwrite_false(path):
    m = lm_model()
    m.save(path)
    with pytest.raises(saving.ModelFileExistsError, match="overwrite=False"):
        m.save(path, overwrite=False)
    with pytest.raises(FileExistsError):
        m.save_weights(path, overwrite=False)


# ---- bad files ------------------------------------------------------------------------
def _members(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _write(path, members: dict) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)


def _with_config(path, edit) -> None:
    members = _members(path)
    cfg = json.loads(members["config.json"])
    edit(cfg)
    members["config.json"] = json.dumps(cfg).encode()
    _write(path, members)


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.fixture
def saved(path):
    m = lm_model()
    x, y = lm_data()
    m.train_on_batch(x, y)
    m.save(path)
    return path


def test_truncated_files(saved):
    data = saved.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 30):
        saved.write_bytes(data[:cut])
        with pytest.raises(FileFormatError):
            gm.load_model(saved)


def test_corrupted_bytes(saved):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as zf:
        info = zf.getinfo("weights.npz")
    # flip bytes inside the compressed weights member: CRC or inflate error
    start = info.header_offset + 30 + len(info.filename) + 20
    for i in range(start, start + 40):
        data[i] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="weights.npz"):
        gm.load_model(saved)


def test_foreign_files(tmp_path):
    p = tmp_path / "x.gmz"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(FileFormatError, match="not a graphmask model file"):
        gm.load_model(p)
    _write(p, {"hello.txt": b"hi"})
    with pytest.raises(FileFormatError, match="no config.json"):
        gm.load_model(p)
    _write(p, {"config.json": b'{"format": "keras", "version": 1}'})
    with pytest.raises(FileFormatError, match="not a graphmask model file"):
        gm.load_model(p)
    _write(p, {"config.json": b"[1, 2"})
    with pytest.raises(FileFormatError, match="not valid JSON"):
        gm.load_model(p)
    _write(p, {"config.json": b"\xff\xfe\x00"})
    with pytest.raises(FileFormatError, match="not valid JSON"):
        gm.load_model(p)
    with pytest.raises(FileNotFoundError):
        gm.load_model(tmp_path / "missing.gmz")


def test_missing_members(saved):
    members = _members(saved)
    for name in ("weights.npz", "optimizer.npz"):
        _write(saved, {k: v for k, v in members.items() if k != name})
        with pytest.raises(FileFormatError, match=f"{name!r} is missing"):
            gm.load_model(saved)


def test_wrong_shapes_and_counts(saved):
    members = _members(saved)
    with np.load(io.BytesIO(members["weights.npz"])) as npz:
        arrays = {k: npz[k] for k in npz.files}
    bad = dict(arrays, a00000=arrays["a00000"][:-1])
    _write(saved, dict(members, **{"weights.npz": _npz(**bad)}))
    with pytest.raises(FileFormatError, match="has shape"):
        gm.load_model(saved)
    fewer = {k: v for k, v in arrays.items() if k != "a00001"}
    _write(saved, dict(members, **{"weights.npz": _npz(**fewer)}))
    with pytest.raises(FileFormatError, match="holds"):
        gm.load_model(saved)
    # config and npz agree with each other but not with the model the config describes
    _write(saved, members)
    _with_config(saved, lambda c: c["model"]["layers"][1]["config"].update(output_dim=6))
    with pytest.raises(FileFormatError):
        gm.load_model(saved)


def test_pickled_arrays_are_refused(saved):
    members = _members(saved)
    cfg = json.loads(members["config.json"])
    cfg["weights"][0]["dtype"] = "object"
    members["config.json"] = json.dumps(cfg).encode()
    with np.load(io.BytesIO(members["weights.npz"])) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["a00000"] = np.array([object()] * 2, dtype=object)
    members["weights.npz"] = _npz(**arrays)
    _write(saved, members)
    with pytest.raises(FileFormatError, match="corrupted"):
        gm.load_model(saved)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["model"]["layers"][1].update(class_name="os.system"), "unknown layer class"),
    (lambda c: c["model"]["layers"][1].update(class_name="Model"), "unknown layer class"),
    (lambda c: c["model"]["layers"][1]["config"].update(evil="x"), "unexpected argument"),
    (lambda c: c["model"]["layers"][3]["config"].update(activation="__import__"),
     "activation"),
    (lambda c: c["model"]["calls"][1].update(args=[{"__tensor__": ["nowhere", 0, 0]}]),
     "used before"),
    (lambda c: c["model"]["calls"].reverse(), "used before|called|order"),
    (lambda c: c["model"].update(outputs="dense"), "non-empty list"),
    (lambda c: c.update(version=99), "newer graphmask"),
    (lambda c: c.update(version="1"), "version"),
    (lambda c: c["compile"]["optimizer"].update(class_name="Lion"), "optimizer"),
    (lambda c: c["compile"].update(loss="mse"), "per output"),
    (lambda c: c["optimizer_state"].pop(), "holds"),
])
def test_bad_configs(saved, edit, match):
    _with_config(saved, edit)
    with pytest.raises(FileFormatError, match=match):
        gm.load_model(saved)


def test_optimizer_state_not_matching_weights(saved):
    members = _members(saved)
    cfg = json.loads(members["config.json"])
    with np.load(io.BytesIO(members["optimizer.npz"])) as npz:
        state = [npz[k] for k in sorted(npz.files)]
    state[1] = np.zeros((2, 2), np.float32)
    cfg["optimizer_state"][1]["shape"] = [2, 2]
    members["config.json"] = json.dumps(cfg).encode()
    members["optimizer.npz"] = _npz(**{f"a{i:05d}": a for i, a in enumerate(state)})
    _write(saved, members)
    with pytest.raises(FileFormatError, match="optimizer state"):
        gm.load_model(saved)


# ---- safety and atomicity ---------------------------------------------------------------
def test_no_pickle_anywhere_in_the_package():
    bad = re.compile(r"^\s*(import|from)\s+(c?pickle|dill|cloudpickle|joblib|shelve|marshal)\b"
                     r"|allow_pickle\s*=\s*True|pickle\.loads?\(|\beval\(|\bexec\(")
    offenders = []
    for folder in ("graphmask", "passes"):
        for f in sorted((ROOT / folder).rglob("*.py")):
            for i, line in enumerate(f.read_text().splitlines(), 1):
                if bad.search(line):
                    offenders.append(f"{f.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, offenders
    src = "\n".join(f.read_text() for f in sorted((ROOT / "graphmask" / "io").rglob("*.py")))
    loads = [line for line in src.splitlines() if "np.load(" in line]
    assert loads and all("allow_pickle=False" in line for line in loads)
    assert "importlib" not in src and "__import__" not in src and "getattr(L" not in src


def test_atomic_save_keeps_the_old_file(saved, monkeypatch):
    before = saved.read_bytes()
    m = lm_model()
    real = zipfile.ZipFile.writestr

    def failing(self, name, data, *args, **kwargs):
        if name == "weights.npz":
            raise OSError("disk full (simulated)")
        return real(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing)
    with pytest.raises(OSError, match="simulated"):
        m.save(saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]  # no temporary file left behind
    gm.load_model(saved)


def test_atomic_save_uses_replace_in_the_same_folder(path, monkeypatch):
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append((os.path.dirname(os.path.abspath(src)), os.path.abspath(dst)))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    lm_model().save(str(path))
    assert seen == [(str(path.parent), str(path))]


def test_a_custom_layer_class_loads_only_when_given(path):
    class MyDense(gm.Dense):
        pass

    x = gm.Input(shape=(3,))
    m = gm.Model(x, MyDense(2, name="mine")(x))
    m.save(path)
    with pytest.raises(gm.errors.FileFormatError,
                       match=r"unknown layer class 'MyDense' \(registered as 'MyDense'\): "
                             r"register it with @graphmask.saving.register_serializable\(\) "
                             r"or pass custom_objects=\{'MyDense': MyDense\}"):
        gm.load_model(path)
    back = gm.load_model(path, custom_objects={"MyDense": MyDense})
    assert type(back.get_layer("mine")) is MyDense
    xs = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_array_equal(back.predict(xs), m.predict(xs))


# ---- zip bombs and Keras's file names -------------------------------------------------
def _declare_size(path, member: str, size: int) -> None:
    """Rewrite the uncompressed size the central directory declares for ``member``."""
    data = bytearray(path.read_bytes())
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        name_len = int.from_bytes(data[pos + 28:pos + 30], "little")
        if data[pos + 46:pos + 46 + name_len] == member.encode():
            data[pos + 24:pos + 28] = size.to_bytes(4, "little")
            path.write_bytes(bytes(data))
            return
        pos = data.find(b"PK\x01\x02", pos + 4)
    raise AssertionError(f"{member} not in the central directory")


@pytest.fixture
def opened(monkeypatch):
    """The names of the archive members load_model opens (to read them)."""
    names = []
    real = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        names.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return names


def test_member_declaring_more_than_the_cap_is_refused_unread(saved, opened):
    _declare_size(saved, "weights.npz", 3 << 30)  # a 3 GiB bomb, by its header
    with pytest.raises(FileFormatError, match=r"'weights.npz' declares 3221225472 bytes "
                                              r"uncompressed, over the limit of 2147483648"):
        gm.load_model(saved)
    assert "weights.npz" not in opened
    with pytest.raises(FileFormatError, match="MAX_MEMBER_BYTES"):
        lm_model().load_weights(saved)


def test_member_and_total_caps_are_the_module_limits(saved, opened, monkeypatch):
    with zipfile.ZipFile(saved) as zf:
        sizes = {i.filename: i.file_size for i in zf.infolist()}
    biggest = max(sizes, key=sizes.get)
    monkeypatch.setattr(saving, "MAX_MEMBER_BYTES", sizes[biggest] - 1)
    with pytest.raises(FileFormatError, match=rf"{biggest!r} declares {sizes[biggest]} bytes"
                                              rf".*limit of {sizes[biggest] - 1} bytes per "
                                              rf"member"):
        gm.load_model(saved)
    monkeypatch.setattr(saving, "MAX_MEMBER_BYTES", max(sizes.values()))
    monkeypatch.setattr(saving, "MAX_TOTAL_BYTES", sum(sizes.values()) - 1)
    with pytest.raises(FileFormatError, match=rf"declare {sum(sizes.values())} bytes "
                                              rf"uncompressed in all, over the limit of "
                                              rf"{sum(sizes.values()) - 1} bytes"):
        gm.load_model(saved)
    assert opened == []
    monkeypatch.setattr(saving, "MAX_TOTAL_BYTES", sum(sizes.values()))
    gm.load_model(saved)  # exactly at both limits: loads


def test_a_header_that_lies_cannot_inflate_a_member(saved):
    """weights.npz declares 1000 bytes but inflates to 64 MiB: reading stops at what it
    declares (and fails), so memory stays far below what the data would inflate to."""
    import tracemalloc

    members = _members(saved)
    with zipfile.ZipFile(saved, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", members["config.json"])
        zf.writestr("weights.npz", bytes(64 << 20))
    _declare_size(saved, "weights.npz", 1000)
    tracemalloc.start()
    try:
        with pytest.raises(FileFormatError, match="'weights.npz' is corrupted"):
            gm.load_model(saved)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


@pytest.mark.parametrize("config_agrees", [False, True])
def test_an_array_header_that_lies_is_refused_before_numpy_allocates(saved, config_agrees):
    """An .npy header inside weights.npz claiming 4 TiB (with a few bytes of data): the
    header is checked against config.json and the bytes stored before NumPy reads it."""
    members = _members(saved)
    with np.load(io.BytesIO(members["weights.npz"])) as npz:
        arrays = {k: npz[k] for k in npz.files}
    fake = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        fake, {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)})
    fake.write(bytes(64))
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        for k, a in arrays.items():
            if k == "a00000":
                zf.writestr("a00000.npy", fake.getvalue())
            else:
                buf = io.BytesIO()
                np.save(buf, a)
                zf.writestr(f"{k}.npy", buf.getvalue())
    members["weights.npz"] = inner.getvalue()
    if config_agrees:
        cfg = json.loads(members["config.json"])
        cfg["weights"][0]["shape"] = [1 << 40]
        members["config.json"] = json.dumps(cfg).encode()
    _write(saved, members)
    match = "only 64 bytes are stored" if config_agrees else "has shape \\[1099511627776\\]"
    with pytest.raises(FileFormatError, match=match):
        gm.load_model(saved)


def test_compressed_arrays_inside_an_npz_are_refused(saved):
    members = _members(saved)
    with np.load(io.BytesIO(members["weights.npz"])) as npz:
        arrays = {k: npz[k] for k in npz.files}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    members["weights.npz"] = buf.getvalue()
    _write(saved, members)
    with pytest.raises(FileFormatError, match="a00000.npy is compressed"):
        gm.load_model(saved)


@pytest.mark.parametrize("how,name", [
    ("save", "x.weights.h5"), ("save", "m.h5"), ("save", "legacy.hdf5"),
    ("save_weights", "model.keras"), ("save_weights", "MODEL.Keras"),
    ("save_weights", "m.h5"), ("save_weights", "legacy.hdf5")])
def test_keras_file_names_are_refused_before_writing(tmp_path, name, how):
    """Keras names other than '.keras' (save) and '.weights.h5' (save_weights), which
    write Keras 3 files (tests/io/test_keras_files.py)."""
    m = lm_model()
    dest = tmp_path / name
    suffix = "." + name.rsplit(".", 1)[1]
    with pytest.raises(gm.errors.ConfigError,
                       match=rf"{how}: filepath .* ends with '{re.escape(suffix)}', a Keras "
                             rf"file name.*own format use a '\.gmz' name"):
        getattr(m, how)(dest)
    with pytest.raises(ValueError, match="Keras file name"):
        getattr(m, how)(str(dest))  # str or Path alike; a ValueError like any ConfigError
    assert os.listdir(tmp_path) == []


def test_other_names_still_save(tmp_path):
    m = lm_model()
    for name in ("model.gmz", "model", "keras.gmz", "model.h5.gmz"):
        m.save(tmp_path / name)
        gm.load_model(tmp_path / name)
    with pytest.raises(gm.errors.InputTypeError, match="filepath must be a str"):
        m.save(3)
