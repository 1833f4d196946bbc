"""``graphmask show MODEL --out flow.svg``: draw (or print) a model's mask flow.

MODEL is a saved model file (read with ``graphmask.saving.load_model``) or
``module:function``, a function taking no arguments that returns a model (compiled or
not). ``--format`` is ``svg``, ``png``, ``dot``, ``txt`` (the summary, the mask
chains and the debugprint dump) or ``html`` (the interactive explorer, one
self-contained file); by default it comes from the extension of ``--out``. Without
``--out``, ``dot`` and ``txt`` are printed and pictures go to ``flow.<format>``.
``--batch data.npz`` (html only) embeds the concrete masks and sequence values of that
batch: the file's one array, or one array per model input named after the input. With
html, ``--expand`` opens the page with every call unfolded and ``--backward`` on a
weight's gradient path.
A custom layer's call is one box (one debugprint line); ``--expand`` shows its nodes
inside a cluster (beneath a header line) instead.
"""
from __future__ import annotations

import importlib
import os
import sys

from graphmask.errors import ConfigError

FORMATS = ("svg", "png", "dot", "txt", "html")


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="a saved model file, or module:function returning a model")
    parser.add_argument("--out", "-o", default=None,
                        help="file to write (default: print dot/txt, or flow.<format>)")
    parser.add_argument("--format", "-f", choices=FORMATS, default=None,
                        help="output format (default: from the --out extension, else svg)")
    parser.add_argument("--backward", action="store_true",
                        help="also show the backward (gradient) graph")
    parser.add_argument("--expand", action="store_true",
                        help="draw the nodes of each custom layer call (a cluster) instead "
                             "of one box; txt: debugprint them under a header line")
    parser.add_argument("--batch", default=None, metavar="DATA.npz",
                        help="html: embed this batch's masks and values (an .npz file: one "
                             "array, or one per model input named after it)")
    parser.add_argument("--engine", choices=("matplotlib", "graphviz"), default=None,
                        help="renderer for svg/png (graphviz needs the 'dot' program; "
                             "default matplotlib)")


def load(spec: str):
    """A model from a saved file or from ``module:function``."""
    if os.path.exists(spec):
        from graphmask.io.saving import load_model
        return load_model(spec)
    if ":" not in spec:
        raise ConfigError(f"show: {spec!r} is neither an existing file nor module:function")
    module, _, func = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: modules of the current folder
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"show: cannot import module {module!r}: {e}") from None
    fn = getattr(mod, func, None)
    if not callable(fn):
        raise ConfigError(f"show: module {module!r} has no function {func!r}")
    model = fn()
    if not hasattr(model, "graph"):
        raise ConfigError(f"show: {spec} returned {type(model).__name__}, not a model")
    return model


def load_batch(path: str, model):
    """The batch in ``path`` (``.npz``): its only array, or a dict by model input name."""
    import numpy as np
    if not os.path.exists(path):
        raise ConfigError(f"show: --batch file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ConfigError(f"show: --batch {path!r} is not a readable .npz file: {e}") from None
    names = [t.call.layer.name for t in model.inputs]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    if set(names) <= set(arrays):
        return {n: arrays[n] for n in names}
    raise ConfigError(f"show: --batch {path!r} holds arrays {sorted(arrays)}; expected one "
                      f"array, or one per model input named {names}")


def text_report(model, backward: bool = False, expand: bool = False) -> str:
    from graphmask.inspect.explain import debugprint
    from graphmask.inspect.summary import summary
    return (summary(model, return_string=True) + "\n"
            + debugprint(model, backward=backward, expand=expand))


def run(args) -> int:
    model = load(args.model)
    fmt = args.format
    if fmt is None:
        ext = os.path.splitext(args.out)[1].lstrip(".").lower() if args.out else ""
        fmt = ext if ext in FORMATS else "svg"
    if args.batch is not None and fmt != "html":
        raise ConfigError(f"show: --batch is for --format html, got --format {fmt}")
    if fmt == "html":
        from graphmask.viz.html import write_html
        if args.engine is not None:
            raise ConfigError("show: --engine is for svg/png pictures; the html explorer "
                              "draws its own SVG")
        batch = None if args.batch is None else load_batch(args.batch, model)
        out = args.out or "flow.html"
        view = "backward" if args.backward else "expanded" if getattr(args, "expand", False) \
            else "compact"
        write_html(model, out, batch=batch, view=view)
        args.out = out
    elif fmt in ("dot", "txt"):
        from graphmask.viz import to_dot
        expand = getattr(args, "expand", False)
        text = to_dot(model, backward=args.backward, expand=expand) if fmt == "dot" else \
            text_report(model, backward=args.backward, expand=expand)
        if args.out is None:
            sys.stdout.write(text)
            return 0
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        from graphmask.viz import render
        out = args.out or f"flow.{fmt}"
        render(model, out, format=fmt, backward=args.backward,
               engine=args.engine or "matplotlib",
               expand=getattr(args, "expand", False))
        args.out = out
    print(f"wrote {args.out}")
    return 0
