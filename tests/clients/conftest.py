"""Fault servers shared by the client-classifier tests (started once, counts cleared per test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from faultserver import FaultServer, GrpcFaultServer, RespFaultServer


@pytest.fixture(scope="session")
def _http_fault_server() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@pytest.fixture
def fault_server(_http_fault_server: FaultServer) -> FaultServer:
    _http_fault_server.clear()
    return _http_fault_server


@pytest.fixture(scope="session")
def _grpc_fault_server() -> Iterator[GrpcFaultServer]:
    with GrpcFaultServer() as server:
        yield server


@pytest.fixture
def grpc_server(_grpc_fault_server: GrpcFaultServer) -> GrpcFaultServer:
    _grpc_fault_server.counts.clear()
    return _grpc_fault_server


@pytest.fixture(scope="session")
def _resp_fault_server() -> Iterator[RespFaultServer]:
    with RespFaultServer() as server:
        yield server


@pytest.fixture
def resp_server(_resp_fault_server: RespFaultServer) -> RespFaultServer:
    _resp_fault_server.clear()
    return _resp_fault_server
