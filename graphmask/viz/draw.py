"""Drawing the mask-flow view with matplotlib (no Graphviz needed) or Graphviz's ``dot``.

Layout: a layered (Sugiyama-style) drawing. Layers come from the graph's topological
generations (sources are then moved down next to their first consumer); edges that span
several layers get invisible bend points; a few barycenter sweeps order each layer to
reduce crossings; x positions follow the neighbours' average and are then pushed apart
so boxes never overlap. Edges are smooth curves; mask-edge labels are placed where they
overlap no box and no other label. A legend explains edge and node styles.

An expanded custom-layer call (a cluster) is laid out on its own, with a stub at its top
for each value entering it and one at its bottom for each value leaving it, and then
placed as one big box in the level around it; edges cross its border at the stubs. So
clusters, nested ones included, never overlap other boxes.
"""
from __future__ import annotations

import io
import itertools
import shutil
import subprocess

import networkx as nx

from graphmask.errors import ConfigError
from graphmask.viz.view import (
    CLUSTER_STYLE,
    EDGE_STYLE,
    LEGEND,
    NODE_LEGEND,
    STYLE,
    View,
    build_view,
)

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
def _ranks(order: list, edges: list, phase: dict, entries: list, exits: list) -> dict:
    """Rank of each item: forward generations (sources moved down next to their first
    consumer), then the backward ones; entry stubs above everything, exit stubs below."""
    h = nx.DiGraph()
    h.add_nodes_from(order)
    h.add_edges_from((a, b) for a, b, _ in edges if a in h and b in h)
    layer = {}
    fwd = h.subgraph([n for n in order if phase[n] == "forward"])
    for i, gen in enumerate(nx.topological_generations(fwd)):
        for n in gen:
            layer[n] = i
    for n in reversed(order):  # sources sit right above their first consumer
        if n in fwd and fwd.in_degree(n) == 0 and fwd.out_degree(n) > 0:
            layer[n] = min(layer[s] for s in fwd.successors(n)) - 1
    base = max(layer.values(), default=-1) + 1
    bwd = h.subgraph([n for n in order if phase[n] == "backward"])
    for i, gen in enumerate(nx.topological_generations(bwd)):
        for n in gen:
            layer[n] = base + i
    low = min(layer.values(), default=0) - (1 if entries else 0)
    layer = {n: v - low for n, v in layer.items()}
    for n in entries:
        layer[n] = 0
    bottom = max(layer.values(), default=-1) + 1
    for n in exits:
        layer[n] = bottom
    return layer


def _size(lines) -> tuple[float, float]:
    return (max(len(s) for s in lines) * CHAR_W + 2 * PAD_X,
            len(lines) * LINE_H + 2 * PAD_Y)


class _Level:
    """A layered (Sugiyama-style) layout of items: boxes, thin bend points (dummies) and
    stubs (where an edge enters or leaves the cluster this level is the inside of).

    ``x``/``y`` are centres in points, y downwards, relative to the level's top-left
    corner plus ``margin`` (and ``top`` above the first rank); ``chains[i]`` lists the
    items edge ``i`` passes through, ends included.
    """

    def __init__(self, order: list, size: dict, edges: list, phase: dict, entries=(),
                 exits=(), margin: float = 0.0, top: float = 0.0):
        entries, exits = list(entries), list(exits)
        self.size = dict(size)
        self.thin = set(entries) | set(exits)
        self.layer = _ranks(order, edges, phase, entries, exits)
        self.chains: dict[int, list] = {}
        rank: dict[int, list] = {}
        for n in entries + order + exits:
            rank.setdefault(self.layer[n], []).append(n)
        shared: dict = {}
        for a, b, i in edges:
            if (a, b) in shared:  # one value through one stub: one line up to it
                self.chains[i] = shared[(a, b)]
                continue
            chain = [a]
            for r in range(self.layer[a] + 1, self.layer[b]):
                d = ("dummy", i, r)
                self.layer[d] = r
                self.size[d] = (DUMMY_W, 0.0)
                self.thin.add(d)
                rank.setdefault(r, []).append(d)
                chain.append(d)
            chain.append(b)
            self.chains[i] = chain
            if a in self.thin or b in self.thin:
                shared[(a, b)] = chain
        self.ranks = [rank.get(r, []) for r in range(max(rank, default=-1) + 1)]
        self.up: dict = {}
        self.down: dict = {}
        for chain in {id(c): c for c in self.chains.values()}.values():
            for u, v in itertools.pairwise(chain):
                self.down.setdefault(u, []).append(v)
                self.up.setdefault(v, []).append(u)
        self._order()
        self._place(margin, top)

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

    def _gap(self, a, b) -> float:
        return GAP_X * 0.8 if a in self.thin or b in self.thin else GAP_X

    def _pack(self, r: list, want: dict) -> None:
        """Place rank ``r`` near ``want`` x positions, in order, without overlaps."""
        xs = []
        for i, n in enumerate(r):
            x = want[n]
            if i:
                prev = r[i - 1]
                x = max(x, xs[-1] + (self.size[prev][0] + self.size[n][0]) / 2
                        + self._gap(prev, n))
            xs.append(x)
        # shift left as a block so the rank's mean offset from ``want`` is zero
        shift = sum(want[n] - x for n, x in zip(r, xs)) / max(1, len(r))
        for n, x in zip(r, xs):
            self.x[n] = x + shift
        for i in range(len(r) - 2, -1, -1):  # keep order after the shift
            n, m = r[i], r[i + 1]
            limit = self.x[m] - (self.size[n][0] + self.size[m][0]) / 2 - self._gap(n, m)
            self.x[n] = min(self.x[n], limit)

    def _place(self, margin: float, top: float, rounds: int = 8) -> None:
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
        left = min((self.x[n] - self.size[n][0] / 2 for n in self.x), default=0.0)
        for n in self.x:
            self.x[n] -= left - margin
        self.width = max((self.x[n] + self.size[n][0] / 2 for n in self.x),
                         default=0.0) + margin
        self.y, y = {}, top
        self.rank_y = []
        for r in self.ranks:
            h = max((self.size[n][1] for n in r), default=0.0)
            for n in r:
                self.y[n] = y + h / 2
            self.rank_y.append((y, y + h))
            y += h + GAP_Y
        self.height = (y - GAP_Y if self.ranks else y) + margin


CLUSTER_PAD = 10.0   # inside a call's cluster, around its layout


class Layout:
    """Positions of the view's boxes (centres, in points, y downwards), of the clusters
    of expanded calls (``cluster_box``) and the bend points of every edge (``paths``).

    Each cluster is laid out on its own (its items: nodes and nested clusters, plus a
    stub where an edge enters or leaves it) and then placed as one big box in the level
    around it, so clusters never overlap other boxes.
    """

    def __init__(self, view: View):
        self.view = view
        self.size = {n: _size(v.lines) for n, v in view.nodes.items()}
        self.levels: dict = {}
        self.cluster_box: dict = {}
        self.x: dict = {}
        self.y: dict = {}
        self._offset: dict = {}
        top = self._build(None)
        self.width, self.height = top.width, top.height
        self._put(None, 0.0, 0.0)
        self.paths = [self._path(i) for i in range(len(view.edges))]

    # -- structure -------------------------------------------------------------------
    def _clusters_of(self, n) -> list:
        """The clusters around node ``n``, outermost first."""
        out, c = [], self.view.nodes[n].cluster
        while c is not None:
            out.append(c)
            c = self.view.clusters[c].parent
        return out[::-1]

    def _item(self, level, n):
        """What node ``n`` is at ``level`` (a cluster id, or None for the top): the node,
        the cluster directly inside ``level`` holding it, or None when outside."""
        chain = self._clusters_of(n)
        if level is None:
            return chain[0] if chain else n
        if level not in chain:
            return None
        k = chain.index(level)
        return chain[k + 1] if k + 1 < len(chain) else n

    def _title_h(self, cid) -> float:
        return len(self.view.clusters[cid].lines) * LINE_H + PAD_Y

    def _build(self, level) -> _Level:
        order, phase = [], {}
        for n, vn in self.view.nodes.items():
            item = self._item(level, n)
            if item is not None and item not in phase:
                order.append(item)
                phase[item] = vn.phase
        for item in order:
            if item in self.view.clusters:
                inner = self._build(item)
                title_w = _size(self.view.clusters[item].lines)[0]
                self.size[item] = (max(inner.width + 2 * CLUSTER_PAD, title_w),
                                   inner.height + self._title_h(item) + CLUSTER_PAD)
        edges, entries, exits = [], [], []
        for i, e in enumerate(self.view.edges):
            a, b = self._item(level, e.src), self._item(level, e.dst)
            if a is not None and b is not None and a != b:
                edges.append((a, b, i))
            elif a is None and b is not None:
                stub = ("entry", e.src)
                if stub not in entries:
                    entries.append(stub)
                edges.append((stub, b, i))
            elif a is not None and b is None:
                stub = ("exit", e.src)
                if stub not in exits:
                    exits.append(stub)
                edges.append((a, stub, i))
        size = {n: self.size[n] for n in order}
        size.update({s: (DUMMY_W, 0.0) for s in entries + exits})
        lay = _Level(order, size, edges, phase, entries, exits,
                     margin=MARGIN if level is None else 0.0,
                     top=TITLE_H + MARGIN if level is None else 0.0)
        self.levels[level] = lay
        return lay

    def _put(self, level, ox: float, oy: float) -> None:
        """Absolute positions of ``level``'s items, its inside starting at (ox, oy)."""
        lay = self.levels[level]
        self._offset[level] = (ox, oy)
        for n in lay.x:
            if n in lay.thin:
                continue
            x, y = ox + lay.x[n], oy + lay.y[n]
            self.x[n], self.y[n] = x, y
            if n in self.view.clusters:
                w, h = self.size[n]
                box = (x - w / 2, y - h / 2, x + w / 2, y + h / 2)
                self.cluster_box[n] = box
                inner = self.levels[n]
                self._put(n, box[0] + (w - inner.width) / 2, box[1] + self._title_h(n))

    def box(self, n) -> tuple[float, float, float, float]:
        w, h = self.size[n]
        return (self.x[n] - w / 2, self.y[n] - h / 2, self.x[n] + w / 2, self.y[n] + h / 2)

    def shift(self, dx: float) -> None:
        """Move everything ``dx`` points to the right."""
        for n in self.x:
            self.x[n] += dx
        self.cluster_box = {c: (x0 + dx, y0, x1 + dx, y1)
                            for c, (x0, y0, x1, y1) in self.cluster_box.items()}
        self.paths = [[(x + dx, y) for x, y in pts] for pts in self.paths]

    # -- edges -----------------------------------------------------------------------
    def _through(self, level, i: int) -> list:
        """Points where edge ``i`` crosses ``level``: down each bend point's rank band,
        and from the cluster's border to a stub (or back)."""
        lay, (ox, oy) = self.levels[level], self._offset[level]
        chain = lay.chains.get(i, [])
        pts = []
        for n in chain[1:-1]:
            top, bottom = lay.rank_y[lay.layer[n]]
            pts += [(ox + lay.x[n], oy + top), (ox + lay.x[n], oy + bottom)]
        if chain and isinstance(chain[0], tuple) and chain[0][0] == "entry":
            x, y = ox + lay.x[chain[0]], oy + lay.y[chain[0]]
            pts = [(x, self.cluster_box[level][1]), (x, y)] + pts
        if chain and isinstance(chain[-1], tuple) and chain[-1][0] == "exit":
            x, y = ox + lay.x[chain[-1]], oy + lay.y[chain[-1]]
            pts += [(x, y), (x, self.cluster_box[level][3])]
        return pts

    def _path(self, i: int) -> list:
        """The points edge ``i`` passes, from the bottom of its source to the top of its
        destination."""
        e = self.view.edges[i]
        out_of, into = self._clusters_of(e.src), self._clusters_of(e.dst)
        common = 0
        while common < min(len(out_of), len(into)) and out_of[common] == into[common]:
            common += 1
        pts = [(self.x[e.src], self.y[e.src] + self.size[e.src][1] / 2)]
        for c in reversed(out_of[common:]):
            pts += self._through(c, i)
        pts += self._through(out_of[common - 1] if common else None, i)
        for c in into[common:]:
            pts += self._through(c, i)
        pts.append((self.x[e.dst], self.y[e.dst] - self.size[e.dst][1] / 2))
        return pts


# ---- drawing ---------------------------------------------------------------------------
def _curve(pts):
    """Vertices and codes of a smooth path through ``pts`` (from the bottom of the source
    to the top of the destination).

    A bend point (dummy) crosses its whole rank band straight down, so the curve only
    turns in the gaps between ranks, never beside a box.
    """
    from matplotlib.path import Path
    verts, codes = [pts[0]], [Path.MOVETO]
    for (x1, y1), (x2, y2) in itertools.pairwise(pts):
        ym = (y1 + y2) / 2
        if x1 == x2:
            verts += [(x1, y1 + (y2 - y1) / 3), (x2, y1 + 2 * (y2 - y1) / 3), (x2, y2)]
        else:
            verts += [(x1, ym), (x2, ym), (x2, y2)]
        codes += [Path.CURVE4] * 3
    return verts, codes


def _bezier_point(p0, p1, p2, p3, t):
    mt = 1 - t
    return tuple(mt ** 3 * a + 3 * mt * mt * t * b + 3 * mt * t * t * c + t ** 3 * d
                 for a, b, c, d in zip(p0, p1, p2, p3))


def _overlaps(a, b, pad=2.0) -> bool:
    return not (a[2] + pad < b[0] or b[2] + pad < a[0] or a[3] + pad < b[1] or b[3] + pad < a[1])


def _segments(verts) -> list:
    return [verts[i:i + 4] for i in range(0, len(verts) - 1, 3)]


def _label_spot(lay, verts, text, taken, only=None):
    """A point on the curve (on segments ``only``, default all) where a label of
    ``text`` overlaps no box and no label."""
    w, h = len(text) * CHAR_W * 0.95 + 6, LINE_H
    segs = _segments(verts)
    boxes = [lay.box(n) for n in lay.view.nodes]
    ks = range(len(segs)) if only is None else only
    tries = [(k, t) for t in (0.5, 0.35, 0.65, 0.2, 0.8) for k in ks]
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
    if view.clusters:
        kinds_n.append("cluster")
    leg_rows = max(len(kinds_e), len(kinds_n))
    leg_h = (leg_rows * LINE_H * 1.45 + 40) if legend else 0.0
    width = max(lay.width, 560.0 if legend else 0.0)
    lay.shift((width - lay.width) / 2)
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
        x0 = min(lay.box(n)[0] for n in bwd) - 10
        y0 = min(lay.box(n)[1] for n in bwd) - 18
        x1 = max(lay.box(n)[2] for n in bwd) + 10
        y1 = max(lay.box(n)[3] for n in bwd) + 10
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", lw=1,
                               ec="#999999", zorder=0))
        ax.text(x0 + 6, y0 + 8, "backward", va="center", fontdict=font, color="#777777")

    fill, border = CLUSTER_STYLE
    for depth, (cid, cl) in enumerate(view.clusters.items()):  # outer clusters first
        x0, y0, x1, y1 = lay.cluster_box[cid]
        ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0,
                                    boxstyle="round,pad=0,rounding_size=8", fc=fill,
                                    ec=border, lw=1.3, zorder=0.5 + depth * 1e-3))
        for k, text in enumerate(cl.lines):
            ax.text(x0 + PAD_X, y0 + PAD_Y / 2 + (k + 0.5) * LINE_H, text, ha="left",
                    va="center", zorder=5, color="#3d2a66" if k == 0 else "#5a4a80",
                    fontdict={**font, "weight": "bold" if k == 0 else "normal"},
                    bbox={"boxstyle": "square,pad=0.1", "fc": fill, "ec": "none"})

    taken = []
    order = sorted(range(len(view.edges)), key=lambda i: view.edges[i].kind == "mask")
    labels = []
    for i in order:
        e = view.edges[i]
        colour, line, lw = EDGE_STYLE[e.kind]
        verts, codes = _curve(lay.paths[i])
        arrow = FancyArrowPatch(path=Path(verts, codes), arrowstyle="-|>", mutation_scale=10,
                                color=colour, lw=lw, linestyle=line, zorder=2 if e.kind in (
                                    "mask", "masked") else 1, shrinkA=0, shrinkB=0)
        ax.add_patch(arrow)
        if e.label:
            labels.append((e, verts, colour))
    labelled: set = set()  # segments already labelled (edges sharing a line to a stub)
    for e, verts, colour in labels:
        keys = [(e.label, *(round(c, 1) for p in seg for c in p)) for seg in _segments(verts)]
        free = [k for k, key in enumerate(keys) if key not in labelled]
        labelled.update(keys)
        if not free:
            continue
        x, y = _label_spot(lay, verts, e.label, taken, free)
        ax.text(x, y, e.label, ha="center", va="center", color=colour, zorder=4,
                fontdict={**font, "size": FONT - 0.5, "style": "italic"},
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9})

    for n, vn in view.nodes.items():
        fill, border = STYLE[vn.kind]
        x0, y0, x1, y1 = lay.box(n)
        style = "round,pad=0,rounding_size=6" if vn.kind != "mask" else \
            "round4,pad=0,rounding_size=6"
        ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle=style, fc=fill,
                                    ec=border, lw=1.6 if vn.kind in ("mask", "group") else 1.1,
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
            fill, border = CLUSTER_STYLE if kind == "cluster" else STYLE[kind]
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
                 variables: bool = False, dpi: int = 144, expand: bool = False) -> bytes:
    """The picture of ``model`` as bytes in ``fmt`` (``svg`` or ``png``); ``expand=True``
    draws each custom-layer call's nodes inside a cluster instead of one box."""
    if fmt not in ("svg", "png"):
        raise ConfigError(f"render: format must be 'svg' or 'png', got {fmt!r}")
    view = build_view(model, backward=backward, variables=variables, expand=expand)
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
