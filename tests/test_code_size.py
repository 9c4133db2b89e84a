"""The simulator and the optimizer stay in small pieces: no module over 400 lines, no function over 60."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).parents[1] / "src" / "servetune"
STAGES = ("sim", "tune")
MODULE_LINES = 400
FUNCTION_LINES = 60


def modules() -> list[Path]:
    return sorted(path for stage in STAGES for path in (SOURCE / stage).glob("*.py"))


def long_functions(path: Path, root: Path = SOURCE) -> list[str]:
    """Each function (or method) over FUNCTION_LINES lines, decorators and docstring included, named by its
    path under `root`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
            lines = (node.end_lineno or node.lineno) - first + 1
            if lines > FUNCTION_LINES:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {lines} lines")
    return found


def test_the_stages_have_modules_to_check() -> None:
    assert len(modules()) > 10


@pytest.mark.parametrize("path", modules(), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_no_module_is_too_long(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MODULE_LINES, f"{path.relative_to(SOURCE)}: {lines} lines; split it along a seam"


@pytest.mark.parametrize("path", modules(), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_no_function_is_too_long(path: Path) -> None:
    assert long_functions(path) == []


def test_a_long_function_is_found(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(FUNCTION_LINES))
    module = tmp_path / "long.py"
    module.write_text(f"@staticmethod\ndef short():\n    return 1\n\n\ndef long():\n{body}")
    assert long_functions(module, tmp_path) == [f"long.py:6 long: {FUNCTION_LINES + 1} lines"]
