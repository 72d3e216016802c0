"""Documentation is tested: every docstring example and every Python block of the docs runs."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import otel_resilience

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(otel_resilience.__path__, "otel_resilience.")
    if ".demo" not in name and not name.endswith(".cli")
)


@pytest.mark.parametrize("module_name", ["otel_resilience", *MODULES])
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    otel_resilience.reset()
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"


def _python_blocks(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [
        block
        for block in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
        if "# not run" not in block
    ]


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_python_blocks_in_docs_run(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```python block runs in order, sharing one namespace per file.

    A block whose text contains ``# not run`` is skipped (e.g. one that needs a live service).
    """
    import otel_resilience
    from support import FakeClock

    runtime = otel_resilience.Runtime(clock=FakeClock())  # backoff does not really sleep
    monkeypatch.setattr(otel_resilience._runtime._default, "runtime", runtime)
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    for index, block in enumerate(_python_blocks(path)):
        try:
            exec(compile(block, f"{path.name}[block {index}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the assertion message is the report
            pytest.fail(f"{path.name} block {index} failed: {type(exc).__name__}: {exc}")
