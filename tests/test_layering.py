"""The layering of DESIGN.md, enforced by walking every import of the package's sources."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "teststand": "core",
    "devices": "devices",
    "plans": "plans",
    "callbacks": "callbacks",
    "sim": "sim",
}
LAYER_OF_MODULE = {
    "teststand.devices": "devices",
    "teststand.plans": "plans",
    "teststand.callbacks": "callbacks",
    "teststand.sim": "sim",
}
# Application entry points of the core (the command line, the demo, the stand builder)
# assemble everything and may import any layer; the rest of the core stays below devices,
# plans and callbacks.
APPLICATION = {
    "teststand.cli",
    "teststand.demo",
    "teststand.tour",
    "teststand.stand",
    "teststand.report",
    "teststand.qserver",
    "teststand.operator",
}
# What each layer may import of the package. The core runs simulators for `sim://` URLs and
# `sim: true` stands; the simulators use nothing but the standard library and themselves.
ALLOWED = {
    "core": {"core", "sim"},
    "devices": {"core", "devices"},
    "plans": {"core", "devices", "callbacks", "plans"},
    "callbacks": {"core", "callbacks"},
    "sim": {"sim"},
}


def layer_of(module: str) -> str:
    for prefix, layer in LAYER_OF_MODULE.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return "core"


def package_name(path: Path) -> str:
    folder = path.relative_to(ROOT).parts[0]
    parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
    base = ["teststand"] if folder == "teststand" else ["teststand", folder]
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(base + parts) + ".__init__"
    return ".".join(base + parts)


def imported_modules(path: Path) -> list[str]:
    module = package_name(path)
    package = module.rsplit(".", 1)[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.append(node.module)
    return found


SOURCES = [p for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_respect_layers(path: Path) -> None:
    layer = FOLDERS[path.relative_to(ROOT).parts[0]]
    if package_name(path) in APPLICATION:
        return
    for module in imported_modules(path):
        if module == "teststand" or module.startswith("teststand."):
            assert layer_of(module) in ALLOWED[layer], f"{path}: {layer} imports {module}"


def test_simulators_use_only_the_standard_library() -> None:
    import sys

    for path in (ROOT / "sim").rglob("*.py"):
        for module in imported_modules(path):
            top = module.split(".")[0]
            assert top == "teststand" or top in sys.stdlib_module_names, f"{path} imports {module}"
