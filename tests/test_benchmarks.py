"""The benchmark scripts' own arithmetic (importable without torch): bench_scaling's FLOP
count of W1, its sweep points, and bench_memory's table."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import bench_memory  # noqa: E402
import bench_scaling  # noqa: E402


def test_flops_of_a_tiny_case_by_hand():
    # lengths 3 and 1: N = 4 kept rows; D = 2, H = 1, O = 2
    # forward 2 * 4 * (4*1*2 + 4*1*1 + 1*2) = 8 * 14 = 112; train 3 * 112
    assert bench_scaling.gemm_flops([3, 1], h=1, kind="W1-predict", d=2, out=2) == 112
    assert bench_scaling.gemm_flops([3, 1], h=1, kind="W1", d=2, out=2) == 336
    # W1's shapes: D = 64, O = 32, H = 128, 10 kept rows: 2 * 10 * (32768 + 65536 + 4096)
    assert bench_scaling.gemm_flops(np.array([7, 3, 0]), h=128, kind="W1-predict") == 2048000


def _counted_lstm_step(lengths, d, h, out):
    """A NumPy W1 step over kept rows whose every matrix product counts 2 m k n FLOPs:
    the count the formula must match."""
    rng = np.random.default_rng(0)
    flops = [0, 0]  # forward, backward

    def mm(a, b, phase):
        flops[phase] += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return a @ b

    B, T = len(lengths), max(lengths)
    K, R = rng.normal(size=(d, 4 * h)), rng.normal(size=(h, 4 * h))
    W = rng.normal(size=(h, out))
    x = rng.normal(size=(B, T, d))
    rows = [[b for b in range(B) if lengths[b] > t] for t in range(T)]
    hs, cs, tape = np.zeros((B, h)), np.zeros((B, h)), []
    ys = []
    for t in range(T):
        r = rows[t]
        z = mm(x[r, t], K, 0) + mm(hs[r], R, 0)
        i, f, g, o = np.split(z, 4, axis=1)
        sg = 1 / (1 + np.exp(-np.stack([i, f, o])))
        c = sg[1] * cs[r] + sg[0] * np.tanh(g)
        tape.append((r, hs[r].copy(), x[r, t]))
        cs[r], hs[r] = c, sg[2] * np.tanh(c)
        ys.append(mm(hs[r], W, 0))
    # backward: each product's two gradients (gate math elided: dz stands in for it)
    for t in reversed(range(T)):
        r, hp, xt = tape[t]
        dy = np.ones((len(r), out))
        mm(dy, W.T, 1), mm(hs[r].T, dy, 1)  # Dense: dh, dW
        dz = np.ones((len(r), 4 * h))
        mm(dz, R.T, 1), mm(hp.T, dz, 1)  # recurrent: dh_{t-1}, dR
        mm(dz, K.T, 1), mm(xt.T, dz, 1)  # input projection: dx, dK
    return flops


@pytest.mark.parametrize("lengths, h", [([3, 1], 1), ([5, 2, 4], 3), ([1, 1], 8)])
def test_flops_match_a_counted_step(lengths, h):
    fwd, bwd = _counted_lstm_step(lengths, d=2, h=h, out=2)
    assert bench_scaling.gemm_flops(lengths, h=h, kind="W1-predict", d=2, out=2) == fwd
    assert bench_scaling.gemm_flops(lengths, h=h, kind="W1", d=2, out=2) == fwd + bwd


def test_sweep_points_change_one_thing_from_w1():
    pts = bench_scaling.points()
    assert len(pts) == 6 + 6 + 4 + 6
    for sweep, value, p in pts:
        assert p[sweep] == value
        assert {k: v for k, v in p.items() if k != sweep} == \
            {k: v for k, v in bench_scaling.W1.items() if k != sweep}


def test_memory_table_separates_import_from_training():
    mib = 1 << 20
    rows = [{"lib": "python + numpy", "import": 30 * mib, "peak": 30 * mib,
             "after_first": 29 * mib, "after_last": 29 * mib},
            {"lib": "graphmask", "import": 200 * mib, "peak": 260 * mib,
             "after_first": 250 * mib, "after_last": 251 * mib, "workspace": 7 * mib}]
    lines = bench_memory.table(rows, 100).splitlines()
    assert lines[0].startswith("| process | import | peak | training (peak - import) |")
    assert lines[2] == "| python + numpy | 30.0 | 30.0 |  | 29.0 | 29.0 | +0.0 |  |"
    assert lines[3] == "| graphmask | 200.0 | 260.0 | 60.0 | 250.0 | 251.0 | +1.0 | 7.0 |"


def _fake_results():
    rows = []
    for sweep, value, p in bench_scaling.points():
        for kind in bench_scaling.KINDS:
            rows.append({"sweep": sweep, "value": value, "kind": kind, **p, "kept": 100,
                         "flops": 2_000_000_000, "graphmask_ms": 20.0,
                         "torch padded+mask_ms": 30.0, "torch packed_ms": 25.0,
                         "best_peer": "torch packed", "ratio": 0.8})
    return {"peak_flops": {"1": 200e9, "2": 100e9}, "threads": 2,
            "load_average": {"min": 1.0, "max": 2.0, "mean": 1.5}, "rows": rows}


def test_bound_uses_the_best_measured_peak_and_the_table_and_plot_show_it(tmp_path):
    res = _fake_results()
    assert bench_scaling.bound_ms(res, res["rows"][0]) == 10.0  # 2 GFLOP at 200 GFLOP/s
    assert bench_scaling.peer_ms(res["rows"][0]) == 25.0
    table = bench_scaling.markdown(res).splitlines()
    assert table[2] == ("| T | 25 | train | 100 | 20.00 ms | 30.00 ms | 25.00 ms | **0.80** | "
                        "10.00 ms | 2.0x |")
    assert len(table) == 2 + 2 * 22
    path = tmp_path / "scaling.png"
    bench_scaling.plot(res, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
