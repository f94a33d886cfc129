"""The package's layers point down: a module imports only from its own layer or the ones below it, function-local
imports included, so that a newcomer can read the graph from the bottom up (and image search, storage and the
evaluation load without what sits above them)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "hashlab"
# bottom first; a package may import its own layer and every layer below
LAYERS = [
    {"errors", "clock", "allocator", "seeding", "io", "objects", "locks"},
    {"evaluation"},
    {"records"},
    {"data", "backbones", "losses"},
    {"features"},
    {"methods", "configs"},
    {"reporting"},
    {"runs", "explain"},
    {"search"},
    {"cli", "__main__"},
]
LEVEL = {name: index for index, layer in enumerate(LAYERS) for name in layer}


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        found |= {n.split(".")[1] for n in names if n.startswith("hashlab.") and n.count(".") >= 1}
    return found


def test_every_import_points_down():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        package = relative.parts[0].removesuffix(".py")
        if package == "__init__":
            continue
        assert package in LEVEL, f"{relative}: package {package!r} has no layer in tests/test_layers.py"
        for target in imports(path):
            assert target in LEVEL, f"{relative} imports hashlab.{target}, which has no layer"
            if LEVEL[target] > LEVEL[package]:
                upward.append(f"{relative} -> hashlab.{target}")
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    """The check can fail: a records module importing the runs is caught (function-local imports too)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from hashlab.runs.fit import run_fit\n")
    assert imports(module) == {"runs"} and LEVEL["runs"] > LEVEL["records"]
