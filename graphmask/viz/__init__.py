"""Pictures of the mask flow: DOT text, SVG/PNG drawings, and concrete masks for a batch.

``to_dot(model)`` gives Graphviz text; ``to_svg(model)`` / ``render(model, path)`` draw
with matplotlib (no Graphviz binary needed; ``engine="graphviz"`` uses ``dot`` when it
is installed); ``draw_masks(model, x, path)`` shows each mask of a batch as a samples x
timesteps grid; ``to_html(model, batch=None)`` is the interactive explorer (one
self-contained HTML page: click, search, zoom, expand calls, a weight's gradient path,
the batch's masks), ``show(model)`` the same inside a notebook.
``Model._repr_svg_`` uses ``to_svg`` and ``Model._repr_html_`` the explorer.
"""
from __future__ import annotations

import os

from graphmask.errors import ConfigError
from graphmask.viz.dot import to_dot
from graphmask.viz.draw import render_bytes
from graphmask.viz.html import show, to_html, write_html
from graphmask.viz.masks_picture import draw_masks

FORMATS = ("svg", "png", "dot", "html")


def to_svg(model, backward: bool = False, engine: str = "matplotlib",
           expand: bool = False) -> str:
    """SVG text of the mask-flow picture of ``model.graph`` (``expand``: see :func:`render`)."""
    return render_bytes(model, "svg", backward=backward, engine=engine,
                        expand=expand).decode("utf-8")


def to_png(model, backward: bool = False, engine: str = "matplotlib", dpi: int = 144,
           expand: bool = False) -> bytes:
    """PNG bytes of the mask-flow picture of ``model.graph`` (``expand``: see :func:`render`)."""
    return render_bytes(model, "png", backward=backward, engine=engine, dpi=dpi,
                        expand=expand)


def render(model, path, format: str | None = None, backward: bool = False,
           engine: str = "matplotlib", dpi: int = 144, expand: bool = False) -> str:
    """Write the mask-flow picture to ``path`` (``svg``, ``png``, ``dot`` or ``html``).

    ``format`` defaults to the file's extension; ``html`` is the interactive explorer
    (:func:`to_html`). A custom layer's call is one box with
    its mask rule; ``expand=True`` draws its nodes inside a cluster instead. Returns the
    path written.
    """
    path = os.fspath(path)
    fmt = (format or os.path.splitext(path)[1].lstrip(".") or "svg").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"render: format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "html":
        return write_html(model, path)
    if fmt == "dot":
        data = to_dot(model, backward=backward, expand=expand).encode("utf-8")
    else:
        data = render_bytes(model, fmt, backward=backward, engine=engine, dpi=dpi,
                            expand=expand)
    with open(path, "wb") as f:
        f.write(data)
    return path


__all__ = ["draw_masks", "render", "show", "to_dot", "to_html", "to_png", "to_svg",
           "write_html"]
