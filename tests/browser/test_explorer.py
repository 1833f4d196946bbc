"""The HTML explorer in headless Chromium: opened from disk with the network blocked; click
a layer, an edge, a call's expand/collapse button, search, the backward toggle; read the
details panel and the mask grid; zoom and pan; screenshots kept as artifacts; the time a
500-layer model's page takes to open (measured and reported, never asserted)."""
from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from graphmask.inspect import explain_mask
from graphmask.viz import write_html
from graphmask.viz.html import backward_view
from tests.browser.models import chain, two_heads
from tests.inspect import models

pytestmark = pytest.mark.browser
SEED_BATCH = np.array([[1, 2, 0, 0], [3, 0, 4, 0], [2, 2, 2, 1]])


def visible(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(
        selector, "els => els.filter(e => e.getBoundingClientRect().width > 0)"
                  ".map(e => e.getAttribute('data-id'))")


def js_number(v) -> str:
    """How the page writes a value (explorer.js: toFixed(3), or toExponential(1))."""
    v = float(np.float32(v))
    if abs(v) >= 1000 or (v != 0 and abs(v) < 0.001):
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{v:.1e}")
    return f"{v:.3f}"


def layer(page, name: str) -> str:
    return f".gm-layout[data-layout={name}]"


def test_seed_model_details_and_mask_grid(tmp_path, open_page, artifacts):
    m = models.seed_model()
    path = write_html(m, tmp_path / "seed.html", batch=SEED_BATCH)
    page = open_page(tmp_path / "seed.html").page
    assert path.endswith("seed.html")
    page.click(f"{layer(page, 'compact')} .gm-node[data-id=n2]")
    assert page.text_content("#gm-details h2") == "embedding"
    rows = dict(zip(page.locator("#gm-details .gm-kv td:first-child").all_text_contents(),
                    page.locator("#gm-details .gm-kv td:nth-child(2)").all_text_contents()))
    assert rows["class"] == "Embedding"
    assert rows["output"] == "(None, 4, 5) float32"
    assert rows["mask rule"] == "creates a mask"
    assert page.locator("#gm-details .gm-chain").all_text_contents() == [
        explain_mask(m, "embedding")]
    assert page.locator("#gm-details .gm-weights td").all_text_contents()[:4] == [
        "embedding/embeddings", "(5, 5)", "float32", "25"]
    # the edge embedding -> dense: the value carries the mask; its grid and values
    page.click(f"{layer(page, 'compact')} .gm-edge[data-src=n2][data-dst=n5] .gm-hit",
               force=True)
    assert page.text_content("#gm-details h2") == "embedding \u2192 dense"
    cells = page.eval_on_selector_all("#gm-grid tr[data-sample] td",
                                      "tds => tds.map(t => [t.className, t.textContent])")
    kept = ["".join("1" if c == "kept" else "0" for c, _ in cells[i * 4:(i + 1) * 4])
            for i in range(3)]
    assert kept == ["1100", "1010", "1111"]
    assert [t.split()[0] for _, t in cells] == [str(v) for v in SEED_BATCH.ravel()]
    assert cells[3][1] == "0 ="  # id 0 whose embedding repeats the step before
    assert page.text_content("#gm-grid-note").startswith("kept 8 of 12 positions.")
    emb = m.get_layer("embedding").get_weights()[0][SEED_BATCH]
    page.click("#gm-grid tr[data-sample='2'] th")
    assert page.text_content("#gm-batch h3:nth-of-type(2)").startswith("Values of sample 2")
    values = page.locator("#gm-values tr td").all_text_contents()
    assert values == [js_number(v) for v in emb[2].ravel()]
    page.screenshot(path=str(artifacts / "seed_explorer.png"))


def test_custom_layers_expand_collapse_and_search(tmp_path, open_page, artifacts):
    m = models.custom_layers()
    write_html(m, tmp_path / "custom.html")
    page = open_page(tmp_path / "custom.html").page
    assert page.get_attribute("#gm-root", "data-layout") == "compact"
    assert {"g1", "g2", "g3", "g4"} <= set(visible(page, f"{layer(page, 'compact')} .gm-node"))
    page.click(f"{layer(page, 'compact')} .gm-node[data-id=g3] .gm-toggle")
    assert page.get_attribute("#gm-root", "data-layout") == "expanded"
    exp = layer(page, "expanded")
    folds = visible(page, f"{exp} .gm-fold")
    assert sorted(folds) == ["g1", "g2", "g4"]
    inner = visible(page, f"{exp} > .gm-node[data-clusters='g3']")
    g = m.graph
    assert len(inner) >= 5 and all(g.node(int(k[1:]))["layer"] == "attn" for k in inner)
    assert visible(page, f"{exp} > .gm-node[data-clusters='g2']") == []
    assert page.text_content("#gm-details h2") == "attn (AttnPool)"
    # edges into the folded block end on its top border, edges out of it leave its bottom
    top, bottom = page.evaluate(
        "[gmExplorer.data.layouts.expanded.clusters.g2.box[1], "
        "gmExplorer.data.layouts.expanded.clusters.g2.box[3]]")
    ends = page.eval_on_selector_all(
        f"{exp} .gm-edge:not(.gm-hidden)",
        "es => es.map(e => [e.getAttribute('data-src'), e.getAttribute('data-dst'), "
        "e.querySelector('.gm-line').getAttribute('d').split(/[ MC]+/).filter(Boolean)"
        ".map(Number)])")
    clusters = dict(page.eval_on_selector_all(
        f"{exp} > .gm-node", "ns => ns.map(n => [n.getAttribute('data-id'), "
        "n.getAttribute('data-clusters')])"))
    into = [d for s, t, d in ends if clusters[t] == "g2" and clusters[s] != "g2"]
    out_of = [d for s, t, d in ends if clusters[s] == "g2" and clusters[t] != "g2"]
    assert into and out_of
    assert all(d[-1] == pytest.approx(top, abs=0.06) for d in into)
    assert all(d[1] == pytest.approx(bottom, abs=0.06) for d in out_of)
    page.screenshot(path=str(artifacts / "custom_expanded.png"))
    page.click(f"{exp} .gm-cluster[data-id=g3] .gm-open .gm-toggle")
    assert page.get_attribute("#gm-root", "data-layout") == "compact"
    # search a layer nested in a call: the call opens and the layer is selected
    page.fill("#gm-search", "block_gate")
    assert page.text_content("#gm-found") == "1 found"
    page.press("#gm-search", "Enter")
    assert page.get_attribute("#gm-root", "data-layout") == "expanded"
    assert page.text_content("#gm-details h2") == "block_gate"
    assert sorted(visible(page, f"{exp} .gm-fold")) == ["g1", "g3", "g4"]
    assert visible(page, f"{exp} .gm-node.gm-selected") != []
    page.click("#gm-collapse-all")
    assert page.get_attribute("#gm-root", "data-layout") == "compact"
    page.click("#gm-expand-all")
    assert visible(page, f"{exp} .gm-fold") == []
    page.screenshot(path=str(artifacts / "custom_all_expanded.png"))


def test_two_heads_gradient_path_and_batch(tmp_path, open_page, artifacts):
    m = two_heads()
    tokens = np.array([[1, 2, 0, 0, 0], [3, 0, 4, 5, 0]])
    feats = np.ones((2, 5, 3), dtype="float32")
    feats[0, 3:] = 0.0
    write_html(m, tmp_path / "two.html", batch={"tokens": tokens, "feats": feats})
    page = open_page(tmp_path / "two.html").page
    view = backward_view(m)
    up: dict = {}
    for e in view.edges:
        up.setdefault(e.dst, []).append(e.src)

    def path_of(weight):
        node, seen = f"n{m.graph.meta['grads'][weight][0]}", set()
        stack = [node]
        while stack:
            n = stack.pop()
            if n not in seen and view.nodes[n].phase == "backward":
                seen.add(n)
                stack += up.get(n, [])
        return seen

    page.check("#gm-backward")
    assert page.get_attribute("#gm-root", "data-layout") == "backward"
    bwd = f"{layer(page, 'backward')} .gm-node[data-phase=backward]"
    for weight in ("tagger/kernel", "tok_emb/embeddings"):
        page.select_option("#gm-weight", weight)
        assert set(visible(page, bwd)) == path_of(weight)
    assert len(path_of("tagger/kernel")) < len(path_of("tok_emb/embeddings"))
    page.screenshot(path=str(artifacts / "two_heads_gradient_path.png"))
    page.uncheck("#gm-backward")
    # the classifier's mask: the add's OR mask, used by the pooling
    page.click(f"{layer(page, 'compact')} .gm-node:has-text('global_average_pooling_1d')")
    assert page.text_content("#gm-details h2") == "pool"
    page.click(f"{layer(page, 'compact')} .gm-node:has-text('merges masks')")
    cells = page.eval_on_selector_all("#gm-grid tr[data-sample] td", "t => t.map(c => "
                                      "c.className === 'kept' ? '1' : '0').join('')")
    assert cells == "1110011111"


def test_zoom_and_pan(tmp_path, open_page):
    write_html(models.seed_model(), tmp_path / "seed.html")
    page = open_page(tmp_path / "seed.html").page

    def box():
        return [float(v) for v in page.get_attribute("#gm-svg", "viewBox").split()]

    start = box()
    page.click("#gm-zoom-in")
    zoomed = box()
    assert zoomed[2] == pytest.approx(start[2] / 1.25, rel=1e-3)
    page.mouse.move(300, 400)
    page.mouse.wheel(0, 300)
    assert box()[2] > zoomed[2]
    before = box()
    page.mouse.move(200, 300)
    page.mouse.down()
    page.mouse.move(260, 340, steps=4)
    page.mouse.up()
    after = box()
    assert after[0] < before[0] and after[1] < before[1] and after[2] == before[2]
    page.click("#gm-fit")
    fitted = box()
    page.click("#gm-zoom-out")
    assert box()[2] == pytest.approx(fitted[2] * 1.25, rel=1e-3)


def test_500_layer_page_opens(tmp_path, browser, open_page, artifacts):
    m = chain(500)
    t = time.perf_counter()
    write_html(m, tmp_path / "chain.html")
    made = time.perf_counter() - t
    t = time.perf_counter()
    opened = open_page(tmp_path / "chain.html")
    opened_s = time.perf_counter() - t
    page = opened.page
    script_ms = page.evaluate("window.gmExplorer.ready")
    nodes = page.eval_on_selector_all(f"{layer(page, 'compact')} .gm-node", "e => e.length")
    assert nodes == len(m.graph.order()) - len(m.graph.nodes_by_op("variable")) \
        - sum(1 for n in m.graph.order() if m.graph.node(n)["phase"] == "backward")
    page.fill("#gm-search", "d250")
    page.press("#gm-search", "Enter")
    assert page.text_content("#gm-details h2") == "d250"
    report = {"layers": 500, "page_bytes": (tmp_path / "chain.html").stat().st_size,
              "python_seconds": round(made, 2), "open_seconds": round(opened_s, 3),
              "script_ms": round(script_ms, 1)}
    (artifacts / "chain500_timing.json").write_text(json.dumps(report, indent=1))
    print(f"\n500-layer explorer: {report}")


def test_demo_model_shows_what_the_lstm_repeats(tmp_path, open_page, artifacts):
    import graphmask as gm
    from graphmask.demo.data import START, VOCAB_SIZE, encode
    from graphmask.demo.run import build_model

    gm.set_random_seed(0)
    m = build_model(VOCAB_SIZE, 8, 16, 0.005)
    lines = ["def f(x):", "return x", "pass"]
    x = np.zeros((3, 11), dtype=np.int32)
    for i, line in enumerate(lines):
        x[i, :len(line) + 1] = [START, *encode(line)]
    write_html(m, tmp_path / "demo.html", batch=x)
    page = open_page(tmp_path / "demo.html").page
    g = m.graph
    (lstm,) = g.nodes_by_op("lstm")
    (out,) = [n for n in g.order() if g.node(n)["layer"] == "next_char"
              and g.node(n)["op"] == "dense"]
    page.click(f"{layer(page, 'compact')} .gm-edge[data-src=n{lstm}][data-dst=n{out}] .gm-hit",
               force=True)
    assert page.text_content("#gm-details h2") == "lstm \u2192 next_char"
    cells = page.eval_on_selector_all("#gm-grid tr[data-sample] td",
                                      "tds => tds.map(t => [t.className, t.dataset.mark])")
    kept = np.array([c == "kept" for c, _ in cells]).reshape(x.shape)
    np.testing.assert_array_equal(kept, x != 0)
    marks = np.array([mk for _, mk in cells]).reshape(x.shape)
    # at the padding the LSTM repeats its last output (Keras 3's masked RNN)
    assert set(marks[~kept]) == {"="} and set(marks[kept]) == {"."}
    page.click("#gm-grid tr[data-sample='2'] th")
    page.screenshot(path=str(artifacts / "demo_lstm_repeats.png"))


def test_nested_calls_fold_inside_each_other(tmp_path, open_page, artifacts):
    from tests.browser.models import nested

    write_html(nested(), tmp_path / "nested.html")
    page = open_page(tmp_path / "nested.html").page
    exp = layer(page, "expanded")
    page.click(f"{layer(page, 'compact')} .gm-node[data-id=g1] .gm-toggle")
    assert sorted(visible(page, f"{exp} .gm-fold")) == ["g2", "g3"]  # blk folded inside
    assert page.eval_on_selector(f"{exp} .gm-cluster[data-id=g1] > .gm-open",
                                 "e => getComputedStyle(e).display") != "none"
    page.click(f"{exp} .gm-cluster[data-id=g2] .gm-fold .gm-toggle")
    assert visible(page, f"{exp} .gm-fold") == ["g3"]
    inner = visible(page, f"{exp} > .gm-node[data-clusters='g1 g2']")
    assert len(inner) >= 4
    page.screenshot(path=str(artifacts / "nested_open.png"))
    page.click(f"{exp} .gm-cluster[data-id=g1] > .gm-open .gm-head ~ .gm-toggle")
    # folding the outer call hides the inner one, which stays unfolded for next time
    assert page.get_attribute("#gm-root", "data-layout") == "compact"
    assert page.evaluate("window.gmExplorer.state.folded.has('g2')") is False
    page.click(f"{layer(page, 'compact')} .gm-node:has-text('out<!--<script>')")
    assert page.text_content("#gm-details h2") == "out<!--<script>"


def test_notebook_markup_runs_in_an_iframe(tmp_path, open_page):
    m = models.seed_model()
    (tmp_path / "notebook.html").write_text(
        "<!DOCTYPE html><html><body><div id='gm-root' data-ready='1'>cell</div>"
        + m._repr_html_() + "</body></html>", encoding="utf-8")
    page = open_page(tmp_path / "notebook.html").page
    frame = page.frame_locator("iframe")
    frame.locator("#gm-root[data-ready='1']").wait_for()
    frame.locator(".gm-layout[data-layout=compact] .gm-node[data-id=n5]").click()
    assert frame.locator("#gm-details h2").text_content() == "dense"


def test_page_opens_expanded_or_on_the_backward_graph(tmp_path, open_page):
    m = models.custom_layers()
    write_html(m, tmp_path / "e.html", view="expanded")
    page = open_page(tmp_path / "e.html").page
    assert page.get_attribute("#gm-root", "data-layout") == "expanded"
    assert visible(page, f"{layer(page, 'expanded')} .gm-fold") == []
    write_html(m, tmp_path / "b.html", view="backward")
    page = open_page(tmp_path / "b.html").page
    assert page.get_attribute("#gm-root", "data-layout") == "backward"
    assert page.is_checked("#gm-backward")
    assert page.input_value("#gm-weight") == m.trainable_weights[0].name
    grad = f"n{m.graph.meta['grads'][m.trainable_weights[0].name][0]}"
    assert grad in visible(page, f"{layer(page, 'backward')} .gm-node[data-phase=backward]")
