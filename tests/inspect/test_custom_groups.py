"""Custom layers in every inspection view: one summary row, one mask-chain step, one
debugprint line (or a header with its nodes beneath), one picture box (or a cluster).

The model (tests/inspect/models.py:custom_layers): Embedding(mask_zero) -> DropFirstStep
(compute_mask slices the mask) -> Block (nested Dense layers, passes the mask) -> LSTM ->
AttnPool (call reads the mask) -> a model used as a layer -> Dense.
"""
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import graphmask as gm
from graphmask import LSTM, Embedding, Input, Model
from graphmask.inspect.explain import (
    concrete_masks,
    debugprint,
    explain_mask,
    group_calls,
    mask_chains,
    mask_edges,
    mask_status,
)
from graphmask.viz import draw_masks, render, to_dot, to_png, to_svg
from tests.inspect import models
from tests.inspect.test_cli import show
from tests.inspect.test_summary import rows
from tests.inspect.test_viz import parse_dot, png_size

CHAIN = ("created by 'emb' as ids != 0 -> computed by 'drop' (compute_mask) -> passed by "
         "'block' -> used and passed by 'lstm' -> read by 'attn' (call takes mask)")

SUMMARY = """\
Model: "custom"
┏━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━┓
┃ Layer (type)         ┃ Output Shape ┃ Mask in ┃ Mask out                             ┃ Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━┩
│ ids (InputLayer)     │ (None, 6)    │ -       │ none                                 │       0 │
├──────────────────────┼──────────────┼─────────┼──────────────────────────────────────┼─────────┤
│ emb (Embedding)      │ (None, 6, 4) │ -       │ created: ids != 0                    │      36 │
├──────────────────────┼──────────────┼─────────┼──────────────────────────────────────┼─────────┤
│ drop (DropFirstStep) │ (None, 5, 4) │ emb     │ not read by call(), output mask      │       0 │
│                      │              │         │ computed by compute_mask()           │         │
├──────────────────────┼──────────────┼─────────┼──────────────────────────────────────┼─────────┤
│ block (Block)        │ (None, 5, 4) │ drop    │ not read by call(), mask passed on   │      44 │
│                      │              │         │ (supports_masking)                   │         │
├──────────────────────┼──────────────┼─────────┼──────────────────────────────────────┼─────────┤
│ lstm (LSTM)          │ (None, 5, 4) │ drop    │ used + passed                        │     144 │
├──────────────────────┼──────────────┼─────────┼──────────────────────────────────────┼─────────┤
│ attn (AttnPool)      │ (None, 4)    │ drop    │ read by call(), no output mask       │       4 │
├──────────────────────┼──────────────┼─────────┼──────────────────────────────────────┼─────────┤
│ head (Model)         │ (None, 3)    │ -       │ none                                 │      15 │
├──────────────────────┼──────────────┼─────────┼──────────────────────────────────────┼─────────┤
│ out (Dense)          │ (None, 1)    │ -       │ none                                 │       4 │
└──────────────────────┴──────────────┴─────────┴──────────────────────────────────────┴─────────┘
 Total params: 247 (988.00 B)
 Trainable params: 247 (988.00 B)
 Non-trainable params: 0 (0.00 B)
 Mask flow:
   created by 'emb' as ids != 0 -> computed by 'drop' (compute_mask) -> passed by 'block' -> used
       and passed by 'lstm' -> read by 'attn' (call takes mask)
"""

COLLAPSED = """\
# output
[36] dense 'out'  (None, 1) float32
├─ x: [g4] group 'head' (Model)  (None, 3) float32  mask: none
│  ├─ in: [g3] group 'attn' (AttnPool)  (None, 4) float32  mask: read by call(), no output mask
│  │  ├─ in {mask [5]}: [21] lstm 'lstm'  (None, 5, 4) float32  carries mask [5]
│  │  │  ├─ x {mask [5]}: [g2] group 'block' (Block)  (None, 5, 4) float32  carries mask [5]  \
mask: not read by call(), mask passed on (supports_masking)
│  │  │  │  ├─ in {mask [5]}: [g1] group 'drop' (DropFirstStep)  (None, 5, 4) float32  \
carries mask [5]  mask: not read by call(), output mask computed by compute_mask()
│  │  │  │  │  └─ in {mask [3]}: [2] embedding 'emb'  (None, 6, 4) float32  carries mask [3]
│  │  │  │  │     ├─ ids: [0] input 'ids'  (None, 6) int32
│  │  │  │  │     └─ embeddings: [1] variable 'emb' var='emb/embeddings'  (9, 4) float32
│  │  │  │  ├─ weight: [7] variable 'block_gate' var='block_gate/kernel'  (4, 4) float32
│  │  │  │  ├─ weight: [8] variable 'block_gate' var='block_gate/bias'  (4,) float32
│  │  │  │  ├─ weight: [10] variable 'block_proj' var='block_proj/kernel'  (4, 4) float32
│  │  │  │  ├─ weight: [11] variable 'block_proj' var='block_proj/bias'  (4,) float32
│  │  │  │  ├─ weight: [14] variable 'block' var='block/scale'  (4,) float32
│  │  │  │  └─ mask ~mask~> [5] prim.getitem 'drop'  (None, 5) bool  MASK made by [g1] 'drop'
│  │  │  │     └─ x: [3] mask_not_equal 'emb'  (None, 6) bool  MASK (ids != 0) made for [2]
│  │  │  │        └─ x: [0] ...
│  │  │  ├─ mask ~mask~> [5] ...
│  │  │  ├─ kernel: [18] variable 'lstm' var='lstm/kernel'  (4, 16) float32
│  │  │  ├─ recurrent_kernel: [19] variable 'lstm' var='lstm/recurrent_kernel'  (4, 16) float32
│  │  │  └─ bias: [20] variable 'lstm' var='lstm/bias'  (16,) float32
│  │  ├─ weight: [22] variable 'attn' var='attn/w'  (4, 1) float32
│  │  └─ mask ~mask~> [5] ...
│  ├─ weight: [31] variable 'head_dense' var='head_dense/kernel'  (4, 3) float32
│  └─ weight: [32] variable 'head_dense' var='head_dense/bias'  (3,) float32
├─ kernel: [34] variable 'out' var='out/kernel'  (3, 1) float32
└─ bias: [35] variable 'out' var='out/bias'  (1,) float32
# loss
[41] weighted_mean 'out:loss'  () float32
├─ score: [40] loss_score 'out:loss'  (None,) float32
│  ├─ y_pred: [36] ...
│  └─ y_true: [37] target 'out:target'  (None, 1) float32
└─ weight: [38] sample_weight 'out:sample_weight'  (None,) float32
"""

IDS = np.array([[3, 1, 0, 4, 0, 0],
                [0, 2, 2, 0, 1, 5]])


class Wrap(gm.layers.Layer):
    """A custom layer made of two custom layers: nested calls, nested clusters."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.drop = models.DropFirstStep(name="w_drop")
        self.block = models.Block(4, name="w_block")
        self.supports_masking = True

    def call(self, x):
        return self.block(self.drop(x))


def nested_model():
    x = Input(shape=(6,), dtype="int32", name="ids")
    e = Embedding(9, 4, mask_zero=True, name="emb")(x)
    return Model(x, LSTM(2, name="lstm")(Wrap(name="wrap")(e)), name="nested")


# ---- summary -------------------------------------------------------------------------
def test_summary_one_row_per_custom_call_with_its_mask_rule_and_weights():
    assert models.custom_layers().summary(return_string=True) == SUMMARY


def test_summary_rows_survive_a_narrow_table():
    text = models.custom_layers().summary(return_string=True, line_length=80)
    table = [ln for ln in text.splitlines() if ln[:1] in "┏┃┡│├└"]
    assert {len(ln) for ln in table} == {80}
    assert rows(text)[2:4] == [
        ("drop (DropFirstStep)", "(None, 5, 4)", "emb",
         "not read by call(), output mask computed by compute_mask()", "0"),
        ("block (Block)", "(None, 5, 4)", "drop",
         "not read by call(), mask passed on (supports_masking)", "44"),
    ]


def test_summary_mask_made_inside_a_custom_layer_reaches_the_masked_loss():
    text = models.custom_masked_loss().summary(return_string=True)
    assert rows(text) == [
        ("ids (InputLayer)", "(None, 5)", "-", "none", "0"),
        ("encoder (Encoder)", "(None, 5, 4)", "-",
         "output mask from the layers inside (ids != 0)", "56"),
        ("block (Block)", "(None, 5, 4)", "encoder",
         "not read by call(), mask passed on (supports_masking)", "44"),
        ("out (Dense)", "(None, 5, 2)", "encoder", "passed", "10"),
    ]
    assert text.endswith(
        " Mask flow:\n   created by 'encoder' as ids != 0 -> passed by 'block' -> passed by "
        "'out' -> used by the masked\n       mse loss\n")


def test_summary_second_call_of_a_custom_layer_is_shared():
    x = Input(shape=(6,), dtype="int32", name="ids")
    block = models.Block(4, name="block")
    h = block(block(Embedding(9, 4, mask_zero=True, name="emb")(x)))
    text = Model(x, h).summary(return_string=True)
    assert rows(text)[2:] == [
        ("block (Block)", "(None, 6, 4)", "emb",
         "not read by call(), mask passed on (supports_masking)", "44"),
        ("block (Block)", "(None, 6, 4)", "emb",
         "not read by call(), mask passed on (supports_masking)", "shared"),
    ]
    assert " Total params: 80 (320.00 B)" in text.splitlines()
    assert text.endswith("   created by 'emb' as ids != 0 -> passed by 'block' -> passed by "
                         "'block'\n")


def test_summary_counts_weights_a_call_does_not_use_as_keras_does():
    class Counted(gm.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(3,), initializer="ones", name="scale")
            self.count = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                         name="count")

        def call(self, x):
            return x * self.scale

    x = Input(shape=(5,), dtype="int32", name="ids")
    text = Model(x, Counted(name="b")(Embedding(7, 3, mask_zero=True, name="emb")(x))
                 ).summary(return_string=True)
    # Keras 3.15's summary of the same model: b has 4 params; 25 = 24 trainable + 1
    assert rows(text)[2][0] == "b (Counted)" and rows(text)[2][4] == "4"
    assert text.splitlines()[-5:-2] == [" Total params: 25 (100.00 B)",
                                        " Trainable params: 24 (96.00 B)",
                                        " Non-trainable params: 1 (4.00 B)"]


def test_summary_nested_custom_layers_are_one_row_of_the_outer_call():
    text = nested_model().summary(return_string=True)
    assert rows(text)[2:] == [
        ("wrap (Wrap)", "(None, 5, 4)", "emb",
         "not read by call(), output mask from the layers inside", "44"),
        ("lstm (LSTM)", "(None, 2)", "wrap", "consumed", "56"),
    ]
    assert text.endswith("   created by 'emb' as ids != 0 -> computed by 'wrap' (compute_mask "
                         "of 'w_drop') -> consumed by\n       'lstm'\n")


# ---- structured inspection -----------------------------------------------------------
def test_group_calls_read_from_the_graph():
    m = models.custom_layers()
    calls = list(group_calls(m).values())
    assert [(c.ref, c.title, c.takes_mask, c.received, c.out, c.made) for c in calls] == [
        ("g1", "drop (DropFirstStep)", False, (3,), (5,), (5,)),
        ("g2", "block (Block)", False, (5,), (5,), ()),
        ("g3", "attn (AttnPool)", True, (5,), (None,), ()),
        ("g4", "head (Model)", True, (), (None,), ()),
    ]
    assert [c.id for c in calls] == sorted(int(k) for k in m.graph.meta["groups"])
    assert calls[0].nodes == (4, 5, 6) and calls[3].nodes == (33,)
    assert {m.graph.node(n)["op"] for n in calls[2].nodes} == {
        "prim.matmul", "prim.squeeze", "literal", "prim.where", "prim.softmax",
        "prim.expand_dims", "prim.multiply", "prim.sum"}


def test_explain_mask_names_custom_layers_by_their_rule():
    m = models.custom_layers()
    for name in ("emb", "drop", "block", "lstm", "attn"):
        assert explain_mask(m, name) == CHAIN
    # a layer nested in a custom layer is explained through that layer's call
    assert explain_mask(m, "block_proj") == CHAIN
    assert explain_mask(m, "head") == "no mask reaches layer 'head' and it creates none"
    assert explain_mask(m, "head_dense") == ("no mask reaches layer 'head_dense' and it "
                                             "creates none")
    assert "dropped" not in explain_mask(m, "attn")
    drop, block, attn, _head = list(group_calls(m))
    assert mask_chains(m) == [[(2, 3), (("group", drop), 3), (("group", block), 5), (21, 5),
                               (("group", attn), 5)]]


def test_explain_mask_mask_made_inside_and_read_and_passed():
    assert explain_mask(models.custom_masked_loss(), "encoder_emb") == (
        "created by 'encoder' as ids != 0 -> passed by 'block' -> passed by 'out' -> used by "
        "the masked mse loss")
    xi = Input(shape=(5, 4), name="inner_in")
    inner = Model(xi, LSTM(3, return_sequences=True, name="inner_lstm")(xi), name="inner")
    x = Input(shape=(5,), dtype="int32", name="ids")
    m = Model(x, inner(Embedding(9, 4, mask_zero=True, name="emb")(x)))
    assert explain_mask(m, "inner") == ("created by 'emb' as ids != 0 -> read and passed by "
                                        "'inner' (call takes mask)")


def test_mask_status_one_status_per_call():
    m = models.custom_layers()
    (attn,) = mask_status(m, "attn")
    assert (attn.status, attn.received, attn.used, attn.out, attn.group, attn.how) == (
        "consumed", (5,), 5, None, "g3", "read by call(), no output mask")
    (drop,) = mask_status(m, "drop")
    assert (drop.status, drop.received, drop.out, drop.group) == ("created", (3,), 5, "g1")
    (block,) = mask_status(m, "block")
    assert (block.status, block.out) == ("passed", 5)
    (proj,) = mask_status(m, "block_proj")  # a nested built-in layer: its own node
    assert (proj.status, proj.group) == ("passed", None)


def test_mask_edges_report_groups_and_leave_out_edges_inside_a_call():
    m = models.custom_layers()
    collapsed = [(e.src, e.src_group, e.dst, e.dst_group, e.dst_op, e.dst_port, e.kind,
                  e.mask, e.mask_layer)
                 for e in mask_edges(m, backward=False, expand=False)]
    assert collapsed == [
        (2, None, 4, "g1", "prim.getitem", "x", "data", 3, "emb"),
        (6, "g1", 9, "g2", "dense", "x", "data", 5, "drop"),
        (6, "g1", 12, "g2", "dense", "x", "data", 5, "drop"),
        (6, "g1", 16, "g2", "prim.add", "x", "data", 5, "drop"),
        (5, "g1", 17, "g2", "attach_mask", "mask", "mask", 5, "drop"),
        (17, "g2", 21, None, "lstm", "x", "data", 5, "drop"),
        (5, "g1", 21, None, "lstm", "mask", "mask", 5, "drop"),
        (21, None, 23, "g3", "prim.matmul", "x", "data", 5, "drop"),
        (21, None, 29, "g3", "prim.multiply", "x", "data", 5, "drop"),
    ]
    inside = [(e.src, e.dst) for e in mask_edges(m, backward=False)
              if e.src_group is not None and e.src_group == e.dst_group]
    assert inside == [(5, 6), (9, 13), (12, 13)]
    assert len(mask_edges(m, backward=False)) == len(collapsed) + len(inside)


def test_concrete_masks_include_the_mask_compute_mask_made():
    got = concrete_masks(models.custom_layers(), IDS)
    assert list(got) == ["emb", "drop"]
    np.testing.assert_array_equal(got["emb"], IDS != 0)
    np.testing.assert_array_equal(got["drop"], IDS[:, 1:] != 0)


# ---- debugprint ----------------------------------------------------------------------
def test_debugprint_collapsed_one_line_per_call():
    m = models.custom_layers()
    assert debugprint(m, backward=False, expand=False) == COLLAPSED


def test_debugprint_expanded_header_then_the_nodes_of_the_call():
    m = models.custom_layers()
    lines = debugprint(m, backward=False).splitlines()
    assert debugprint(m, backward=False) == debugprint(models.custom_layers(), backward=False)
    heads = [ln.split("─ ")[-1] for ln in lines if re.search(r"\[g\d\] group", ln)]
    assert heads == [
        "x: [g4] group 'head' (Model)  mask: none",
        "x: [g3] group 'attn' (AttnPool)  mask: read by call(), no output mask",
        "x {mask [5]}: [g2] group 'block' (Block)  mask: not read by call(), mask passed on "
        "(supports_masking)",
        "x {mask [5]}: [g1] group 'drop' (DropFirstStep)  mask: not read by call(), output "
        "mask computed by compute_mask()",
    ]
    # the call's output node sits right beneath its header, one level deeper
    k = next(i for i, ln in enumerate(lines) if "x: [g3] group 'attn'" in ln)
    assert lines[k:k + 3] == [
        "│     ├─ x: [g3] group 'attn' (AttnPool)  mask: read by call(), no output mask",
        "│     │  └─ [30] prim.sum 'attn'  (None, 4) float32",
        "│     │     └─ x: [29] prim.multiply 'attn'  (None, 5, 4) float32",
    ]
    # where reads the mask the call received: marked as a mask edge
    assert "│     │                 ├─ condition ~mask~> [5] ..." in lines
    # every node of every call is printed once in full
    full = [int(m[1]) for m in (re.search(r"(?:: |~> |└─ |├─ )\[(\d+)\] (?!\.\.\.)", ln)
                                for ln in lines) if m]
    calls = [n for c in group_calls(m).values() for n in c.nodes]
    assert sorted(n for n in full if n in calls) == sorted(calls)


def test_debugprint_nested_calls_open_one_header_each():
    lines = debugprint(nested_model(), backward=False).splitlines()
    assert lines[2:5] == [
        "├─ x {mask [5]}: [g1] group 'wrap' (Wrap)  mask: not read by call(), output mask "
        "from the layers inside",
        "│  └─ [g3] group 'w_block' (Block)  mask: not read by call(), mask passed on "
        "(supports_masking)",
        "│     └─ [17] attach_mask 'w_block'  (None, 5, 4) float32  carries mask [5]",
    ]
    assert ("│        │  ├─ x {mask [5]}: [g2] group 'w_drop' (DropFirstStep)  mask: not read "
            "by call(), output mask computed by compute_mask()") in lines


# ---- pictures ------------------------------------------------------------------------
def _dot_nodes(text):
    return re.findall(r"^\s*((?:n|g)\d+) \[label=\"([^\"]*)\"", text, re.M)


def test_dot_collapsed_one_box_per_call():
    m = models.custom_layers()
    text = to_dot(m)
    names = [n for n, _ in _dot_nodes(text)]
    assert names == ["n0", "n2", "n3", "g1", "n5", "g2", "n21", "g3", "g4", "n36", "n37",
                     "n38", "n40", "n41"]
    labels = dict(_dot_nodes(text))
    assert labels["g1"] == ("drop (DropFirstStep)\\n(None, 5, 4)\\nnot read by call()\\n"
                            "output mask computed by compute_mask()")
    assert labels["g3"] == "attn (AttnPool)\\n(None, 4)\\nread by call()\\nno output mask"
    assert labels["g4"] == "head (Model)\\n(None, 3)"
    assert labels["n5"] == "mask of 'drop'\\ncompute_mask()\\n(None, 5) bool"
    assert 'g1 [label="drop (DropFirstStep)' in text and 'kind="group"' in text
    assert "subgraph cluster_g" not in text
    edges = re.findall(r"^\s*(\w+) -> (\w+) \[.*kind=\"(\w+)\"", text, re.M)
    assert [e for e in edges if "g" in e[0][0] + e[1][0]] == [
        ("n2", "g1", "masked"), ("g1", "g2", "masked"), ("g2", "n21", "masked"),
        ("n21", "g3", "masked"), ("n5", "g3", "mask"), ("g3", "g4", "data"),
        ("g4", "n36", "data")]
    assert ("n5", "n21", "mask") in edges and ("n3", "n5", "mask") in edges


def test_dot_expanded_draws_each_call_in_a_cluster():
    m = models.custom_layers()
    text = to_dot(m, expand=True)
    for ref, members in (("g1", [4, 5, 6]), ("g2", [9, 12, 13, 15, 16, 17]),
                         ("g3", [23, 24, 25, 26, 27, 28, 29, 30]), ("g4", [33])):
        block = text.split(f"subgraph cluster_{ref} {{")[1].split("}")[0]
        assert [int(n) for n in re.findall(r"^\s*n(\d+) \[", block, re.M)] == members
    assert ('label="attn (AttnPool)\\nread by call()\\nno output mask"; labeljust=l;'
            in text)
    nodes, edges = parse_dot(text)
    assert nodes[26]["label"] == "attn\\nprim.where\\n(None, 5)"
    assert nodes[5]["kind"] == "mask"
    mask_into = sorted(v for u, v, a in edges if u == 5 and a["kind"] == "mask")
    assert mask_into == [6, 17, 21, 26]  # attach (drop, block), the LSTM, attn's where
    assert not re.search(r"^\s*g\d+ ", text, re.M)
    nested = to_dot(nested_model(), expand=True)
    outer = nested.split("subgraph cluster_g1 {")[1]
    assert outer.index("subgraph cluster_g2 {") < outer.index("subgraph cluster_g3 {")


def test_pictures_collapsed_and_expanded(tmp_path):
    m = models.custom_layers()
    svg = to_svg(m)
    texts = [t.text or "" for t in ET.fromstring(svg).iter() if t.tag.endswith("text")]
    for label in ("drop (DropFirstStep)", "read by call()", "no output mask",
                  "mask of 'drop'", "custom layer call (one box)"):
        assert label in texts
    assert "prim.where" not in texts
    expanded = to_svg(m, expand=True)
    texts = [t.text or "" for t in ET.fromstring(expanded).iter() if t.tag.endswith("text")]
    for label in ("attn (AttnPool)", "prim.where", "block_proj", "custom layer call, expanded"):
        assert label in texts
    assert expanded == to_svg(models.custom_layers(), expand=True)  # deterministic
    _, h = png_size(to_png(m))
    _, h_expanded = png_size(to_png(m, expand=True))
    assert h_expanded > 1.5 * h
    out = render(m, tmp_path / "flow.dot", expand=True)
    assert open(out).read() == to_dot(m, expand=True)


def test_expanded_clusters_never_overlap_other_boxes():
    from graphmask.viz.draw import Layout
    from graphmask.viz.view import build_view
    for model in (models.custom_layers(), nested_model()):
        view = build_view(model, expand=True)
        lay = Layout(view)
        assert sorted(lay.cluster_box) == sorted(view.clusters)
        boxes = {n: (lay.box(n), _clusters_of(view, n)) for n in view.nodes}
        boxes.update({c: (b, _clusters_of(view, c, cluster=True))
                      for c, b in lay.cluster_box.items()})
        for n, ((x0, y0, x1, y1), around) in boxes.items():
            for cid, (c0, d0, c1, d1) in lay.cluster_box.items():
                if cid == n or n in _clusters_of(view, cid, cluster=True):
                    continue  # itself, or a cluster inside cluster n
                within = c0 <= x0 and x1 <= c1 and d0 <= y0 and y1 <= d1
                apart = x1 <= c0 or c1 <= x0 or y1 <= d0 or d1 <= y0
                assert within if cid in around else apart, (n, cid)


def _clusters_of(view, n, cluster=False):
    """The clusters around node (or cluster) ``n``."""
    out, c = [], view.clusters[n].parent if cluster else view.nodes[n].cluster
    while c is not None:
        out.append(c)
        c = view.clusters[c].parent
    return out


def _svg_texts(data: bytes) -> list[str]:
    return [t.text for t in ET.fromstring(data.decode("utf-8")).iter()
            if t.tag.endswith("text") and t.text]


def test_mask_grids_of_the_mask_compute_mask_made():
    m = models.custom_layers()
    texts = _svg_texts(draw_masks(m, IDS, format="svg"))
    titles = [(t, texts[i + 1]) for i, t in enumerate(texts) if t.startswith("mask of")]
    assert titles == [("mask of 'emb': ids != 0", "used by 'drop'  (kept 7 of 12)"),
                      ("mask of 'drop': compute_mask()", "used by 'lstm', 'attn'  (kept 6 of 10)")]
    texts = _svg_texts(draw_masks(m, IDS, format="svg", per="edge"))
    assert [texts[i + 1] for i, t in enumerate(texts) if t.startswith("mask of")] == [
        "-> 'drop' (its output mask is computed from it)  (kept 7 of 12)",
        "-> 'lstm' (port 'mask')  (kept 6 of 10)",
        "-> 'attn' (call takes mask)  (kept 6 of 10)"]


# ---- graphmask show --expand ---------------------------------------------------------
def test_show_expand(tmp_path, capsys):
    spec = "tests.inspect.models:custom_layers"
    assert show(spec, "--format", "dot") == 0
    assert "subgraph cluster_g" not in capsys.readouterr().out
    assert show(spec, "--format", "dot", "--expand") == 0
    assert "subgraph cluster_g3 {" in capsys.readouterr().out
    assert show(spec, "--format", "txt") == 0
    out = capsys.readouterr().out
    assert out.startswith(SUMMARY) and COLLAPSED.split("# loss")[0] in out
    assert show(spec, "--format", "txt", "--expand") == 0
    assert "│     │  └─ [30] prim.sum 'attn'  (None, 4) float32\n" in capsys.readouterr().out
    assert show(spec, "--out", str(tmp_path / "flow.png"), "--expand") == 0
    assert (tmp_path / "flow.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("expand", [False, True])
def test_backward_pictures_with_custom_layers(expand):
    m = models.custom_masked_loss()
    nodes, edges = parse_dot(to_dot(m, backward=True, expand=expand))
    vjps = m.graph.nodes_by_op("vjp")
    assert set(vjps) <= set(nodes)
    assert png_size(to_png(m, backward=True, expand=expand))[1] > 600
