"""``ops/rnn_state.py``: the carried state of the stateful lstm, gru and simple_rnn ops.

A stateful call (``state_key``) is the stateless op started from the carried state:
same outputs, the final state stored, the start state as the last residual(s), and the
VJP of the stateless op from that start state (the weights' gradients; no gradient
reaches the carried state, which is not a port).
"""
from __future__ import annotations

import numpy as np
import pytest

from graphmask.ops import rnn_state
from graphmask.ops.base import OpError, Spec, get_op
from tests.ops.harness import random_mask

B, T, D, H = 4, 5, 3, 2
GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}
PORTS = {"lstm": ("h0", "c0"), "gru": ("h0",), "simple_rnn": ("h0",)}
ATTRS = {
    "lstm": {"units": H, "return_sequences": True, "return_state": True},
    "gru": {"units": H, "return_sequences": True, "return_state": True},
    "gru_reset_before": {"units": H, "return_sequences": True, "reset_after": False},
    "simple_rnn": {"units": H, "return_sequences": True, "go_backwards": True},
}


def _op(case):
    return get_op(case.split("_reset")[0])


def _inputs(case, rng, mask="holes"):
    name = _op(case).name
    g = GATES[name]
    bias = (2, 3 * H) if case == "gru" else (g * H,)
    x = rng.standard_normal((B, T, D))
    m = random_mask(rng, B, T, kind=mask)
    m[1] = False  # an empty row
    return {"x": x, "mask": m, "kernel": rng.standard_normal((D, g * H)) * 0.6,
            "recurrent_kernel": rng.standard_normal((H, g * H)) * 0.6,
            "bias": rng.standard_normal(bias) * 0.3}


def _n_visible(op, attrs, inputs):
    return len(op.infer(attrs, {p: Spec(a.shape, str(a.dtype)) for p, a in inputs.items()}))


@pytest.mark.parametrize("case", ATTRS)
def test_a_stateful_call_is_the_stateless_op_from_the_carried_state(case):
    op, rng = _op(case), np.random.default_rng(0)
    ports = PORTS[op.name]
    key = rnn_state.state_key("layer")
    rnn_state.new_state(key, B, H, "float64", len(ports))
    attrs = {**ATTRS[case], "state_key": key}
    plain = ATTRS[case]
    start = [np.zeros((B, H))] * len(ports)
    for _ in range(3):
        inputs = _inputs(case, rng)
        outs = op.forward(attrs, inputs)
        assert len(outs) == _n_visible(op, attrs, inputs) + op.n_residuals(attrs)
        assert op.n_residuals(attrs) == op.n_residuals(plain) + len(ports)
        given = {**inputs, **dict(zip(ports, start))}
        want = op.forward(plain, given)
        n = _n_visible(op, plain, given)
        for a, b in zip(outs[:n], want[:n]):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(outs[-len(ports):], start):  # the start state, as residuals
            np.testing.assert_array_equal(a, b)
        final = op.reference({**plain, "return_state": True}, given)[1:]
        carried = rnn_state.get_state(key)
        for a, b in zip(carried, final):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(carried[0][1], start[0][1])  # the empty row stays
        # the VJP: the stateless op's from the start state
        grads = [rng.standard_normal(o.shape) for o in outs[:n]]
        wrt = ["x", "kernel", "recurrent_kernel", "bias"]
        got = op.vjp(attrs, inputs, outs, grads, wrt)
        ref = op.vjp(plain, given, want, grads, wrt)
        for p in wrt:
            np.testing.assert_allclose(got[p], ref[p], rtol=1e-12, atol=1e-14, err_msg=p)
        start = list(carried)
    rnn_state.reset_state(key)
    assert not any(np.any(s) for s in rnn_state.get_state(key))


def test_errors_and_an_unknown_key():
    op = get_op("gru")
    inputs = _inputs("gru", np.random.default_rng(1))
    with pytest.raises(OpError, match=r"gru\(units=2\): no carried state for 'nowhere#0' "
                                      r"\(the stateful layer was not built\)"):
        op.forward({**ATTRS["gru"], "state_key": "nowhere#0"}, inputs)
    key = rnn_state.state_key("g")
    rnn_state.new_state(key, B + 1, H, "float64", 1)
    before = rnn_state.get_state(key)
    with pytest.raises(OpError, match=r"gru\(units=2\): a stateful layer needs the same batch "
                                      r"size at every call: its state holds 5 samples, the "
                                      r"batch has 4"):
        op.forward({**ATTRS["gru"], "state_key": key}, inputs)
    np.testing.assert_array_equal(rnn_state.get_state(key)[0], before[0])
    assert rnn_state.get_state("never#1") is None
    assert rnn_state.state_key("g") != rnn_state.state_key("g")
