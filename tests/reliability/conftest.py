import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from unittest import mock

import pytest
import redis
from django.db import OperationalError, connection, connections

from tests.conftest import _service_missing


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of the test's own, persisting every write (appendfsync always) like production
    must, so it can be shut down and started again without touching the shared server."""

    def __init__(self, directory) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--appendonly", "yes", "--appendfsync", "always",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        """SHUTDOWN: the server flushes its append-only file and exits, as on a clean restart."""
        try:
            redis.Redis(port=self.port).shutdown()
        except redis.ConnectionError:
            pass
        self.process.wait(timeout=10)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path):
    if shutil.which("redis-server") is None:
        _service_missing("redis-server")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


@contextmanager
def database_down():
    """The database refuses connections until the block ends."""
    if connection.vendor == "postgresql":
        saved = dict(connection.settings_dict)
        connection.close()
        connection.settings_dict["PORT"] = str(free_port())
        try:
            yield
        finally:
            connection.close()
            connection.settings_dict.clear()
            connection.settings_dict.update(saved)
    else:
        # An in-memory SQLite test database lives only as long as its connection: refuse cursors instead.
        refusal = OperationalError("unable to open database file")
        with mock.patch.object(connections["default"], "_cursor", side_effect=refusal):
            yield
