"""The Redis backend: a breaker's state shared by every process through Redis.

The Lua scripts below implement the same machine as :class:`~._machine.Machine` (the contract
suite ``tests/breakers/test_contract.py`` runs the same scenarios against both).

The shared state of one (service, endpoint) is a Redis hash at
``{REDIS_KEY_PREFIX}:cb:{service}:{endpoint}`` (both names percent-encoded) with the fields
``s`` (0 closed, 1 open, 2 half-open), ``f`` (consecutive failures), ``o`` (opened at, ms of the
server's clock), ``p`` (probes in flight), ``k`` (successful probes), ``ps`` (when the last
probe was admitted), ``h`` (when the current half-open period began: a probe's permit is
``PROBE + h``, so a probe that answers after its period ended counts for nothing, as in
:class:`~._machine.Machine`), ``d`` (how long the current opening lasts, ms) and ``n`` (its
level: re-openings without a recovery since the last close; ``CB_RESET_MULTIPLIER``). The open
time grows in the record, so every process waits the same grown time. A breaker that never
opened has no key while it has no failures; one that opened keeps a closed record after closing
(``o``, when it last opened, is never cleared).
Every write sets a TTL (``REDIS_KEY_TTL_SEC``, at least twice ``CB_RESET_SEC``, or twice the
cap of a growing open time) so abandoned breakers disappear.

Lost state (a restart, FLUSHALL, eviction or DEL while the circuit is open): every script gets
the local mirror along and, when the record is missing or never opened while the mirror says
OPEN or HALF_OPEN, writes the mirror back before doing its work, in the same round trip.

A pool with no free connection in time (:data:`otel_resilience._redis.BUSY`) is not an outage:
the acquire decides on the mirror without changing it, and the outcome of that call is not recorded.

Each operation is one Lua script (EVALSHA), atomic on the server and timed by the server's
``TIME``, so process clocks do not matter and exactly one process wins each transition:

* ``try_acquire``: one round trip that turns an expired OPEN into HALF_OPEN, admits or rejects,
  counts probes in flight across processes, and returns the state, failure count and time to
  the next probe. A healthy call costs this one round trip and nothing else (a success in the
  CLOSED state with no failures records nothing).
* ``record_failure`` / ``record_success`` / ``release``: one round trip each, only when there is
  something to record (a failure, a success after failures, a probe's outcome).

Transitions: the process whose script made a transition logs it ("transitioning to OPEN") and
fires the transition listeners, so ``resilience.circuit_breaker.transitions`` counts each shared
transition once across the fleet. The other processes update their local mirror silently (debug
log) on their next round trip; the state gauge and the call spans of every process read the
mirror.

Window modes (``CB_MODE=count|time``): each process judges failure and slow-call rates over its
own window; opening, probing and closing are shared.

Manual states (``force_open``, ``disable``, ``metrics_only``) are per process; ``reset`` also
closes the shared state (a closed record, so nobody takes it for lost state).

When Redis fails (unreachable, slower than ``REDIS_TIMEOUT_MS``, restarted) the breaker carries
on with the in-memory logic of :class:`~._memory.MemoryBackend` from its last mirrored state (see
:mod:`otel_resilience._redis` for the cool-down, logging and counting). When Redis answers
again, the next acquire merges the local state into the shared one (the more severe state wins:
a local OPEN is written as OPEN, over a shared OPEN too when its open time grew to a higher
level; in CLOSED the larger failure count is kept).

asyncio: the ``*_async`` twins do the same on ``redis.asyncio``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote

from .._config import ConfigError, ReliabilityConfig
from .._log import log_event
from .._redis import BUSY, RedisStore, get_store
from ._breaker import CircuitBreaker
from ._machine import (
    ADMITTED,
    REJECTED,
    BreakerOverride,
    CircuitBreakerState,
    Events,
    Machine,
    Permit,
    probe_permit,
)
from ._memory import Clock, Fire, MemoryBackend

logger = logging.getLogger("otel_resilience")

_CLOSED: Final = CircuitBreakerState.CLOSED
_OPEN: Final = CircuitBreakerState.OPEN
_HALF_OPEN: Final = CircuitBreakerState.HALF_OPEN
_STATES: Final = (_CLOSED, _OPEN, _HALF_OPEN)
_NO_THRESHOLD: Final = 2**31  # window modes: failures alone never open the shared breaker
_PROBE: Final = 2  # a probe's permit code in the scripts is 2 + its half-open period
#: the permit of a manual state that decides without Redis
_OVERRIDDEN: Final[Mapping[BreakerOverride | None, Permit]] = MappingProxyType(
    {BreakerOverride.FORCED_OPEN: REJECTED, BreakerOverride.DISABLED: ADMITTED}
)

# Common head of every script: the server's time in ms, the hash's fields, and the local mirror.
# ARGV[1..10] of every script: reset_ms, ttl_ms, the mirror's state, failures and ms since it
# opened; the growth of the open time (issue 14 item 3): multiplier, cap (ms), the mirror's
# level and open duration (ms), and the jitter fraction this process drew for a re-opening.
# A record that never opened (``o`` 0, or no key at all) while the mirror says OPEN or
# HALF_OPEN means Redis lost the state (restart, FLUSHALL, eviction, a manual DEL; then maybe
# a process with a closed mirror counted a failure into a new key): opening sets ``o`` and
# nothing clears it (closing and reset() keep a closed record with its ``o``), so that happens
# no other way. The mirror is written back before the script does its work.
_HEAD: Final = """
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', key, 's', 'f', 'o', 'p', 'k', 'ps', 'h', 'd', 'n')
local s = tonumber(v[1]) or 0
local f = tonumber(v[2]) or 0
local o = tonumber(v[3]) or 0
local p = tonumber(v[4]) or 0
local k = tonumber(v[5]) or 0
local ps = tonumber(v[6]) or 0
local h = tonumber(v[7]) or 0
local reset_ms = tonumber(ARGV[1])
local d = tonumber(v[8]) or reset_ms
local n = tonumber(v[9]) or 0
local mult = tonumber(ARGV[6])
local max_ms = tonumber(ARGV[7])
local ttl_ms = tonumber(ARGV[2])
local ls = tonumber(ARGV[3])
local lf = tonumber(ARGV[4])
local restored = 0
-- a probe's permit is 2 + the start (ms) of the half-open period that admitted it
local function current_probe(permit)
    return permit >= 2 and s == 2 and permit - 2 == h
end
local function save()
    if s == 0 and f == 0 and o == 0 then
        redis.call('DEL', key)  -- never opened: a healthy breaker has no key
    else
        redis.call('HSET', key, 's', s, 'f', f, 'o', o, 'p', p, 'k', k, 'ps', ps, 'h', h,
            'd', d, 'n', n)
        redis.call('PEXPIRE', key, ttl_ms)
    end
end
local function wait()
    if s == 1 then return math.max(0, d - (now - o)) end
    return 0
end
-- open at now: from closed for reset_ms; from half-open one level up (Machine.open)
local function open()
    if s == 2 then
        if mult > 1 then
            if reset_ms * mult ^ n < max_ms then n = n + 1 end
            d = math.min(max_ms, math.floor(reset_ms * mult ^ n * (1 + tonumber(ARGV[10]))))
        end
    elseif s == 0 then
        n = 0; d = reset_ms
    end
    s = 1; o = now; p = 0; k = 0
end
if o == 0 and ls ~= 0 then
    f = math.max(f, lf); restored = 1; n = tonumber(ARGV[8]); d = tonumber(ARGV[9])
    if ls == 1 then
        s = 1; o = now - tonumber(ARGV[5])
    else
        s = 2; o = now - d; p = 0; k = 0; ps = now; h = now
    end
    save()
end
"""

#: ARGV[11..13]: admit (1: take a permit, 0: just look), merge (1: push the local state first),
#: max_probes. Returns {permit, state, failures, ms until the probe, state before this
#: script's transition, restored, open duration (ms), its level}.
ACQUIRE: Final = (
    _HEAD
    + """
local max_probes = tonumber(ARGV[13])
local dirty = false
if ARGV[12] == '1' then
    -- the more severe wins: a local OPEN over a shared non-OPEN, or over a shared OPEN of a
    -- lower level (this process's probes failed while Redis was away: its open time grew)
    if ls == 1 and (s ~= 1 or tonumber(ARGV[8]) > n) then
        s = 1; o = now - tonumber(ARGV[5]); p = 0; k = 0; f = math.max(f, lf); dirty = true
        n = tonumber(ARGV[8]); d = tonumber(ARGV[9])
    elseif ls == 0 and s == 0 and lf > f then
        f = lf; dirty = true
    end
end
local old = s
if s == 1 and now - o >= d then
    s = 2; p = 0; k = 0; ps = now; h = now; dirty = true
end
if s == 2 and p >= max_probes and now - ps >= reset_ms then
    p = 0; dirty = true  -- the probes' processes died: give them up after a reset period
end
local permit = 0
if ARGV[11] == '1' then
    if s == 0 then
        permit = 1
    elseif s == 2 and p < max_probes then
        p = p + 1; ps = now; permit = 2 + h; dirty = true
    end
end
if dirty then save() end
return {permit, s, f, wait(), old, restored, d, n}
"""
)

#: ARGV[11..12]: permit, threshold. Returns {state, failures, ms until probe, old, restored,
#: open duration (ms), its level}.
FAILURE: Final = (
    _HEAD
    + """
local permit = tonumber(ARGV[11])
local old = s
if current_probe(permit) then
    f = f + 1
    open()
elseif permit < 2 then  -- a probe of a half-open period that ended counts for nothing
    f = f + 1
    if s == 0 and f >= tonumber(ARGV[12]) then open() end
end
save()
return {s, f, wait(), old, restored, d, n}
"""
)

#: ARGV[11..13]: permit, max_probes, slow (0/1). Returns {state, failures, wait, old, restored,
#: open duration (ms), its level}.
SUCCESS: Final = (
    _HEAD
    + """
if redis.call('EXISTS', key) == 0 then return {0, 0, 0, 0, 0, reset_ms, 0} end
local permit = tonumber(ARGV[11])
local old = s
if current_probe(permit) then
    if p > 0 then p = p - 1 end
    if ARGV[13] == '1' then
        open()
    else
        k = k + 1
        if k >= tonumber(ARGV[12]) then s = 0; f = 0; p = 0; k = 0; n = 0; d = reset_ms end
    end
elseif permit < 2 and s == 0 then
    f = 0
end
save()
return {s, f, wait(), old, restored, d, n}
"""
)

#: ARGV[11]: permit. Gives back a probe permit. Returns {state, failures, wait, state, restored,
#: open duration (ms), its level}.
RELEASE: Final = (
    _HEAD
    + """
if current_probe(tonumber(ARGV[11])) and p > 0 then redis.call('HSET', key, 'p', p - 1) end
return {s, f, wait(), s, restored, d, n}
"""
)

#: ARGV[1]: ttl_ms. Closed for every process; a closed record (not a deleted key), so a
#: process whose mirror still says OPEN does not take the missing key for a lost one. The
#: open time is back to the first (no ``d``: reset_ms; level 0).
RESET: Final = """
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 's', 0, 'f', 0, 'o', tonumber(t[1]) * 1000, 'p', 0, 'k', 0,
    'ps', 0, 'h', 0, 'n', 0)
redis.call('HDEL', KEYS[1], 'd')
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""


def breaker_key(prefix: str, service_name: str, endpoint: str) -> str:
    """The Redis key of a breaker's shared state."""
    return f"{prefix}:cb:{quote(service_name, safe='')}:{quote(endpoint, safe='')}"


def _code(state: CircuitBreakerState) -> int:
    return _STATES.index(state)


def _permit_code(permit: Permit) -> int:
    """A permit as the scripts take it: 0 rejected, 1 admitted, 2 + period for a probe."""
    if permit.probe:
        return _PROBE + permit.period
    return int(permit.admitted)


def _permit(code: int) -> Permit:
    if code >= _PROBE:
        return probe_permit(code - _PROBE)
    return ADMITTED if code else REJECTED


def _ints(reply: Any, size: int) -> list[int] | None:
    """A script's reply as ints, or None when it is not what the scripts return.

    The replies are ``{[permit,] state, failures, wait_ms, old state, restored, open_ms,
    level}``.
    """
    values = _as_ints(reply, size)
    if values is None or not _plausible(values):
        return None
    return values


def _as_ints(reply: Any, size: int) -> list[int] | None:
    if not isinstance(reply, list | tuple) or len(reply) != size:
        return None
    try:
        return [int(x) for x in reply]
    except (TypeError, ValueError):
        return None


def _plausible(values: list[int]) -> bool:
    """States are 0-2, restored 0 or 1, only a half-open breaker gives probe permits, nothing
    is negative."""
    first = len(values) - 7  # the acquire's reply starts with the permit
    if min(values) < 0 or max(values[first], values[first + 3]) > 2 or values[first + 4] > 1:
        return False
    return not (first and values[0] >= _PROBE and values[1] != _code(_HALF_OPEN))


class RedisBackend:
    """A breaker's state in Redis, shared by every process; the machine is the local mirror.

    When Redis fails, the in-memory backend (over the same machine and lock) carries on.
    """

    #: the asyncio call path may await the ``*_async`` twins of this backend's round trips
    async_io = True

    def __init__(
        self,
        machine: Machine,
        clock: Clock,
        fire: Fire,
        *,
        service_name: str,
        endpoint: str,
        config: ReliabilityConfig,
    ) -> None:
        if config.REDIS_URL is None:
            raise ConfigError(
                "RedisCircuitBreaker needs REDIS_URL (environment: RELIABILITY_REDIS_URL),"
                " e.g. redis://127.0.0.1:6379/0"
            )
        self.machine = machine
        self.clock = clock
        self.fire = fire
        self.local = MemoryBackend(machine, clock, fire)  # the fallback while Redis is down
        self.lock = self.local.lock
        self.service_name = service_name
        self.endpoint = endpoint
        self.key = breaker_key(config.REDIS_KEY_PREFIX, service_name, endpoint)
        self.store: RedisStore = get_store(config.REDIS_URL, config.REDIS_TIMEOUT_MS)
        settings = machine.settings
        self.reset_ms = settings.reset_ms
        longest = settings.max_ms if settings.multiplier > 1 else self.reset_ms
        self.ttl_ms = max(config.REDIS_KEY_TTL_SEC * 1000, 2 * longest)
        self.threshold = settings.threshold if machine.window is None else _NO_THRESHOLD
        # The local state diverged from the shared one (Redis failed): merge at next acquire.
        self.pending_sync = False
        self.synced_epoch = self.store.epoch

    def describe(self) -> str:
        """Extra text for the breaker's repr."""
        return f", key={self.key!r}"

    def state(self) -> CircuitBreakerState:
        """The state as of this process's last round trip (an OPEN one past its reset timeout
        reads HALF_OPEN; the shared transition happens at the next acquire)."""
        if self.store.in_outage:
            return self.local.state()  # local logic, local transitions
        machine = self.machine
        if machine.state is _OPEN and machine.half_open_due(self.clock()):
            return _HALF_OPEN
        return machine.state

    # --- the call protocol --------------------------------------------------------------------

    def try_acquire(self) -> Permit:
        """One round trip: admitted, a probe (counted across processes) or rejected."""
        early = _OVERRIDDEN.get(self.machine.override)
        if early is not None:
            return early
        args = self._acquire_args()
        return self._after_acquire(self.store.run(ACQUIRE, (self.key,), args), args)

    async def try_acquire_async(self) -> Permit:
        """The asyncio twin of :meth:`try_acquire`."""
        early = _OVERRIDDEN.get(self.machine.override)
        if early is not None:
            return early
        args = self._acquire_args()
        return self._after_acquire(await self.store.run_async(ACQUIRE, (self.key,), args), args)

    def record_success(self, permit: Permit, duration: float) -> None:
        """The admitted call succeeded; a round trip only if there is something to record."""
        args = self._success_args(permit, duration)
        if args is not None:
            self._after_success(self.store.run(SUCCESS, (self.key,), args), permit, duration)

    async def record_success_async(self, permit: Permit, duration: float) -> None:
        """The asyncio twin of :meth:`record_success`."""
        args = self._success_args(permit, duration)
        if args is not None:
            reply = await self.store.run_async(SUCCESS, (self.key,), args)
            self._after_success(reply, permit, duration)

    def record_failure(self, permit: Permit, duration: float) -> None:
        """The admitted call failed: one round trip (window modes: only when rates trip)."""
        args = self._failure_args(permit, duration)
        if args is not None:
            self._after_failure(self.store.run(FAILURE, (self.key,), args), permit, duration)

    async def record_failure_async(self, permit: Permit, duration: float) -> None:
        """The asyncio twin of :meth:`record_failure`."""
        args = self._failure_args(permit, duration)
        if args is not None:
            reply = await self.store.run_async(FAILURE, (self.key,), args)
            self._after_failure(reply, permit, duration)

    def release(self, permit: Permit) -> None:
        """Give back a permit whose call neither failed nor succeeded."""
        if permit.probe:
            args = (*self._local(), _permit_code(permit))
            self._settle(
                self.store.run(RELEASE, (self.key,), args), lambda: self.local.release(permit)
            )

    async def release_async(self, permit: Permit) -> None:
        """The asyncio twin of :meth:`release`."""
        if permit.probe:
            args = (*self._local(), _permit_code(permit))
            reply = await self.store.run_async(RELEASE, (self.key,), args)
            self._settle(reply, lambda: self.local.release(permit))

    def reset(self) -> None:
        """Back to CLOSED with no history, here and in Redis (for every process)."""
        self.local.reset()
        if self.store.run(RESET, (self.key,), (self.ttl_ms,)) in (None, BUSY):
            self.pending_sync = True

    def sync(self) -> None:
        """Read the shared state into the local mirror now (one round trip)."""
        if self.machine.override in (None, BreakerOverride.METRICS_ONLY):
            args = self._acquire_args(admit=False)
            reply = self.store.run(ACQUIRE, (self.key,), args)
            if reply not in (None, BUSY):
                self._after_acquire(reply, args)

    # --- before and after the round trips -----------------------------------------------------

    def _local(self, probe: bool = False) -> tuple[int | float, ...]:
        """ARGV[1..10] of every script: reset_ms, ttl_ms and the local mirror (state, failures,
        ms since it opened), written back when Redis lost the key; the growth of the open time
        (multiplier, cap ms, the mirror's level and open ms, and for the outcome of a probe,
        which may re-open, the jitter fraction)."""
        machine = self.machine
        settings = machine.settings
        fraction = machine.jitter() if probe and settings.multiplier > 1 else 0.0
        state = machine.state
        if machine.override is BreakerOverride.FORCED_OPEN:
            state = _CLOSED  # a manual state is this process's: never written for the others
        elapsed_ms = 0
        if state is _OPEN:
            elapsed_ms = max(0, round((self.clock() - machine.opened_at) * 1000))
        return (
            self.reset_ms,
            self.ttl_ms,
            _code(state),
            machine.failure_count,
            elapsed_ms,
            settings.multiplier,
            settings.max_ms,
            machine.level,
            machine.open_ms(),
            fraction,
        )

    def _acquire_args(self, admit: bool = True) -> tuple[int | float, ...]:
        merge = self.pending_sync or self.synced_epoch != self.store.epoch
        return (*self._local(), int(admit), int(merge), self.machine.settings.max_probes)

    def _after_acquire(self, reply: Any, args: Sequence[int | float]) -> Permit:
        if reply is BUSY:
            return self._busy_permit()
        values = _ints(reply, 8)
        if values is None:
            self._fallen_back(reply)
            return self.local.try_acquire()
        if args[11]:  # merged: the shared state has our local one now
            self.pending_sync = False
            self.synced_epoch = self.store.epoch
        self._mirror(*values[1:])
        return self.machine.overruled(_permit(values[0]))

    def _busy_permit(self) -> Permit:
        """No free connection in time: decide on the mirror, change nothing (no transition, no
        probe: those are Redis's to hand out)."""
        machine = self.machine
        return machine.overruled(ADMITTED if machine.state is _CLOSED else REJECTED)

    def _success_args(self, permit: Permit, duration: float) -> tuple[int | float, ...] | None:
        machine = self.machine
        if machine.override is BreakerOverride.DISABLED or machine.healthy(permit):
            return None  # nothing to record (the fast path of a healthy breaker)
        slow = machine.settings.is_slow(duration)
        if not permit.probe:
            if machine.window is not None:
                self._window_outcome(failed=False, slow=slow)
                return None
            if machine.state is not _CLOSED:
                return None  # a late success while open: nothing changes
        return (
            *self._local(permit.probe),
            _permit_code(permit),
            machine.settings.max_probes,
            int(slow),
        )

    def _failure_args(self, permit: Permit, duration: float) -> tuple[int | float, ...] | None:
        machine = self.machine
        if machine.override is BreakerOverride.DISABLED:
            return None
        if not permit.probe and machine.window is not None:
            self._window_outcome(failed=True, slow=machine.settings.is_slow(duration))
            return None
        return (*self._local(permit.probe), _permit_code(permit), self.threshold)

    def _after_success(self, reply: Any, permit: Permit, duration: float) -> None:
        self._settle(reply, lambda: self.local.record_success(permit, duration))

    def _after_failure(self, reply: Any, permit: Permit, duration: float) -> None:
        self._settle(reply, lambda: self.local.record_failure(permit, duration), failed=True)

    def _settle(self, reply: Any, local: Callable[[], None], *, failed: bool = False) -> None:
        """Mirror the reply of an outcome's script (FAILURE, SUCCESS, RELEASE); with no reply,
        ``local()`` records the outcome in memory. BUSY: not recorded, the shared state stays
        as it is (see BUSY)."""
        if reply is BUSY:
            return
        values = _ints(reply, 7)
        if values is None:
            self._fallen_back(reply)
            local()
            return
        if failed:
            self.machine.last_failure_time = self.clock()
        self._mirror(*values)

    def _window_outcome(self, *, failed: bool, slow: bool) -> None:
        """Window modes: add the outcome to this process's window; open for all if it trips."""
        with self.lock:
            tripped = self.machine.window_outcome(failed, slow, self.clock())
        if tripped:
            # a failure with a threshold of 1 opens the shared breaker if it is still closed;
            # BUSY: the window still holds the rates, the next outcome trips again
            args = (*self._local(), _permit_code(ADMITTED), 1)
            self._settle(self.store.run(FAILURE, (self.key,), args), self._open_locally)

    def _open_locally(self) -> None:
        """A tripped window with Redis away: open this process's breaker if it is closed."""
        events: Events = []
        with self.lock:
            if self.machine.state is _CLOSED:
                self.machine.open(self.clock(), events)
        self.fire(events)

    def _fallen_back(self, reply: Any) -> None:
        self.pending_sync = True
        if reply is not None:  # a reply that is not one of the scripts': treat as a failure
            self.store.mark_failed(ValueError(f"unexpected reply {reply!r} for {self.key}"))

    def _mirror(
        self,
        state_code: int,
        failures: int,
        wait_ms: int,
        old_code: int,
        restored: int,
        open_ms: int,
        level: int,
    ) -> None:
        """Copy the shared state into this process; fire the transition this process made."""
        extra: dict[str, object] = {
            "resilience_service": self.service_name,
            "resilience_endpoint": self.endpoint,
        }
        if restored:
            log_event(
                logger,
                logging.WARNING,
                "Circuit breaker %s: its shared state was missing from Redis (restarted,"
                " flushed or evicted), wrote back %s from this process",
                self.endpoint,
                _STATES[old_code].name,
                extra=extra,
            )
        new = _STATES[state_code]
        opened_at = None
        if new is _OPEN:
            opened_at = self.clock() - (open_ms - wait_ms) / 1000
        with self.lock:
            previous = self.machine.adopt(new, failures, opened_at, level, open_ms)
        if old_code != state_code:
            self.fire([(_STATES[old_code], new)])
        elif new is not previous:
            log_event(
                logger,
                logging.DEBUG,
                "Circuit breaker %s: now %s (transition made by another process)",
                self.endpoint,
                new.name,
                extra=extra,
            )


def redis_backend(
    machine: Machine, clock: Clock, fire: Fire, *, breaker: CircuitBreaker
) -> RedisBackend:
    """The backend factory of a breaker whose state lives in Redis (``config.REDIS_URL``)."""
    return RedisBackend(
        machine,
        clock,
        fire,
        service_name=breaker.service_name,
        endpoint=breaker.endpoint,
        config=breaker.config,
    )


def RedisCircuitBreaker(
    endpoint: str,
    failure_threshold: int = 5,
    reset_timeout_sec: float = 60,
    *,
    service_name: str = "default",
    config: ReliabilityConfig | None = None,
    clock: Clock = time.monotonic,
) -> CircuitBreaker:
    """A :class:`CircuitBreaker` whose state lives in Redis, shared by every process.

    Built by the breaker manager when ``STATE_BACKEND == "redis"``; ``config.REDIS_URL`` is
    required.
    """
    return CircuitBreaker(
        endpoint,
        failure_threshold,
        reset_timeout_sec,
        service_name=service_name,
        config=config,
        clock=clock,
        backend=redis_backend,
    )
