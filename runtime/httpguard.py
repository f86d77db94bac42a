"""The live view's defences, on the standard library's ``ThreadingHTTPServer``: what lets it face a network.

- **Connections are capped** (``max_connections`` threads at most); one past the cap gets a short 503 from
  the accepting thread, without a thread of its own. The listen backlog takes a burst (``LISTEN_BACKLOG``).
- **A request head is bounded in bytes and in time**: at most ``MAX_HEAD_BYTES`` (431 past it) within
  ``REQUEST_DEADLINE_S`` from its first byte to its last (408 past it), however the client drips it. The
  stdlib reads headers line by line with a 64 KB cap per line and 100 lines, i.e. 6.5 MB per connection,
  and a socket timeout that restarts with every byte; here the socket stream under ``rfile`` counts the bytes
  and sets each ``recv``'s timeout to what is left of the deadline. Parsing is still the stdlib's.
- **The ``Host`` header is checked** against an allow-list, so a web page cannot read the view through DNS
  rebinding (its requests carry the attacker's host name): IP literals (the address the browser was given,
  never a rebinding), ``localhost`` and ``*.localhost``, the host name the server was bound to, and the
  names passed with ``--allow-host``. The same rule as Vite's dev server (``server.allowedHosts``).
- **Client disconnects are not news**: a reset or timeout ends that connection silently; any other error
  is one line on stderr, never a traceback.
"""

from __future__ import annotations

import collections
import io
import ipaddress
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_HEAD_BYTES = 16 * 1024  # request line + headers; a browser sends under 2 KB
REQUEST_DEADLINE_S = 10.0  # from a request's first read to its blank line
MAX_CONNECTIONS = 64  # connection threads at once (the viewers' streams are among them)
LISTEN_BACKLOG = 1024  # connections the kernel queues before accept (Linux caps it at net.core.somaxconn)
REFUSE_TIMEOUT_S = 1.0  # how long a 408/431/403 answer may take to send
DRAIN_S = 1.0  # after a refusal, unread request bytes are read and dropped this long so the answer is not reset
DRAIN_BYTES = 8 << 20
BUSY_LINGER_S = 2.0  # a refused connection stays open (write side shut) this long, so its 503 is read, not reset
MAX_LINGERING = 1024  # refused connections kept lingering at once; past it the oldest is closed
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 38\r\n"
         b"Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections; try again later\n")


class HeadTooLarge(Exception):
    """The request head passed ``MAX_HEAD_BYTES``."""


class HeadTooSlow(Exception):
    """The request head did not arrive within ``REQUEST_DEADLINE_S``."""


class HeadReader(io.RawIOBase):
    """The socket as a raw stream that, while a request head is read, counts its bytes and keeps its deadline.

    :meth:`begin` arms it for one request head; :meth:`end` disarms it (the response is written with the
    handler's own socket timeout).
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.limit: int | None = None
        self.deadline = 0.0
        self.count = 0

    def begin(self, limit: int, seconds: float) -> None:
        self.limit, self.deadline, self.count = limit, time.monotonic() + seconds, 0

    def end(self, timeout: float) -> None:
        self.limit = None
        self.sock.settimeout(timeout)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.limit is None:
            return self.sock.recv_into(buffer)
        room = self.limit - self.count
        if room <= 0:
            raise HeadTooLarge
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise HeadTooSlow
        self.sock.settimeout(left)  # the time left for the whole head, not a fresh timeout per byte
        try:
            n = self.sock.recv_into(buffer, min(len(buffer), room))
        except TimeoutError:
            raise HeadTooSlow from None
        self.count += n
        return n


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request's ``Host`` header names this server (see the module docstring for the rule)."""
    if header is None:
        return True  # no browser omits Host, and only a browser can be turned by rebinding
    host = header.strip().lower()
    if host.startswith("["):  # "[::1]:8080"
        name = host[1:host.find("]")] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.rstrip(".")
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return name in allowed or name == "localhost" or name.endswith(".localhost")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine (a name other than localhost: assume not)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class GuardedServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with a cap on connection threads, a deep backlog and quiet disconnects."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int = MAX_CONNECTIONS, allowed_hosts: frozenset[str] = frozenset()) -> None:
        self.allowed_hosts = allowed_hosts
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0  # connections answered 503 because every slot was taken
        # Refused sockets, closed BUSY_LINGER_S later: closing one at once, before the client's request has
        # arrived (or over its unread bytes), resets the connection and the client never sees the 503.
        self._lingering: collections.deque[tuple[float, socket.socket]] = collections.deque()
        super().__init__(address, handler)  # last: on a bind error it calls server_close()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            _answer_busy(request)
            self._lingering.append((time.monotonic() + BUSY_LINGER_S, request))
            self._close_lingering(time.monotonic(), MAX_LINGERING)
            return
        try:
            super().process_request(request, client_address)  # starts the connection's thread
        except BaseException:
            self._slots.release()
            raise

    def _close_lingering(self, now: float, keep: int) -> None:
        while self._lingering and (self._lingering[0][0] <= now or len(self._lingering) > keep):
            _, sock = self._lingering.popleft()
            sock.close()

    def service_actions(self) -> None:  # serve_forever calls it every loop (at least every 0.5 s)
        self._close_lingering(time.monotonic(), MAX_LINGERING)

    def server_close(self) -> None:
        super().server_close()
        self._close_lingering(float("inf"), 0)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client reset, closed or stalled: its connection ends, nothing more
            return
        print(f"digitkit live view: request from {client_address[0]} failed: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)


def _answer_busy(request: socket.socket) -> None:
    """A 503 from the accepting thread, then the write side shut: never blocks it."""
    try:
        request.setblocking(False)
        request.send(_BUSY)
        request.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class GuardedHandler(BaseHTTPRequestHandler):
    """Reads each request head through a :class:`HeadReader`, checks ``Host``, then dispatches ``do_*``."""

    server: GuardedServer
    protocol_version = "HTTP/1.1"
    # The stdlib's default, HTTP/0.9, answers a malformed or version-less request with a bare body and no
    # status line; every answer here has one.
    default_request_version = "HTTP/1.1"
    write_timeout = 5.0  # a response the client accepts nothing of for this long is abandoned

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the stdlib's socket file: replaced by one that keeps the limits
        self.head = HeadReader(self.connection)
        self.rfile = io.BufferedReader(self.head)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # the camera's output is the readings, not an access log

    def _refuse(self, status: HTTPStatus, message: str) -> None:
        self.head.end(REFUSE_TIMEOUT_S)
        self.close_connection = True
        body = (message + "\n").encode()
        try:
            if not hasattr(self, "requestline"):  # refused before the request line was read
                self.request_version, self.requestline, self.command = "HTTP/1.1", "", ""
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self._drain()
        except OSError:
            pass

    def _drain(self) -> None:
        """Shut our side, then read and drop what the client is still sending (briefly, into one small
        buffer): closing over unread bytes makes the kernel reset the connection, and a reset can destroy
        the answer before the client reads it (Apache's "lingering close")."""
        self.connection.shutdown(socket.SHUT_WR)
        end, got, buf = time.monotonic() + DRAIN_S, 0, bytearray(65536)
        while got < DRAIN_BYTES and (left := end - time.monotonic()) > 0:
            self.connection.settimeout(left)
            try:
                n = self.connection.recv_into(buf)
            except TimeoutError:
                return
            if not n:
                return
            got += n

    def handle_one_request(self) -> None:
        self.head.begin(MAX_HEAD_BYTES, REQUEST_DEADLINE_S)
        try:
            self.raw_requestline = self.rfile.readline(MAX_HEAD_BYTES + 1)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():  # the stdlib's parser: 400/414/431/505 as it sees fit
                return
        except HeadTooLarge:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                         f"request head over {MAX_HEAD_BYTES} bytes")
            return
        except HeadTooSlow:
            self._refuse(HTTPStatus.REQUEST_TIMEOUT, f"request head not complete within {REQUEST_DEADLINE_S:g} s")
            return
        except OSError:  # reset or closed while sending the head
            self.close_connection = True
            return
        self.head.end(self.write_timeout)
        # "GET / HTTP/0.9" passes the stdlib's parser (which checked the digits), and would be answered without
        # a status line.
        if tuple(int(n) for n in self.request_version[5:].split(".")) < (1, 0):
            self.request_version = "HTTP/1.1"
            self._refuse(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "HTTP/0.9 is not supported; use HTTP/1.0 or 1.1")
            return
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1 or not host_allowed(hosts[0] if hosts else None, self.server.allowed_hosts):
            self._refuse(HTTPStatus.FORBIDDEN, f"Host {', '.join(hosts)!r} is not allowed: this live view answers "
                         "to its own address, localhost and names given with --allow-host NAME")
            return
        method = getattr(self, f"do_{self.command}", None)
        if method is None:
            self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"unsupported method ({self.command!r})")
            return
        method()
        self.wfile.flush()
