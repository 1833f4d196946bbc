"""The recurrent kernels' layout helpers (NumPy, nothing compiled) give exactly the layout
the kernels index: compact rows per step and gate columns packed per unit chunk, checked
against plain loops over the definitions (graphmask/kernels/lstm.py)."""
import numpy as np
import pytest

import graphmask.kernels.gru as KG
import graphmask.kernels.lstm as K


def _schedule_loops(mask, backwards):
    B, T = mask.shape
    offsets, rows = [0], []
    for t in range(T):
        ts = T - 1 - t if backwards else t
        rows += [b for b in range(B) if mask[b, ts]]
        offsets.append(len(rows))
    return np.array(offsets, np.int64), np.array(rows, np.int64)


def _packed_columns(H, ng, chunk=K.UNIT_CHUNK):
    """Source column of each packed column: chunk q's gate blocks side by side."""
    cols = []
    for q in range(0, H, chunk):
        uq = min(chunk, H - q)
        cols += [g * H + q + k for g in range(ng) for k in range(uq)]
    return np.array(cols)


@pytest.mark.parametrize("B,T", [(5, 7), (32, 40), (1, 1), (3, 0), (0, 4)])
@pytest.mark.parametrize("backwards", [False, True])
def test_schedule_is_the_kept_rows_step_by_step(B, T, backwards):
    mask = np.random.default_rng(B * 100 + T).random((B, T)) < 0.6
    if B > 2 and T:
        mask[1] = False  # a sample with no kept step
        mask[2] = True
    offsets, rows = K.lstm_schedule(mask, backwards)
    want_offsets, want_rows = _schedule_loops(mask, backwards)
    np.testing.assert_array_equal(offsets, want_offsets)
    np.testing.assert_array_equal(rows, want_rows)
    for a in (offsets, rows):  # what the kernels take
        assert a.dtype == np.int64 and a.ndim == 1 and a.flags.c_contiguous


@pytest.mark.parametrize("H", [1, 5, 16, 17, 40, 128])
@pytest.mark.parametrize("chunk", [K.UNIT_CHUNK, KG.UNIT_CHUNK])
def test_unit_chunks(H, chunk):
    uoff = K.unit_chunks(H, chunk)
    want = [min(q * chunk, H) for q in range(-(-H // chunk) + 1)]
    assert uoff.dtype == np.int64 and uoff.tolist() == want
    assert K.unit_chunks(H).tolist() == K.unit_chunks(H, K.UNIT_CHUNK).tolist()


@pytest.mark.parametrize("H", [1, 7, 16, 40, 128])
@pytest.mark.parametrize("ng", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk", [K.UNIT_CHUNK, KG.UNIT_CHUNK])  # the LSTM's, the GRU's
def test_gate_packing_matches_its_definition(H, ng, dtype, chunk):
    R = 6
    W = np.random.default_rng(H * ng).normal(size=(R, ng * H)).astype(dtype)
    uoff = K.unit_chunks(H, chunk)
    cols = _packed_columns(H, ng, chunk)
    P = K.permute_gates(W, uoff, ng)
    np.testing.assert_array_equal(P, W[:, cols])
    np.testing.assert_array_equal(K.unpermute_gates(P, uoff, ng), W)
    flat = K.pack_gates(W, uoff, ng)
    want = np.concatenate([W[:, cols[ng * uoff[q]:ng * uoff[q + 1]]].ravel()
                           for q in range(uoff.size - 1)])
    np.testing.assert_array_equal(flat, want)
    for a in (P, flat):
        assert a.dtype == dtype and a.flags.c_contiguous
    if ng == 4:  # the LSTM's names
        np.testing.assert_array_equal(K.permute(W, uoff), P)
        np.testing.assert_array_equal(K.unpermute(P, uoff), W)
        np.testing.assert_array_equal(K.pack(W, uoff), flat)
    np.testing.assert_array_equal(KG.pack(W, uoff, ng), flat)
    np.testing.assert_array_equal(KG.unpermute(KG.permute(W, uoff, ng), uoff, ng), W)


def test_packing_a_view_and_an_empty_matrix():
    H = 20
    uoff = K.unit_chunks(H)
    W = np.random.default_rng(0).normal(size=(4, 8 * H)).astype(np.float32)[:, ::2]
    np.testing.assert_array_equal(K.pack(W, uoff), K.pack(np.ascontiguousarray(W), uoff))
    assert K.pack(np.zeros((0, 4 * H), np.float32), uoff).shape == (0,)
    assert K.permute(np.zeros((0, 4 * H), np.float32), uoff).shape == (0, 4 * H)


@pytest.mark.parametrize("H", [1, 5, 16, 20, 33, 128])
@pytest.mark.parametrize("R", [1, 3, 64])
def test_scaling_a_gate_in_the_packed_layout_scales_exactly_its_columns(H, R):
    """The forward doubles the g columns (tanh as 2 sigmoid(2x) - 1) after packing:
    the same array as packing the doubled matrix, other gates untouched."""
    rng = np.random.default_rng(H * 100 + R)
    W = rng.normal(size=(R, 4 * H)).astype(np.float32)
    uoff = K.unit_chunks(H)
    doubled = W.copy()
    doubled[:, 2 * H:3 * H] *= 2
    P = K.pack(W, uoff)
    out = K.scale_packed_gate(P, R, uoff, 2, 2)
    assert out is P
    np.testing.assert_array_equal(P, K.pack(doubled, uoff))
