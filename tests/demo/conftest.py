"""Fixtures of the demo tests: free ports, clean library state, a thread-leak check."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

import otel_resilience


def free_port() -> int:
    """A port nothing listens on right now (bind to 0 and release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_pair() -> int:
    """A port P with P and P + 1 both free (metrics and health ports of a demo)."""
    for _ in range(50):
        port = free_port()
        if port >= 65535:
            continue
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports on 127.0.0.1")


@pytest.fixture
def clean_library() -> Iterator[None]:
    """Every test starts and ends with default config, no breakers and no telemetry."""
    otel_resilience.reset()
    yield
    otel_resilience.reset()


def non_daemon_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive() and not t.daemon}


def all_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive()}
