"""Drawing the mask-flow view with matplotlib (no Graphviz needed) or Graphviz's ``dot``.

Layout: a layered (Sugiyama-style) drawing. Layers come from the graph's topological
generations (sources are then moved down next to their first consumer); edges that span
several layers get invisible bend points; a few barycenter sweeps order each layer to
reduce crossings; x positions follow the neighbours' average and are then pushed apart
so boxes never overlap. Edges are smooth curves; mask-edge labels are placed where they
overlap no box and no other label. A legend explains edge and node styles.
"""
from __future__ import annotations

import io
import itertools
import shutil
import subprocess

import networkx as nx

from graphmask.errors import ConfigError
from graphmask.viz.view import EDGE_STYLE, LEGEND, NODE_LEGEND, STYLE, View, build_view

FONT = 9.0                  # points
CHAR_W = 0.602 * FONT        # DejaVu Sans Mono advance width
LINE_H = 1.35 * FONT
PAD_X, PAD_Y = 9.0, 6.0
GAP_X, GAP_Y = 26.0, 44.0
MARGIN = 24.0
DUMMY_W = 10.0
TITLE_H = 30.0


def _import_mpl():
    """matplotlib with an explicit Agg canvas (pyplot and the global backend untouched)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    return matplotlib, Figure, FigureCanvasAgg


# ---- layout ----------------------------------------------------------------------------
def _layers(view: View) -> dict:
    h = nx.DiGraph()
    h.add_nodes_from(view.nodes)
    h.add_edges_from((e.src, e.dst) for e in view.edges)
    layer = {}
    fwd = h.subgraph([n for n, v in view.nodes.items() if v.phase == "forward"])
    for i, gen in enumerate(nx.topological_generations(fwd)):
        for n in gen:
            layer[n] = i
    for n in sorted(fwd, reverse=True):  # sources sit right above their first consumer
        if fwd.in_degree(n) == 0 and fwd.out_degree(n) > 0:
            layer[n] = min(layer[s] for s in fwd.successors(n)) - 1
    base = max(layer.values(), default=-1) + 1
    bwd = h.subgraph([n for n, v in view.nodes.items() if v.phase == "backward"])
    for i, gen in enumerate(nx.topological_generations(bwd)):
        for n in gen:
            layer[n] = base + i
    low = min(layer.values(), default=0)
    return {n: v - low for n, v in layer.items()}


def _size(lines) -> tuple[float, float]:
    return (max(len(s) for s in lines) * CHAR_W + 2 * PAD_X,
            len(lines) * LINE_H + 2 * PAD_Y)


class Layout:
    """Positions (centres, in points, y downwards) of nodes and edge bend points."""

    def __init__(self, view: View):
        self.view = view
        self.layer = _layers(view)
        self.size = {n: _size(v.lines) for n, v in view.nodes.items()}
        self.chains = []                      # per edge: [src, dummies..., dst]
        rank: dict[int, list] = {}
        for n in view.nodes:
            rank.setdefault(self.layer[n], []).append(n)
        next_id = -1
        for e in view.edges:
            a, b = self.layer[e.src], self.layer[e.dst]
            chain = [e.src]
            for r in range(a + 1, b):
                self.layer[next_id] = r
                self.size[next_id] = (DUMMY_W, 0.0)
                rank.setdefault(r, []).append(next_id)
                chain.append(next_id)
                next_id -= 1
            chain.append(e.dst)
            self.chains.append(chain)
        self.ranks = [rank.get(r, []) for r in range(max(rank, default=-1) + 1)]
        self.up: dict[int, list] = {}
        self.down: dict[int, list] = {}
        for chain in self.chains:
            for u, v in itertools.pairwise(chain):
                self.down.setdefault(u, []).append(v)
                self.up.setdefault(v, []).append(u)
        self._order()
        self._place()

    def _order(self, sweeps: int = 6) -> None:
        pos = {n: i for r in self.ranks for i, n in enumerate(r)}
        for s in range(sweeps):
            rng = range(1, len(self.ranks)) if s % 2 == 0 else range(len(self.ranks) - 2, -1, -1)
            nbr = self.up if s % 2 == 0 else self.down
            for r in rng:
                def key(n, _nbr=nbr):
                    ns = _nbr.get(n, [])
                    return (sum(pos[m] for m in ns) / len(ns)) if ns else pos[n]
                self.ranks[r].sort(key=key)
                for i, n in enumerate(self.ranks[r]):
                    pos[n] = i

    def _pack(self, r: list, want: dict) -> None:
        """Place rank ``r`` near ``want`` x positions, in order, without overlaps."""
        xs = []
        for i, n in enumerate(r):
            x = want[n]
            if i:
                prev = r[i - 1]
                gap = GAP_X if prev >= 0 and n >= 0 else GAP_X * 0.8
                x = max(x, xs[-1] + (self.size[prev][0] + self.size[n][0]) / 2 + gap)
            xs.append(x)
        # shift left as a block so the rank's mean offset from ``want`` is zero
        shift = sum(want[n] - x for n, x in zip(r, xs)) / max(1, len(r))
        for n, x in zip(r, xs):
            self.x[n] = x + shift
        for i in range(len(r) - 2, -1, -1):  # keep order after the shift
            n, m = r[i], r[i + 1]
            gap = GAP_X if n >= 0 and m >= 0 else GAP_X * 0.8
            limit = self.x[m] - (self.size[n][0] + self.size[m][0]) / 2 - gap
            self.x[n] = min(self.x[n], limit)

    def _place(self, rounds: int = 8) -> None:
        self.x = {}
        for r in self.ranks:
            x = 0.0
            for n in r:
                w = self.size[n][0]
                self.x[n] = x + w / 2
                x += w + GAP_X
        for s in range(rounds):
            order = self.ranks if s % 2 == 0 else list(reversed(self.ranks))
            nbr = self.up if s % 2 == 0 else self.down
            for r in order:
                want = {}
                for n in r:
                    ns = nbr.get(n, []) or self.up.get(n, []) + self.down.get(n, [])
                    want[n] = sum(self.x[m] for m in ns) / len(ns) if ns else self.x[n]
                self._pack(r, want)
        left = min(self.x[n] - self.size[n][0] / 2 for n in self.x)
        for n in self.x:
            self.x[n] -= left - MARGIN
        self.width = max(self.x[n] + self.size[n][0] / 2 for n in self.x) + MARGIN
        self.y, y = {}, TITLE_H + MARGIN
        self.rank_y = []
        for r in self.ranks:
            h = max((self.size[n][1] for n in r), default=0.0)
            for n in r:
                self.y[n] = y + h / 2
            self.rank_y.append((y, y + h))
            y += h + GAP_Y
        self.height = y - GAP_Y + MARGIN

    def box(self, n) -> tuple[float, float, float, float]:
        w, h = self.size[n]
        return (self.x[n] - w / 2, self.y[n] - h / 2, self.x[n] + w / 2, self.y[n] + h / 2)


# ---- drawing ---------------------------------------------------------------------------
def _curve(lay: Layout, chain):
    """Vertices and codes of a smooth path from the bottom of src to the top of dst.

    A bend point (dummy) crosses its whole rank band straight down, so the curve only
    turns in the gaps between ranks, never beside a box.
    """
    from matplotlib.path import Path
    pts = []
    for i, n in enumerate(chain):
        x, y = lay.x[n], lay.y[n]
        if i == 0:
            pts.append((x, y + lay.size[n][1] / 2))
        elif i == len(chain) - 1:
            pts.append((x, y - lay.size[n][1] / 2))
        else:
            top, bottom = lay.rank_y[lay.layer[n]]
            pts += [(x, top), (x, bottom)]
    verts, codes = [pts[0]], [Path.MOVETO]
    for (x1, y1), (x2, y2) in itertools.pairwise(pts):
        ym = (y1 + y2) / 2
        if x1 == x2:
            verts += [(x1, y1 + (y2 - y1) / 3), (x2, y1 + 2 * (y2 - y1) / 3), (x2, y2)]
        else:
            verts += [(x1, ym), (x2, ym), (x2, y2)]
        codes += [Path.CURVE4] * 3
    return verts, codes, pts


def _bezier_point(p0, p1, p2, p3, t):
    mt = 1 - t
    return tuple(mt ** 3 * a + 3 * mt * mt * t * b + 3 * mt * t * t * c + t ** 3 * d
                 for a, b, c, d in zip(p0, p1, p2, p3))


def _overlaps(a, b, pad=2.0) -> bool:
    return not (a[2] + pad < b[0] or b[2] + pad < a[0] or a[3] + pad < b[1] or b[3] + pad < a[1])


def _label_spot(lay, verts, text, taken):
    """A point on the curve where a label of ``text`` overlaps no box and no label."""
    w, h = len(text) * CHAR_W * 0.95 + 6, LINE_H
    segs = [verts[i:i + 4] for i in range(0, len(verts) - 1, 3)]
    boxes = [lay.box(n) for n in lay.view.nodes]
    tries = [(k, t) for t in (0.5, 0.35, 0.65, 0.2, 0.8) for k in range(len(segs))]
    for k, t in tries:
        x, y = _bezier_point(*segs[k], t)
        for dx in (0.0, w / 2 + 4, -w / 2 - 4):
            rect = (x + dx - w / 2, y - h / 2, x + dx + w / 2, y + h / 2)
            if not any(_overlaps(rect, b) for b in boxes + taken):
                taken.append(rect)
                return x + dx, y
    x, y = _bezier_point(*segs[len(segs) // 2], 0.5)
    return x, y


def draw(view: View, legend: bool = True):
    """A matplotlib ``Figure`` of the view (Agg canvas attached)."""
    _matplotlib, Figure, FigureCanvasAgg = _import_mpl()
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle
    from matplotlib.path import Path

    lay = Layout(view)
    kinds_e = [k for k in EDGE_STYLE if any(e.kind == k for e in view.edges)]
    kinds_n = [k for k in STYLE if any(v.kind == k for v in view.nodes.values())]
    leg_rows = max(len(kinds_e), len(kinds_n))
    leg_h = (leg_rows * LINE_H * 1.45 + 40) if legend else 0.0
    width = max(lay.width, 560.0 if legend else 0.0)
    dx = (width - lay.width) / 2
    height = lay.height + leg_h
    fig = Figure(figsize=(width / 72, height / 72), dpi=72)
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    font = {"family": "monospace", "size": FONT}
    ax.text(width / 2, TITLE_H / 2 + 8, view.title, ha="center", va="center",
            fontdict={**font, "size": FONT + 2, "weight": "bold"})

    bwd = [n for n, v in view.nodes.items() if v.phase == "backward"]
    if bwd:
        x0 = min(lay.box(n)[0] for n in bwd) - 10 + dx
        y0 = min(lay.box(n)[1] for n in bwd) - 18
        x1 = max(lay.box(n)[2] for n in bwd) + 10 + dx
        y1 = max(lay.box(n)[3] for n in bwd) + 10
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", lw=1,
                               ec="#999999", zorder=0))
        ax.text(x0 + 6, y0 + 8, "backward", va="center", fontdict=font, color="#777777")

    for n in lay.x:
        lay.x[n] += dx
    taken = []
    order = sorted(range(len(view.edges)), key=lambda i: view.edges[i].kind == "mask")
    labels = []
    for i in order:
        e, chain = view.edges[i], lay.chains[i]
        colour, line, lw = EDGE_STYLE[e.kind]
        verts, codes, _ = _curve(lay, chain)
        arrow = FancyArrowPatch(path=Path(verts, codes), arrowstyle="-|>", mutation_scale=10,
                                color=colour, lw=lw, linestyle=line, zorder=2 if e.kind in (
                                    "mask", "masked") else 1, shrinkA=0, shrinkB=0)
        ax.add_patch(arrow)
        if e.label:
            labels.append((e, verts, colour))
    for e, verts, colour in labels:
        x, y = _label_spot(lay, verts, e.label, taken)
        ax.text(x, y, e.label, ha="center", va="center", color=colour, zorder=4,
                fontdict={**font, "size": FONT - 0.5, "style": "italic"},
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9})

    for n, vn in view.nodes.items():
        fill, border = STYLE[vn.kind]
        x0, y0, x1, y1 = lay.box(n)
        style = "round,pad=0,rounding_size=6" if vn.kind != "mask" else \
            "round4,pad=0,rounding_size=6"
        ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle=style, fc=fill,
                                    ec=border, lw=1.6 if vn.kind == "mask" else 1.1,
                                    ls="--" if vn.kind == "mask" else "-", zorder=3))
        for k, text in enumerate(vn.lines):
            ax.text(lay.x[n], y0 + PAD_Y + (k + 0.5) * LINE_H, text, ha="center",
                    va="center", zorder=5,
                    fontdict={**font, "weight": "bold" if k == 0 else "normal"},
                    color="#222222" if k == 0 else "#444444")

    if legend:
        top = lay.height + 14
        ax.plot([MARGIN, width - MARGIN], [top - 6, top - 6], color="#dddddd", lw=0.8)
        ax.text(MARGIN, top + 6, "edges", fontdict={**font, "weight": "bold"}, va="center")
        ax.text(width / 2 + 10, top + 6, "boxes", fontdict={**font, "weight": "bold"},
                va="center")
        for k, kind in enumerate(kinds_e):
            y = top + 6 + (k + 1) * LINE_H * 1.45
            colour, line, lw = EDGE_STYLE[kind]
            ax.add_line(Line2D([MARGIN, MARGIN + 36], [y, y], color=colour, lw=lw, ls=line))
            ax.text(MARGIN + 44, y, LEGEND[kind], va="center", fontdict=font)
        for k, kind in enumerate(kinds_n):
            y = top + 6 + (k + 1) * LINE_H * 1.45
            fill, border = STYLE[kind]
            ax.add_patch(FancyBboxPatch((width / 2 + 10, y - 5), 30, 10,
                                        boxstyle="round,pad=0,rounding_size=3", fc=fill,
                                        ec=border, ls="--" if kind == "mask" else "-"))
            ax.text(width / 2 + 48, y, NODE_LEGEND[kind], va="center", fontdict=font)
    return fig


def _graphviz(view: View, fmt: str) -> bytes:
    from graphmask.viz.dot import view_to_dot
    exe = shutil.which("dot")
    if exe is None:
        raise ConfigError("engine='graphviz' needs Graphviz's 'dot' program on PATH; use "
                          "engine='matplotlib' (the default) instead")
    res = subprocess.run([exe, f"-T{fmt}"], input=view_to_dot(view).encode(), capture_output=True,
                         check=False)
    if res.returncode != 0:
        raise ConfigError(f"dot failed: {res.stderr.decode(errors='replace')}")
    return res.stdout


def render_bytes(model, fmt: str = "svg", backward: bool = False, engine: str = "matplotlib",
                 variables: bool = False, dpi: int = 144) -> bytes:
    """The picture of ``model`` as bytes in ``fmt`` (``svg`` or ``png``)."""
    if fmt not in ("svg", "png"):
        raise ConfigError(f"render: format must be 'svg' or 'png', got {fmt!r}")
    view = build_view(model, backward=backward, variables=variables)
    if engine == "graphviz":
        return _graphviz(view, fmt)
    if engine != "matplotlib":
        raise ConfigError(f"render: engine must be 'matplotlib' or 'graphviz', got {engine!r}")
    matplotlib, _, _ = _import_mpl()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "graphmask",
                                "font.monospace": ["DejaVu Sans Mono", "monospace"]}):
        fig = draw(view)
        buf = io.BytesIO()
        meta = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(buf, format=fmt, dpi=dpi if fmt == "png" else 72, metadata=meta)
    return buf.getvalue()
