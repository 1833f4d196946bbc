"""Speed of the Conv1D and 1-D pooling ops against PyTorch and a composed NumPy version.

Run from the repository root:

    python benchmarks/bench_conv.py [--threads N]

Workload: x (32, 200, 64) float32 channels_last; Conv1D(128, kernel_size 5,
padding "same") with bias, forward and forward + backward (input, kernel, bias); the
PyTorch peer is ``torch.nn.functional.conv1d`` on the same data (transposed to its
channels_first layout outside the timed region) with autograd. Pooling (pool 3, stride
2, "same"): graphmask's numba kernels against the same windows written with NumPy
(gather + reduce, what composing the pooling of ``graphmask.ops`` primitives would do)
and against ``torch.nn.functional.max_pool1d / avg_pool1d``. Ratios are graphmask / peer
(below 1: graphmask faster), best median of 7 rounds of 20 calls, in one process.
"""
from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np


def median_time(fn, calls=20, rounds=7):
    fn()
    best = np.inf
    for _ in range(rounds):
        ts = []
        for _ in range(calls):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        best = min(best, float(np.median(ts)))
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    import torch

    from graphmask.ops import get_op
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 200, 64)).astype(np.float32)
    w = (rng.standard_normal((5, 64, 128)) * 0.1).astype(np.float32)
    b = np.zeros(128, np.float32)
    conv = get_op("conv1d")
    attrs = {"padding": "same", "strides": 1, "dilation_rate": 1, "groups": 1}
    inputs = {"x": x, "kernel": w, "bias": b}
    outs = conv.forward(attrs, inputs)
    dy = np.ones_like(outs[0])

    def gm_fwd():
        conv.forward(attrs, inputs)

    def gm_train():
        o = conv.forward(attrs, inputs)
        conv.vjp(attrs, inputs, o, [dy], ["x", "kernel", "bias"])

    xt = torch.tensor(x.transpose(0, 2, 1).copy(), requires_grad=True)
    wt = torch.tensor(w.transpose(2, 1, 0).copy(), requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    dyt = torch.ones((32, 128, 200))

    def torch_fwd():
        with torch.no_grad():
            torch.nn.functional.conv1d(xt, wt, bt, padding=2)

    def torch_train():
        y = torch.nn.functional.conv1d(xt, wt, bt, padding=2)
        y.backward(dyt)

    rows = [("conv1d forward", median_time(gm_fwd), median_time(torch_fwd), "torch"),
            ("conv1d forward+backward", median_time(gm_train), median_time(torch_train),
             "torch")]
    for op_name, tfn in (("max_pooling_1d", torch.nn.functional.max_pool1d),
                         ("average_pooling_1d", torch.nn.functional.avg_pool1d)):
        op = get_op(op_name)
        pattrs = {"pool_size": 3, "strides": 2, "padding": "same"}
        pin = {"x": x}
        xc = torch.tensor(x.transpose(0, 2, 1).copy())
        ours = median_time(partial(op.forward, pattrs, pin))
        rows.append((f"{op_name} forward", ours,
                     median_time(partial(op.reference, pattrs, pin)), "NumPy windows"))
        rows.append((f"{op_name} forward", ours,
                     median_time(partial(tfn, xc, 3, 2, padding=1)), "torch"))
    print(f"threads: torch {args.threads}, numba kernels single-threaded")
    for name, ours, peer, who in rows:
        print(f"{name:32s} graphmask {ours * 1e3:7.2f} ms  {who:14s} {peer * 1e3:7.2f} ms  "
              f"ratio {ours / peer:5.2f}")


if __name__ == "__main__":
    main()
