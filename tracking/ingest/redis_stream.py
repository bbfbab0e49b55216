"""The Redis event stream: XADD through one persistent socket per process and thread, speaking RESP
directly, and the redis-py clients of the consumer and of TLS URLs.

Each entry holds one event's wire line (``tracking.ingest.event``) in the field STREAM_FIELD. The
journal's shipper sends its batches here (``append_many``, one round trip), and so does a handler
without a journal (``append``, one synchronous XADD per event: a click's only hand-off). So it is
written without a client library's per-call machinery (connection pool, retry wrapper, response
callbacks), which costs more CPU than the rest of a click. Anything unexpected raises
``StreamUnavailable`` (or, through redis-py, ``redis.RedisError``) and the caller falls back to the
database; the consumer side uses redis-py.

Once connected, the socket is blocking, with its time limits kept by the kernel (SO_SNDTIMEO,
SO_RCVTIMEO): Python's own socket timeouts poll before every send and receive, which doubles the
system calls of an XADD.
"""
import socket
import struct
import threading
from collections.abc import Callable

import redis
from redis.connection import parse_url

CONNECT_TIMEOUT = 0.5
IO_TIMEOUT = 2.0
STREAM_FIELD = b"e"


class StreamUnavailable(Exception):
    pass


def _limit_io_time(sock: socket.socket, seconds: float) -> None:
    """Blocking I/O that fails (OSError) after `seconds` without progress, timed by the kernel."""
    sock.settimeout(None)
    whole = int(seconds)
    timeval = struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class StreamAppender:
    """XADD `stream` * e <payload>, acknowledged once Redis has answered with the entry id."""

    def __init__(self, url: str, stream: str) -> None:
        if not url.startswith(("redis://", "unix://")):
            raise ValueError("only redis:// and unix:// URLs are supported")
        self.options = parse_url(url)
        self.stream = stream.encode()
        self._local = threading.local()

    def _connect(self) -> socket.socket:
        options = self.options
        if "path" in options:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(options["path"])
        else:
            sock = socket.create_connection((options["host"], options["port"]), timeout=CONNECT_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _limit_io_time(sock, IO_TIMEOUT)
        setup = []
        if options.get("password"):
            credentials = [options["username"].encode()] if options.get("username") else []
            setup.append(_command(b"AUTH", *credentials, options["password"].encode()))
        if options.get("db"):
            setup.append(_command(b"SELECT", str(options["db"]).encode()))
        for command in setup:
            sock.sendall(command)
            reply = self._read_line(sock, bytearray())[0]
            if not reply.startswith(b"+"):
                sock.close()
                raise StreamUnavailable(reply.decode(errors="replace"))
        return sock

    @staticmethod
    def _read_line(sock: socket.socket, buffer: bytearray) -> tuple[bytes, bytearray]:
        while b"\r\n" not in buffer:
            chunk = sock.recv(4096)
            if not chunk:
                raise StreamUnavailable("connection closed by Redis")
            buffer += chunk
        line, _, rest = bytes(buffer).partition(b"\r\n")
        return line, bytearray(rest)

    @staticmethod
    def _read_replies(sock: socket.socket, count: int) -> None:
        """Reads `count` XADD answers, each the new entry's id (a bulk string)."""
        buffer = b""
        position = 0
        while count:
            end = buffer.find(b"\r\n", position)
            if end >= 0:
                line = buffer[position:end]
                if not line.startswith(b"$"):
                    raise StreamUnavailable(line.decode(errors="replace"))
                after = end + 2 + int(line[1:]) + 2
                if after <= len(buffer):
                    position = after
                    count -= 1
                    continue
            chunk = sock.recv(65536)
            if not chunk:
                raise StreamUnavailable("connection closed by Redis")
            buffer = buffer[position:] + chunk
            position = 0

    def _failed(self, error: Exception, *, last_try: bool) -> None:
        self.close()
        if last_try:
            raise StreamUnavailable(str(error)) from error

    def append(self, payload: bytes, meanwhile: Callable[[], object] | None = None) -> None:
        """XADD the payload; raises StreamUnavailable unless Redis answered with the entry id.

        `meanwhile` runs once, after the command is sent and before its answer is read: the caller's
        own work overlaps Redis's, and the answer is usually there when it is read, without a wait.
        """
        self._round_trip(_command(b"XADD", self.stream, b"*", STREAM_FIELD, payload), 1, meanwhile)

    def append_many(self, payloads: list[bytes]) -> None:
        """XADD each payload, in order and in one round trip; raises StreamUnavailable unless Redis
        answered every one with its entry id (some may have been added even then)."""
        commands = b"".join(_command(b"XADD", self.stream, b"*", STREAM_FIELD, payload) for payload in payloads)
        self._round_trip(commands, len(payloads), None)

    def _round_trip(self, commands: bytes, replies: int, meanwhile: Callable[[], object] | None) -> None:
        for attempt in (1, 2):
            sock = getattr(self._local, "sock", None)
            # A socket kept from an earlier request may have died with a Redis restart: one fresh try.
            # (Should the first XADD have landed after all, the event id makes the copy harmless.)
            last_try = attempt == 2 or sock is None
            try:
                if sock is None:
                    sock = self._local.sock = self._connect()
                sock.sendall(commands)
            except (OSError, ValueError, StreamUnavailable) as error:
                self._failed(error, last_try=last_try)
                continue
            if meanwhile is not None:
                try:
                    meanwhile()
                except BaseException:
                    self.close()  # the XADD's answer is unread: this socket is out of step for good
                    raise
                meanwhile = None
            try:
                self._read_replies(sock, replies)
                return
            except (OSError, ValueError, StreamUnavailable) as error:
                self._failed(error, last_try=last_try)

    def close(self) -> None:
        sock = getattr(self._local, "sock", None)
        self._local.sock = None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


_clients: dict[str, redis.Redis] = {}


def redis_client(url: str) -> redis.Redis:
    """The process's redis-py client for `url`, made once."""
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=0.5)
    return client


class RedisPyAppender:
    """XADD through redis-py, for the URLs StreamAppender does not speak (rediss://, TLS)."""

    def __init__(self, client: redis.Redis, stream: str) -> None:
        self.client = client
        self.stream = stream

    def append(self, payload: bytes, meanwhile: Callable[[], object] | None = None) -> None:
        self.client.xadd(self.stream, {STREAM_FIELD: payload})
        if meanwhile is not None:
            meanwhile()

    def append_many(self, payloads: list[bytes]) -> None:
        pipeline = self.client.pipeline(transaction=False)
        for payload in payloads:
            pipeline.xadd(self.stream, {STREAM_FIELD: payload})
        pipeline.execute()


_appenders: dict[tuple[str, str], StreamAppender | RedisPyAppender] = {}


def appender(url: str, stream: str) -> StreamAppender | RedisPyAppender:
    """The process's appender to `stream` at `url`, made once: our own RESP socket where it can speak
    the URL, redis-py otherwise."""
    key = (url, stream)
    found = _appenders.get(key)
    if found is None:
        if url.startswith(("redis://", "unix://")):
            found = StreamAppender(url, stream)
        else:
            found = RedisPyAppender(redis_client(url), stream)
        _appenders[key] = found
    return found
