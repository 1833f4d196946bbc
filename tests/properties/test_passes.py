"""Pass-level properties on generated models: determinism, idempotence, purity, lint
after every pass, and the loss rewrite preserving the loss when nothing is masked."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import graphmask
from graphmask import passes
from graphmask.runtime import run
from graphmask.testing import _runner as R
from graphmask.testing import build_model, compiled_signature, make_targets, models


def _compile_capturing(spec, seed):
    """Build and compile; also return the graph ``compile`` handed to the pipeline."""
    seen = []
    real = passes.run_pipeline

    def spy(graph, upto=None, check=True, training=False):
        seen.append(graph.copy())
        seen[-1].meta["training"] = training  # what run_pipeline hands the first pass
        return real(graph, upto=upto, check=check, training=training)
    graphmask.clear_session()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(passes, "run_pipeline", spy)
        model, lobj = build_model(spec, seed)
    return model, lobj, seen[-1]


@given(models())
def test_pipeline_is_deterministic(case):
    graphmask.clear_session()
    again, _ = build_model(case.spec, case.seed)
    assert compiled_signature(again.graph) == compiled_signature(case.model.graph)


@given(models())
def test_pipeline_on_fresh_copies_gives_identical_graphs(case):
    fwd = case.model._forward
    a = passes.run_pipeline(fwd.copy(), upto="masks")
    b = passes.run_pipeline(fwd.copy(), upto="masks")
    assert compiled_signature(a) == compiled_signature(b)


@given(models())
def test_passes_are_pure_and_lint_holds_after_each(case):
    g = case.model._forward.copy()
    for name, fn in passes.PIPELINE[:3]:
        before = compiled_signature(g)
        out = fn(g)
        assert compiled_signature(g) == before, f"pass {name!r} changed its input graph"
        passes.lint(out, after=name)
        g = out


@given(models())
def test_shape_inference_is_idempotent_on_the_compiled_graph(case):
    g = case.model.graph
    again = passes.infer_shapes(g)
    for nid in g.order():
        assert again.node(nid)["specs"] == g.node(nid)["specs"], g.label(nid)


@given(models())
def test_lint_after_every_pass_of_compile(case):
    model, _, g = _compile_capturing(case.spec, case.seed)
    for name, fn in passes.PIPELINE:
        before = compiled_signature(g)
        out = fn(g)
        assert compiled_signature(g) == before, f"pass {name!r} changed its input graph"
        passes.lint(out, after=name)
        g = out
    assert compiled_signature(g) == compiled_signature(model.graph)


@given(models(), st.data())
def test_loss_rewrite_keeps_the_loss_when_nothing_is_masked(case, data):
    model, lobj, g0 = _compile_capturing(case.spec, case.seed)
    x = data.draw(case.inputs(padding="right", allow_empty_rows=False).map(
        lambda a: np.where(a == case.pad, 1, a).astype(a.dtype) if case.kind == "ids" else
        np.where(np.all(a == case.pad, -1, keepdims=True), case.pad + 1, a).astype(a.dtype)))
    y = make_targets(model, lobj, x, case.seed)
    before = passes.run_pipeline(g0, upto="masks")  # loss nodes not rewritten yet
    after = model.graph
    assert before.nodes_by_op("loss") and not after.nodes_by_op("loss")
    batch = R.prepare(model, x, y)
    feeds = R.feeds(model, batch)
    vs = R.variables(model)
    old = run(passes.make_plan(before, [(n, 0) for n in before.meta["losses"]]), feeds, vs)
    new = run(passes.make_plan(after, [(n, 0) for n in after.meta["losses"]]), feeds, vs)
    np.testing.assert_allclose(np.array(new, np.float64), np.array(old, np.float64),
                               rtol=1e-6, atol=1e-7)
