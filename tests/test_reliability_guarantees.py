"""The README's Guarantees section names, for each guarantee, the tests that prove it: every
name must be a test that exists, so the list cannot drift from the suite."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("\n## Guarantees\n", 1)[1].split("\n## ", 1)[0]


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_guarantee_names_tests_that_exist() -> None:
    lines = [line for line in _section().splitlines() if line.startswith("- ")]
    assert len(lines) >= 10
    for line in lines:
        references = re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", line)
        assert references, f"no test named for: {line[:80]}"
        current: Path | None = None
        for file, name in references:
            if file:
                current = ROOT / file
                assert current.exists(), file
            assert current is not None, line[:80]
            if name:
                assert name in _tests_in(current), f"{current.name}::{name} does not exist"
