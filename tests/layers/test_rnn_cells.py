"""``RNN(cell)`` with ``LSTMCell``, ``GRUCell``, ``SimpleRNNCell``, ``StackedRNNCells`` and
a user's cell written with ``graphmask.ops``: the coarse path (same numbers and weights as
``LSTM``/``GRU``/``SimpleRNN``), the unrolled path (Keras's mask rule per step, against a
NumPy loop and against the coarse kernels, gradients included), state structures, masks,
configs, saving, inspection and the errors of bad cells and bad states."""
import numpy as np
import pytest

import graphmask as gm
from graphmask import ops
from graphmask.errors import ConfigError, ShapeError
from graphmask.layers.rnn_cells import RNN, GRUCell, LSTMCell, SimpleRNNCell, StackedRNNCells

T, D = 5, 3
#: right padding, left padding, holes, an empty row, a full row
MASK = np.array([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 0, 1, 0, 1], [0, 0, 0, 0, 0],
                 [1, 1, 1, 1, 1]], bool)


class MinimalRNNCell(gm.layers.Layer):
    """Keras's documented example cell: ``h = tanh(x W + h_prev U)``."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units),
                                                initializer="orthogonal",
                                                name="recurrent_kernel")

    def call(self, inputs, states):
        out = ops.tanh(ops.matmul(inputs, self.kernel) +
                       ops.matmul(states[0], self.recurrent_kernel))
        return out, [out]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class TwoStateCell(gm.layers.Layer):
    """A cell with two states of different widths and an output of a third width."""

    state_size = [2, 3]
    output_size = 4

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1] + 5, 9), name="w")

    def call(self, inputs, states):
        z = ops.matmul(ops.concatenate([inputs, states[0], states[1]], axis=-1), self.w)
        a, b, out = ops.split(z, [2, 5], axis=-1)
        return ops.tanh(out), [ops.tanh(a) + states[0], ops.sigmoid(b)]


def _x(b=5, seed=0):
    return np.random.default_rng(seed).standard_normal((b, T, D)).astype(np.float32)


def _unrolled(cell_cls):
    """A subclass of a built-in cell: same math, but RNN unrolls it."""
    return type(f"Unrolled{cell_cls.__name__}", (cell_cls,), {})


CELLS = [(LSTMCell, gm.LSTM, {}), (GRUCell, gm.GRU, {}),
         (GRUCell, gm.GRU, {"reset_after": False, "recurrent_activation": "hard_sigmoid"}),
         (SimpleRNNCell, gm.SimpleRNN, {"activation": "relu"})]
OPTIONS = [{"return_sequences": True}, {}, {"return_sequences": True, "go_backwards": True},
           {"return_sequences": True, "zero_output_for_mask": True},
           {"zero_output_for_mask": True}, {"return_state": True, "go_backwards": True}]


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


# ---- the coarse path: RNN(built-in cell) == the layer ------------------------------------
COARSE_OPTIONS = [o for o in OPTIONS if o != {"zero_output_for_mask": True}]


@pytest.mark.parametrize("opts", COARSE_OPTIONS, ids=lambda o: "-".join(o) or "last")
@pytest.mark.parametrize("case", range(len(CELLS)))
def test_rnn_of_a_builtin_cell_is_the_layer(case, opts):
    cell_cls, layer_cls, kw = CELLS[case]
    gm.set_random_seed(3)
    rnn = RNN(cell_cls(4, **kw), **opts)
    ours = _as_list(rnn(_x(), mask=MASK))
    gm.set_random_seed(3)  # the same draws: the same weights, in the same order
    layer = layer_cls(4, **kw, **opts)
    theirs = _as_list(layer(_x(), mask=MASK))
    assert rnn._builtin
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [w.name.split("/")[-1] for w in rnn.weights] == \
        ["kernel", "recurrent_kernel", "bias"]
    assert rnn.weights[0].name == f"{rnn.name}/{rnn.cell.name}/kernel"  # Keras's path


@pytest.mark.parametrize("case", range(len(CELLS)))
def test_zero_output_for_mask_last_output_is_the_last_step(case):
    """Keras: with zero_output_for_mask and no return_sequences, the output is the last
    step's, zeros when that step is masked (rows 0 and 3). RNN unrolls this one
    combination to give it."""
    cell_cls, _, kw = CELLS[case]
    seq_rnn = RNN(cell_cls(4, **kw), return_sequences=True, zero_output_for_mask=True)
    seq = seq_rnn(_x(), mask=MASK)
    last_rnn = RNN(cell_cls(4, **kw), zero_output_for_mask=True)
    last_rnn(_x()[:1])
    last_rnn.set_weights(seq_rnn.get_weights())
    last = last_rnn(_x(), mask=MASK)
    assert not last_rnn._builtin
    np.testing.assert_allclose(last, seq[:, -1], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(last[[0, 3]], 0)
    assert (np.abs(last[[1, 2, 4]]).max(axis=1) > 0).all()


def test_rnn_of_a_builtin_cell_records_the_coarse_op():
    ids = gm.Input((T,), dtype="int32")
    out = RNN(LSTMCell(4), name="r")(gm.Embedding(9, D, mask_zero=True)(ids))
    model = gm.Model(ids, out)
    ops_of_r = [d["op"] for _, d in model.graph.nx.nodes(data=True)
                if d.get("layer") == "r" and d["op"] != "variable"]
    assert ops_of_r == ["lstm"]


# ---- the unrolled path ----------------------------------------------------------------
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(o) or "last")
@pytest.mark.parametrize("case", range(len(CELLS)))
def test_unrolled_cell_matches_the_coarse_kernels(case, opts):
    """A subclass of a built-in cell is unrolled: the cell's call() per step with the
    mask rule gives the coarse kernel's numbers (float32 rounding only)."""
    cell_cls, _, kw = CELLS[case]
    coarse = RNN(cell_cls(4, **kw), **opts)
    expected = _as_list(coarse(_x(), mask=MASK))
    unrolled = RNN(_unrolled(cell_cls)(4, **kw), **opts)
    unrolled(_x()[:1])
    unrolled.set_weights([w * 1.5 for w in coarse.get_weights()])
    coarse.set_weights(unrolled.get_weights())
    expected = _as_list(coarse(_x(), mask=MASK))
    assert not unrolled._builtin
    for a, b in zip(_as_list(unrolled(_x(), mask=MASK)), expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def numpy_minimal_rnn(x, mask, kernel, recurrent, h0=None, go_backwards=False, zero=False):
    """Keras's RNN loop for MinimalRNNCell, in float64: masked steps keep the state and
    repeat the previous output (zeros before the first kept step)."""
    b, t, _ = x.shape
    h = np.zeros((b, kernel.shape[1])) if h0 is None else h0.astype(np.float64)
    prev, outs = np.zeros_like(h), []
    for s in (range(t - 1, -1, -1) if go_backwards else range(t)):
        new = np.tanh(x[:, s] @ kernel + h @ recurrent)
        keep = mask[:, s:s + 1]
        out = np.where(keep, new, 0.0 if zero else prev)
        h = np.where(keep, new, h)
        outs.append(out)
        prev = out
    return np.stack(outs, axis=1), h


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero", [False, True])
def test_user_cell_against_numpy(go_backwards, zero):
    rnn = RNN(MinimalRNNCell(3), return_sequences=True, return_state=True,
              go_backwards=go_backwards, zero_output_for_mask=zero)
    x = _x()
    seq, h = rnn(x, mask=MASK)
    k, r = (w.astype(np.float64) for w in rnn.get_weights())
    want_seq, want_h = numpy_minimal_rnn(x, MASK, k, r, go_backwards=go_backwards, zero=zero)
    np.testing.assert_allclose(seq, want_seq, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, want_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(h[3], 0)  # the empty row keeps its zero state
    if not zero and not go_backwards:  # left padding: zeros, then the kept outputs repeat
        np.testing.assert_array_equal(seq[1, :2], 0)
        np.testing.assert_array_equal(seq[0, 3], seq[0, 2])


def test_user_cell_with_initial_state_and_a_masked_model():
    ids = gm.Input((T,), dtype="int32", name="ids")
    h0_in = gm.Input((3,), name="h0")
    emb = gm.Embedding(9, D, mask_zero=True, name="emb")
    rnn = RNN(MinimalRNNCell(3), return_sequences=True, name="rnn")
    seq = rnn(emb(ids), initial_state=h0_in)
    assert seq.keras_mask is not None  # return_sequences: the output carries the mask
    model = gm.Model([ids, h0_in], seq)
    rng = np.random.default_rng(1)
    x = np.where(MASK, rng.integers(1, 9, MASK.shape), 0)
    h0 = rng.standard_normal((5, 3)).astype(np.float32)
    emb_w, k, r = (w.astype(np.float64) for w in model.get_weights())
    want, _ = numpy_minimal_rnn(emb_w[x], MASK, k, r, h0=h0)
    np.testing.assert_allclose(model.predict([x, h0], verbose=0), want, rtol=1e-5, atol=1e-6)


def test_two_state_cell_structure_and_output_size():
    rnn = RNN(TwoStateCell(), return_state=True)
    out, s1, s2 = rnn(_x(), mask=MASK)
    assert (out.shape, s1.shape, s2.shape) == ((5, 4), (5, 2), (5, 3))
    np.testing.assert_array_equal(s1[3], 0)  # empty row: the initial zeros
    np.testing.assert_array_equal(s2[3], 0)
    assert rnn.compute_output_shape((None, T, D)) == [(None, 4), (None, 2), (None, 3)]


# ---- gradients through time -------------------------------------------------------------
@pytest.mark.parametrize("case", [0, 1, 3])
def test_unrolled_training_matches_the_coarse_kernels(case):
    """Two SGD steps on a masked sequence model: the unrolled graph's autodiff gives the
    coarse kernels' weights (float32 rounding)."""
    cell_cls, _, kw = CELLS[case]
    rng = np.random.default_rng(2)
    ids = np.where(MASK, rng.integers(1, 9, MASK.shape), 0)
    y = rng.standard_normal((5, T, 2)).astype(np.float32)
    models = []
    for cls in (cell_cls, _unrolled(cell_cls)):
        gm.set_random_seed(5)
        inp = gm.Input((T,), dtype="int32")
        h = RNN(cls(4, **kw), return_sequences=True)(gm.Embedding(9, D, mask_zero=True)(inp))
        model = gm.Model(inp, gm.Dense(2)(h))
        model.compile(optimizer=gm.optimizers.SGD(0.5), loss="mse")
        models.append(model)
    losses = [[m.train_on_batch(ids, y) for _ in range(2)] for m in models]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    for a, b in zip(models[0].get_weights(), models[1].get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert not np.allclose(models[0].get_weights()[1], models[1].get_weights()[1] * 0 +
                           models[0].get_weights()[1] + 1)  # (weights did move: sanity)


def test_user_cell_gradients_against_finite_differences():
    rnn = RNN(MinimalRNNCell(2), go_backwards=True)
    inp = gm.Input((T, D))
    model = gm.Model(inp, rnn(gm.Masking(0.0)(inp)))
    model.compile(optimizer=gm.optimizers.SGD(1.0), loss="mse")
    x = _x(seed=4) * MASK[..., None]
    y = np.ones((5, 2), np.float32)
    before = [w.astype(np.float64) for w in model.get_weights()]

    def loss(weights):
        _, h = numpy_minimal_rnn(x.astype(np.float64), MASK, *weights, go_backwards=True)
        return ((h - y) ** 2).mean()

    grads = []
    for i, w in enumerate(before):
        g = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            plus = [v.copy() for v in before]
            minus = [v.copy() for v in before]
            plus[i][idx] += 1e-6
            minus[i][idx] -= 1e-6
            g[idx] = (loss(plus) - loss(minus)) / 2e-6
        grads.append(g)
    model.train_on_batch(x, y)
    for b, a, g in zip(before, model.get_weights(), grads, strict=True):
        np.testing.assert_allclose(b - a, g, rtol=1e-3, atol=1e-6)


# ---- StackedRNNCells ------------------------------------------------------------------
def test_stacked_cells_are_the_stacked_layers():
    """Stacked cells with a mask = an LSTM(return_sequences) then a GRU: a masked step
    keeps every state and repeats the last cell's output."""
    gm.set_random_seed(7)
    stacked = RNN(StackedRNNCells([LSTMCell(4), GRUCell(3)]), return_sequences=True,
                  return_state=True)
    seq, (h1, c1), h2 = stacked(_x(), mask=MASK)
    lstm = gm.LSTM(4, return_sequences=True, return_state=True)
    gru = gm.GRU(3, return_sequences=True, return_state=True)
    lstm(_x()[:1])
    gru(np.zeros((1, T, 4), np.float32))
    w = stacked.get_weights()
    lstm.set_weights(w[:3])
    gru.set_weights(w[3:])
    y1, eh1, ec1 = lstm(_x(), mask=MASK)
    y2, eh2 = gru(y1, mask=MASK)
    for ours, want in [(seq, y2), (h1, eh1), (c1, ec1), (h2, eh2)]:
        np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-6)
    assert [v.name for v in stacked.weights] == [
        f"{stacked.name}/{stacked.cell.name}/{c.name}/{n}" for c in stacked.cell.cells
        for n in ("kernel", "recurrent_kernel", "bias")]


@pytest.mark.parametrize("opts", [{"return_sequences": True, "return_state": True},
                                  {"return_sequences": True, "zero_output_for_mask": True},
                                  {"return_state": True}], ids=["states", "zero", "last"])
def test_stacked_builtin_cells_run_coarse_kernels_as_the_unrolled_cells(opts):
    """A stack of built-in cells is one coarse op per cell (same weights); the unrolled
    stack of the same cells (subclasses) gives the same numbers, initial states included."""
    coarse = RNN([LSTMCell(4), GRUCell(3), SimpleRNNCell(2)], **opts)
    unrolled = RNN([_unrolled(LSTMCell)(4), _unrolled(GRUCell)(3),
                    _unrolled(SimpleRNNCell)(2)], **opts)
    assert coarse._coarse_stack() is not None and unrolled._coarse_stack() is None
    coarse(_x()[:1])
    unrolled(_x()[:1])
    unrolled.set_weights(coarse.get_weights())
    rng = np.random.default_rng(9)
    h0 = [[rng.standard_normal((5, 4)).astype(np.float32) for _ in range(2)],
          rng.standard_normal((5, 3)).astype(np.float32),
          rng.standard_normal((5, 2)).astype(np.float32)]
    for state in (None, h0):
        ours = coarse(_x(), mask=MASK, initial_state=state)
        want = unrolled(_x(), mask=MASK, initial_state=state)
        for a, b in zip(gm.layers.rnn_cells.flatten(ours), gm.layers.rnn_cells.flatten(want),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    inp = gm.Input((None, D))  # coarse kernels: no static time axis needed
    model = gm.Model(inp, RNN([LSTMCell(4), GRUCell(3)], name="s")(inp))
    assert sorted(d["op"] for _, d in model.graph.nx.nodes(data=True)
                  if d["op"] in ("lstm", "gru", "prim.matmul")) == ["gru", "lstm"]


def test_a_list_of_cells_is_stacked_and_states_nest_as_keras():
    rnn = RNN([SimpleRNNCell(2), LSTMCell(3)], return_state=True)
    assert isinstance(rnn.cell, StackedRNNCells)
    assert rnn.state_size == [2, [3, 3]] and rnn.cell.output_size == 3
    h0 = [np.ones((5, 2), np.float32), [np.ones((5, 3), np.float32)] * 2]
    out, s1, (s2h, s2c) = rnn(_x(), initial_state=h0, mask=MASK)
    np.testing.assert_array_equal(s1[3], 1)  # the empty row returns its initial state
    np.testing.assert_array_equal(s2c[3], 1)
    np.testing.assert_array_equal(out[:3], s2h[:3])  # the last output of an LSTM is its h
    np.testing.assert_array_equal(out[3], 0)  # ... but no kept step: zeros (Keras)


@pytest.mark.parametrize("cell_cls", [LSTMCell, GRUCell, SimpleRNNCell])
def test_a_cell_called_on_arrays_is_one_step(cell_cls):
    """cell(x_t, states) on NumPy arrays computes one step (Keras's eager cell call): the
    same as the RNN of that cell over a one-step sequence from those states."""
    rng = np.random.default_rng(11)
    cell = cell_cls(3)
    n = 2 if cell_cls is LSTMCell else 1
    states = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(n)]
    x = rng.standard_normal((4, D)).astype(np.float32)
    out, new = cell(x, states)
    rnn = RNN(cell, return_state=True)
    want = rnn(x[:, None, :], initial_state=states)
    np.testing.assert_allclose(out, want[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(new, want[1:], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if cell_cls is not LSTMCell:  # one state given as a tensor comes back as a tensor
        single = cell(x, states[0])[1]
        assert isinstance(single, np.ndarray) and single.shape == (4, 3)


def test_lstm_cell_dropout_runs_the_lstm_layers_dropout():
    """RNN(LSTMCell(dropout=..., recurrent_dropout=..., seed=...)) is LSTM(...) with the
    same arguments: the same masks while fitting (seeded), none in predict."""
    rng = np.random.default_rng(12)
    ids = np.where(MASK, rng.integers(1, 9, MASK.shape), 0)
    y = rng.standard_normal((5, T, 2)).astype(np.float32)
    kw = {"dropout": 0.4, "recurrent_dropout": 0.3, "seed": 5}
    results = []
    for make in (lambda: RNN(LSTMCell(4, **kw), return_sequences=True),
                 lambda: gm.LSTM(4, return_sequences=True, **kw)):
        gm.set_random_seed(1)
        inp = gm.Input((T,), dtype="int32")
        layer = make()
        model = gm.Model(inp, gm.Dense(2)(layer(gm.Embedding(9, D, mask_zero=True)(inp))))
        model.compile(optimizer=gm.optimizers.SGD(0.1), loss="mse")
        before = model.predict(ids, verbose=0)
        losses = [model.train_on_batch(ids, y) for _ in range(3)]
        results.append((before, losses, model.get_weights()))
        assert layer._training_sensitive
    (p1, l1, w1), (p2, l2, w2) = results
    np.testing.assert_array_equal(p1, p2)
    assert l1 == l2
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_array_equal(a, b)
    cell = LSTMCell(4, **kw)
    assert {k: cell.get_config()[k] for k in kw} == kw


def test_dropout_off_the_coarse_kernel_is_refused():
    with pytest.raises(ConfigError, match=r"RNN 'r': the cell UnrolledLSTMCell 'c' has "
                                          r"dropout, which graphmask runs on the coarse LSTM "
                                          r"kernel only"):
        RNN(_unrolled(LSTMCell)(2, dropout=0.2, name="c"), name="r")
    with pytest.raises(ConfigError, match=r"RNN 'r': the cell LSTMCell 'c' has dropout"):
        RNN([LSTMCell(2, recurrent_dropout=0.2, name="c")], go_backwards=True, name="r")
    with pytest.raises(ConfigError, match=r"GRUCell 'g': dropout=0.2 is not supported "
                                          r"\(graphmask's GRUCell has no dropout\)"):
        GRUCell(2, dropout=0.2, name="g")
    with pytest.raises(ConfigError, match=r"LSTMCell 'c': dropout must be a number in "
                                          r"\[0, 1\)"):
        LSTMCell(2, dropout=1.5, name="c")
    cell = LSTMCell(2, dropout=0.5, name="c")
    x, h = np.ones((1, D), np.float32), np.zeros((1, 2), np.float32)
    assert cell(x, [h, h])[0].shape == (1, 2)  # inference: no dropout
    with pytest.raises(ConfigError, match=r"LSTMCell 'c': dropout=0.5, recurrent_dropout=0.0 "
                                          r"run only in RNN\(LSTMCell\(...\)\)"):
        cell(x, [h, h], training=True)


# ---- masks, configs, saving, inspection ------------------------------------------------------
def test_output_masks_as_keras():
    ids = gm.Input((T,), dtype="int32")
    e = gm.Embedding(9, D, mask_zero=True)(ids)
    for cell in (LSTMCell(2), MinimalRNNCell(2)):
        seq = RNN(cell, return_sequences=True)(e)
        last, *states = RNN(type(cell).from_config(cell.get_config()), return_state=True)(e)
        assert seq.keras_mask is not None
        assert last.keras_mask is None and all(s.keras_mask is None for s in states)


@pytest.mark.parametrize("cell", [LSTMCell(3, unit_forget_bias=False, activation="relu"),
                                  GRUCell(3, reset_after=False), SimpleRNNCell(3, use_bias=False),
                                  StackedRNNCells([LSTMCell(2), GRUCell(3)])],
                         ids=lambda c: type(c).__name__)
def test_config_round_trip(cell):
    rnn = RNN(cell, return_sequences=True, go_backwards=True, zero_output_for_mask=True,
              name="r")
    config = rnn.get_config()
    assert config["cell"]["class_name"] == type(cell).__name__
    assert {k: config[k] for k in ("return_sequences", "return_state", "go_backwards",
                                   "stateful", "unroll", "zero_output_for_mask")} == \
        {"return_sequences": True, "return_state": False, "go_backwards": True,
         "stateful": False, "unroll": False, "zero_output_for_mask": True}
    back = RNN.from_config(config)
    assert back.get_config() == config
    rnn(_x()[:1])
    back(_x()[:1])
    back.set_weights(rnn.get_weights())
    np.testing.assert_array_equal(back(_x(), mask=MASK), rnn(_x(), mask=MASK))


def test_cell_defaults_are_keras():
    lstm = LSTMCell(3).get_config()
    assert {k: lstm[k] for k in ("activation", "recurrent_activation", "use_bias",
                                 "unit_forget_bias", "kernel_initializer",
                                 "recurrent_initializer", "bias_initializer", "dropout",
                                 "recurrent_dropout", "seed")} == {
        "activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
        "unit_forget_bias": True, "kernel_initializer": "glorot_uniform",
        "recurrent_initializer": "orthogonal", "bias_initializer": "zeros", "dropout": 0.0,
        "recurrent_dropout": 0.0, "seed": None}
    assert GRUCell(3).reset_after is True and GRUCell(3).state_size == 3
    assert LSTMCell(3).state_size == [3, 3] and SimpleRNNCell(3).output_size == 3
    cell = LSTMCell(2)
    cell.build((None, 4))
    np.testing.assert_array_equal(cell.bias.value, [0, 0, 1, 1, 0, 0, 0, 0])


def test_save_and_load(tmp_path):
    gm.saving.register_serializable(package="tests")(MinimalRNNCell)
    ids = gm.Input((T,), dtype="int32")
    e = gm.Embedding(9, D, mask_zero=True)(ids)
    h = RNN([LSTMCell(3), GRUCell(2)], return_sequences=True)(e)
    h = RNN(MinimalRNNCell(2), go_backwards=True)(h)
    model = gm.Model(ids, gm.Dense(1)(RNN(SimpleRNNCell(2))(gm.RepeatVector(T)(h))))
    x = np.where(MASK, 3, 0)
    model.save(tmp_path / "m.gmz")
    back = gm.load_model(tmp_path / "m.gmz")
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))


def test_inspection_shows_the_rnn():
    ids = gm.Input((T,), dtype="int32", name="ids")
    e = gm.Embedding(9, D, mask_zero=True, name="emb")(ids)
    h = RNN(MinimalRNNCell(2), return_sequences=True, name="cells")(e)
    model = gm.Model(ids, RNN(LSTMCell(2), name="last")(h))
    text = model.summary(return_string=True)
    assert "cells (RNN)" in text and "last (RNN)" in text
    assert "read and passed by 'cells' (call takes mask) -> consumed by 'last'" in \
        gm.inspect.explain_mask(model, "cells")
    from graphmask import viz
    dot = viz.to_dot(model)
    assert "cells" in dot and "last" in dot
    svg = viz.to_svg(model)  # the mask-flow picture, drawn without Graphviz
    assert svg.lstrip().startswith("<?xml") and "cells" in svg and "last" in svg


def test_padding_invariance_of_unrolled_and_coarse_rnns():
    """graphmask.testing's padding checks hold for every node of the unrolled graph (a
    masked step's input is zeros, so nothing there depends on padded values) and for
    the coarse kernels, with losses and gradients."""
    from graphmask.testing import check_padding_invariance

    x = np.array([[3, 1, 4, 0, 0], [0, 5, 8, 2, 6], [1, 0, 2, 0, 3]])
    for free, make in [(False, lambda: RNN(MinimalRNNCell(3), return_sequences=True,
                                           go_backwards=True)),
                       (False, lambda: RNN([LSTMCell(3), _unrolled(GRUCell)(2)],
                                           return_sequences=True)),
                       (True, lambda: RNN([LSTMCell(3), GRUCell(2)], return_sequences=True))]:
        ids = gm.Input((None if free else T,), dtype="int32")
        h = make()(gm.Embedding(9, D, mask_zero=True)(ids))
        model = gm.Model(ids, gm.Dense(2)(RNN(TwoStateCell() if not free else LSTMCell(4))(h)))
        model.compile(optimizer="sgd", loss="mse")
        report = str(check_padding_invariance(model, x, y=np.zeros((3, 2), np.float32)))
        assert "random values at masked positions" in report
        assert ("padding timestep(s) appended" in report) == free


class CellWithDense(gm.layers.Layer):
    """A cell whose weights live in a nested layer, made in its first call."""

    state_size = 2

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.proj = gm.Dense(2, activation="tanh", name="proj")

    def call(self, inputs, states):
        h = self.proj(ops.concatenate([inputs, states[0]], axis=-1))
        return h, [h]


def test_cell_weights_are_named_by_their_path_and_never_collide():
    """Two RNNs whose cells have the same name (Bidirectional's two copies) keep apart:
    each cell weight is named by its path, as Keras 3's (rnn/cell/weight)."""
    a = RNN(LSTMCell(2, name="same"), name="a")
    b = RNN.from_config({**a.get_config(), "name": "b"})
    c = RNN(CellWithDense(name="mine"), name="c")
    inp = gm.Input((T, D))
    model = gm.Model(inp, [a(inp), b(inp), c(inp)])
    names = [v.name for v in model.weights]
    assert names == ["a/same/kernel", "a/same/recurrent_kernel", "a/same/bias",
                     "b/same/kernel", "b/same/recurrent_kernel", "b/same/bias",
                     "c/mine/proj/kernel", "c/mine/proj/bias"]
    out_a, out_b, _ = model.predict(_x(), verbose=0)
    b.set_weights([w + 1.0 for w in a.get_weights()])
    out_a2, out_b2, _ = model.predict(_x(), verbose=0)
    np.testing.assert_array_equal(out_a, out_a2)  # a's weights untouched by b's
    assert not np.allclose(out_b, out_b2)
    shared = LSTMCell(2, name="shared")
    shared(np.ones((1, D), np.float32), [np.zeros((1, 2), np.float32)] * 2)  # builds it
    RNN(shared, name="d")(inp)  # a cell built before the RNN keeps its names
    assert shared.weights[0].name == "shared/kernel"


def test_weights_are_created_once_and_shared_by_every_step():
    rnn = RNN(MinimalRNNCell(3), return_sequences=True)
    inp = gm.Input((T, D))
    model = gm.Model(inp, rnn(inp))
    assert rnn.count_params() == D * 3 + 9
    variables = [n for n, d in model.graph.nx.nodes(data=True) if d["op"] == "variable"]
    assert len(variables) == 2


# ---- errors -------------------------------------------------------------------------
class NoStateSize(gm.layers.Layer):
    def call(self, inputs, states):
        return inputs, states


class WrongStateCount(MinimalRNNCell):
    def call(self, inputs, states):
        out, _ = super().call(inputs, states)
        return out, [out, out]


class WrongStateWidth(MinimalRNNCell):
    def call(self, inputs, states):
        out, _ = super().call(inputs, states)
        return out, [ops.concatenate([out, out], axis=-1)]


def test_errors_name_the_layer():
    with pytest.raises(ConfigError, match=r"RNN 'r': the cell NoStateSize 'c' has no "
                                          r"`state_size`"):
        RNN(NoStateSize(name="c"), name="r")
    with pytest.raises(ConfigError, match=r"RNN 'r': cell must be a cell instance, got the "
                                          r"class LSTMCell"):
        RNN(LSTMCell, name="r")
    unrolled = r"RNN 'r': stateful=True runs on the coarse kernels of LSTMCell, GRUCell and "
    with pytest.raises(ConfigError, match=unrolled + r".*unrolls its cell MinimalRNNCell 'c'"):
        RNN(MinimalRNNCell(2, name="c"), stateful=True, name="r")
    with pytest.raises(ConfigError, match=unrolled + r".*StackedRNNCells"):
        RNN([LSTMCell(2), GRUCell(2)], stateful=True, go_backwards=True, name="r")
    with pytest.raises(ConfigError, match=r"GRUCell 'c': units must be a positive int, "
                                          r"got 0"):
        GRUCell(0, name="c")
    bad = MinimalRNNCell(2, name="c")
    bad.state_size = [2, "x"]
    with pytest.raises(ConfigError, match=r"state_size of MinimalRNNCell 'c' must be a "
                                          r"positive int or a list of them.*\[2, 'x'\]"):
        RNN(bad)


class OnesInitialState(MinimalRNNCell):
    def get_initial_state(self, batch_size=None):
        return [np.ones((batch_size, self.units), np.float32)]


class ZerosInitialState(MinimalRNNCell):
    def get_initial_state(self, batch_size=None):
        return [np.zeros((batch_size, self.units), np.float32)]


def test_a_cells_get_initial_state_must_give_zeros():
    with pytest.raises(ConfigError, match=r"RNN 'r': the cell OnesInitialState 'c' defines "
                                          r"get_initial_state\(\), which graphmask does not "
                                          r"call: every state starts at zeros"):
        RNN([GRUCell(2), OnesInitialState(2, name="c")], name="r")
    RNN(ZerosInitialState(2))  # zeros: what graphmask starts from
    assert [a.shape for a in LSTMCell(3).get_initial_state(batch_size=2)] == [(2, 3), (2, 3)]
    np.testing.assert_array_equal(GRUCell(3).get_initial_state(batch_size=1)[0], 0)


def test_bad_cell_results_are_clear_errors():
    inp = gm.Input((T, D))
    with pytest.raises(ConfigError, match=r"RNN 'r': the cell WrongStateCount 'c' returned 2 "
                                          r"state\(s\) at step 0; its state_size 2 needs 1"):
        RNN(WrongStateCount(2, name="c"), name="r")(inp)
    with pytest.raises(ShapeError, match=r"RNN 'r': the cell WrongStateWidth 'c' returned "
                                         r"state 0 of shape \(None, 4\) at step 0; its "
                                         r"state_size 2 needs \(batch, 2\)"):
        RNN(WrongStateWidth(2, name="c"), name="r")(inp)


class WrongOutputSize(MinimalRNNCell):
    output_size = 5


class NoStates(MinimalRNNCell):
    def call(self, inputs, states):
        return super().call(inputs, states)[0]


def test_bad_outputs_and_calls_are_clear_errors():
    inp = gm.Input((T, D))
    with pytest.raises(ShapeError, match=r"RNN 'r': the cell WrongOutputSize 'c' returned an "
                                         r"output of shape \(None, 2\) at step 0; it must be "
                                         r"\(batch, 5\) \(its output_size\)"):
        RNN(WrongOutputSize(2, name="c"), name="r")(inp)
    with pytest.raises(ConfigError, match=r"RNN 'r': the cell NoStates 'c' must return "
                                          r"\(output, new_states\), got SymbolicTensor"):
        RNN(NoStates(2, name="c"), name="r")(inp)
    with pytest.raises(ConfigError, match=r"RNN 'r': call it on one \(batch, timesteps, "
                                          r"features\) tensor"):
        RNN(LSTMCell(2), name="r")([inp, inp])
    with pytest.raises(ShapeError, match=r"RNN 'r': unroll=True needs a known number of "
                                         r"timesteps"):
        RNN(LSTMCell(2), unroll=True, name="r")(gm.Input((None, D)))
    with pytest.raises(ShapeError, match=r"RNN 'r': input must be \(batch, timesteps, "
                                         r"features\) with known features, got shape "
                                         r"\(None, 3\)"):
        RNN(MinimalRNNCell(2), name="r")(gm.Input((D,)))


def test_unknown_time_axis_with_an_unrolled_cell():
    with pytest.raises(ShapeError, match=r"RNN 'r': the cell MinimalRNNCell 'c' is unrolled "
                                         r".*Input\(shape=\(T, 3\)\), got shape "
                                         r"\(None, None, 3\)"):
        RNN(MinimalRNNCell(2, name="c"), name="r")(gm.Input((None, D)))
    out = RNN(LSTMCell(2))(gm.Input((None, D)))  # the coarse kernels need no static T
    assert out.shape == (None, 2)


def test_bad_initial_states_change_nothing():
    inp, rnn = gm.Input((T, D)), RNN([LSTMCell(2), GRUCell(3)], name="r")
    with pytest.raises(ConfigError, match=r"RNN 'r': initial_state must hold 3 tensor\(s\), "
                                          r"nested as the cell's state_size \[\[2, 2\], 3\], "
                                          r"got 2"):
        rnn(inp, initial_state=[gm.Input((2,)), gm.Input((2,))])
    with pytest.raises(ShapeError, match=r"RNN 'r': initial_state\[2\] must have shape "
                                         r"\(None, 3\).*got \(None, 4\)"):
        rnn(inp, initial_state=[[gm.Input((2,)), gm.Input((2,))], gm.Input((4,))])
    assert not rnn.built and rnn.weights == []
    with pytest.raises(ShapeError, match=r"RNN 'q': initial_state\[1\] \(c\) must have shape"):
        RNN(LSTMCell(2), name="q")(inp, initial_state=[gm.Input((2,)), gm.Input((5,))])
