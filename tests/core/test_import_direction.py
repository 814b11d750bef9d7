"""Domains import one way: core <- instruments <- booking <- telemetry <- billing <- admin <- labshare.

`lint-imports` checks the same in CI; this keeps the rule in the test suite too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["core", "instruments", "booking", "telemetry", "billing", "admin", "labshare"]


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(LAYERS)


def test_no_domain_imports_one_to_its_right() -> None:
    wrong = []
    for rank, layer in enumerate(LAYERS):
        allowed = set(LAYERS[: rank + 1])
        for path in sorted((ROOT / layer).rglob("*.py")):
            for package in sorted(_imported_packages(path) - allowed):
                wrong.append(f"{path.relative_to(ROOT)} imports {package}")
    assert wrong == []
