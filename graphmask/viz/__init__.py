"""Pictures of the mask flow: DOT text, SVG/PNG drawings, and concrete masks for a batch.

``to_dot(model)`` gives Graphviz text; ``to_svg(model)`` / ``render(model, path)`` draw
with matplotlib (no Graphviz binary needed; ``engine="graphviz"`` uses ``dot`` when it
is installed); ``draw_masks(model, x, path)`` shows each mask of a batch as a samples x
timesteps grid. ``Model._repr_svg_`` uses ``to_svg``, so notebooks show the picture.
"""
from __future__ import annotations

import os

from graphmask.errors import ConfigError
from graphmask.viz.dot import to_dot
from graphmask.viz.draw import render_bytes
from graphmask.viz.masks_picture import draw_masks

FORMATS = ("svg", "png", "dot")


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
    """Write the mask-flow picture to ``path`` (``svg``, ``png`` or ``dot``).

    ``format`` defaults to the file's extension. A custom layer's call is one box with
    its mask rule; ``expand=True`` draws its nodes inside a cluster instead. Returns the
    path written.
    """
    path = os.fspath(path)
    fmt = (format or os.path.splitext(path)[1].lstrip(".") or "svg").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"render: format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "dot":
        data = to_dot(model, backward=backward, expand=expand).encode("utf-8")
    else:
        data = render_bytes(model, fmt, backward=backward, engine=engine, dpi=dpi,
                            expand=expand)
    with open(path, "wb") as f:
        f.write(data)
    return path


__all__ = ["draw_masks", "render", "to_dot", "to_png", "to_svg"]
