"""ClamAV through the ``clamd`` package: each scan one resilient call, a verdict a value.

>>> from otel_resilience.clamav import ClamdScanner
>>> scanner = ClamdScanner("127.0.0.1", 3310, timeout_sec=5)   # nothing is connected yet

``scanner.scan_bytes(data)`` sends ``data`` with ``INSTREAM`` as the resilient call
``("clamav", "scan")`` and returns a :class:`ScanResponse`: ``CLEAN`` or ``INFECTED`` (with the
signature's name) are values, never errors. Failures are classified by the ``clamd`` exception's
type (``otel_resilience`` does so for any ``clamd`` code, the seed's hand-written scan function
included): a refused or broken connection is ``connection_error``, a read that timed out
``timeout``, data over the daemon's ``StreamMaxLength`` ``bad_request`` (never retried), an
``ERROR`` verdict or an unreadable answer ``server_error``.

Timeouts are cooperative: every socket operation of an attempt waits at most what is left of the
attempt (``clamd`` itself connects without any timeout and waits forever when given none), so no
thread is needed and no attempt is interrupted mid-stream. ``clamd`` is imported by this module
only (the extra ``otel-resilience[clamav]``).
"""

from __future__ import annotations

import enum
import io
import os
import select
import socket
from dataclasses import dataclass
from typing import IO, Any, Final

import clamd  # type: ignore[import-untyped]

from ._call import resilient_call
from ._runtime import check_attempts as _check_attempts
from ._timeout import remaining_time, validate_timeout

__all__ = ["ClamdScanner", "ScanResponse", "ScanResult"]

#: sends (clamd sends 1 KiB chunks) between two looks for an early answer from the daemon: every
#: one (a select() costs ~1 us a KiB), since each chunk sent after the answer is unread data that
#: turns the daemon's close into a reset, which can discard that answer
_LOOK_EVERY: Final = 1


class ScanResult(enum.Enum):
    """The verdict of one scan."""

    CLEAN = "clean"
    INFECTED = "infected"


@dataclass(frozen=True, slots=True)
class ScanResponse:
    """A scan's verdict and, when infected, the name of the signature that matched."""

    result: ScanResult
    signature: str | None = None

    @property
    def clean(self) -> bool:
        return self.result is ScanResult.CLEAN


class _DeadlineSocket:
    """A socket whose every blocking operation waits at most what is left of the attempt."""

    __slots__ = ("_answered_early", "_refused", "_sends", "_sock")

    @property
    def answered_mid_stream(self) -> bool:
        """The daemon answered before the end of the stream (its size limit)."""
        return self._answered_early

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._refused = False
        self._answered_early = False
        self._sends = 0

    def _limit(self) -> None:
        left = remaining_time()
        if left is not None and left <= 0.0:
            raise TimeoutError("timed out: no time left in this attempt")
        self._sock.settimeout(left)

    def send(self, data: bytes) -> int:
        if self._refused:
            return len(data)
        self._sends += 1
        if self._sends % _LOOK_EVERY == 0 and self._answered():
            # the daemon answered (its size limit) or closed mid-stream: sending more would
            # make it reset the connection, and the reset can discard that answer
            self._refused = True
            self._answered_early = self._has_answer()
            return len(data)
        self._limit()
        try:
            self._sock.sendall(data)  # clamd ignores partial sends; send all of it
        except (BrokenPipeError, ConnectionResetError):
            # the daemon stopped reading (its answer, e.g. "INSTREAM size limit exceeded",
            # is waiting to be read): send nothing more and let clamd read that answer
            self._refused = True
        return len(data)

    def _answered(self) -> bool:
        readable, _, _ = select.select([self._sock], [], [], 0)
        return bool(readable)

    def _has_answer(self) -> bool:
        """Readable because the daemon wrote an answer (not because it closed or reset)."""
        try:
            return bool(self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:
            return False

    def makefile(self, mode: str) -> Any:
        """The reader clamd reads its answer from (it only ever asks for ``"rb"``)."""
        self._limit()
        return self._sock.makefile("rb")

    def settimeout(self, value: float | None) -> None:
        """clamd sets its own timeout after connecting: the attempt's limit wins."""

    def close(self) -> None:
        self._sock.close()


class _Client(clamd.ClamdNetworkSocket):  # type: ignore[misc]
    """``clamd.ClamdNetworkSocket`` with deadline-bounded connect, sends and reads."""

    def _init_socket(self) -> None:
        left = remaining_time()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=left)
        except OSError as exc:
            raise clamd.ConnectionError(self._error_message(exc)) from exc
        self.clamd_socket = _DeadlineSocket(sock)

    def _recv_response(self) -> str:
        """clamd's reader, except that a reset after the daemon answered mid-stream is its size
        limit: it answers ``INSTREAM size limit exceeded`` and closes with our unread chunks in
        its buffer, and that close is a reset which can discard the answer. (A reset while we
        were sending, with no answer seen, stays a connection error.)"""
        try:
            return str(super()._recv_response())
        except clamd.ConnectionError as exc:
            sock = getattr(self, "clamd_socket", None)
            if isinstance(sock, _DeadlineSocket) and sock.answered_mid_stream:
                raise clamd.BufferTooLongError(
                    "INSTREAM size limit exceeded (the daemon closed the stream before its end)"
                ) from exc
            raise

    def _close_socket(self) -> None:
        # clamd closes in a ``finally``: after a failed connect there is no socket to close
        sock = getattr(self, "clamd_socket", None)
        if sock is not None:
            sock.close()


def _readable(
    data: bytes | bytearray | memoryview | IO[bytes],
) -> tuple[bytes, None] | tuple[None, IO[bytes]]:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data), None
    if hasattr(data, "read") and hasattr(data, "seek"):
        return None, data
    raise TypeError(
        f"data must be bytes, bytearray, memoryview or a seekable binary file, got"
        f" {type(data).__name__}"
    )


class ClamdScanner:
    """Scans through a ``clamd`` daemon on TCP, each scan a resilient call.

    Args:
        host, port: the daemon's ``TCPAddr`` and ``TCPSocket``.
        service_name: the service of the calls (``"clamav"``; endpoints ``scan`` and ``ping``).
        timeout_sec, max_retries, deadline_sec: as in :func:`~otel_resilience.resilient_call`
            (defaults from the service's config).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 3310,
        *,
        service_name: str = "clamav",
        timeout_sec: float | None = None,
        max_retries: int | None = None,
        deadline_sec: float | None = None,
    ) -> None:
        if not isinstance(host, str) or not host:
            raise TypeError(f"host must be a non-empty string, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be an integer from 1 to 65535, got {port!r}")
        if not isinstance(service_name, str) or not service_name:
            raise TypeError(f"service_name must be a non-empty string, got {service_name!r}")
        if max_retries is not None:
            _check_attempts(max_retries)  # raises naming max_retries and the accepted range
        self.host = host
        self.port = port
        self.service_name = service_name
        self._options: dict[str, Any] = {
            "timeout_sec": validate_timeout("timeout_sec", timeout_sec),
            "max_retries": max_retries,
            "deadline_sec": validate_timeout("deadline_sec", deadline_sec),
            "timeout_mode": "cooperative",
        }

    def client(self) -> clamd.ClamdNetworkSocket:
        """A ``clamd`` client whose socket operations honour the attempt's remaining time
        (for code that calls ``clamd`` inside its own ``resilient_call``)."""
        return _Client(self.host, self.port)

    def scan_bytes(self, data: bytes | bytearray | memoryview | IO[bytes]) -> ScanResponse:
        """The verdict on ``data`` (bytes, or a seekable binary file, rewound per attempt)."""
        payload, stream = _readable(data)
        start = None if stream is None else stream.tell()

        def scan() -> ScanResponse:
            if stream is None:
                buffer: IO[bytes] = io.BytesIO(payload or b"")
            else:
                stream.seek(start or 0)
                buffer = stream
            answer = self.client().instream(buffer)
            return _verdict(answer)

        return resilient_call(self.service_name, "scan", scan, **self._options)

    def scan_file(self, path: str | os.PathLike[str]) -> ScanResponse:
        """The verdict on a local file, streamed to the daemon (which need not see the path)."""
        with open(path, "rb") as file:
            return self.scan_bytes(file)

    def ping(self) -> None:
        """Check that the daemon answers (raises the classified error when it does not)."""

        def ping() -> None:
            answer = self.client().ping()
            if answer != "PONG":
                raise clamd.ResponseError(f"unexpected answer to PING: {answer!r}")

        resilient_call(self.service_name, "ping", ping, **self._options)


def _verdict(answer: object) -> ScanResponse:
    """A ScanResponse from ``instream``'s ``{"stream": (status, reason)}``."""
    if not isinstance(answer, dict) or len(answer) != 1:
        # clamd returns None when the connection closed without an answer
        raise clamd.ConnectionError(f"no verdict from clamd (got {answer!r})")
    ((status, reason),) = answer.values()
    if status == "OK":
        return ScanResponse(ScanResult.CLEAN)
    if status == "FOUND":
        return ScanResponse(ScanResult.INFECTED, reason)
    raise clamd.ResponseError(f"clamd could not scan the data: {reason}")
