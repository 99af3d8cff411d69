"""The layout is the architecture: the shared core and the processes never import the
commands (docs/architecture.md, "Packages"). Read from the source, so that an import
inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_TIME = ("pipeline", "edge_node", "cloud_worker", "broker")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", RUN_TIME)
def test_run_time_packages_never_import_the_commands(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in sorted(_imported_modules(path))
        if name == "camoffload" or name.startswith("camoffload.")
    ]
    assert offenders == []
