"""Side-by-side steps: the scheduler pairs independent recurrent loops (the two
directions of a Bidirectional layer, forward and backward) and the runtime runs each
pair at once, one thread each. Inference results are identical to running them one
after the other; training differs only by the rounding of the recurrent weight
gradients (summed over one share of rows per thread)."""
import numba
import numpy as np
import pytest

import graphmask as gm
from graphmask import runtime
from graphmask.ir.graph import Graph
from graphmask.ops import get_op

B, T, V = 6, 9, 30


def _ids():
    rng = np.random.default_rng(3)
    ids = rng.integers(1, V, (B, T)).astype("int32")
    lengths = np.array([9, 4, 0, 7, 1, 5])  # an empty row too
    ids[np.arange(T)[None] >= lengths[:, None]] = 0
    ids[3, 2] = 0  # a hole
    return ids


def _tagger(rnn=gm.LSTM, merge_mode="concat"):
    gm.clear_session()
    gm.set_random_seed(5)
    x = gm.Input(shape=(None,), dtype="int32")
    e = gm.Embedding(V, 8, mask_zero=True)(x)
    hs = gm.Bidirectional(rnn(16, return_sequences=True), merge_mode=merge_mode)(e)
    m = gm.Model(x, gm.Dense(5, activation="softmax")(hs))
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return m


def _pairs(plan):
    return [(st.label, plan.steps[i + 1].label, st.op.name, plan.steps[i + 1].op.name)
            for i, st in enumerate(plan.steps) if st.with_next]


@pytest.mark.parametrize("rnn, name", [(gm.LSTM, "lstm"), (gm.GRU, "gru"),
                                       (gm.SimpleRNN, "simple_rnn")])
def test_bidirectional_directions_are_paired_forward_and_backward(rnn, name):
    m = _tagger(rnn)
    m.predict_on_batch(_ids())
    m.train_on_batch(_ids(), np.zeros((B, T), "int32"))
    fwd = f"forward_{name}"
    bwd = f"backward_{name}"
    assert _pairs(m._plan("predict")) == [(fwd, bwd, name, name)]
    assert _pairs(m._plan("train")) == [(fwd, bwd, name, name), (bwd, fwd, "vjp", "vjp")]


@pytest.mark.parametrize("seed", [None, 7])
def test_training_loops_drawing_unseeded_dropout_masks_run_alone(seed):
    """Unseeded dropout masks come from the global generator: two loops drawing at once
    would draw in an order set by timing, so their training forwards are not paired
    (their VJPs draw nothing and still are); seeded layers have their own streams."""
    gm.clear_session()
    x = gm.Input(shape=(None,), dtype="int32")
    e = gm.Embedding(V, 8, mask_zero=True)(x)
    hs = gm.Bidirectional(gm.LSTM(16, return_sequences=True, dropout=0.3, seed=seed))(e)
    m = gm.Model(x, gm.Dense(5, activation="softmax")(hs))
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    m.train_on_batch(_ids(), np.zeros((B, T), "int32"))
    m.predict_on_batch(_ids())
    loops = [("forward_lstm", "backward_lstm", "lstm", "lstm")]
    grads = [("backward_lstm", "forward_lstm", "vjp", "vjp")]
    assert _pairs(m._plan("train")) == (grads if seed is None else loops + grads)
    assert _pairs(m._plan("predict")) == loops


def test_a_single_lstm_is_never_paired():
    gm.clear_session()
    x = gm.Input(shape=(None,), dtype="int32")
    h = gm.LSTM(4, return_sequences=True)(gm.Embedding(V, 3, mask_zero=True)(x))
    m = gm.Model(x, gm.LSTM(4)(h))  # two LSTMs, the second reads the first
    m.compile(optimizer="sgd", loss="mse")
    m.train_on_batch(_ids(), np.zeros((B, 4), "float32"))
    assert _pairs(m._plan("train")) == []


def _run_both(fn):
    """``fn()`` with side-by-side steps on, then off."""
    on = fn()
    runtime.SIDE_BY_SIDE = False
    try:
        off = fn()
    finally:
        runtime.SIDE_BY_SIDE = True
    return on, off


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                    reason="one numba thread: steps never run side by side")
@pytest.mark.parametrize("rnn", [gm.LSTM, gm.GRU])
def test_results_equal_one_after_the_other(rnn):
    ids = _ids()
    y = np.random.default_rng(1).integers(0, 5, (B, T)).astype("int32")

    def run():
        m = _tagger(rnn)
        pred = m.predict_on_batch(ids)
        losses = [m.train_on_batch(ids, y) for _ in range(3)]
        return pred, losses, m.get_weights(), m.evaluate(ids, y, verbose=0)
    (p1, l1, w1, e1), (p2, l2, w2, e2) = _run_both(run)
    np.testing.assert_array_equal(p1, p2)  # inference: bit-identical
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(e1, e2, rtol=1e-5)


def test_one_numba_thread_runs_the_pairs_one_after_the_other(monkeypatch):
    ids = _ids()
    m = _tagger()
    expected = m.predict_on_batch(ids)
    calls = []
    monkeypatch.setattr(runtime, "_worker", lambda: calls.append(1))  # must not be used
    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        got = m.predict_on_batch(ids)
    finally:
        numba.set_num_threads(saved)
    np.testing.assert_array_equal(got, expected)
    assert calls == []


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                    reason="one numba thread: steps never run side by side")
@pytest.mark.parametrize("failing", ["forward_lstm", "backward_lstm"])
def test_an_error_in_either_step_names_its_layer(monkeypatch, failing):
    m = _tagger()
    ids = _ids()
    m.predict_on_batch(ids)
    lstm = get_op("lstm")
    forward = lstm.forward
    backwards = failing == "backward_lstm"

    def broken(attrs, inputs):
        if bool(attrs["go_backwards"]) == backwards:
            raise RuntimeError("boom")
        return forward(attrs, inputs)
    monkeypatch.setattr(lstm, "forward", broken)
    with pytest.raises(runtime.KernelError, match=rf"layer '{failing}' "
                                                  r"\(lstm\): kernel failed with "
                                                  r"RuntimeError: boom"):
        m.predict_on_batch(ids)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                    reason="one numba thread: steps never run side by side")
@pytest.mark.parametrize("rnn, batch, paired", [(gm.LSTM, 31, True), (gm.LSTM, 32, False),
                                                (gm.LSTM, 64, False), (gm.GRU, 64, True)])
def test_lstm_pairs_run_one_after_the_other_from_32_samples(monkeypatch, rnn, batch, paired):
    """From 32 samples an LSTM runs by sample groups on all threads, faster than one
    thread per direction, so the runtime does not pair it (``side_by_side_max_batch``);
    the GRU has no sample groups and still pairs. Results are the same either way."""
    rng = np.random.default_rng(2)
    ids = rng.integers(1, V, (batch, T)).astype("int32")
    ids[:, 6:] = 0
    y = np.zeros((batch, T), "int32")
    m = _tagger(rnn)
    m.train_on_batch(ids, y)
    runtime.SIDE_BY_SIDE = False
    try:
        expected = m.predict_on_batch(ids)
    finally:
        runtime.SIDE_BY_SIDE = True
    pairs = []
    worker = runtime._worker
    monkeypatch.setattr(runtime, "_worker", lambda: pairs.append(1) or worker())
    np.testing.assert_array_equal(m.predict_on_batch(ids), expected)
    m.train_on_batch(ids, y)
    assert len(pairs) == (3 if paired else 0)  # predict, training forward and VJPs


# ---------------------------------------------------------------- the pairing itself

class _Heavy:
    side_by_side = True


class _Light:
    side_by_side = False


def _graph(edges, heavy):
    """A bare graph (node ids 0..n-1) and ops looked up by name: 'h' long-running."""
    g = Graph()
    n = 1 + max(max(e) for e in edges)
    for i in range(n):
        g.nx.add_node(i, op="h" if i in heavy else "l", attrs={})
    for u, v in edges:
        g.nx.add_edge(u, v)
    return g


@pytest.fixture
def fake_ops(monkeypatch):
    from passes import schedule
    monkeypatch.setattr(schedule, "get_op", lambda name: _Heavy() if name == "h" else _Light())
    return schedule


def test_pairing_moves_the_partners_ancestors_before_and_keeps_a_topological_order(fake_ops):
    # 0 -> 1(h) -> 4 ; 0 -> 2 -> 3(h) -> 4 ; 1 and 3 are independent
    g = _graph([(0, 1), (1, 4), (0, 2), (2, 3), (3, 4)], heavy={1, 3})
    order = fake_ops._pair_side_by_side(g, [0, 1, 2, 3, 4])
    assert list(order) == [0, 2, 1, 3, 4]
    assert order.pairs == (1,)
    assert all(order.index(u) < order.index(v) for u, v in g.nx.edges())


def test_dependent_loops_are_not_paired_and_each_loop_pairs_once(fake_ops):
    # 1(h) -> 2(h) (dependent); 3(h), 4(h), 5(h) independent of each other and of 1, 2
    g = _graph([(0, 1), (1, 2), (0, 3), (0, 4), (0, 5), (2, 6), (3, 6), (4, 6), (5, 6)],
               heavy={1, 2, 3, 4, 5})
    order = fake_ops._pair_side_by_side(g, [0, 1, 2, 3, 4, 5, 6])
    pairs = [(n, order[order.index(n) + 1]) for n in order.pairs]
    assert pairs == [(1, 3), (2, 4)]
    assert all(order.index(u) < order.index(v) for u, v in g.nx.edges())
