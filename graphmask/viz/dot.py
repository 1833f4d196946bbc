"""DOT (Graphviz) text of a model's compiled graph, mask edges and mask nodes marked.

Node names are ``n<id>`` with the graph's stable node ids. Mask edges (the boolean mask
flowing into a ``mask`` port) are orange, dashed and labelled ``mask``; data edges whose
value carries a mask are blue and bold; mask nodes are orange hexagons. With
``backward=True`` the backward graph sits in ``cluster_backward``. A custom layer's call
is one purple box ``g<n>`` (``kind="group"``); with ``expand=True`` its nodes sit in
``cluster_g<n>`` instead, labelled with the layer and its mask rule.
"""
from __future__ import annotations

from graphmask.viz.view import CLUSTER_STYLE, EDGE_STYLE, STYLE, View, build_view


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _label(lines) -> str:
    return "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in lines)


def _node(vn) -> str:
    fill, border = STYLE[vn.kind]
    shape = {"mask": "hexagon", "source": "ellipse"}.get(vn.kind, "box")
    style = "filled,rounded" if shape == "box" else "filled"
    return (f'{vn.id} [label="{_label(vn.lines)}", shape={shape}, style="{style}", '
            f'fillcolor="{fill}", color="{border}", kind={_q(vn.kind)}];')


def _edge(e) -> str:
    colour, line, width = EDGE_STYLE[e.kind]
    attrs = [f'color="{colour}"', f"style={line}", f"penwidth={width}", f"kind={_q(e.kind)}",
             f"port={_q(e.port)}"]
    if e.label:
        attrs += [f"label={_q(e.label)}", f'fontcolor="{colour}"']
    if e.mask is not None:
        attrs.append(f'mask="{e.mask}"')
    return f"{e.src} -> {e.dst} [{', '.join(attrs)}];"


def _cluster(view: View, cid: str, indent: str) -> list[str]:
    """A call drawn expanded: its nodes and nested calls inside ``cluster_<id>``."""
    fill, border = CLUSTER_STYLE
    out = [f"{indent}subgraph cluster_{cid} {{",
           f'{indent}  label="{_label(view.clusters[cid].lines)}"; labeljust=l;',
           f'{indent}  style="rounded,filled"; fillcolor="{fill}"; color="{border}";']
    out += [f"{indent}  " + _node(vn) for vn in view.nodes.values()
            if vn.cluster == cid and vn.phase == "forward"]
    for sub in view.clusters.values():
        if sub.parent == cid:
            out += _cluster(view, sub.id, indent + "  ")
    out.append(f"{indent}}}")
    return out


def view_to_dot(view: View) -> str:
    lines = ["digraph graphmask {",
             "  rankdir=TB;",
             f"  label={_q(view.title)}; labelloc=t;",
             '  node [fontname="DejaVu Sans Mono", fontsize=10];',
             '  edge [fontname="DejaVu Sans Mono", fontsize=9];']
    fwd = [vn for vn in view.nodes.values() if vn.phase == "forward" and not vn.cluster]
    bwd = [vn for vn in view.nodes.values() if vn.phase == "backward"]
    lines += ["  " + _node(vn) for vn in fwd]
    for c in view.clusters.values():
        if c.parent is None:
            lines += _cluster(view, c.id, "  ")
    if bwd:
        lines += ["  subgraph cluster_backward {", '    label="backward";',
                  '    style=dashed; color="#999999";']
        lines += ["    " + _node(vn) for vn in bwd]
        lines.append("  }")
    lines += ["  " + _edge(e) for e in view.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_dot(model, backward: bool = False, variables: bool = False,
           expand: bool = False) -> str:
    """DOT text of ``model.graph`` (forward; ``backward=True`` adds the backward graph).

    Parameters
    ----------
    model : Model or Graph
    backward : include the backward (VJP) nodes in a ``cluster_backward`` subgraph.
    variables : draw the weight (``variable``) nodes too.
    expand : draw each custom-layer call's nodes in a cluster instead of one box.
    """
    return view_to_dot(build_view(model, backward=backward, variables=variables,
                                  expand=expand))
