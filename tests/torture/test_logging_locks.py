"""A timeout that cuts code while it takes or gives back one of ``logging``'s locks must not
leave the lock held: every other thread that logs, or calls ``getLogger``, would wait forever.

Main-thread attempts with timeouts of tens of microseconds land the interruption at random
points of ``logging.getLogger`` and of a handler's ``handle``; after each batch, another thread
must get both locks at once.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import threading

import pytest

from otel_resilience import AttemptTimeout
from otel_resilience._timeout import run_with_timeout

CALLS = 1500


def _free(lock: threading.RLock | None) -> bool:
    """Whether another thread can take ``lock`` within half a second."""
    assert lock is not None
    got: list[bool] = []

    def take() -> None:
        acquired = lock.acquire(timeout=0.5)
        if acquired:
            lock.release()
        got.append(acquired)

    thread = threading.Thread(target=take)
    thread.start()
    thread.join()
    return got == [True]


@pytest.mark.parametrize("seed", [1, 2])
def test_a_cut_never_leaves_a_logging_lock_held(seed: int) -> None:
    assert threading.current_thread() is threading.main_thread()  # interrupt mode: SIGALRM
    rng = random.Random(seed)
    handler = logging.StreamHandler(io.StringIO())
    logger = logging.getLogger(f"otel_resilience.tests.locks.{seed}")
    logger.addHandler(handler)
    logger.propagate = False
    counter = iter(range(10**9))

    def body() -> None:
        while True:  # runs until the timeout cuts it, wherever that is
            logging.getLogger(f"otel_resilience.tests.locks.{seed}.{next(counter)}")
            logger.warning("record %d", 1)

    try:
        for i in range(CALLS):
            with contextlib.suppress(AttemptTimeout):
                run_with_timeout(body, rng.uniform(2e-5, 5e-4))
            if i % 250 == 249:
                assert _free(logging._lock), f"logging's module lock held after {i + 1} cuts"  # type: ignore[attr-defined]
                assert _free(handler.lock), f"the handler's lock held after {i + 1} cuts"
    finally:
        # a lock left held by this (main) thread would hang the rest of the suite: give back
        for lock in (logging._lock, handler.lock):  # type: ignore[attr-defined]
            while lock is not None and lock._is_owned():  # type: ignore[attr-defined]
                lock.release()
        logger.removeHandler(handler)
        for name in list(logging.Logger.manager.loggerDict):
            if name.startswith(f"otel_resilience.tests.locks.{seed}."):
                del logging.Logger.manager.loggerDict[name]
