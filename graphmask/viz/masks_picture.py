"""Concrete masks of a batch, drawn as samples x timesteps grids.

One panel per mask of the model (``per="mask"``; masks a custom layer computes included)
or per mask edge (``per="edge"``: one panel for each consumer a mask flows into, a
custom layer whose ``call`` takes the mask counting as one). A cell is blue where the
position is kept (mask True) and light grey where it is masked. When the mask was
computed from ids (``ids != 0``) and the batch is small, each cell shows its id, so
padding is easy to spot. The masks are computed by running the compiled graph on the batch
(:func:`graphmask.inspect.compute_masks`), exactly as training and evaluation do.
"""
from __future__ import annotations

import io
import os

import networkx as nx
import numpy as np

from graphmask.errors import ConfigError
from graphmask.inspect.explain import (
    compute_masks,
    group_calls,
    mask_computes,
    mask_edges,
    mask_label,
    mask_nodes,
    mask_values,
)

KEPT, MASKED = "#1f6fb4", "#e9e9e9"
MAX_ANNOTATED = 600   # cells; above this the ids are not written in the cells


def _users(model, mid: int) -> list[tuple[str, str]]:
    """``(user, how)`` for each layer that reads mask ``mid``: a mask edge into a layer's
    ``mask`` port, a custom layer whose ``call`` takes the mask, or one that computes its
    output mask from it (one entry per call)."""
    g = model.graph
    calls = {c.ref: c for c in group_calls(g).values()}
    users = []
    for e in mask_edges(model, backward=False, expand=False):
        if e.mask != mid or e.kind != "mask" or e.dst_op == "attach_mask":
            continue  # attach_mask: a custom layer passing the mask on, not reading it
        name = calls[e.dst_group].layer if e.dst_group else e.dst_layer
        users.append((name, f"port {e.dst_port!r}"))
    for c in calls.values():
        if c.parent is None and mid in c.received:
            if c.takes_mask:
                users.append((c.layer, "call takes mask"))
            if any(nx.has_path(g.nx, mid, m) for m in c.made):
                users.append((c.layer, "its output mask is computed from it"))
    return users


def _panels(model, per: str):
    g = model.graph
    panels = []
    for mid in mask_values(g):
        users = _users(model, mid)
        name = f"mask of {mask_label(g, mid)!r}: {mask_computes(g, mid)}"
        if per == "mask":
            names = list(dict.fromkeys(u for u, _ in users))
            panels.append((mid, name, "used by " + (", ".join(repr(u) for u in names)
                                                    if names else "nothing yet")))
        else:
            panels += [(mid, name, f"-> {u!r} ({how})") for u, how in users]
    return panels


def masks_figure(model, x, per: str = "mask", max_samples: int = 32, max_steps: int = 100):
    """A matplotlib ``Figure`` (Agg canvas) with one grid per mask or mask edge."""
    if per not in ("mask", "edge"):
        raise ConfigError(f"draw_masks: per must be 'mask' or 'edge', got {per!r}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    g = model.graph
    panels = _panels(model, per)
    if not panels:
        raise ConfigError("draw_masks: the model has no mask (no Embedding(mask_zero=True) "
                          "or Masking layer)")
    ids_src = {m: g.in_ports(m)["x"] for m in mask_nodes(g)
               if g.node(m)["op"] == "mask_not_equal"}
    values = compute_masks(model, x, extra=tuple(sorted(set(ids_src.values()))))
    grids = []
    for mid, title, sub in panels:
        m = np.asarray(values[mid], dtype=bool)
        m = m.reshape(m.shape[0], -1)[:max_samples, :max_steps]
        ids = values.get(ids_src.get(mid))
        if ids is not None:
            ids = np.asarray(ids).reshape(len(ids), -1)[:max_samples, :max_steps]
            if ids.dtype.kind == "f" and np.all(ids == np.round(ids)):
                ids = ids.astype(np.int64)  # float inputs holding ids: show 3, not 3.0
        grids.append((m, ids, title, sub))
    cell = 0.32 if max(gr[0].shape[1] for gr in grids) <= 40 else 0.16
    width = max(6.0, max(gr[0].shape[1] for gr in grids) * cell + 1.6)
    heights = [gr[0].shape[0] * cell + 1.3 for gr in grids]
    fig = Figure(figsize=(width, sum(heights) + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(grids), 1, squeeze=False,
                        gridspec_kw={"height_ratios": heights})[:, 0]
    cmap = ListedColormap([MASKED, KEPT])
    for ax, (m, ids, title, sub) in zip(axes, grids):
        b, t = m.shape
        ax.imshow(m.astype(int), cmap=cmap, vmin=0, vmax=1, aspect="equal",
                  interpolation="nearest")
        ax.set_xticks(np.arange(-0.5, t, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, b, 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=1.2)
        ax.tick_params(which="minor", length=0)
        step = max(1, t // 20)
        ax.set_xticks(np.arange(0, t, step))
        ax.set_yticks(np.arange(0, b, max(1, b // 16)))
        ax.set_xlabel("timestep", fontsize=9)
        ax.set_ylabel("sample", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_title(f"{title}\n{sub}  (kept {int(m.sum())} of {m.size})", fontsize=9,
                     loc="left", family="monospace")
        if ids is not None and m.size <= MAX_ANNOTATED:
            for (i, j), v in np.ndenumerate(ids):
                ax.text(j, i, str(v), ha="center",
                        va="center", fontsize=7, color="white" if m[i, j] else "#777777")
    fig.legend(handles=[Patch(fc=KEPT, label="kept (mask True)"),
                        Patch(fc=MASKED, ec="#bbbbbb", label="masked (mask False)")],
               loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.35 / (sum(heights) + 0.5), 1, 1))
    return fig


def draw_masks(model, x, path=None, format: str | None = None, per: str = "mask",
               dpi: int = 120):
    """Draw each mask of ``model`` for the batch ``x`` as a samples x timesteps grid.

    Parameters
    ----------
    model : Model
    x : the batch (as for ``predict``).
    path : file to write (``.png`` or ``.svg``); when None the PNG bytes are returned.
    format : ``png`` or ``svg`` (default: from the extension of ``path``).
    per : ``"mask"`` (one grid per mask) or ``"edge"`` (one per mask edge).
    """
    fmt = (format or (os.path.splitext(os.fspath(path))[1].lstrip(".") if path else "")
           or "png").lower()
    if fmt not in ("png", "svg"):
        raise ConfigError(f"draw_masks: format must be 'png' or 'svg', got {fmt!r}")
    import matplotlib
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "graphmask"}):
        fig = masks_figure(model, x, per=per)
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi,
                    metadata={"Date": None} if fmt == "svg" else {"Software": None})
    data = buf.getvalue()
    if path is None:
        return data
    with open(path, "wb") as f:
        f.write(data)
    return os.fspath(path)
