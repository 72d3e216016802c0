"""The pytest plugin of otel-resilience: fixtures ``resilience`` and ``faults``.

Installed with the package (entry point ``pytest11``); it does nothing unless a test asks for
one of its fixtures, so test suites that do not use it see no change. See docs/testing.md.

- ``resilience``: a :class:`otel_resilience.testing.TestMode` for the test -- an isolated
  runtime on a fake clock (backoff computed and recorded, never slept), breakers closed,
  telemetry captured in memory; ``@pytest.mark.resilience(attempts=2, sleep=False)`` sets its
  options.
- ``faults``: the test mode's :class:`otel_resilience.testing.Faults` (``faults.inject(...)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .testing import Faults, TestMode


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "resilience(attempts=None, sleep=False, environ=None, seed=0): options of the"
        " otel-resilience test mode of the `resilience` fixture",
    )


@pytest.fixture
def resilience(request: pytest.FixtureRequest) -> Iterator[TestMode]:
    """otel-resilience's test mode for one test (closed at its end)."""
    from .testing import set_testing

    marker = request.node.get_closest_marker("resilience")
    options = dict(marker.kwargs) if marker is not None else {}
    with set_testing(**options) as mode:
        yield mode


@pytest.fixture
def faults(resilience: TestMode) -> Faults:
    """Fault injection into the calls of this test: ``faults.inject("clamav", "scan", ...)``."""
    return resilience.faults
