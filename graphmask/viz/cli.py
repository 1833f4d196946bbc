"""``graphmask show MODEL --out flow.svg``: draw (or print) a model's mask flow.

MODEL is a saved model file (read with ``graphmask.saving.load_model``) or
``module:function``, a function taking no arguments that returns a model (compiled or
not). ``--format`` is ``svg``, ``png``, ``dot`` or ``txt`` (the summary, the mask
chains and the debugprint dump); by default it comes from the extension of ``--out``.
Without ``--out``, ``dot`` and ``txt`` are printed and pictures go to ``flow.<format>``.
A custom layer's call is one box (one debugprint line); ``--expand`` shows its nodes
inside a cluster (beneath a header line) instead.
"""
from __future__ import annotations

import importlib
import os
import sys

from graphmask.errors import ConfigError

FORMATS = ("svg", "png", "dot", "txt")


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
    parser.add_argument("--engine", choices=("matplotlib", "graphviz"), default="matplotlib",
                        help="renderer for svg/png (graphviz needs the 'dot' program)")


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
    if fmt in ("dot", "txt"):
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
        render(model, out, format=fmt, backward=args.backward, engine=args.engine,
               expand=getattr(args, "expand", False))
        args.out = out
    print(f"wrote {args.out}")
    return 0
