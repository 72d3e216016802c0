"""A real ``clamd`` (Debian's clamav-daemon) on a free 127.0.0.1 port, with a one-signature
database the tests write (no freshclam, no network), and a TCP proxy that counts connections
and can break them."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faultserver import free_port
from support import require_binary

CLAMD = "/usr/sbin/clamd"
#: the bytes the test signature matches (an EICAR-like stand-in: harmless, matched by MD5)
INFECTED = b"X5O-otel-resilience-test-signature-payload"
SIGNATURE = "OtelResilience.Test.Signature"
#: the daemon's StreamMaxLength in these tests
STREAM_MAX = 64 * 1024
_SCANNED = re.compile(r"instream\(.*\): .*(OK|FOUND|ERROR)$")


class ClamdServer:
    """``clamd --foreground`` with its own config, database and log in ``directory``."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        database = directory / "db"
        database.mkdir()
        digest = hashlib.md5(INFECTED).hexdigest()
        (database / "test.hdb").write_text(f"{digest}:{len(INFECTED)}:{SIGNATURE}\n")
        self.log = directory / "clamd.log"
        self.config = directory / "clamd.conf"
        self.config.write_text(
            "\n".join(
                [
                    "Foreground yes",
                    f"TCPSocket {self.port}",
                    "TCPAddr 127.0.0.1",
                    f"DatabaseDirectory {database}",
                    f"LogFile {self.log}",
                    "LogClean yes",
                    f"PidFile {directory / 'clamd.pid'}",
                    f"TemporaryDirectory {directory}",
                    f"StreamMaxLength {STREAM_MAX // 1024}K",
                    "SelfCheck 0",
                    "",
                ]
            )
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, f"--config-file={self.config}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"clamd exited with {self.process.returncode}: {self._tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"nPING\n")
                    if sock.recv(16).strip() == b"PONG":
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"clamd did not answer PING within 60 s: {self._tail()}")

    def _tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log.exists() else "(no log)"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _scans(self) -> int:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return sum(1 for line in lines if _SCANNED.search(line))

    def scans(self) -> int:
        """How many INSTREAM scans the daemon answered, from its log (which it writes after
        answering: read once the count stayed the same for 0.3 s)."""
        last, since = self._scans(), time.monotonic()
        end = since + 5
        while time.monotonic() < end and time.monotonic() - since < 0.3:
            time.sleep(0.05)
            now = self._scans()
            if now != last:
                last, since = now, time.monotonic()
        return last

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        if self.process is None:
            return
        if self.frozen:
            self.thaw()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None


class Proxy:
    """A TCP proxy in front of the daemon: counts connections; ``reset`` mode answers each one
    with an RST instead of passing it on."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.lock = threading.Lock()
        self.connections = 0
        self.resets: int | None = 0  # connections still to reset (None: all of them)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def reset_next(self, count: int | None) -> None:
        """Reset the next ``count`` connections (``None``: every one); clears the count."""
        with self.lock:
            self.resets = count
            self.connections = 0

    def settled_connections(self, expected: int, within: float = 3.0) -> int:
        """The count once it reached ``expected`` (or ``within`` passed): a connection can be
        made (in the kernel's backlog) before this proxy's thread accepts it."""
        end = time.monotonic() + within
        while self.connections < expected and time.monotonic() < end:
            time.sleep(0.02)
        time.sleep(0.1)  # and no more come
        return self.connections

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                reset = self.resets is None or self.resets > 0
                if self.resets:
                    self.resets -= 1
            if reset:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return

        def pump(source: socket.socket, sink: socket.socket) -> None:
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                for sock in (source, sink):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join(10)
        client.close()
        upstream.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def clamd_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdServer]:
    """The module's clamd (skips without the binary, unless CI=true)."""
    binary = require_binary(CLAMD, "clamd (Debian's clamav-daemon)")
    server = ClamdServer(binary, tmp_path_factory.mktemp("clamd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clamd_server(clamd_process: ClamdServer) -> Iterator[ClamdServer]:
    """The module's clamd, running and thawed before and after the test."""
    if not clamd_process.running:
        clamd_process.start()
    yield clamd_process
    if clamd_process.frozen:
        clamd_process.thaw()
    if not clamd_process.running:
        clamd_process.start()


@pytest.fixture
def proxy(clamd_server: ClamdServer) -> Iterator[Proxy]:
    found = Proxy(clamd_server.port)
    yield found
    found.close()
