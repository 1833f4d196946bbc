"""``RNN(cell)`` against Keras 3 (torch backend): ``LSTMCell``, ``GRUCell``,
``SimpleRNNCell``, ``StackedRNNCells`` and user-defined cells (the same class written
once with ``graphmask.ops`` and once with ``keras.ops``).

Twin models (Embedding(mask_zero) -> RNN -> Dense, same weights): layer names, weight
names, shapes and order, configs, predict under right, left, holes, empty-row and mixed
padding, evaluate, and every weight after SGD and Adam steps; ``return_state`` with an
encoder's states as ``initial_state`` (nested for stacked cells); eager calls.

Tolerances are the suite's (``twin.py``): a float32 forward pass 1e-5 relative; weights
after SGD steps 1e-4; after Adam steps ``3e-3 * learning_rate * steps`` absolute.
"""
import numpy as np
import pytest

import graphmask as gm
from tests.conformance.oracle import import_keras

keras = import_keras()

from tests.conformance import twin as tw

V, E, C, T = 11, 3, 2, 6
ADAPTIVE_TOL = 3e-3


@pytest.fixture(autouse=True)
def _fresh_layer_names():
    """graphmask's automatic names fresh before and after (eager calls make Inputs Keras
    does not see); conftest.py restarts Keras's."""
    gm.clear_session()
    yield
    gm.clear_session()


def user_cells(lib):
    """The same two user cells for either library: Keras's documented minimal cell, and
    a cell with two states of different widths and an output of a third width."""
    ops = lib.ops

    class MinimalRNNCell(lib.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
            self.recurrent_kernel = self.add_weight(shape=(self.units, self.units),
                                                    name="recurrent_kernel")

        def call(self, inputs, states):
            out = ops.tanh(ops.matmul(inputs, self.kernel) +
                           ops.matmul(states[0], self.recurrent_kernel))
            return out, [out]

    class TwoStateCell(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.state_size = [2, 3]
            self.output_size = 4

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1] + 5, 9), name="w")

        def call(self, inputs, states):
            z = ops.matmul(ops.concatenate([inputs, states[0], states[1]], axis=-1), self.w)
            a, b, out = ops.split(z, [2, 5], axis=-1)
            return ops.tanh(out), [ops.tanh(a) + states[0], ops.sigmoid(b)]

    return MinimalRNNCell, TwoStateCell


def make_cell(lib, kind):
    L = lib.layers
    minimal, two_state = user_cells(lib)
    return {
        "lstm": lambda: L.LSTMCell(4),
        "lstm_hard_sigmoid": lambda: L.LSTMCell(4, recurrent_activation="hard_sigmoid",
                                                unit_forget_bias=False),
        "gru": lambda: L.GRUCell(4),
        "gru_reset_before": lambda: L.GRUCell(4, reset_after=False),
        "simple_rnn_relu": lambda: L.SimpleRNNCell(4, activation="relu"),
        "stacked": lambda: L.StackedRNNCells([L.LSTMCell(4), L.GRUCell(3)]),
        "stacked_list": lambda: [L.SimpleRNNCell(3), L.LSTMCell(4)],
        "user": lambda: minimal(4),
        "user_two_states": lambda: two_state(),
        "stacked_user": lambda: L.StackedRNNCells([minimal(3), L.GRUCell(4)]),
    }[kind]()


#: variant -> (cell kind, RNN kwargs)
VARIANTS = {
    "lstm": ("lstm", {}),
    "lstm_go_backwards": ("lstm_hard_sigmoid", {"go_backwards": True}),
    "gru_zero_output": ("gru", {"zero_output_for_mask": True}),
    "gru_reset_before": ("gru_reset_before", {}),
    "simple_rnn_relu": ("simple_rnn_relu", {"go_backwards": True}),
    "stacked": ("stacked", {}),
    "stacked_list_go_backwards": ("stacked_list", {"go_backwards": True}),
    "user": ("user", {}),
    "user_zero_output": ("user", {"zero_output_for_mask": True, "go_backwards": True}),
    "user_two_states": ("user_two_states", {}),
    "stacked_user": ("stacked_user", {}),
}


def _build(lib, variant, seq=True):
    kind, kw = VARIANTS[variant]
    L = lib.layers
    x = lib.Input(shape=(T,), dtype="int32", name="x")
    e = L.Embedding(V, E, mask_zero=True, name="emb")(x)
    h = L.RNN(make_cell(lib, kind), return_sequences=seq, name="rnn", **kw)(e)
    return lib.Model(x, L.Dense(C, name="head")(h))


def twin(variant, seq=True, seed=0, scale=0.5):
    g, k = _build(gm, variant, seq), _build(keras, variant, seq)
    rng = np.random.default_rng(seed)
    g.set_weights([(rng.standard_normal(w.shape) * scale).astype(w.dtype)
                   for w in g.get_weights()])
    tw.copy_weights(g, k)
    return g, k


def _ids(padding, b, rng):
    return tw.ids_for(tw.mask_pattern(padding, b, T, rng), V, rng)


# ---- Keras's own numbers ---------------------------------------------------------------------
def ones_cells(lib):
    """The cells of Keras's ``rnn_test.py`` (all weights ones): a linear cell with one
    state, and one with two states, both computed from the first state, the output their
    sum (as Keras's test cell does)."""
    ops = lib.ops

    class OneState(lib.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units),
                                          initializer="ones", name="kernel")
            self.recurrent_kernel = self.add_weight(shape=(self.units, self.units),
                                                    initializer="ones",
                                                    name="recurrent_kernel")

        def call(self, inputs, states):
            out = ops.matmul(inputs, self.kernel) + ops.matmul(states[0], self.recurrent_kernel)
            return out, [out]

    class TwoStates(lib.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = [units, units]
            self.output_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units),
                                          initializer="ones", name="kernel")
            self.r1 = self.add_weight(shape=(self.units, self.units), initializer="ones",
                                      name="recurrent_kernel_1")
            self.r2 = self.add_weight(shape=(self.units, self.units), initializer="ones",
                                      name="recurrent_kernel_2")

        def call(self, inputs, states):
            x = ops.matmul(inputs, self.kernel)
            one, two = x + ops.matmul(states[0], self.r1), x + ops.matmul(states[0], self.r2)
            return one + two, [one, two]

    return OneState, TwoStates


ONES_2_3 = np.ones((1, 2, 3), np.float32)
ONES_3_2 = np.ones((2, 3, 2), np.float32)
AR_3_4 = np.arange(24).reshape((2, 3, 4)).astype(np.float32)
AR_4_3 = np.arange(24).reshape((2, 4, 3)).astype(np.float32)
KMASK = np.array([[True, True, True, False], [True, True, False, False]])
S2, S3 = [[9.0, 9.0]], [[158.0] * 3, [782.0] * 3]
SEQ_1 = [[[3.0, 3.0], [9.0, 9.0]]]
MASKED_SEQ = [[[3.0, 3.0], [18.0, 18.0], [57.0, 57.0], [57.0, 57.0]],
              [[39.0, 39.0], [126.0, 126.0], [126.0, 126.0], [126.0, 126.0]]]
STACK_SEQ = [[[18.0, 18.0], [156.0, 156.0], [786.0, 786.0]],
             [[162.0, 162.0], [1020.0, 1020.0], [4386.0, 4386.0]]]

#: (name, cells ("one"/"two" and units; a list is stacked), RNN kwargs, input, call kwargs,
#: expected outputs flattened), from keras/src/layers/rnn/rnn_test.py and
#: stacked_rnn_cells_test.py
KERAS_CASES = [
    ("one_state", ("one", 2), {}, ONES_2_3, {}, [S2]),
    ("one_state_sequences_state", ("one", 2), {"return_sequences": True, "return_state": True},
     ONES_2_3, {}, [SEQ_1, S2]),
    ("two_states", ("two", 2), {}, ONES_2_3, {}, [[[18.0, 18.0]]]),
    ("two_states_sequences_state", ("two", 2), {"return_sequences": True,
                                                "return_state": True},
     ONES_2_3, {}, [[[[6.0, 6.0], [18.0, 18.0]]], S2, S2]),
    ("initial_state_one", ("one", 2), {"return_state": True}, ONES_3_2,
     {"initial_state": np.ones((2, 2), np.float32)}, [[[22.0, 22.0]] * 2] * 2),
    ("initial_state_two", ("two", 2), {"return_state": True}, ONES_3_2,
     {"initial_state": [np.ones((2, 2), np.float32)] * 2},
     [[[44.0, 44.0]] * 2, [[22.0, 22.0]] * 2, [[22.0, 22.0]] * 2]),
    ("go_backwards", ("one", 2), {"go_backwards": True}, AR_3_4, {},
     [[[202.0, 202.0], [538.0, 538.0]]]),
    ("masking", ("one", 2), {}, AR_4_3, {"mask": KMASK}, [[[57.0, 57.0], [126.0, 126.0]]]),
    ("masking_unroll_sequences", ("one", 2), {"return_sequences": True, "unroll": True},
     AR_4_3, {"mask": KMASK}, [MASKED_SEQ]),
    ("stack_one_state", [("one", 3), ("one", 2)], {"return_sequences": True,
                                                   "return_state": True},
     AR_3_4, {}, [STACK_SEQ, S3, [[786.0, 786.0], [4386.0, 4386.0]]]),
    ("stack_two_states", [("two", 3), ("two", 2)], {"return_state": True}, AR_3_4, {},
     [[[3144.0, 3144.0], [17544.0, 17544.0]], S3, S3, [[1572.0, 1572.0], [8772.0, 8772.0]],
      [[1572.0, 1572.0], [8772.0, 8772.0]]]),
]


def _ones_rnn(lib, cells, kw):
    one, two = ones_cells(lib)
    make = {"one": one, "two": two}
    if isinstance(cells, list):
        return lib.layers.RNN([make[k](u) for k, u in cells], **kw)
    return lib.layers.RNN(make[cells[0]](cells[1]), **kw)


@pytest.mark.parametrize("case", KERAS_CASES, ids=[c[0] for c in KERAS_CASES])
def test_keras_case_through_graphmask(case):
    _, cells, kw, x, call_kw, expected = case
    out = _flat(_ones_rnn(gm, cells, kw)(x, **call_kw))
    assert len(out) == len(expected)
    for ours, want in zip(out, expected):
        np.testing.assert_allclose(ours, np.array(want), rtol=1e-6)


@pytest.mark.parametrize("case", KERAS_CASES, ids=[c[0] for c in KERAS_CASES])
def test_the_copied_numbers_are_what_keras_computes(case):
    _, cells, kw, x, call_kw, expected = case
    out = _flat(_ones_rnn(keras, cells, kw)(x, **call_kw))
    for theirs, want in zip(out, expected, strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(theirs), np.array(want),
                                   rtol=1e-6)


def test_keras_stacked_lstm_cell_mask_case():
    """stacked_rnn_cells_test.test_stacked_lstm_cell_mask: [[0.7793], [0.5998]]."""
    for lib in (gm, keras):
        kw = {"units": 1, "kernel_initializer": "ones", "recurrent_initializer": "ones"}
        rnn = lib.layers.RNN([lib.layers.LSTMCell(**kw) for _ in range(2)])
        out = rnn(np.ones((2, 3, 4), np.float32),
                  mask=np.array([[True, True, True], [True, True, False]]))
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out) if lib is keras else out,
                                   [[0.7793], [0.5998]], atol=1e-4)


def test_keras_return_state_stacked_lstm_cell_shapes():
    rnn = gm.RNN([gm.LSTMCell(10), gm.LSTMCell(10)], return_state=True)
    out = rnn(np.zeros((2, 3, 5), np.float32))
    assert len(out) == 3 and out[0].shape == (2, 10)
    assert [s.shape for s in out[1] + out[2]] == [(2, 10)] * 4
    shape = rnn.compute_output_shape((2, 3, 5))
    assert shape == [(2, 10), [(2, 10), (2, 10)], [(2, 10), (2, 10)]]
    theirs = keras.layers.RNN([keras.layers.LSTMCell(10), keras.layers.LSTMCell(10)],
                              return_state=True).compute_output_shape((2, 3, 5))
    assert [tuple(theirs[0]), [tuple(s) for s in theirs[1]], [tuple(s) for s in theirs[2]]] \
        == shape


# ---- structure -----------------------------------------------------------------------
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_names_weights_and_config_match_keras(variant):
    g, k = twin(variant)
    assert [layer.name for layer in g.layers] == [layer.name for layer in k.layers]
    assert [tuple(w.shape) for w in g.weights] == [tuple(w.shape) for w in k.weights]
    # the cell's weights are named by Keras's paths: rnn/<cell>/<weight>
    assert [v.name for v in g.get_layer("rnn").weights] == \
        [v.path for v in k.get_layer("rnn").weights]
    ours, theirs = g.get_layer("rnn").get_config(), k.get_layer("rnn").get_config()
    for key in ("name", "return_sequences", "return_state", "go_backwards", "stateful",
                "unroll", "zero_output_for_mask"):
        assert ours[key] == theirs[key], key
    assert ours["cell"]["class_name"] == theirs["cell"]["class_name"]


def test_cell_configs_match_keras():
    for ours, theirs in [(gm.LSTMCell(3, unit_forget_bias=False, name="c"),
                          keras.layers.LSTMCell(3, unit_forget_bias=False, name="c")),
                         (gm.GRUCell(3, reset_after=False, name="c"),
                          keras.layers.GRUCell(3, reset_after=False, name="c")),
                         (gm.SimpleRNNCell(3, activation="relu", name="c"),
                          keras.layers.SimpleRNNCell(3, activation="relu", name="c"))]:
        a, b = ours.get_config(), theirs.get_config()
        for key in ("name", "units", "activation", "recurrent_activation", "use_bias",
                    "unit_forget_bias", "reset_after", "dropout", "recurrent_dropout",
                    "seed"):
            assert a.get(key) == b.get(key), (type(ours).__name__, key)
        assert ours.state_size == theirs.state_size
        assert ours.output_size == theirs.output_size
        ours.build((None, 5))
        theirs.build((None, 5))
        assert [w.name for w in ours.weights] == [f"c/{w.name}" for w in theirs.weights]
        assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]


# ---- numbers -----------------------------------------------------------------------------
@pytest.mark.parametrize("padding", ["mixed", "rows"])  # mixed: full, right, left, holes,
@pytest.mark.parametrize("variant", sorted(VARIANTS))  # empty and one-step rows
def test_predict(variant, padding):
    g, k = twin(variant, seed=1)
    x = _ids(padding, 6, np.random.default_rng(2))
    tw.assert_close(g.predict(x, verbose=0), tw.keras_predict(k, x))


@pytest.mark.parametrize("variant", ["lstm", "gru_zero_output", "user_zero_output",
                                     "stacked", "user_two_states"])
def test_last_output_only(variant):
    g, k = twin(variant, seq=False, seed=3)
    for padding in ("mixed", "right"):
        x = _ids(padding, 6, np.random.default_rng(4))
        tw.assert_close(g.predict(x, verbose=0), tw.keras_predict(k, x))


@pytest.mark.parametrize("variant", ["lstm", "stacked", "user", "user_two_states"])
def test_evaluate(variant):
    g, k = twin(variant, seed=5)
    g.compile(optimizer="sgd", loss="mse")
    k.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(6)
    x = _ids("mixed", 6, rng)
    y = rng.standard_normal((6, T, C)).astype(np.float32)
    assert g.evaluate(x, y, verbose=0) == pytest.approx(
        float(k.evaluate(x, y, verbose=0)), rel=1e-5, abs=1e-7)


TRAINED = ["lstm", "gru_zero_output", "simple_rnn_relu", "stacked", "user",
           "user_two_states", "stacked_user"]


@pytest.mark.parametrize("opt", [("SGD", {"learning_rate": 0.1}),
                                 ("Adam", {"learning_rate": 0.01})], ids=["SGD", "Adam"])
@pytest.mark.parametrize("variant", TRAINED)
def test_weights_after_optimizer_steps(variant, opt):
    g, k = twin(variant, seed=7)

    def batch(_, padding, rng):
        return _ids(padding, 6, rng)

    def targets(_, rng):
        return rng.standard_normal((6, T, C)).astype(np.float32)

    tw.check_train_steps(g, k, opt[0], opt[1], ["right", "left", "holes", "rows", "mixed"],
                         batch, targets, variant, ADAPTIVE_TOL)


# ---- return_state and initial_state ------------------------------------------------------
def _seq2seq(lib, kind, dec_kw):
    """Encoder RNN(return_state) -> decoder RNN from the encoder's states (nested as the
    cell's state_size); Keras's decoder gets its mask explicitly (Keras drops it when
    initial_state is passed, see test_keras_initial_state.py)."""
    L = lib.layers
    src = lib.Input(shape=(T,), dtype="int32", name="src")
    tgt = lib.Input(shape=(T - 1,), dtype="int32", name="tgt")
    enc_out = L.RNN(make_cell(lib, kind), return_state=True, name="enc")(
        L.Embedding(V, E, mask_zero=True, name="src_emb")(src))
    states = enc_out[1:]
    e = L.Embedding(V, E, mask_zero=True, name="tgt_emb")(tgt)
    dec = L.RNN(make_cell(lib, kind), return_sequences=True, return_state=True, name="dec",
                **dec_kw)
    if lib is keras:
        out = dec(e, initial_state=states, mask=e._keras_mask)
    else:
        out = dec(e, initial_state=states)
    return lib.Model([src, tgt], [L.Dense(C, name="head")(out[0]), *_flat(out[1:])])


def _flat(x):
    return [t for item in x for t in _flat(item)] if isinstance(x, (list, tuple)) else [x]


LAYERS = ("src_emb", "tgt_emb", "enc", "dec", "head")


@pytest.mark.parametrize("kind,dec_kw", [("lstm", {}), ("stacked", {"go_backwards": True}),
                                         ("user_two_states", {"zero_output_for_mask": True}),
                                         ("stacked_user", {})],
                         ids=["lstm", "stacked", "user_two_states", "stacked_user"])
def test_initial_state_and_return_state(kind, dec_kw):
    g, k = _seq2seq(gm, kind, dec_kw), _seq2seq(keras, kind, dec_kw)
    rng = np.random.default_rng(8)
    g.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                   for w in g.get_weights()])
    for name in LAYERS:
        k.get_layer(name).set_weights(g.get_layer(name).get_weights())
    xs = [_ids("mixed", 6, rng), tw.ids_for(tw.mask_pattern("mixed", 6, T - 1, rng), V, rng)]
    tw.assert_close(g.predict(xs, verbose=0), tw.keras_predict(k, xs))
    g.compile(optimizer="sgd", loss="mse")
    k.compile(optimizer="sgd", loss="mse")
    ys = [rng.standard_normal(tuple(o.shape)).astype(np.float32)
          for o in g.predict(xs, verbose=0)]
    ours, theirs = g.train_on_batch(xs, ys), k.train_on_batch(xs, ys)
    tw.assert_close(ours[0], theirs[0], 1e-4, 1e-6, "total loss")
    for name in LAYERS:
        tw.assert_close(g.get_layer(name).get_weights(), k.get_layer(name).get_weights(),
                        tw.TRAIN_RTOL, tw.TRAIN_ATOL, name)


# ---- eager calls -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lstm", "gru_reset_before", "stacked_list", "user"])
def test_eager_call_with_mask(kind):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((5, T, 3)).astype(np.float32)
    mask = tw.mask_pattern("mixed", 5, T, rng)
    kw = {"return_sequences": True, "return_state": True, "go_backwards": True}
    ours_layer = gm.layers.RNN(make_cell(gm, kind), **kw)
    ours = ours_layer(x, mask=mask)
    theirs_layer = keras.layers.RNN(make_cell(keras, kind), **kw)
    theirs_layer.build((5, T, 3))
    theirs_layer.set_weights(ours_layer.get_weights())
    theirs = keras.tree.map_structure(keras.ops.convert_to_numpy, theirs_layer(x, mask=mask))
    tw.assert_close(_flat(ours), _flat(theirs))


# ---- Keras files ---------------------------------------------------------------------------
def _file_model(lib):
    L = lib.layers
    x = lib.Input(shape=(T,), dtype="int32", name="x")
    h = L.Embedding(V, E, mask_zero=True, name="emb")(x)
    h = L.RNN([L.LSTMCell(4), L.GRUCell(3), L.LSTMCell(2)], return_sequences=True)(h)
    h = L.RNN(L.GRUCell(3, reset_after=False), go_backwards=True, return_sequences=True)(h)
    return lib.Model(x, L.Dense(C, name="head")(L.RNN(L.SimpleRNNCell(2))(h)))


def test_keras_files_both_ways(tmp_path):
    """A Keras 3 .keras file with RNN(StackedRNNCells) and RNN(cell) layers loads in
    graphmask (configs and the weights under rnn/cell/cells/<cell>/vars), and graphmask
    writes the same layout back for Keras."""
    rng = np.random.default_rng(13)
    k = _file_model(keras)
    k.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(np.float32)
                   for w in k.get_weights()])
    k.save(tmp_path / "k.keras")
    g = gm.load_model(tmp_path / "k.keras")
    x = _ids("mixed", 6, rng)
    tw.assert_close(g.predict(x, verbose=0), tw.keras_predict(k, x))
    assert [type(la).__name__ for la in g.layers] == [type(la).__name__ for la in k.layers]
    assert type(g.get_layer("rnn").cell).__name__ == "StackedRNNCells"
    g.set_weights([w * 0.9 for w in g.get_weights()])
    g.save(tmp_path / "g.keras")
    back = keras.saving.load_model(tmp_path / "g.keras")
    tw.assert_close(tw.keras_predict(back, x), g.predict(x, verbose=0))
    g.save_weights(tmp_path / "g.weights.h5")
    k.load_weights(tmp_path / "g.weights.h5")
    tw.assert_close(tw.keras_predict(k, x), g.predict(x, verbose=0))


def test_a_user_cell_is_not_written_to_a_keras_file(tmp_path):
    minimal, _ = user_cells(gm)
    inp = gm.Input((T, 3))
    model = gm.Model(inp, gm.RNN(minimal(2, name="mine"))(inp))
    with pytest.raises(gm.errors.ConfigError, match=r"layer 'mine' \(MinimalRNNCell\) cannot "
                                                    r"be written to a Keras file"):
        model.save(tmp_path / "m.keras")


# ---- wrapped in Bidirectional ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lstm", "gru_reset_before", "stacked"])
def test_bidirectional_rnn_of_cells(kind):
    """Bidirectional(RNN(cell)) copies the RNN (cell and all) for the backward direction,
    as Keras: same weights, same numbers under every padding."""
    def build(lib):
        L = lib.layers
        x = lib.Input(shape=(T,), dtype="int32", name="x")
        e = L.Embedding(V, E, mask_zero=True, name="emb")(x)
        h = L.Bidirectional(L.RNN(make_cell(lib, kind), return_sequences=True), name="bi")(e)
        return lib.Model(x, L.Dense(C, name="head")(h))

    g, k = build(gm), build(keras)
    rng = np.random.default_rng(14)
    g.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(w.dtype)
                   for w in g.get_weights()])
    tw.copy_weights(g, k)
    # Keras's paths; graphmask's Bidirectional does not prefix its layers' weights
    assert [v.name for v in g.weights] == [v.path.removeprefix("bi/") for v in k.weights]
    x = _ids("mixed", 6, rng)
    tw.assert_close(g.predict(x, verbose=0), tw.keras_predict(k, x))
