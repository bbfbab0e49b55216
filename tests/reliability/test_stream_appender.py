import socket
import threading
import time

import pytest
import redis

from tracking.ingest import redis_stream as stream
from tracking.ingest.redis_stream import RedisPyAppender, StreamAppender, StreamUnavailable


def test_appender_authenticates_selects_its_database_and_survives_a_restart(private_redis):
    admin = redis.Redis(port=private_redis.port)
    admin.config_set("requirepass", "s3cret")
    appender = StreamAppender(f"redis://:s3cret@127.0.0.1:{private_redis.port}/3", "events")
    appender.append(b'{"id":"1"}')
    authed = redis.Redis(port=private_redis.port, password="s3cret", db=3)
    assert authed.xlen("events") == 1

    authed.config_set("requirepass", "")
    private_redis.stop()
    private_redis.start()
    redis.Redis(port=private_redis.port).config_set("requirepass", "s3cret")
    # The kept socket died with the server: the appender reconnects once, transparently.
    appender.append(b'{"id":"2"}')
    assert [fields[b"e"] for _, fields in authed.xrange("events")] == [
        b'{"id":"1"}',
        b'{"id":"2"}',
    ]


def test_appender_reports_refusals_and_a_closed_port(private_redis):
    redis.Redis(port=private_redis.port).config_set("requirepass", "s3cret")
    with pytest.raises(StreamUnavailable):
        StreamAppender(f"redis://:wrong@127.0.0.1:{private_redis.port}/0", "events").append(b"{}")
    redis.Redis(port=private_redis.port, password="s3cret").config_set("requirepass", "")
    private_redis.stop()
    with pytest.raises(StreamUnavailable):
        StreamAppender(f"redis://127.0.0.1:{private_redis.port}/0", "events").append(b"{}")


def test_redis_py_appender_for_other_urls(redis_url):
    client = redis.Redis.from_url(redis_url)
    RedisPyAppender(client, "events").append(b'{"id":"3"}')
    assert client.xlen("events") == 1


def test_work_meanwhile_runs_once_between_sending_and_reading_even_across_a_reconnection(private_redis):
    appender = StreamAppender(f"redis://127.0.0.1:{private_redis.port}/0", "events")
    client = redis.Redis(port=private_redis.port)
    seen_by_meanwhile = []
    appender.append(b'{"id":"1"}', lambda: seen_by_meanwhile.append("first"))
    assert seen_by_meanwhile == ["first"] and client.xlen("events") == 1

    private_redis.stop()
    private_redis.start()
    client = redis.Redis(port=private_redis.port)
    appender.append(b'{"id":"2"}', lambda: seen_by_meanwhile.append("second"))
    assert seen_by_meanwhile == ["first", "second"]
    assert [fields[b"e"] for _, fields in client.xrange("events")] == [b'{"id":"1"}', b'{"id":"2"}']


def test_a_failing_meanwhile_drops_the_socket_whose_answer_it_left_unread(private_redis):
    appender = StreamAppender(f"redis://127.0.0.1:{private_redis.port}/0", "events")
    client = redis.Redis(port=private_redis.port)
    appender.append(b'{"id":"1"}')
    connected = len(client.client_list())

    def broken() -> None:
        raise RuntimeError("answer could not be built")

    with pytest.raises(RuntimeError):
        appender.append(b'{"id":"2"}', broken)
    assert len(client.client_list()) == connected - 1
    appender.append(b'{"id":"3"}')
    assert [fields[b"e"] for _, fields in client.xrange("events")] == [b'{"id":"1"}', b'{"id":"2"}', b'{"id":"3"}']


def test_a_server_that_never_answers_fails_the_append_after_the_time_limit(monkeypatch):
    monkeypatch.setattr(stream, "IO_TIMEOUT", 0.2)
    silent = socket.create_server(("127.0.0.1", 0))
    appender = StreamAppender(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", "events")
    outcome = []

    def append() -> None:
        try:
            appender.append(b'{"id":"1"}')
        except StreamUnavailable as error:
            outcome.append(error)

    # In a thread, so that a missing time limit fails the test instead of hanging it.
    appending = threading.Thread(target=append, daemon=True)
    appending.start()
    accepted, _ = silent.accept()
    try:
        appending.join(timeout=10)
        assert not appending.is_alive() and len(outcome) == 1
        # The command reached the server whole: only the answer was missing.
        assert accepted.recv(4096).startswith(b"*5\r\n$4\r\nXADD\r\n")
    finally:
        accepted.close()
        silent.close()


def test_an_answer_that_comes_late_and_in_pieces_is_waited_for():
    server = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def answer_slowly() -> None:
        connection, _ = server.accept()
        with connection:
            while not received.endswith(b'{"id":"1"}\r\n'):
                received.extend(connection.recv(4096))
            time.sleep(0.05)
            connection.sendall(b"$15\r\n17954465")
            time.sleep(0.01)
            connection.sendall(b"48396-0\r\n")
            connection.recv(1)  # until the appender hangs up

    answering = threading.Thread(target=answer_slowly, daemon=True)
    answering.start()
    appender = StreamAppender(f"redis://127.0.0.1:{server.getsockname()[1]}/0", "events")
    try:
        appender.append(b'{"id":"1"}')
        assert received.startswith(b"*5\r\n$4\r\nXADD\r\n$6\r\nevents\r\n")
    finally:
        appender.close()
        answering.join(timeout=5)
        server.close()


@pytest.mark.parametrize("make_appender", ["resp", "redis-py"])
def test_append_many_adds_a_large_batch_in_order_in_one_round_trip(private_redis, make_appender):
    url = f"redis://127.0.0.1:{private_redis.port}/0"
    appender = StreamAppender(url, "events") if make_appender == "resp" else RedisPyAppender(redis.Redis.from_url(url), "events")
    payloads = [b'{"id":"%d","ua":"%s"}' % (number, b"x" * (number % 300)) for number in range(5000)]
    appender.append_many(payloads)
    client = redis.Redis(port=private_redis.port)
    assert [fields[b"e"] for _, fields in client.xrange("events")] == payloads
    # The socket is in step afterwards: the next batch reads its own answers.
    appender.append_many([b'{"id":"last"}'])
    assert client.xlen("events") == 5001


def test_append_many_fails_if_any_entry_is_refused_and_the_next_batch_starts_in_step(private_redis):
    appender = StreamAppender(f"redis://127.0.0.1:{private_redis.port}/0", "events")
    client = redis.Redis(port=private_redis.port)
    appender.append_many([b'{"id":"0"}'])
    client.delete("events")
    client.set("events", "not a stream")
    with pytest.raises(StreamUnavailable, match="WRONGTYPE"):
        appender.append_many([b'{"id":"1"}', b'{"id":"2"}', b'{"id":"3"}'])
    client.delete("events")
    appender.append_many([b'{"id":"4"}', b'{"id":"5"}'])
    assert [fields[b"e"] for _, fields in client.xrange("events")] == [b'{"id":"4"}', b'{"id":"5"}']
