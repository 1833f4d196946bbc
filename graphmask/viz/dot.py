"""DOT (Graphviz) text of a model's compiled graph, mask edges and mask nodes marked.

Node names are ``n<id>`` with the graph's stable node ids. Mask edges (the boolean mask
flowing into a ``mask`` port) are orange, dashed and labelled ``mask``; data edges whose
value carries a mask are blue and bold; mask nodes are orange hexagons. With
``backward=True`` the backward graph sits in ``cluster_backward``.
"""
from __future__ import annotations

from graphmask.viz.view import EDGE_STYLE, STYLE, View, build_view


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _node(vn) -> str:
    fill, border = STYLE[vn.kind]
    shape = {"mask": "hexagon", "source": "ellipse"}.get(vn.kind, "box")
    style = "filled,rounded" if shape == "box" else "filled"
    label = "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in vn.lines)
    return (f'n{vn.id} [label="{label}", shape={shape}, style="{style}", '
            f'fillcolor="{fill}", color="{border}", kind={_q(vn.kind)}];')


def _edge(e) -> str:
    colour, line, width = EDGE_STYLE[e.kind]
    attrs = [f'color="{colour}"', f"style={line}", f"penwidth={width}", f"kind={_q(e.kind)}",
             f"port={_q(e.port)}"]
    if e.label:
        attrs += [f"label={_q(e.label)}", f'fontcolor="{colour}"']
    if e.mask is not None:
        attrs.append(f'mask="n{e.mask}"')
    return f"n{e.src} -> n{e.dst} [{', '.join(attrs)}];"


def view_to_dot(view: View) -> str:
    lines = ["digraph graphmask {",
             "  rankdir=TB;",
             f"  label={_q(view.title)}; labelloc=t;",
             '  node [fontname="DejaVu Sans Mono", fontsize=10];',
             '  edge [fontname="DejaVu Sans Mono", fontsize=9];']
    fwd = [vn for vn in view.nodes.values() if vn.phase == "forward"]
    bwd = [vn for vn in view.nodes.values() if vn.phase == "backward"]
    lines += ["  " + _node(vn) for vn in fwd]
    if bwd:
        lines += ["  subgraph cluster_backward {", '    label="backward";',
                  '    style=dashed; color="#999999";']
        lines += ["    " + _node(vn) for vn in bwd]
        lines.append("  }")
    lines += ["  " + _edge(e) for e in view.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_dot(model, backward: bool = False, variables: bool = False) -> str:
    """DOT text of ``model.graph`` (forward; ``backward=True`` adds the backward graph).

    Parameters
    ----------
    model : Model or Graph
    backward : include the backward (VJP) nodes in a ``cluster_backward`` subgraph.
    variables : draw the weight (``variable``) nodes too.
    """
    return view_to_dot(build_view(model, backward=backward, variables=variables))
