"""redis-py (sync and asyncio) against the RESP fault server: every reply maps to its type."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff

from faultserver import LOCALHOST, RespFaultServer
from otel_resilience._classify import CLIENT_CLASSIFIERS

from ._cases import TIMEOUT_SEC, E, Fault, assert_classified, timeout_for

# the key of GET picks the server's reply
REDIS_FAULTS = [
    pytest.param("loading", Fault("-", E.SERVER_ERROR), id="LOADING"),
    pytest.param("tryagain", Fault("-", E.SERVER_ERROR), id="TRYAGAIN"),
    pytest.param("clusterdown", Fault("-", E.SERVER_ERROR), id="CLUSTERDOWN"),
    pytest.param("masterdown", Fault("-", E.SERVER_ERROR), id="MASTERDOWN"),
    pytest.param("readonly", Fault("-", E.SERVER_ERROR), id="READONLY"),
    pytest.param("oom", Fault("-", E.SERVER_ERROR), id="OOM"),
    pytest.param("noauth", Fault("-", E.AUTHENTICATION_ERROR), id="NOAUTH"),
    pytest.param("wrongpass", Fault("-", E.AUTHENTICATION_ERROR), id="WRONGPASS"),
    pytest.param("noperm", Fault("-", E.PERMISSION_DENIED), id="NOPERM"),
    pytest.param("wrongtype", Fault("-", E.BAD_REQUEST), id="WRONGTYPE"),
    pytest.param("err", Fault("-", E.BAD_REQUEST), id="ERR"),
    pytest.param("slow:5", Fault("-", E.TIMEOUT), id="slow-read-timeout"),
    pytest.param("reset", Fault("-", E.CONNECTION_ERROR), id="reset-mid-reply"),
    pytest.param("close", Fault("-", E.CONNECTION_ERROR), id="closed-without-reply"),
    pytest.param("garbage", Fault("-", E.CONNECTION_ERROR), id="not-a-redis-server"),
]


def _client(port: int, key: str = "ok") -> redis.Redis:
    return redis.Redis(
        host=LOCALHOST,
        port=port,
        socket_timeout=timeout_for(key),
        socket_connect_timeout=TIMEOUT_SEC,
        retry=redis.retry.Retry(NoBackoff(), 0),  # redis-py's own retries off
    )


def _async_client(port: int, key: str = "ok") -> redis.asyncio.Redis:
    return redis.asyncio.Redis(
        host=LOCALHOST,
        port=port,
        socket_timeout=timeout_for(key),
        socket_connect_timeout=TIMEOUT_SEC,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
    )


@pytest.mark.parametrize(("key", "fault"), REDIS_FAULTS)
def test_redis_reply_is_classified(resp_server: RespFaultServer, key: str, fault: Fault):
    client = _client(resp_server.port, key)
    with pytest.raises(redis.RedisError) as caught:
        client.get(key)
    client.close()

    assert_classified(caught.value, "redis", fault)
    assert resp_server.count(key.split(":")[0]) == 1


@pytest.mark.parametrize(("key", "fault"), REDIS_FAULTS)
async def test_redis_asyncio_reply_is_classified(
    resp_server: RespFaultServer, key: str, fault: Fault
):
    client = _async_client(resp_server.port, key)
    with pytest.raises(redis.RedisError) as caught:
        await client.get(key)
    await client.aclose()

    assert_classified(caught.value, "redis", fault)
    assert resp_server.count(key.split(":")[0]) == 1


def test_redis_refused_connection_is_a_connection_error(resp_server: RespFaultServer):
    client = _client(resp_server.refused_port)
    with pytest.raises(redis.ConnectionError) as caught:
        client.get("ok")
    client.close()

    assert_classified(caught.value, "redis", Fault("-", E.CONNECTION_ERROR))


async def test_redis_asyncio_refused_connection_is_a_connection_error(
    resp_server: RespFaultServer,
):
    client = _async_client(resp_server.refused_port)
    with pytest.raises(redis.ConnectionError) as caught:
        await client.get("ok")
    await client.aclose()

    assert_classified(caught.value, "redis", Fault("-", E.CONNECTION_ERROR))


def test_redis_successful_get_reaches_the_server(resp_server: RespFaultServer):
    client = _client(resp_server.port)
    assert client.get("ok") == b"value"
    client.close()

    assert resp_server.count("ok") == 1


def test_redis_watch_conflict_is_left_to_the_generic_rules():
    assert CLIENT_CLASSIFIERS["redis"](redis.WatchError("watched key changed")) is None
