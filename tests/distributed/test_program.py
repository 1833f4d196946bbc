"""The sum form of a plan, run in this process (no cluster): the arithmetic alone."""
import numpy as np
import pytest

from graphmask.distribute import program as prog
from graphmask.distribute import shard_bounds
from graphmask.distribute.strategy import _add_grads
from graphmask.distribute.worker import run_shard, sparse_rows
from graphmask.ops import get_op
from tests.distributed.models import lstm_model, targets, uneven_batch

pytestmark = pytest.mark.timeout(60)


def test_shards_are_contiguous_and_never_empty():
    assert shard_bounds(8, 2) == [slice(0, 4), slice(4, 8)]
    assert shard_bounds(5, 2) == [slice(0, 2), slice(2, 5)]
    assert shard_bounds(7, 3) == [slice(0, 2), slice(2, 4), slice(4, 7)]
    assert shard_bounds(1, 3) == [slice(0, 1)]


def test_sum_form_is_the_masked_means_numerator_and_count():
    rng = np.random.default_rng(0)
    s, m, w = rng.random((3, 5)), rng.random((3, 5)) > 0.4, rng.random((3, 5))
    ins = {"score": s, "mask": m, "weight": w}
    tot, cnt = prog.SUM_FORM.forward({"of": "masked_mean"}, ins)
    assert cnt == m.sum() and tot == pytest.approx((s * m * w).sum(), rel=1e-15)
    mean = get_op("masked_mean").forward({}, ins)[0]
    assert tot / cnt == pytest.approx(float(mean), rel=1e-15)
    ds = prog.SUM_FORM_VJP.forward({"op": "masked_mean"}, {
        "in:score": s, "in:mask": m, "in:weight": w, "grad:0": np.float64(2.0)})[0]
    np.testing.assert_array_equal(ds, 2.0 * m * w)
    tot, cnt = prog.SUM_FORM.forward({"of": "weighted_mean"}, {"score": s, "weight": w})
    assert cnt == 15 and tot == pytest.approx((s * w).sum(), rel=1e-15)


def test_shard_sums_give_the_one_process_gradient():
    """Two shards keeping 30 and 10 positions: numerators and their gradients, added and
    divided by the global count, are the global batch's loss and gradient."""
    model = lstm_model()
    ids = uneven_batch()
    y = targets(ids)[0]
    loss, grads = model.loss_and_gradients(ids, y)
    program = prog.build(model, "train")
    assert list(program.sparse) == ["embedding/embeddings"]
    xs, ys, sws = model._prepare_xy(ids, y, None)
    feeds = model._feeds(xs, ys, sws)
    results = [run_shard(program, model._variables(), {k: v[sl] for k, v in feeds.items()},
                         program.loss_weights) for sl in shard_bounds(8, 2)]
    assert [r["losses"][0][1] for r in results] == [30.0, 10.0]
    assert isinstance(results[0]["grads"]["embedding/embeddings"], dict)
    total = sum(r["losses"][0][0] for r in results) / 40.0
    assert total == pytest.approx(loss, rel=1e-13)
    added = _add_grads(program, results)
    for name, g in grads.items():
        np.testing.assert_allclose(added[name] / 40.0, g, rtol=1e-11, atol=1e-15)


def test_sparse_rows_round_trip():
    g = np.zeros((6, 3))
    g[[1, 4]] = [[1.0, 0.0, 2.0], [0.0, -3.0, 0.0]]
    sp = sparse_rows(g)
    assert sp["ids"].tolist() == [1, 4]
    back = np.zeros_like(g)
    back[sp["ids"]] += sp["rows"]
    np.testing.assert_array_equal(back, g)
