"""The package's folders import one way (docs/architecture.md, "The folder layout").

A module-level import may only reach a role at the same rank or below; imports inside
functions (lazy) are how a lower layer hands work back up and are not checked.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: role of each top-level name under graphmask/, lowest first (as in the docs table)
RANKS = {
    "errors": 0, "utils": 0, "allocator": 0,
    "ops": 1, "kernels": 1,
    "ir": 2,
    "passes": 3,
    "runtime": 4,
    "layers": 5,
    "training": 6,
    "io": 7,
    "models": 8,
    "inspect": 9, "viz": 9, "distribute": 9,
    "testing": 10,
    "cli": 11, "demo": 11,
}
#: public namespace modules (re-export lists) may import anything
PUBLIC = {"__init__", "losses", "metrics", "optimizers", "callbacks", "initializers", "saving"}


def _role(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT)
    if rel.parts[0] == "passes":
        return "passes"
    name = rel.parts[1]
    return name[:-3] if name.endswith(".py") else name


def _modules():
    for path in sorted((ROOT / "graphmask").rglob("*.py")):
        if "passes" in path.relative_to(ROOT / "graphmask").parts[:1]:
            continue
        yield path
    yield from sorted((ROOT / "passes").glob("*.py"))


def _top_level_imports(path: pathlib.Path):
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "graphmask":
            parts = node.module.split(".")
            if len(parts) > 1:
                yield node.lineno, parts[1]
            else:
                yield from ((node.lineno, a.name) for a in node.names)


def _violations(modules=None):
    bad = []
    for path, role in modules or [(p, _role(p)) for p in _modules()]:
        if role in PUBLIC:
            continue
        for line, target in _top_level_imports(path):
            if target in PUBLIC - {"__init__"}:
                bad.append(f"{path.name}:{line} imports the public namespace "
                           f"graphmask.{target}; import its implementation module")
            elif RANKS.get(target, -1) > RANKS[role]:
                bad.append(f"{path.name}:{line} ({role}) imports {target}, "
                           f"which sits above it")
    return bad


def test_every_role_is_ranked():
    roles = {_role(p) for p in _modules()} - PUBLIC
    assert roles <= set(RANKS), sorted(roles - set(RANKS))


def test_imports_run_one_way():
    assert _violations() == []


def test_the_check_catches_an_upward_and_a_public_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import numpy\nfrom graphmask.models.functional import Model\n"
                     "from graphmask import losses\n")
    assert _violations([(probe, "ops")]) == [
        "probe.py:2 (ops) imports models, which sits above it",
        "probe.py:3 imports the public namespace graphmask.losses; import its "
        "implementation module"]


@pytest.mark.parametrize("name", sorted(PUBLIC - {"__init__"}))
def test_public_namespaces_import_as_keras_ones_do(name):
    import importlib
    mod = importlib.import_module(f"graphmask.{name}")
    assert mod.__all__ and all(hasattr(mod, n) for n in mod.__all__)
