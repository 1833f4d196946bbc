"""graphmask.utils: pad_sequences, to_categorical, PyDataset (Keras 3's results, exact)."""
from __future__ import annotations

import numpy as np
import pytest

from graphmask import utils
from graphmask.errors import ConfigError, InputError, InputTypeError

SEQS = [[1, 2, 3], [4, 5], [], [6, 7, 8, 9, 10]]


@pytest.mark.parametrize("padding,truncating,maxlen,expected", [
    ("pre", "pre", None, [[0, 0, 1, 2, 3], [0, 0, 0, 4, 5], [0, 0, 0, 0, 0],
                          [6, 7, 8, 9, 10]]),
    ("post", "pre", None, [[1, 2, 3, 0, 0], [4, 5, 0, 0, 0], [0, 0, 0, 0, 0],
                           [6, 7, 8, 9, 10]]),
    ("pre", "pre", 3, [[1, 2, 3], [0, 4, 5], [0, 0, 0], [8, 9, 10]]),
    ("pre", "post", 3, [[1, 2, 3], [0, 4, 5], [0, 0, 0], [6, 7, 8]]),
    ("post", "post", 2, [[1, 2], [4, 5], [0, 0], [6, 7]]),
])
def test_pad_sequences_sides_and_maxlen(padding, truncating, maxlen, expected):
    out = utils.pad_sequences(SEQS, maxlen=maxlen, padding=padding, truncating=truncating)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)


def test_pad_sequences_value_dtype_and_feature_vectors():
    out = utils.pad_sequences([[0.5], [1.5, 2.5]], dtype="float32", value=-1.0, padding="post")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0.5, -1.0], [1.5, 2.5]])
    feats = [np.ones((2, 3)), np.full((1, 3), 2.0)]
    out = utils.pad_sequences(feats, dtype="float32", maxlen=3)
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[1], [[0, 0, 0], [0, 0, 0], [2, 2, 2]])
    np.testing.assert_array_equal(utils.pad_sequences([["a"], ["b", "c"]], dtype=object,
                                                      value="<pad>"),
                                  np.array([["<pad>", "a"], ["b", "c"]], dtype=object))
    assert utils.pad_sequences([[], []], maxlen=2).tolist() == [[0, 0], [0, 0]]


@pytest.mark.parametrize("call,err,msg", [
    (lambda: utils.pad_sequences(SEQS, padding="left"), ConfigError,
     "pad_sequences: padding must be 'pre' or 'post', got 'left'"),
    (lambda: utils.pad_sequences(SEQS, truncating="end"), ConfigError,
     "pad_sequences: truncating must be 'pre' or 'post', got 'end'"),
    (lambda: utils.pad_sequences(SEQS, maxlen=0), ConfigError,
     "pad_sequences: maxlen must be a positive int or None, got 0"),
    (lambda: utils.pad_sequences([[1], 5]), InputTypeError,
     "pad_sequences: sequence 1 is not a sequence: 5"),
    (lambda: utils.pad_sequences(7), InputTypeError,
     "pad_sequences: sequences must be a list of sequences, got int"),
    (lambda: utils.pad_sequences([[[1, 2]], [[1, 2, 3]]]), InputError,
     "pad_sequences: the items of sequence 1 have shape (3,), those of the first non-empty "
     "sequence (2,)"),
    (lambda: utils.pad_sequences([[1]], value="x"), ConfigError,
     "pad_sequences: value 'x' is a string but dtype is 'int32'; use dtype=object for "
     "strings"),
    (lambda: utils.pad_sequences([]), InputError,
     "pad_sequences: no sequences given and no maxlen"),
])
def test_pad_sequences_errors(call, err, msg):
    with pytest.raises(err) as e:
        call()
    assert str(e.value) == msg


def test_to_categorical_as_keras():
    out = utils.to_categorical([0, 2, 1])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    out = utils.to_categorical(np.array([[1], [0]]), num_classes=4)  # trailing 1 dropped
    np.testing.assert_array_equal(out, [[0, 1, 0, 0], [1, 0, 0, 0]])
    seq = utils.to_categorical(np.array([[1, 2], [0, 1]]), 3)  # (B, T) -> (B, T, C)
    assert seq.shape == (2, 2, 3) and seq[0, 1].tolist() == [0, 0, 1]
    assert utils.to_categorical(np.array([2.0, 0.0])).tolist() == [[0, 0, 1], [1, 0, 0]]


@pytest.mark.parametrize("call,err,msg", [
    (lambda: utils.to_categorical([0, 3], num_classes=3), InputError,
     "to_categorical: class id 3 at position (1,) is outside [0, 3)"),
    (lambda: utils.to_categorical([[0, -1]]), InputError,
     "to_categorical: class id -1 at position (0, 1) is outside [0, 1)"),
    (lambda: utils.to_categorical([0.5]), InputError,
     "to_categorical: class ids must be whole numbers, got 0.5 at position (0,)"),
    (lambda: utils.to_categorical(["a"]), InputTypeError,
     "to_categorical: class ids must be numbers, got dtype <U1"),
    (lambda: utils.to_categorical([1], num_classes=0), ConfigError,
     "to_categorical: num_classes must be a positive int, got 0"),
])
def test_to_categorical_errors(call, err, msg):
    with pytest.raises(err) as e:
        call()
    assert str(e.value) == msg


def test_pydataset_defaults_and_errors():
    class Data(utils.PyDataset):
        def __len__(self):
            return 3

    class NoSuper(utils.PyDataset):
        def __len__(self):
            return 2

    d = Data(workers=2, max_queue_size=4)
    assert (d.workers, d.use_multiprocessing, d.max_queue_size, d.num_batches) == (2, False, 4, 3)
    assert (NoSuper().workers, NoSuper().max_queue_size) == (1, 10)
    assert utils.Sequence is utils.PyDataset
    with pytest.raises(TypeError, match="Data must define __getitem__"):
        d[0]
    with pytest.raises(ConfigError, match="Data: use_multiprocessing=True is not supported"):
        Data(use_multiprocessing=True)
    with pytest.raises(ConfigError, match="Data: workers must be a positive int, got 0"):
        Data(workers=0)


def test_plot_model_writes_the_mask_flow_picture(tmp_path):
    import graphmask as gm
    x = gm.Input(shape=(None,), dtype="int32")
    y = gm.Dense(2)(gm.LSTM(3)(gm.Embedding(5, 3, mask_zero=True)(x)))
    model = gm.Model(x, y)
    png = utils.plot_model(model, tmp_path / "m.png", show_shapes=True, dpi=50)
    assert png == str(tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    utils.plot_model(model, tmp_path / "m.dot")
    dot = (tmp_path / "m.dot").read_text()
    assert "mask of 'embedding'" in dot and "consumes mask" in dot
    with pytest.raises(ConfigError, match="plot_model: rankdir='LR' is not supported"):
        utils.plot_model(model, tmp_path / "x.png", rankdir="LR")
    with pytest.raises(ConfigError, match="plot_model: show_dtype=True is not drawn"):
        utils.plot_model(model, tmp_path / "x.png", show_dtype=True)
    assert not (tmp_path / "x.png").exists()
