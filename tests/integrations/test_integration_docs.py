"""The Python blocks of the gRPC, ClamAV and GCS integration pages run (as tests/test_docs.py
runs those of docs/*.md); the modules' docstring examples too."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

import otel_resilience

DOCS = Path(__file__).resolve().parents[2] / "docs" / "integrations"
PAGES = ["grpc.md", "clamav.md", "gcs.md"]


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_run(page: str):
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, f"{page} has no Python block"
    namespace: dict[str, object] = {"__name__": f"docs_{page}"}
    for index, block in enumerate(blocks):
        if "# not run" in block:
            compile(block, f"{page}[block {index}]", "exec")  # still valid Python
            continue
        exec(compile(block, f"{page}[block {index}]", "exec"), namespace)


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
