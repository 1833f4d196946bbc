"""The HTML mask-flow explorer without a browser: the page is self-contained, its layout is
the SVG picture's, its data (details, provenance, masks and values of a batch) is exact,
and ``graphmask show --format html`` / ``render(..., "x.html")`` write it."""
import base64
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from graphmask.cli import main
from graphmask.errors import ConfigError, ShapeError
from graphmask.inspect import explain_mask
from graphmask.viz import render, to_html
from graphmask.viz.draw import Layout
from graphmask.viz.html import _marked_path, _marks, backward_view, curve_d, explorer_data
from graphmask.viz.view import build_view
from tests.browser.models import two_heads
from tests.inspect import models

SEED_BATCH = np.array([[1, 2, 0, 0], [3, 0, 4, 0], [2, 2, 2, 1]])
SVG = "{http://www.w3.org/2000/svg}"


def page_parts(page: str):
    """(data, svg element) of a page."""
    data = re.search(r'<script type="application/json" id="gm-data">(.*?)</script>', page, re.S)
    svg = re.search(r"<svg .*?</svg>", page, re.S)
    return json.loads(data[1].replace("<\\/", "</")), ET.fromstring(svg[0])


def decode(value):
    arr = np.frombuffer(base64.b64decode(value["data"]), dtype="<f4")
    return arr.reshape(value["shape"])


def test_page_is_self_contained():
    page = to_html(models.custom_layers())
    assert page.startswith("<!DOCTYPE html>")
    # nothing is fetched: no external script, style, image or font; CSP forbids it too
    assert not re.search(r"<(link|img|iframe)\b|\ssrc=|@import|url\((?!#)", page)
    assert "default-src 'none'" in page
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace name, never fetched
    assert page.count("<script") == 2 and page.count("<style>") == 1
    data, svg = page_parts(page)
    assert set(data["layouts"]) == {"compact", "expanded", "backward"}
    assert [g.get("data-layout") for g in svg.iter(f"{SVG}g") if g.get("data-layout")] == [
        "compact", "expanded", "backward"]


def test_compact_and_expanded_layouts_are_the_pictures():
    m = models.custom_layers()
    data, svg = page_parts(to_html(m))
    for name, expand in (("compact", False), ("expanded", True)):
        view = build_view(m, expand=expand)
        lay = Layout(view)
        (layer,) = [g for g in svg.iter(f"{SVG}g") if g.get("data-layout") == name]
        rects = {g.get("data-id"): g.find(f"{SVG}rect") for g in layer
                 if "gm-node" in (g.get("class") or "") and "gm-fold" not in g.get("class")}
        assert set(rects) == set(view.nodes)
        for key, r in rects.items():
            x0, y0, x1, y1 = lay.box(key)
            got = [float(r.get(a)) for a in ("x", "y", "width", "height")]
            assert got == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=0.051)
        recs = data["layouts"][name]["edges"]
        assert len(recs) == len(view.edges)
        for i, rec in enumerate(recs):
            assert rec["pts"] == [[round(x, 1), round(y, 1)] for x, y in lay.paths[i]]
        if expand:
            assert set(data["layouts"][name]["clusters"]) == {"g1", "g2", "g3", "g4"}


def test_cut_points_are_on_the_cluster_borders():
    m = models.custom_layers()
    lay = Layout(build_view(m, expand=True))
    crossings = 0
    for i in range(len(lay.view.edges)):
        pts, starts, ends = _marked_path(lay, i)
        assert pts == lay.paths[i]
        for c, k in starts.items():  # leaves c through its bottom border
            assert pts[k][1] == pytest.approx(lay.cluster_box[c][3])
            crossings += 1
        for c, k in ends.items():  # enters c through its top border
            assert pts[k][1] == pytest.approx(lay.cluster_box[c][1])
            crossings += 1
    assert crossings >= 8


def test_curve_is_the_pictures_curve():
    assert curve_d([(0, 0), (0, 30), (10, 60)]) == (
        "M0.0 0.0 C0.0 10.0 0.0 20.0 0.0 30.0 C0.0 45.0 10.0 45.0 10.0 60.0")


def test_details_of_the_seed_model():
    m = models.seed_model()
    g = m.graph
    (mid,) = g.nodes_by_op("mask_not_equal")
    (mm,) = g.nodes_by_op("masked_mean")
    data, _ = explorer_data(m)
    emb = data["nodes"]["n2"]
    assert (emb["title"], emb["class"], emb["op"]) == ("embedding", "Embedding", "embedding")
    assert emb["shapes"] == ["(None, 4, 5) float32"]
    assert (emb["status"], emb["rule"], emb["mask"]) == ("created", "creates a mask", f"n{mid}")
    assert emb["weights"] == [{"name": "embedding/embeddings", "shape": "(5, 5)",
                               "dtype": "float32", "count": 25, "port": "embeddings",
                               "trainable": True}]
    assert emb["config"]["mask_zero"] is True and emb["config"]["output_dim"] == 5
    assert [data["chains"][i] for i in emb["chains"]] == explain_mask(m, "embedding").split("\n")
    dense = data["nodes"]["n5"]
    assert (dense["status"], dense["rule"]) == ("passed", "passes the mask")
    assert [w["name"] for w in dense["weights"]] == ["dense/kernel", "dense/bias"]
    mask = data["nodes"][f"n{mid}"]
    assert mask["rule"] == "computes ids != 0 (bool), mask of 'embedding'"
    (edge,) = [e for k, e in data["edges"].items() if k.startswith("compact:")
               and e["kind"] == "mask"]
    assert (edge["src"], edge["dst"], edge["port"]) == (f"n{mid}", f"n{mm}", "mask")
    assert (edge["shape"], edge["dtype"]) == ("(None, 4)", "bool")
    assert edge["mask_text"] == "mask of 'embedding': ids != 0"
    masked = data["edges"]["compact:" + str(next(
        i for i, r in enumerate(data["layouts"]["compact"]["edges"])
        if (r["src"], r["dst"]) == ("n2", "n5")))]
    assert (masked["kind"], masked["shape"], masked["mask"]) == ("masked", "(None, 4, 5)",
                                                                f"n{mid}")
    assert [w["name"] for w in data["weights"]] == ["embedding/embeddings", "dense/kernel",
                                                    "dense/bias"]


def test_custom_layer_calls_have_their_rule_and_all_their_weights():
    m = models.custom_layers()
    data, _ = explorer_data(m)
    block = data["nodes"]["g2"]
    assert (block["title"], block["op"], block["group"]) == ("block (Block)",
                                                             "custom layer call", True)
    assert block["rule"] == "not read by call(), mask passed on (supports_masking)"
    assert sorted(w["name"] for w in block["weights"]) == sorted(
        v.name for v in m.get_layer("block").weights)
    assert [data["chains"][i] for i in data["nodes"]["g3"]["chains"]] == \
        explain_mask(m, "attn").split("\n")
    assert data["nodes"]["g4"]["title"] == "head (Model)"
    # a node inside a call says which call it is in
    inner = [v for v in data["nodes"].values() if v.get("in_call") == ["g3"]]
    assert inner and all(v["layer"] == "attn" for v in inner)
    # a layer nested in a call is a layer of its own; a primitive the call recorded is not
    gate = next(v for v in data["nodes"].values() if v["title"] == "block_gate")
    assert (gate["class"], gate["in_call_titles"], gate["mask_text"]) == (
        "Dense", ["block (Block)"], "mask of 'drop': compute_mask()")
    assert gate["config"]["activation"] == "sigmoid"
    add = next(v for v in data["nodes"].values() if v["op"] == "prim.add")
    assert add["layer"] == "block" and "class" not in add


def test_backward_view_draws_the_gradient_flow_only():
    m = two_heads()
    view = backward_view(m)
    phase = {k: v.phase for k, v in view.nodes.items()}
    into_bwd = [(e.src, e.dst) for e in view.edges if phase[e.dst] == "backward"]
    assert into_bwd and all(phase[s] == "backward" for s, _ in into_bwd)
    reads = [v for v in view.nodes.values() if "reads mask of 'add'" in v.lines]
    assert {v.lines[1] for v in reads} >= {"vjp of lstm", "vjp of masked_mean"}
    data, _ = explorer_data(m)
    names = [w["name"] for w in data["weights"]]
    assert names == [v.name for v in m.trainable_weights]
    for w in data["weights"]:  # each weight's gradient is a box of the backward layout
        assert w["node"] in view.nodes and phase[w["node"]] == "backward"
        assert w["name"] in data["nodes"][w["node"]]["grad_of"]


def test_no_backward_layout_before_compile():
    data, _ = explorer_data(models.masking_lstm_dense())
    assert set(data["layouts"]) == {"compact"} and data["weights"] == []


def test_batch_masks_ids_and_values_are_exact():
    m = models.seed_model()
    (mid,) = m.graph.nodes_by_op("mask_not_equal")
    data, _ = explorer_data(m, SEED_BATCH)
    b = data["batch"]
    assert (b["samples"], b["total"]) == (3, 3)
    assert b["masks"] == {f"n{mid}": ["1100", "1010", "1111"]}
    assert b["ids"] == {f"n{mid}": SEED_BATCH.tolist()}
    out = decode(b["values"]["5:0"])
    np.testing.assert_array_equal(out, m.predict(SEED_BATCH, verbose=0).astype(np.float32))
    emb = m.get_layer("embedding").get_weights()[0]
    np.testing.assert_array_equal(decode(b["values"]["2:0"]), emb[SEED_BATCH])
    # sample 0 is ids 1 2 0 0: step 3 repeats step 2 (both id 0)
    assert b["values"]["2:0"]["marks"][0] == "...="


def test_batch_marks_show_what_an_lstm_repeats_and_zeroes():
    m = models.masking_lstm_dense()
    x = np.ones((2, 6, 2), dtype="float32")
    x[0, 2] = -1
    x[0, 4:] = -1
    x[1, 0] = -1
    data, _ = explorer_data(m, x)
    (lstm,) = m.graph.nodes_by_op("lstm")
    mask = data["batch"]["masks"]
    assert list(mask.values()) == [["110100", "011111"]]
    value = data["batch"]["values"][f"{lstm}:0"]
    # masked steps repeat the previous output; a masked first step is zeros (Keras 3)
    assert value["marks"] == ["..=.==", "0....."]
    seq = decode(value)
    np.testing.assert_array_equal(seq[0, 2], seq[0, 1])
    assert not np.any(seq[1, 0])


def test_marks():
    v = np.array([[[1, 2], [1, 2], [0, 0], [0, 0], [3, 4]]], dtype="float32")
    assert _marks(v) == [".=00."]


def test_batch_is_cut_to_max_samples_and_validated():
    m = models.seed_model()
    big = np.tile(SEED_BATCH, (7, 1))
    data, _ = explorer_data(m, big, max_samples=4)
    assert (data["batch"]["samples"], data["batch"]["total"]) == (4, 21)
    assert all(len(rows) == 4 for rows in data["batch"]["masks"].values())
    with pytest.raises(ShapeError, match="input 'input_layer'.*shape"):
        to_html(m, batch=np.zeros((2, 5)))
    with pytest.raises(ConfigError, match="max_samples must be a positive int, got 0"):
        to_html(m, batch=SEED_BATCH, max_samples=0)
    with pytest.raises(ConfigError, match="expected a Model, got int"):
        to_html(42)


def test_two_inputs_two_outputs_with_a_batch():
    m = two_heads()
    tokens = np.array([[1, 2, 0, 0, 0], [3, 0, 4, 5, 0]])
    feats = np.ones((2, 5, 3), dtype="float32")
    feats[0, 3:] = 0.0
    data, svg = page_parts(to_html(m, batch={"tokens": tokens, "feats": feats}))
    g = m.graph
    by_op = {g.node(int(k[1:]))["op"]: v for k, v in data["batch"]["masks"].items()}
    assert by_op["mask_not_equal"] == ["11000", "10110"]
    assert by_op["mask_any_not_equal"] == ["11100", "11111"]
    assert by_op["mask_or"] == ["11100", "11111"]
    tag, cls = m.predict([tokens, feats], verbose=0)
    (tagger,) = [n for n in g.order() if g.node(n)["layer"] == "tagger"
                 and g.node(n)["op"] == "dense"]
    np.testing.assert_array_equal(decode(data["batch"]["values"][f"{tagger}:0"]), tag)
    titles = {n.get("data-id"): n for n in svg.iter(f"{SVG}g") if n.get("data-id")}
    assert {"n0", "n1"} <= set(titles)


def test_repr_html_is_the_explorer_in_an_iframe():
    m = models.seed_model()
    markup = m._repr_html_()
    assert markup.startswith('<div class="graphmask-explorer"><iframe srcdoc=')
    assert "gm-data" in markup
    assert "&lt;!DOCTYPE html&gt;" in markup and 'sandbox="allow-scripts"' in markup


def test_render_and_cli_write_the_page(tmp_path, capsys):
    m = models.seed_model()
    out = render(m, tmp_path / "flow.html")
    assert out.endswith("flow.html")
    assert page_parts(open(out, encoding="utf-8").read())[0]["batch"] is None
    np.savez(tmp_path / "batch.npz", SEED_BATCH)
    path = tmp_path / "cli.html"
    assert main(["show", "tests.inspect.models:seed_model", "--out", str(path),
                 "--batch", str(tmp_path / "batch.npz")]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {path}"
    data, _ = page_parts(path.read_text(encoding="utf-8"))
    assert list(data["batch"]["masks"].values()) == [["1100", "1010", "1111"]]
    np.savez(tmp_path / "two.npz", tokens=np.array([[1, 0, 0, 0, 0]]),
             feats=np.ones((1, 5, 3), dtype="float32"))
    assert main(["show", "tests.browser.models:two_heads", "--format", "html", "--out",
                 str(tmp_path / "two.html"), "--batch", str(tmp_path / "two.npz")]) == 0
    np.savez(tmp_path / "bad.npz", a=np.zeros(3), b=np.zeros(3))
    assert main(["show", "tests.browser.models:two_heads", "--format", "html", "--out",
                 str(tmp_path / "bad.html"), "--batch", str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err
    assert "holds arrays ['a', 'b']; expected one array, or one per model input named " \
           "['tokens', 'feats']" in err
    assert not (tmp_path / "bad.html").exists()
    assert main(["show", "tests.inspect.models:seed_model", "--out", str(tmp_path / "f.svg"),
                 "--batch", str(tmp_path / "batch.npz")]) == 2
    assert "--batch is for --format html, got --format svg" in capsys.readouterr().err


def test_nested_calls_and_html_in_names():
    from tests.browser.models import nested

    m = nested()
    page = to_html(m)
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "<!--" not in page.split("<body>")[1]
    data, svg = page_parts(page)
    clusters = data["layouts"]["expanded"]["clusters"]
    assert {k: v["parent"] for k, v in clusters.items()} == {"g1": None, "g2": "g1",
                                                             "g3": None}
    assert data["nodes"]["g2"]["title"] == "blk (Block)"
    assert data["nodes"]["g2"]["parent"] == "g1"
    titles = [t for t in (v["title"] for v in data["nodes"].values()) if t.startswith("out")]
    assert titles == ["out<!--<script>"]
    texts = ["".join(t.itertext()) for t in svg.iter(f"{SVG}text")]
    assert "out<!--<script>" in " ".join(texts)  # escaped in the SVG, read back as text


def test_show_returns_displayable_html():
    from graphmask.viz import show

    shown = show(models.seed_model(), height=300)
    markup = shown._repr_html_() if hasattr(shown, "_repr_html_") else shown.data
    assert markup.startswith('<div class="graphmask-explorer"><iframe srcdoc=')
    assert "height:300px" in markup


def test_batch_masks_of_custom_layers_are_the_concrete_masks():
    from graphmask.inspect import concrete_masks
    from graphmask.inspect.explain import mask_label

    m = models.custom_layers()
    x = np.array([[3, 1, 0, 4, 0, 0], [1, 2, 3, 4, 5, 6]])
    data, _ = explorer_data(m, x)
    rows = {mask_label(m.graph, int(k[1:])): v for k, v in data["batch"]["masks"].items()}
    want = concrete_masks(m, x)
    assert set(rows) == set(want) == {"emb", "drop"}
    for name, mask in want.items():
        assert rows[name] == ["".join("1" if b else "0" for b in r) for r in mask]
    assert rows["drop"] == ["10100", "11111"]
    # the call's box shows its output's mask and value
    assert data["nodes"]["g1"]["mask"] in data["batch"]["masks"]
    assert data["nodes"]["g1"]["value"] in data["batch"]["values"]


def test_the_page_can_open_expanded_or_on_the_backward_graph(tmp_path, capsys):
    m = models.custom_layers()
    for view in ("compact", "expanded", "backward"):
        data, _ = page_parts(to_html(m, view=view))
        assert data["start"] == view
    # nothing to unfold: the picture itself
    assert page_parts(to_html(models.seed_model(), view="expanded"))[0]["start"] == "compact"
    with pytest.raises(ConfigError, match=r"view must be one of \('compact', 'expanded', "
                                          r"'backward'\), got 'side'"):
        to_html(m, view="side")
    with pytest.raises(ConfigError, match="view='backward' needs a compiled model .* model "
                                          "'functional' has no backward graph"):
        to_html(models.masking_lstm_dense(), view="backward")
    out = tmp_path / "b.html"
    assert main(["show", "tests.inspect.models:custom_layers", "--out", str(out),
                 "--backward"]) == 0
    assert page_parts(out.read_text(encoding="utf-8"))[0]["start"] == "backward"
    assert main(["show", "tests.inspect.models:custom_layers", "--out", str(out),
                 "--expand"]) == 0
    assert page_parts(out.read_text(encoding="utf-8"))[0]["start"] == "expanded"
    capsys.readouterr()
    assert main(["show", "tests.inspect.models:seed_model", "--out", str(out),
                 "--engine", "graphviz"]) == 2
    assert "--engine is for svg/png pictures" in capsys.readouterr().err


def test_backward_boxes_name_a_mask_made_inside_a_call():
    import graphmask as gm
    from graphmask import LSTM, Dense, Embedding, Input, Model

    class Enc(gm.layers.Layer):
        """Ids -> Embedding(mask_zero) -> LSTM: the mask is made and consumed inside."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.emb = Embedding(9, 4, mask_zero=True, name=f"{self.name}_emb")
            self.rnn = LSTM(3, name=f"{self.name}_rnn")

        def call(self, ids):
            return self.rnn(self.emb(ids))

    x = Input(shape=(5,), dtype="int32", name="ids")
    m = Model(x, Dense(1, name="out")(Enc(name="enc")(x)))
    m.compile(loss="mse", optimizer="sgd")
    view = backward_view(m)
    reads = [v.lines for v in view.nodes.values() if any("reads" in s for s in v.lines)]
    assert reads == [["enc_rnn", "vjp of lstm", "(None, 5, 4)", "reads mask of 'enc'"]]
