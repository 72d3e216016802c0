"""The Python blocks of docs/integrations/*.md run, in order, one namespace per page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
PAGES = sorted((ROOT / "docs" / "integrations").glob("*.md"))


def test_every_integration_has_a_page():
    assert [p.stem for p in PAGES] == ["httpx", "openai", "requests"]


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_python_blocks_run(path: Path):
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, f"{path.name} shows no code"
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    for index, block in enumerate(blocks):
        exec(compile(block, f"{path.name}[block {index}]", "exec"), namespace)
