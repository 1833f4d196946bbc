"""Fuzzing the public API: any failure is a GraphmaskError with a message, never a leak.

Random (often invalid) shapes, dtypes and values go to predict / evaluate /
train_on_batch / fit. Success must give finite numbers; failure must be a
:class:`GraphmaskError` (no numba typing error, IndexError from NumPy, broadcasting error).
"""
import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from graphmask import LSTM, Dense, Embedding, Input, Masking, Model
from graphmask.errors import GraphmaskError


def _id_model():
    x = Input(shape=(5,), dtype="int32")
    h = LSTM(3, return_sequences=True)(Embedding(6, 4, mask_zero=True)(x))
    m = Model(x, Dense(3, activation="softmax")(h))
    m.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return m


def _float_model():
    x = Input(shape=(None, 2))
    h = LSTM(3)(Masking(0.0)(x))
    m = Model(x, Dense(1, activation="sigmoid")(h))
    m.compile(loss="binary_crossentropy", optimizer="sgd")
    return m


MODELS = {"ids": _id_model(), "floats": _float_model()}

dtypes = st.sampled_from(["int8", "int32", "int64", "uint8", "float16", "float32", "float64",
                          "bool", "U3", "object", "complex64"])
shapes = st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple)
specials = st.sampled_from([0.0, 1.0, -1.0, 0.5, 5.0, 7.0, np.nan, np.inf, -np.inf, 1e30, 2.0])


NEAR = st.sampled_from([(2, 5), (3, 5), (2, 5, 1), (2, 4, 2), (3, 1, 2), (2, 1), (2,), (1, 5)])


@st.composite
def arrays(draw):
    shape = draw(st.one_of(shapes, NEAR, NEAR))  # often nearly valid, to get past the shape checks
    dtype = draw(st.one_of(dtypes, st.just("int32"), st.just("float32")))
    size = int(np.prod(shape)) if shape else 1
    values = draw(st.sampled_from([specials, st.sampled_from([0.0, 1.0, 2.0])]))
    vals = draw(st.lists(values, min_size=size, max_size=size))
    base = np.array(vals, dtype=np.float64).reshape(shape)
    if dtype in ("U3", "object"):
        return base.astype(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        return base.astype(dtype) if np.dtype(dtype).kind in "fc" else \
            np.nan_to_num(base, nan=0, posinf=9, neginf=-9).astype(dtype)


CALLS = st.sampled_from(["predict", "evaluate", "train_on_batch", "fit", "predict_bs"])


@given(model=st.sampled_from(sorted(MODELS)), call=CALLS, x=arrays(), y=arrays(),
       batch_size=st.sampled_from([None, 0, 1, 2, -1, 2.5]))
def test_public_api_fails_only_with_graphmask_errors(model, call, x, y, batch_size):
    m = MODELS[model]
    before = m.get_weights()
    try:
        if call == "predict":
            out = m.predict(x)
        elif call == "predict_bs":
            out = m.predict(x, batch_size=batch_size)
        elif call == "evaluate":
            out = m.evaluate(x, y, batch_size=batch_size)
        elif call == "train_on_batch":
            out = m.train_on_batch(x, y)
        else:
            out = m.fit(x, y, batch_size=batch_size, epochs=1, verbose=0).history["loss"]
    except GraphmaskError as e:
        event(type(e).__name__)
        assert str(e), "an error must carry a message"
        for a, b in zip(before, m.get_weights()):
            np.testing.assert_array_equal(a, b)
        return
    except Exception as e:  # pragma: no cover - the failure this test exists to catch
        pytest.fail(f"{call} leaked {type(e).__name__}: {e}")
    event(f"{call} succeeded")
    assert np.all(np.isfinite(np.asarray(out, dtype=np.float64))), f"{call} gave {out}"


@given(data=st.data(), batch=st.integers(1, 3), call=st.sampled_from(["train_on_batch", "fit",
                                                                       "evaluate"]))
def test_training_on_well_shaped_random_values(data, batch, call):
    """Right shapes, random ids and classes (some out of range): finite or a clear error."""
    m = MODELS["ids"]
    ids = np.array(data.draw(st.lists(st.integers(-1, 6), min_size=batch * 5,
                                      max_size=batch * 5))).reshape(batch, 5)
    y = np.array(data.draw(st.lists(st.integers(-1, 3), min_size=batch * 5,
                                    max_size=batch * 5))).reshape(batch, 5)
    before = m.get_weights()
    try:
        if call == "fit":
            out = m.fit(ids, y, batch_size=2, verbose=0).history["loss"]
        else:
            out = getattr(m, call)(ids, y)
    except GraphmaskError as e:
        event(type(e).__name__)
        assert str(e)
        for a, b in zip(before, m.get_weights()):
            np.testing.assert_array_equal(a, b)
        return
    event(f"{call} succeeded")
    assert np.all(np.isfinite(np.asarray(out, dtype=np.float64)))
