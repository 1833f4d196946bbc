"""The ``graphmask`` command: ``graphmask demo``, ``demo seed``, ``show``, ``check``.

Each subcommand lives in its own module, which provides ``add_arguments(parser)`` and
``run(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "demo": ("graphmask.demo.run", "train a masked character-level language model "
                               "(or 'demo seed': the masking checks)"),
    "show": ("graphmask.viz.cli", "draw the mask flow of a saved model or module:function"),
    "check": ("graphmask.inspect.doctor", "the mask doctor: where a .keras/.gmz model or "
                                          "module:function loses its padding mask"),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="graphmask", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_module=module)
        if name == chosen:  # import only the subcommand that runs
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    from graphmask.errors import GraphmaskError
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except GraphmaskError as e:
        print(f"graphmask {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
