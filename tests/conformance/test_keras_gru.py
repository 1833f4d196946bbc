"""GRU and SimpleRNN against Keras 3 (torch backend).

* Keras's own expected numbers (``keras/src/layers/rnn/gru_test.py`` and
  ``simple_rnn_test.py``: correctness, initial state, return_state, masking,
  zero_output_for_mask, go_backwards) through graphmask's eager calls; the numbers are
  Keras's, copied, and a last test recomputes them with Keras itself.
* Twin models (Embedding(mask_zero) -> GRU/SimpleRNN -> Dense, same weights): weight
  order, predict, evaluate, and the weights after SGD and Adam steps under right, left,
  holes, empty-row and mixed padding, for both ``reset_after`` values, ``go_backwards``,
  ``zero_output_for_mask``, the last output only, ``return_state`` and an encoder's state
  as ``initial_state``; production sizes (H = 64, B = 32, T = 50: the threaded kernels).

Tolerances are the suite's (``twin.py``): one float32 forward pass 1e-5 relative; weights
after SGD steps 1e-4; after Adam steps ``3e-3 * learning_rate * steps`` absolute (an
adaptive step does not shrink with the gradient, so rounding-level gradients still move
a weight; see test_keras_production.py).
"""
import numpy as np
import pytest

import graphmask as gm
from tests.conformance.oracle import import_keras

keras = import_keras()

from tests.conformance import twin as tw

V, E, C = 11, 3, 2
ADAPTIVE_TOL = 3e-3


@pytest.fixture(autouse=True)
def _fresh_layer_names():
    """graphmask's automatic names fresh before and after (the eager calls make Inputs
    Keras does not see); conftest.py restarts Keras's."""
    gm.clear_session()
    yield
    gm.clear_session()


# ---- Keras's own numbers ---------------------------------------------------------------------
SEQ3 = np.arange(72).reshape((3, 6, 4)).astype("float32")
SEQ2 = np.arange(24).reshape((2, 4, 3)).astype("float32")
STATE = np.arange(4).reshape((2, 2)).astype("float32")
MASK = np.array([[True, True, False, True], [True, False, False, True]])

#: (name, layer, units, layer kwargs, input, call kwargs, expected output)
KERAS_CASES = [
    ("gru_correctness", "GRU", 3, {}, SEQ3, {},
     [[0.5217289] * 3, [0.6371659] * 3, [0.39384964] * 3]),
    ("gru_correctness_go_backwards", "GRU", 3, {"go_backwards": True}, SEQ3, {},
     [[0.24406259] * 3, [0.611516] * 3, [0.3928808] * 3]),
    ("gru_correctness_unroll", "GRU", 3, {"unroll": True}, SEQ3, {},
     [[0.5217289] * 3, [0.6371659] * 3, [0.39384964] * 3]),
    ("gru_correctness_reset_before", "GRU", 3, {"reset_after": False}, SEQ3, {},
     [[0.51447755] * 3, [0.6426879] * 3, [0.40208298] * 3]),
    ("gru_correctness_no_bias", "GRU", 3, {"use_bias": False}, SEQ3, {},
     [[0.49988455] * 3, [0.64701194] * 3, [0.4103359] * 3]),
    ("gru_pass_initial_state", "GRU", 2, {}, SEQ2, {"initial_state": STATE},
     [[0.23774096, 0.33508456], [0.83659905, 1.0227708]]),
    ("gru_pass_initial_state_go_backwards", "GRU", 2, {"go_backwards": True}, SEQ2,
     {"initial_state": STATE}, [[0.13486053, 0.23261218], [0.78257304, 0.9691353]]),
    ("gru_masking_unroll", "GRU", 2, {"unroll": True}, SEQ2, {"mask": MASK},
     [[0.19393763] * 2, [0.30818558] * 2]),
    ("gru_masking_return_sequences", "GRU", 2, {"return_sequences": True}, SEQ2,
     {"mask": MASK},
     [[[0.03606692] * 2, [0.09497581] * 2, [0.09497581] * 2, [0.19393763] * 2],
      [[0.16051409] * 2, [0.16051409] * 2, [0.16051409] * 2, [0.30818558] * 2]]),
    ("gru_masking_zero_output_for_mask", "GRU", 2,
     {"return_sequences": True, "zero_output_for_mask": True}, SEQ2, {"mask": MASK},
     [[[0.03606692] * 2, [0.09497581] * 2, [0.0] * 2, [0.19393763] * 2],
      [[0.16051409] * 2, [0.0] * 2, [0.0] * 2, [0.30818558] * 2]]),
    ("gru_masking_go_backwards", "GRU", 2, {"go_backwards": True}, SEQ2, {"mask": MASK},
     [[0.11669192] * 2, [0.28380975] * 2]),
    ("simple_rnn_masking_unroll", "SimpleRNN", 4, {"unroll": True}, SEQ2, {"mask": MASK},
     [[0.32951632] * 4, [0.61799484] * 4]),
    ("simple_rnn_masking_return_sequences", "SimpleRNN", 2, {"return_sequences": True}, SEQ2,
     {"mask": MASK},
     [[[0.0599281] * 2, [0.15122814] * 2, [0.15122814] * 2, [0.32394567] * 2],
      [[0.3969304] * 2, [0.3969304] * 2, [0.3969304] * 2, [0.608085] * 2]]),
    ("simple_rnn_masking_zero_output_for_mask", "SimpleRNN", 2,
     {"return_sequences": True, "zero_output_for_mask": True}, SEQ2, {"mask": MASK},
     [[[0.0599281] * 2, [0.15122814] * 2, [0.0] * 2, [0.32394567] * 2],
      [[0.3969304] * 2, [0.0] * 2, [0.0] * 2, [0.608085] * 2]]),
]


def _constant_layer(module, cls, units, kw):
    init = module.initializers
    return getattr(module.layers, cls)(units, kernel_initializer=init.Constant(0.01),
                                       recurrent_initializer=init.Constant(0.02),
                                       bias_initializer=init.Constant(0.03), **kw)


@pytest.mark.parametrize("case", KERAS_CASES, ids=[c[0] for c in KERAS_CASES])
def test_keras_case_through_graphmask_eager_call(case):
    _, cls, units, kw, x, call_kw, expected = case
    out = _constant_layer(gm, cls, units, kw)(x, **call_kw)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.array(expected), rtol=1e-5, atol=1e-5)


def test_keras_return_state_case():
    """gru_test.test_pass_return_state: the state equals the output."""
    for back, want in [(False, [[0.23774096, 0.33508456], [0.83659905, 1.0227708]]),
                       (True, [[0.13486053, 0.23261218], [0.78257304, 0.9691353]])]:
        out, state = _constant_layer(gm, "GRU", 2, {"return_state": True, "go_backwards": back})(
            SEQ2, initial_state=STATE)
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out, state)


def test_the_copied_numbers_are_what_keras_computes():
    for name, cls, units, kw, x, call_kw, expected in KERAS_CASES:
        out = _constant_layer(keras, cls, units, kw)(x, **call_kw)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out), np.array(expected),
                                   rtol=1e-5, atol=1e-5, err_msg=name)


# ---- twins ----------------------------------------------------------------------------------
VARIANTS = {
    "gru": ("GRU", {}),
    "gru_reset_before": ("GRU", {"reset_after": False}),
    "gru_go_backwards": ("GRU", {"go_backwards": True}),
    "gru_zero_output": ("GRU", {"zero_output_for_mask": True}),
    "gru_relu_hard_sigmoid": ("GRU", {"activation": "relu",
                                      "recurrent_activation": "hard_sigmoid"}),
    "simple_rnn": ("SimpleRNN", {}),
    "simple_rnn_go_backwards_relu": ("SimpleRNN", {"go_backwards": True, "activation": "relu"}),
}


def _build(lib, cls, kw, units, t, seq=True):
    L = lib.layers
    x = lib.Input(shape=(t,), dtype="int32", name="x")
    e = L.Embedding(V, E, mask_zero=True, name="emb")(x)
    h = getattr(L, cls)(units, return_sequences=seq, name="rnn", **kw)(e)
    return lib.Model(x, L.Dense(C, name="head")(h))


def twin(variant, units=4, t=7, seq=True, seed=0, scale=0.5):
    cls, kw = VARIANTS[variant]
    g, k = _build(gm, cls, kw, units, t, seq), _build(keras, cls, kw, units, t, seq)
    rng = np.random.default_rng(seed)
    g.set_weights([(rng.standard_normal(w.shape) * scale).astype(w.dtype)
                   for w in g.get_weights()])
    tw.copy_weights(g, k)
    return g, k


def _ids(padding, b, t, rng):
    return tw.ids_for(tw.mask_pattern(padding, b, t, rng), V, rng)


def test_weight_names_shapes_and_layer_order_match_keras():
    for variant in VARIANTS:
        g, k = twin(variant)
        assert [layer.name for layer in g.layers] == [layer.name for layer in k.layers]
        assert [tuple(w.shape) for w in g.weights] == [tuple(w.shape) for w in k.weights]
        rnn_g, rnn_k = g.get_layer("rnn"), k.get_layer("rnn")
        assert [v.name.split("/")[-1] for v in rnn_g.weights] == \
            [v.path.split("/")[-1] for v in rnn_k.weights] == \
            ["kernel", "recurrent_kernel", "bias"]


def test_fresh_weights_follow_keras_initializer_shapes_and_biases():
    """Default initializers: Keras's weight shapes, zero biases ((2, 3H) with
    reset_after), and a recurrent kernel with orthonormal rows (one orthogonal (H, 3H)
    draw, as Keras's)."""
    for cls, kw in [("GRU", {}), ("GRU", {"reset_after": False}), ("SimpleRNN", {})]:
        layer = getattr(gm, cls)(5, **kw)
        layer(np.zeros((2, 3, 4), np.float32))
        theirs = getattr(keras.layers, cls)(5, **kw)
        theirs.build((2, 3, 4))
        assert [w.shape for w in layer.get_weights()] == \
            [tuple(w.shape) for w in theirs.get_weights()]
        np.testing.assert_array_equal(layer.get_weights()[2], 0)
        rk = layer.get_weights()[1]
        np.testing.assert_allclose(rk @ rk.T if rk.shape[1] > rk.shape[0] else rk.T @ rk,
                                   np.eye(5), atol=1e-5)


def test_get_config_matches_keras_for_shared_keys():
    for cls, kw in [("GRU", {"reset_after": False, "go_backwards": True}),
                    ("SimpleRNN", {"activation": "relu", "return_state": True}),
                    ("GRU", {"dropout": 0.25, "recurrent_dropout": 0.5, "seed": 3}),
                    ("SimpleRNN", {"dropout": 0.1, "recurrent_dropout": 0.2})]:
        ours = getattr(gm, cls)(3, name="r", **kw).get_config()
        theirs = getattr(keras.layers, cls)(3, name="r", **kw).get_config()
        assert set(ours) <= set(theirs), set(ours) - set(theirs)
        for key in ("units", "activation", "use_bias", "return_sequences", "return_state",
                    "go_backwards", "zero_output_for_mask", "reset_after",
                    "recurrent_activation", "dropout", "recurrent_dropout", "seed",
                    "stateful", "unroll", "name", "trainable"):
            if key in theirs:
                assert ours[key] == theirs[key], (cls, key)
        assert ours["kernel_initializer"] == theirs["kernel_initializer"]["class_name"].lower() \
            .replace("glorotuniform", "glorot_uniform")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_predict(variant):
    """mixed: full, right, left, holes, empty and one-step rows in one batch; rows: holes
    and empty rows; right and left padding."""
    g, k = twin(variant, seed=1)
    rng = np.random.default_rng(2)
    for padding in ("mixed", "rows", "right", "left"):
        x = _ids(padding, 6, 7, rng)
        tw.assert_close(g.predict(x), tw.keras_predict(k, x), what=padding)


@pytest.mark.parametrize("variant", ["gru", "gru_reset_before", "simple_rnn"])
def test_last_output_only(variant):
    g, k = twin(variant, seq=False, seed=3)
    x = _ids("mixed", 6, 7, np.random.default_rng(4))
    ours = g.predict(x)
    tw.assert_close(ours, tw.keras_predict(k, x))


@pytest.mark.parametrize("variant", ["gru", "gru_reset_before", "simple_rnn"])
def test_evaluate(variant):
    g, k = twin(variant, seed=5)
    g.compile(optimizer="sgd", loss="mse")
    k.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(6)
    for padding in ("rows", "mixed"):
        x = _ids(padding, 6, 7, rng)
        y = rng.standard_normal((6, 7, C)).astype(np.float32)
        assert g.evaluate(x, y, verbose=0) == pytest.approx(
            float(k.evaluate(x, y, verbose=0)), rel=1e-5, abs=1e-7), padding


TRAINED = ["gru", "gru_reset_before", "gru_zero_output", "simple_rnn_go_backwards_relu"]


@pytest.mark.parametrize("opt", [("SGD", {"learning_rate": 0.1}),
                                 ("Adam", {"learning_rate": 0.01})], ids=["SGD", "Adam"])
@pytest.mark.parametrize("variant", TRAINED)
def test_weights_after_optimizer_steps(variant, opt):
    g, k = twin(variant, seed=7)

    def batch(_, padding, rng):
        return _ids(padding, 6, 7, rng)

    def targets(_, rng):
        return rng.standard_normal((6, 7, C)).astype(np.float32)

    tw.check_train_steps(g, k, opt[0], opt[1], ["right", "holes", "rows", "mixed"], batch,
                         targets, variant, ADAPTIVE_TOL)


# ---- return_state and initial_state ------------------------------------------------------
def _seq2seq(lib, cls, dec_kw, units=4, ts=6, tt=5):
    """Encoder (return_state) -> decoder from the encoder's state; Keras's decoder gets
    its mask explicitly (Keras drops it when initial_state is passed, see
    test_keras_initial_state.py)."""
    L = lib.layers
    src = lib.Input(shape=(ts,), dtype="int32", name="src")
    tgt = lib.Input(shape=(tt,), dtype="int32", name="tgt")
    _, h = getattr(L, cls)(units, return_state=True, name="enc")(
        L.Embedding(V, E, mask_zero=True, name="src_emb")(src))
    e = L.Embedding(V, E, mask_zero=True, name="tgt_emb")(tgt)
    dec = getattr(L, cls)(units, return_sequences=True, return_state=True, name="dec",
                          **dec_kw)
    if lib is keras:
        y, hd = dec(e, initial_state=h, mask=e._keras_mask)
    else:
        y, hd = dec(e, initial_state=h)
    return lib.Model([src, tgt], [L.Dense(C, name="head")(y), hd])


LAYERS = ("src_emb", "tgt_emb", "enc", "dec", "head")
DECODERS = [("GRU", {}), ("GRU", {"reset_after": False, "go_backwards": True}),
            ("GRU", {"zero_output_for_mask": True}), ("SimpleRNN", {})]


@pytest.mark.parametrize("dec", range(len(DECODERS)))
def test_initial_state_and_return_state(dec):
    for pair in [("holes", "rows"), ("mixed", "mixed"), ("right", "left")]:
        _check_seq2seq(*DECODERS[dec], pair)


def _check_seq2seq(cls, kw, pair):
    g, k = _seq2seq(gm, cls, kw), _seq2seq(keras, cls, kw)
    rng = np.random.default_rng(8)
    g.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                   for w in g.get_weights()])
    for name in LAYERS:
        k.get_layer(name).set_weights(g.get_layer(name).get_weights())
    xs = [_ids(pair[0], 6, 6, rng), _ids(pair[1], 6, 5, rng)]
    ours, theirs = g.predict(xs), tw.keras_predict(k, xs)
    tw.assert_close(ours, theirs)
    empty = ~(xs[1] != 0).any(axis=1)
    if empty.any():  # an empty target row returns the encoder's state
        enc = gm.Model(g.inputs[0], g.get_layer("enc").output[1]).predict(xs[0])
        np.testing.assert_array_equal(ours[1][empty], enc[empty])


@pytest.mark.parametrize("cls", ["GRU", "SimpleRNN"])
def test_eager_call_with_initial_state_and_mask(cls):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((5, 6, 3)).astype(np.float32)
    h0 = rng.standard_normal((5, 4)).astype(np.float32)
    mask = tw.mask_pattern("mixed", 5, 6, rng)
    kw = {"return_sequences": True, "return_state": True, "go_backwards": True}
    ours_layer = getattr(gm, cls)(4, **kw)
    ours = ours_layer(x, initial_state=[h0], mask=mask)
    theirs_layer = getattr(keras.layers, cls)(4, **kw)
    theirs_layer.build((5, 6, 3))
    theirs_layer.set_weights(ours_layer.get_weights())
    theirs = theirs_layer(x, initial_state=[h0], mask=mask)
    tw.assert_close(ours, [keras.ops.convert_to_numpy(t) for t in theirs])


# ---- production sizes --------------------------------------------------------------------------
def _prod_twin(cls, kw, h, t):
    g, k = _build(gm, cls, kw, h, t), _build(keras, cls, kw, h, t)
    tw.copy_weights(g, k)  # graphmask's own initial weights: the point training starts from
    return g, k


@pytest.mark.parametrize("variant", [("GRU", {}), ("GRU", {"reset_after": False})],
                         ids=["after", "before"])
def test_threaded_kernels_predict_and_sgd(variant):
    """B = 48, H = 64, T = 20: the multi-threaded float32 GRU kernels (4 unit chunks)."""
    from graphmask.kernels import gru as K

    g, k = _prod_twin(*variant, 64, 20)
    rng = np.random.default_rng(9)
    x = _ids("mixed", 48, 20, rng)
    assert not K.gru_threads(int((x != 0).sum(0).max()), 64).serial
    tw.assert_close(g.predict(x), tw.keras_predict(k, x), 1e-4, 1e-5)
    y = rng.standard_normal((48, 20, C)).astype(np.float32)
    tw.check_train_steps(g, k, "SGD", {"learning_rate": 0.1}, ["holes", "rows"],
                         lambda _, p, r: _ids(p, 48, 20, r), lambda _, r: y, "threaded", 0)


@pytest.mark.slow
@pytest.mark.parametrize("variant", [("GRU", {}), ("GRU", {"reset_after": False}),
                                     ("GRU", {"go_backwards": True}), ("SimpleRNN", {})],
                         ids=["after", "before", "go_backwards", "simple_rnn"])
@pytest.mark.parametrize("h", [64, 128])
def test_production_size(variant, h):
    """B = 32, T = 50, H = 64 and 128: predict, evaluate, SGD and Adam steps."""
    rng = np.random.default_rng(10)
    for opt, cfg in [("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
                     ("Adam", {"learning_rate": 0.01})]:
        g, k = _prod_twin(*variant, h, 50)
        x = _ids("mixed", 32, 50, rng)
        tw.assert_close(g.predict(x), tw.keras_predict(k, x), 1e-4, 1e-5)
        y = rng.standard_normal((32, 50, C)).astype(np.float32)
        g.compile(optimizer="sgd", loss="mse")
        k.compile(optimizer="sgd", loss="mse")
        assert g.evaluate(x, y, verbose=0) == pytest.approx(
            float(k.evaluate(x, y, verbose=0)), rel=1e-5)
        tw.check_train_steps(g, k, opt, cfg, ["right", "left", "holes", "rows"],
                             lambda _, p, r: _ids(p, 32, 50, r), lambda _, r, y=y: y,
                             f"{variant[0]} H={h} {opt}", ADAPTIVE_TOL)
