"""The Python blocks of docs/integrations/*.md run, in order, one namespace per page; the
integration modules' docstring examples too."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

import otel_resilience

ROOT = Path(__file__).resolve().parent.parent.parent
PAGES = sorted((ROOT / "docs" / "integrations").glob("*.md"))


def test_every_integration_has_a_page():
    assert [p.stem for p in PAGES] == ["clamav", "gcs", "grpc", "httpx", "openai", "requests"]


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_python_blocks_run(path: Path):
    """A block marked ``# not run`` (it needs a live server) is only compiled."""
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, f"{path.name} shows no code"
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    for index, block in enumerate(blocks):
        code = compile(block, f"{path.name}[block {index}]", "exec")
        if "# not run" not in block:
            exec(code, namespace)


@pytest.mark.parametrize(
    "module", ["otel_resilience.grpc", "otel_resilience.clamav", "otel_resilience.gcs"]
)
def test_docstring_examples(module: str):
    result = doctest.testmod(
        importlib.import_module(module), optionflags=doctest.ELLIPSIS, verbose=False
    )
    otel_resilience.reset()
    assert result.attempted > 0
    assert result.failed == 0
