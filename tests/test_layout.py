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


PROCESSES = ("edge_node", "cloud_worker", "broker")
OURS = frozenset({*RUN_TIME, "camoffload"})


@pytest.mark.parametrize("package", PROCESSES)
def test_the_process_packages_never_import_each_other(package: str) -> None:
    others = [p for p in PROCESSES if p != package]
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in sorted(_imported_modules(path))
        if name.partition(".")[0] in others
    ]
    assert offenders == []


def test_no_private_name_crosses_a_module_boundary() -> None:
    """A private name (``_x``, a module or anything in one) is used only inside what owns
    it: ``pipeline.protocol._wire`` inside ``pipeline.protocol``, a module's ``_helper``
    inside that module. Everything else goes through ``__all__``."""
    offenders = []
    for package in (*RUN_TIME, "camoffload"):
        for path in sorted((ROOT / package).rglob("*.py")):
            importer = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            importer = importer.removesuffix(".__init__")
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
                    continue
                if node.module.partition(".")[0] not in OURS:
                    continue  # another project's private parts are its own business
                for alias in node.names:
                    parts = [*node.module.split("."), alias.name]
                    private = [i for i, part in enumerate(parts) if _private(part)]
                    if not private:
                        continue
                    owner = ".".join(parts[: private[0]])
                    if importer != owner and not importer.startswith(f"{owner}."):
                        offenders.append(f"{path.relative_to(ROOT)}: {'.'.join(parts)}")
    assert offenders == []


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
