"""The registry of breakers, keyed by (service, endpoint)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from .._config import ReliabilityConfig
from ._breaker import (
    BackendFactory,
    BreakerStatus,
    CircuitBreaker,
    TransitionListener,
    memory_backend,
)
from ._memory import Clock

BreakerFactory = Callable[[str, str, ReliabilityConfig, Clock], CircuitBreaker]
ConfigSource = Callable[[str], ReliabilityConfig]


def default_factory(
    service_name: str, endpoint: str, config: ReliabilityConfig, clock: Clock
) -> CircuitBreaker:
    """A breaker with the backend that ``config.STATE_BACKEND`` names."""
    backend: BackendFactory = memory_backend
    if config.STATE_BACKEND == "redis":
        from ._redis import redis_backend

        backend = redis_backend
    return CircuitBreaker(
        endpoint,
        config.CB_FAIL_THRESHOLD,
        config.CB_RESET_SEC,
        service_name=service_name,
        config=config,
        clock=clock,
        backend=backend,
    )


def _defaults(service_name: str) -> ReliabilityConfig:
    return _DEFAULT_CONFIG


_DEFAULT_CONFIG = ReliabilityConfig()


class CircuitBreakerManager:
    """The registry of breakers, keyed by (service, endpoint).

    ``clock`` drives every breaker it makes; ``config_source(service)`` gives a service's
    settings (the runtime's config registry). When the settings change, the owner calls
    :meth:`drop_changed`.

    >>> from otel_resilience import get_circuit_breaker_manager
    >>> manager = get_circuit_breaker_manager()
    >>> breaker = manager.get_breaker("gcs", "upload")
    >>> manager.get_breaker("upload") is breaker   # the seed's one-argument form
    True
    >>> manager.reset()
    """

    #: Breakers kept before idle ones (closed, no failure recorded) are evicted; an evicted
    #: breaker is made afresh, closed, at its next call, so eviction loses no failure.
    max_idle_breakers: int = 1000

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        config_source: ConfigSource | None = None,
    ) -> None:
        self._clock = clock
        #: a standalone manager (not a runtime's) builds every breaker with the defaults
        self._config_source: ConfigSource = config_source or _defaults
        self._lock = threading.Lock()
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._sweep_at = self.max_idle_breakers  # breaker count that triggers the next sweep
        self._listeners: list[TransitionListener] = []
        self._created_listeners: list[Callable[[CircuitBreaker], None]] = []
        self.factory: BreakerFactory = default_factory

    @property
    def clock(self) -> Clock:
        """The clock of the breakers this manager makes."""
        return self._clock

    def breaker_for(self, service_name: str, endpoint: str) -> CircuitBreaker:
        """The breaker of (service, endpoint), created with the service's config on first use."""
        found = self._breakers.get((service_name, endpoint))
        if found is not None:
            return found
        config = self._config_source(service_name)
        with self._lock:
            found = self._breakers.get((service_name, endpoint))
            created: tuple[Callable[[CircuitBreaker], None], ...] = ()
            if found is None:
                found = self._create(service_name, endpoint, config)
                created = tuple(self._created_listeners)
        for on_created in created:
            on_created(found)
        return found

    def _create(
        self, service_name: str, endpoint: str, config: ReliabilityConfig
    ) -> CircuitBreaker:
        """A new breaker (lock held)."""
        if len(self._breakers) >= self._sweep_at:
            self._evict_idle()
        breaker = self.factory(service_name, endpoint, config, self._clock)
        for listener in self._listeners:
            breaker.add_listener(listener)
        self._breakers[(service_name, endpoint)] = breaker
        return breaker

    def get_breaker(self, service_or_endpoint: str, endpoint: str | None = None) -> CircuitBreaker:
        """``get_breaker(service, endpoint)``, or the seed's ``get_breaker(endpoint)``.

        The one-argument form finds the breaker of that endpoint when exactly one service has
        it; otherwise it raises ``KeyError`` naming the services to choose from.
        """
        if endpoint is not None:
            return self.breaker_for(service_or_endpoint, endpoint)
        matches = [b for (_, ep), b in list(self._breakers.items()) if ep == service_or_endpoint]
        if len(matches) != 1:
            raise KeyError(self._not_one(service_or_endpoint, matches))
        return matches[0]

    def _not_one(self, endpoint: str, matches: list[CircuitBreaker]) -> str:
        """Why ``get_breaker(endpoint)`` found no breaker, or several."""
        if not matches:
            known = sorted({f"{s}/{e}" for s, e in self._breakers}) or ["none yet"]
            return (
                f"no circuit breaker for endpoint {endpoint!r};"
                f" known (service/endpoint): {', '.join(known)}"
            )
        services = sorted(b.service_name for b in matches)
        return (
            f"endpoint {endpoint!r} is used by several services ({', '.join(services)});"
            f" use get_breaker(service_name, {endpoint!r})"
        )

    def breakers(self) -> list[CircuitBreaker]:
        """Every breaker that exists, in creation order."""
        return list(self._breakers.values())

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(self.breakers())

    def status(self) -> list[BreakerStatus]:
        """The status of every breaker (state, failure count, time to next probe)."""
        return [b.status() for b in self.breakers()]

    def add_listener(self, listener: TransitionListener) -> None:
        """Listen to the transitions of every breaker, present and future."""
        with self._lock:
            self._listeners.append(listener)
            existing = list(self._breakers.values())
        for breaker in existing:
            breaker.add_listener(listener)

    def remove_listener(self, listener: TransitionListener) -> None:
        """Stop calling a listener added with :meth:`add_listener` (no error if absent)."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
            existing = list(self._breakers.values())
        for breaker in existing:
            breaker.remove_listener(listener)

    def on_created(self, callback: Callable[[CircuitBreaker], None]) -> None:
        """Call ``callback(breaker)`` for each breaker created from now on."""
        with self._lock:
            self._created_listeners.append(callback)

    def reset(self) -> None:
        """Drop every breaker (they are created afresh, closed, on next use)."""
        with self._lock:
            self._breakers.clear()
            self._sweep_at = self.max_idle_breakers

    def _evict_idle(self) -> None:
        """Drop idle breakers (lock held). Sweeps again only once the count has doubled, so
        many busy breakers cost an amortised O(1) per creation."""
        breakers = self._breakers
        for key in [key for key, breaker in breakers.items() if breaker.idle()]:
            del breakers[key]
        self._sweep_at = max(self.max_idle_breakers, 2 * len(breakers))

    def drop_changed(self) -> None:
        """Drop the breakers whose service's config changed (they are made afresh with the new
        settings at next use); every other breaker keeps its state."""
        with self._lock:
            stale = [key for key, breaker in self._breakers.items() if self._changed(breaker)]
            for key in stale:
                del self._breakers[key]

    def _changed(self, breaker: CircuitBreaker) -> bool:
        try:
            return self._config_source(breaker.service_name) != breaker.config
        except Exception:  # the service's settings no longer load: the next call says why
            return True
