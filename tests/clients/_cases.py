"""Fault modes and the classification every HTTP client library must give them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from faultserver import FaultServer
from otel_resilience import ExternalServiceError
from otel_resilience._classify import CLIENT_CLASSIFIERS, Classification
from support import classify

E = ExternalServiceError

#: client timeout against the slow modes (the server waits 5 s before answering)
SLOW_TIMEOUT_SEC = 0.25
#: client timeout for the rest: generous, so a loaded machine cannot turn a 503 into a timeout
TIMEOUT_SEC = 5.0


def timeout_for(path: str) -> float:
    """The client timeout for a fault path: short only where the timeout is the point."""
    return SLOW_TIMEOUT_SEC if path.startswith("slow") else TIMEOUT_SEC


@dataclass(frozen=True)
class Fault:
    """A fault-server path, the error type it must map to and the Retry-After it carries."""

    path: str  # "refuse" means: the port where nothing listens
    error_type: ExternalServiceError
    retry_after: tuple[float, float] | None = None  # accepted range (an HTTP-date is coarse)

    @property
    def counted(self) -> str:
        """The path the server counts (query string and parameters dropped)."""
        return "/" + self.path.split("?")[0].split("/")[0]

    def as_segments(self) -> str:
        """The path with its query as ``name=value`` segments (for base-URL clients)."""
        path, _, query = self.path.partition("?")
        return "/".join([path, *query.split("&")]) if query else path


HTTP_FAULTS = [
    pytest.param(Fault("refuse", E.CONNECTION_ERROR), id="connection-refused"),
    pytest.param(Fault("reset", E.CONNECTION_ERROR), id="reset-mid-response"),
    pytest.param(Fault("close", E.CONNECTION_ERROR), id="closed-without-response"),
    pytest.param(Fault("malformed", E.CONNECTION_ERROR), id="malformed-status-line"),
    pytest.param(Fault("slow?delay=5", E.TIMEOUT), id="slow-headers-read-timeout"),
    pytest.param(Fault("slow-body?delay=5", E.TIMEOUT), id="slow-body-read-timeout"),
    pytest.param(Fault("429?retry_after=2", E.RATE_LIMIT, (2, 2)), id="429-retry-after-seconds"),
    pytest.param(
        Fault("429-date?retry_after=30", E.RATE_LIMIT, (27, 30)), id="429-retry-after-date"
    ),
    pytest.param(Fault("429", E.RATE_LIMIT), id="429-without-retry-after"),
    pytest.param(Fault("503", E.SERVER_ERROR), id="503"),
    pytest.param(Fault("503?retry_after=7", E.SERVER_ERROR, (7, 7)), id="503-retry-after"),
    pytest.param(Fault("500", E.SERVER_ERROR), id="500"),
    pytest.param(Fault("504", E.TIMEOUT), id="504-gateway-timeout"),
    pytest.param(Fault("401", E.AUTHENTICATION_ERROR), id="401"),
    pytest.param(Fault("403", E.PERMISSION_DENIED), id="403"),
    pytest.param(Fault("404", E.NOT_FOUND), id="404"),
    pytest.param(Fault("400", E.BAD_REQUEST), id="400"),
]


def assert_classified(exc: BaseException, library: str, fault: Fault) -> Classification:
    """``exc`` is classified by ``library``'s classifier (not a fallback) as ``fault`` says."""
    own = CLIENT_CLASSIFIERS[library](exc)
    assert own is not None, f"{library} classifier passed on {type(exc).__name__}: {exc}"
    found = classify(exc)  # the whole chain agrees (an HTTP-date's seconds shrink meanwhile)
    assert found.error_type is own.error_type
    assert (found.retry_after is None) is (own.retry_after is None)
    assert found.error_type is fault.error_type, f"{type(exc).__name__}: {exc}"
    if fault.retry_after is None:
        assert found.retry_after is None
    else:
        low, high = fault.retry_after
        assert found.retry_after is not None
        assert low <= found.retry_after <= high
    return found


def url_for(server: FaultServer, fault: Fault) -> str:
    if fault.path == "refuse":
        return f"{server.refused_url}/ok"
    return f"{server.url}/{fault.path}"


def expect_hits(server: FaultServer, fault: Fault, hits: int = 1) -> None:
    """The request reached the fault (``hits`` times: the client did not retry on its own)."""
    if fault.path != "refuse":
        assert server.count(fault.counted) == hits
