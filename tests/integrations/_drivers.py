"""One small driver per real client, so every scenario runs against each integration."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import httpx2
import requests

from otel_resilience.httpx import AsyncResilientTransport, ResilientTransport
from otel_resilience.requests import ResilientAdapter


class Driver:
    name = ""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def send(
        self, method: str, url: str, headers: dict[str, str] | None = None, timeout: float = 30
    ) -> Any:
        raise NotImplementedError


class HttpxDriver(Driver):
    name = "httpx"
    lib: Any = httpx

    def send(self, method, url, headers=None, timeout=30):
        transport = ResilientTransport(self.lib.HTTPTransport(), **self.options)
        with self.lib.Client(transport=transport, timeout=timeout) as client:
            response = client.request(method, url, headers=headers, content=b"{}")
            response.read()
            return response


class Httpx2Driver(HttpxDriver):
    name = "httpx2"
    lib = httpx2


class AsyncHttpxDriver(Driver):
    name = "httpx-async"

    def send(self, method, url, headers=None, timeout=30):
        async def go() -> Any:
            transport = AsyncResilientTransport(httpx.AsyncHTTPTransport(), **self.options)
            async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
                response = await client.request(method, url, headers=headers, content=b"{}")
                await response.aread()
                return response

        return asyncio.run(go())


class RequestsDriver(Driver):
    name = "requests"

    def send(self, method, url, headers=None, timeout=30):
        with requests.Session() as session:
            session.mount("http://", ResilientAdapter(**self.options))
            return session.request(method, url, headers=headers, data=b"{}", timeout=timeout)


DRIVERS = [HttpxDriver, Httpx2Driver, AsyncHttpxDriver, RequestsDriver]
