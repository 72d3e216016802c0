"""redis-py's connect path, interrupted at every bytecode by the real SIGALRM handler.

The soak (test_soak_clients.py) hits these points at random and, under load, rarely. Here a
tracer stops a GET that has to connect at each bytecode of ``Connection._connect`` (and what it
calls: ``socket.socket.__init__``, ``settimeout``, ``connect``, the ``except`` that closes) and
of ``connect_check_health`` itself, and delivers one tick of the library's own timer there:
SIGALRM blocked, the clock moved past the deadline, the timer run out, SIGALRM unblocked, so
``on_alarm`` decides as it does for real. Two pauses:

* just past the deadline: what every tick sees;
* past the hold cap (``_HOLD_MAX``): the process was not running for that long (a loaded CI
  machine, a long garbage collection) and the first tick after the pause lands wherever it
  stopped. The cap exists for regions that *block*, not for a region the pause happened to
  stop in: cutting ``socket.socket.__init__`` after the descriptor exists loses an unconnected
  socket (``ResourceWarning: unclosed <socket.socket ... laddr=('0.0.0.0', 0)>``), which is
  how the soak flaked in whole-suite runs.

Afterwards no socket may be left open outside the pool, and the GET returned its value or the
timeout.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest
from redis_support import RedisServer

from otel_resilience import _timeout
from otel_resilience._timeout import AttemptTimeout, run_with_timeout
from support import require_binary

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "setitimer") or not os.path.isdir("/proc/self/fd"),
    reason="POSIX interval timers and /proc/self/fd",
)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = require_binary("/usr/bin/redis-server", "redis-server")
    server = RedisServer(binary, tmp_path_factory.mktemp("connect-redis"))
    server.start()
    yield server
    server.stop()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class _OneTick:
    """A tracer that, at the ``at``-th bytecode of the connect path, lets the deadline pass by
    ``pause`` seconds and delivers the timer's signal there (once)."""

    def __init__(self, at: int, pause: float, codes: frozenset[Any], own: frozenset[Any]):
        self.at = at
        self.pause = pause
        self.codes = codes  # frames under these are the connect path
        self.own = own  # frames whose own bytecodes count, not their callees'
        self.seen = 0
        self.delivered_in: str | None = None
        self.offset = 0.0
        #: the trace function in force before (coverage's, under ``--cov``): put back after
        self.previous = sys.gettrace()

    def clock(self) -> float:
        return time.monotonic() + self.offset

    def in_path(self, frame: FrameType) -> bool:
        if frame.f_code in self.own:
            return True
        walk: FrameType | None = frame
        while walk is not None:
            if walk.f_code in self.codes:
                return True
            walk = walk.f_back
        return False

    def __call__(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "call":
            if not self.in_path(frame):
                return None  # not traced: the path's frames only
            frame.f_trace_opcodes = True
            return self
        if event == "opcode":
            self.seen += 1
            if self.seen == self.at:
                self.delivered_in = f"{frame.f_code.co_qualname}:{frame.f_lineno}"
                sys.settrace(self.previous)
                self.tick()
        return self

    def tick(self) -> None:
        entry = _timeout._interrupter.stack[-1]
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            self.offset += entry.deadline - self.clock() + self.pause
            signal.setitimer(signal.ITIMER_REAL, 1e-6)
            while signal.SIGALRM not in signal.sigpending():
                pass
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})  # the handler runs


def _sweep(server: RedisServer, pause: float, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import redis
    import redis.connection as rc

    codes = frozenset({rc.Connection._connect.__code__})
    # connect_check_health (redis-py >= 6) stores the socket ``_connect`` returned
    stores = getattr(rc.AbstractConnection, "connect_check_health", rc.AbstractConnection.connect)
    own = frozenset({stores.__code__})
    client = redis.Redis(port=server.port, socket_timeout=5)
    client.set("k", "v")
    pool = client.connection_pool
    leaks: list[str] = []
    outcomes: list[str] = []
    at = 0
    with warnings.catch_warnings(record=True) as unclosed:
        warnings.simplefilter("always", ResourceWarning)
        while True:
            at += 1
            pool.disconnect()
            pool.reset()
            before = _open_fds()
            tracer = _OneTick(at, pause, codes, own)
            monkeypatch.setattr(_timeout, "_monotonic", tracer.clock)

            def get(tracer: _OneTick = tracer) -> Any:
                sys.settrace(tracer)
                try:
                    return client.get("k")
                finally:
                    sys.settrace(tracer.previous)
                    tracer.offset = 0.0  # the clock is right again before the call ends

            try:
                result: object = run_with_timeout(get, 30.0)
            except AttemptTimeout as exc:
                result = exc
            finally:
                monkeypatch.setattr(_timeout, "_monotonic", time.monotonic)
            if tracer.delivered_in is None:
                break  # the path has fewer bytecodes than ``at``: all were tried
            # the tick ends the attempt, at once or right after the region it was held in
            outcomes.append(type(result).__name__)
            pool.disconnect()
            if _open_fds() > before:  # maybe a socket in a reference cycle: collect it
                gc.collect()
            # what the soak fails on: an unclosed socket, warned about when it is freed
            lost = [str(w.message) for w in unclosed if "unclosed <socket" in str(w.message)]
            if lost:
                leaks.append(f"{at}: {tracer.delivered_in}: {lost}")
            del unclosed[:]
        gc.collect()
    client.close()
    assert at > 100, "the tracer never reached the connect path"
    assert set(outcomes) == {"AttemptTimeout"}, Counter(outcomes)
    return leaks


@pytest.mark.parametrize(
    "pause",
    [
        pytest.param(1e-3, id="just-past-the-deadline"),
        pytest.param(_timeout._HOLD_MAX + 0.5, id="past-the-hold-cap"),
    ],
)
def test_no_tick_anywhere_in_redis_connect_loses_a_socket(
    redis_server: RedisServer, pause: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        leaks = _sweep(redis_server, pause, monkeypatch)
    finally:  # whatever happened, SIGALRM is not left blocked for the tests after this one
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})

    assert leaks == [], f"sockets left open by a tick at: {leaks}"
    assert _timeout._leftovers() == []
