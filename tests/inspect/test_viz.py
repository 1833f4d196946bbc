"""Pictures: DOT structure and mask edge attributes, SVG is XML, PNG header, mask grids."""
import re
import struct
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from graphmask.errors import ConfigError
from graphmask.viz import draw_masks, render, to_dot, to_png, to_svg
from tests.inspect import models

ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,\]\s]+)')


def parse_dot(text):
    """{node id: attrs}, [(src, dst, attrs)] from graphmask's DOT (one statement a line)."""
    nodes, edges = {}, []
    for line in text.splitlines():
        line = line.strip()
        m = re.fullmatch(r"n(\d+) -> n(\d+) \[(.*)\];", line)
        if m:
            edges.append((int(m[1]), int(m[2]), _attrs(m[3])))
            continue
        m = re.fullmatch(r"n(\d+) \[(.*)\];", line)
        if m:
            nodes[int(m[1])] = _attrs(m[2])
    return nodes, edges


def _attrs(text):
    return {k: v[1:-1] if v.startswith('"') else v for k, v in ATTR.findall(text)}


def png_size(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_dot_structure_of_the_seed_model():
    m = models.seed_model()
    g = m.graph
    text = to_dot(m)
    assert text.startswith("digraph graphmask {") and text.rstrip().endswith("}")
    nodes, edges = parse_dot(text)
    (mid,) = g.nodes_by_op("mask_not_equal")
    (mm,) = g.nodes_by_op("masked_mean")
    visible = [n for n in g.order() if g.node(n)["phase"] == "forward"
               and g.node(n)["op"] != "variable"]
    assert sorted(nodes) == sorted(visible)
    assert nodes[2]["label"] == "embedding\\nembedding\\n(None, 4, 5)\\ncreates a mask"
    assert nodes[5]["label"] == "dense\\ndense\\n(None, 4, 3)\\npasses mask"
    assert nodes[mid]["shape"] == "hexagon" and nodes[mid]["kind"] == "mask"
    assert nodes[mid]["label"] == "mask of 'embedding'\\nids != 0\\n(None, 4) bool"
    assert nodes[mid]["fillcolor"] != nodes[2]["fillcolor"]
    mask_edges = [(u, v, a) for u, v, a in edges if a["kind"] == "mask"]
    assert [(u, v) for u, v, _ in mask_edges] == [(mid, mm)]
    a = mask_edges[0][2]
    assert (a["style"], a["label"], a["port"], a["mask"]) == ("dashed", "mask", "mask", f"n{mid}")
    data = {(u, v): a for u, v, a in edges if a["kind"] != "mask"}
    assert a["color"] not in {d["color"] for d in data.values()}
    assert data[(2, 5)]["kind"] == "masked" and data[(2, 5)]["mask"] == f"n{mid}"
    assert data[(0, 2)]["kind"] == "data" and "mask" not in data[(0, 2)]
    assert len(edges) == sum(1 for u, v in g.nx.edges() if u in nodes and v in nodes)


def test_dot_backward_cluster():
    m = models.seed_model()
    text = to_dot(m, backward=True)
    assert "subgraph cluster_backward {" in text
    nodes, edges = parse_dot(text)
    vjps = m.graph.nodes_by_op("vjp")
    assert set(vjps) <= set(nodes)
    block = text.split("subgraph cluster_backward {")[1].split("}")[0]
    assert all(f"n{v} [" in block for v in vjps)
    assert any(a["kind"] == "mask" and v in vjps for _, v, a in edges)
    assert "cluster_backward" not in to_dot(m)


def test_svg_is_xml_with_the_labels():
    svg = to_svg(models.seed_model())
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    texts = "".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    for label in ("embedding", "mask of 'embedding'", "ids != 0", "masked_mean",
                  "mask (bool B x T) into a consumer"):
        assert label in texts
    assert svg == to_svg(models.seed_model())  # deterministic


def test_png_files(tmp_path):
    m = models.add_two()
    out = render(m, tmp_path / "flow.png")
    with open(out, "rb") as f:
        data = f.read()
    w, h = png_size(data)
    assert 600 < w < 4000 and 600 < h < 6000
    seed = models.seed_model()
    _, h_fwd = png_size(to_png(seed))
    _, h_bwd = png_size(to_png(seed, backward=True))
    assert h_bwd > 1.5 * h_fwd  # the backward graph adds layers below the forward one
    dot = render(m, tmp_path / "flow.dot")
    with open(dot) as f:
        assert f.read() == to_dot(m)
    with pytest.raises(ConfigError, match="format"):
        render(m, tmp_path / "flow.gif")


def test_graphviz_engine_needs_dot(monkeypatch):
    from graphmask.viz import draw
    monkeypatch.setattr(draw.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="'dot' program"):
        to_svg(models.seed_model(), engine="graphviz")


def test_repr_svg_for_notebooks():
    assert ET.fromstring(models.pooling()._repr_svg_()).tag.endswith("svg")


def test_mask_grid_pictures(tmp_path):
    m = models.seed_model()
    ids = np.array([[1, 2, 0, 0], [0, 3, 0, 4]])
    w, h = png_size(draw_masks(m, ids))
    assert w > 300 and h > 150
    with open(draw_masks(m, ids, tmp_path / "masks.svg"), encoding="utf-8") as f:
        svg = f.read()
    texts = [t.text for t in ET.fromstring(svg).iter() if t.tag.endswith("text")]
    assert any("mask of 'embedding': ids != 0" in (t or "") for t in texts)
    assert any("kept 4 of 8" in (t or "") for t in texts)
    two = models.add_two()
    _, h_masks = png_size(draw_masks(two, [ids, ids[::-1]]))
    _, h_edges = png_size(draw_masks(two, [ids, ids[::-1]], per="edge"))
    assert h_masks > 2 * h_edges  # 3 masks (emb_a, emb_b, their OR); 1 mask edge (into lstm)
    with pytest.raises(ConfigError, match="no mask"):
        draw_masks(models.lstm_last().__class__(*_plain()), np.ones((1, 3)))


def _plain():
    from graphmask import Dense, Input
    x = Input(shape=(3,))
    return x, Dense(1)(x)
