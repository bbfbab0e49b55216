import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing, contextmanager
from pathlib import Path
from unittest import mock

import pytest
import redis
from django.conf import settings
from django.db import OperationalError, connection, connections

from deploy.local_nginx import wait_for_port
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
        # Closed at once: tests count the server's clients, and this one must not linger until collected.
        with redis.Redis(port=self.port, socket_connect_timeout=0.2) as client:
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


REPOSITORY = Path(__file__).resolve().parents[2]


class BeaconProcesses:
    """Beacon in OS processes of its own: stream consumers (tests/reliability/consumer_process.py) and
    a web process (tests/reliability/web_process.py).

    They open the test database by name. SQLite's test database lives in this process's memory, so it
    is copied to a file for them before each start, and `sync()` copies their writes back.
    """

    def __init__(self, directory) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen] = []
        in_memory = connection.vendor == "sqlite" and connection.is_in_memory_db()
        self.sqlite_file = directory / "test-database.sqlite3" if in_memory else None

    def _database_name(self) -> str:
        if self.sqlite_file is None:
            return connection.settings_dict["NAME"]
        connection.ensure_connection()
        with closing(sqlite3.connect(self.sqlite_file)) as copy:
            connection.connection.backup(copy)
        return str(self.sqlite_file)

    def sync(self) -> None:
        """Makes what the processes stored visible to this one (a no-op on a shared database server)."""
        if self.sqlite_file is not None:
            with closing(sqlite3.connect(self.sqlite_file)) as copy:
                copy.backup(connection.connection)

    def start(self, name: str, *, killed_before_acknowledgement: bool = False, reclaim_idle_ms: int = 60_000,
              batch_size: int = 1000) -> subprocess.Popen:
        command = [sys.executable, "-m", "tests.reliability.consumer_process", "--database", self._database_name()]
        if killed_before_acknowledgement:
            command.append("--killed-before-acknowledgement")
        command += ["--", "--consumer", name, "--batch-size", str(batch_size), "--block-ms", "100"]
        env = dict(
            os.environ,
            BEACON_EVENT_REDIS_URL=settings.BEACON_EVENT_REDIS_URL,
            BEACON_EVENT_STREAM=settings.BEACON_EVENT_STREAM,
            BEACON_EVENT_GROUP=settings.BEACON_EVENT_GROUP,
            BEACON_STREAM_RECLAIM_IDLE_MS=str(reclaim_idle_ms),
            CELERY_TASK_ALWAYS_EAGER="true",
            PGAPPNAME=f"consumer-{name}",  # names its PostgreSQL session
        )
        with open(self.directory / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                command, cwd=REPOSITORY, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        process.name = name
        self.processes.append(process)
        return process

    def run_web(self, paths: list[str], *, killed: bool) -> int:
        """Answers the paths in a web process that then exits, or is killed; returns how many 302s it answered."""
        env = dict(
            os.environ,
            BEACON_EVENT_REDIS_URL=settings.BEACON_EVENT_REDIS_URL,
            BEACON_EVENT_STREAM=settings.BEACON_EVENT_STREAM,
            BEACON_EVENT_JOURNAL="true",
            BEACON_EVENT_JOURNAL_SHIP_MS=str(3_600_000),
            BEACON_SPOOL_DIR=str(settings.BEACON_SPOOL_DIR),
            BEACON_MACHINE_CLICK_SECONDS=str(settings.BEACON_MACHINE_CLICK_SECONDS),
            PGAPPNAME="web",
        )
        options = ["--killed"] if killed else []
        web = subprocess.run(
            [sys.executable, "-m", "tests.reliability.web_process", "--database", self._database_name(), *options, *paths],
            cwd=REPOSITORY, env=env, capture_output=True,
        )
        if web.returncode != (-signal.SIGKILL if killed else 0):
            raise RuntimeError(f"the web process ended with {web.returncode}:\n{web.stderr.decode(errors='replace')}")
        return int(web.stdout)

    def start_gunicorn(self, port: int, *, workers: int = 2, **environment: str) -> subprocess.Popen:
        """gunicorn with sync workers on 127.0.0.1:`port`, serving Beacon on the test database; `environment`
        adds to this process's. Returns once it listens."""
        env = dict(
            os.environ, BEACON_TEST_DATABASE_NAME=self._database_name(), CELERY_TASK_ALWAYS_EAGER="true",
            PGAPPNAME="gunicorn", **environment,
        )
        # No control socket: its default path is one for every gunicorn of the user on the machine.
        with open(self.directory / "gunicorn.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "tests.reliability.web_wsgi", "--preload", "--worker-class", "sync",
                 "--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--no-control-socket"],
                cwd=REPOSITORY, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        process.name = "gunicorn"
        self.processes.append(process)
        try:
            wait_for_port(port, process)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}:\n{self.output(process)}") from None
        return process

    def output(self, process: subprocess.Popen) -> str:
        return (self.directory / f"{process.name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                # Killed, gunicorn's master would leave its workers behind: SIGINT ends them all at once.
                process.send_signal(signal.SIGINT if process.name == "gunicorn" else signal.SIGKILL)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


@pytest.fixture
def beacon_processes(tmp_path):
    processes = BeaconProcesses(tmp_path)
    yield processes
    processes.stop()


class DatabaseRestart:
    """What a PostgreSQL restart does to the test database's clients, without touching the shared
    server: every session is cut (pg_terminate_backend, as a shutdown does) and new connections are
    refused (ALLOW_CONNECTIONS false) until `end()`."""

    def __init__(self) -> None:
        import psycopg2

        params = connection.settings_dict
        self.database = params["NAME"]
        if not self.database.startswith("test_"):
            raise RuntimeError(f"refusing to cut the sessions of {self.database}, not a test database")
        self.admin = psycopg2.connect(
            dbname="postgres", user=params["USER"], password=params["PASSWORD"], host=params["HOST"],
            port=params["PORT"] or None,
        )
        self.admin.autocommit = True
        self.down = False

    def begin(self) -> list[str]:
        """Returns the application names of the sessions cut."""
        with self.admin.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS false')
            self.down = True
            # The sessions are listed first and cut one by one by pid: nothing else on the server is touched.
            cursor.execute("SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s", [self.database])
            sessions = cursor.fetchall()
            for pid, _ in sessions:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            return sorted(name for _, name in sessions)

    def end(self) -> None:
        with self.admin.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS true')
        self.down = False


@pytest.fixture
def database_restart():
    """PostgreSQL only (SQLite has no server to restart); required, never skipped, in CI."""
    if connection.vendor != "postgresql":
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("CI runs on PostgreSQL (DATABASE_URL), which this test needs")
        pytest.skip("needs PostgreSQL (DATABASE_URL): SQLite has no server to restart")
    restart = DatabaseRestart()
    yield restart
    if restart.down:
        restart.end()
    restart.admin.close()
