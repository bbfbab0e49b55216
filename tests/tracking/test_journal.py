"""The event journal (tracking.ingest.journal): written before the answer, shipped after, never lost."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tracking.ingest import journal as journal_module
from tracking.ingest.journal import EventJournal, take_orphaned_segments

REPOSITORY = Path(__file__).resolve().parents[2]
HOUR = 3600.0


class Shipments:
    """A ship callable that records what it is given, or fails while `failing` is set."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.failing = False

    def __call__(self, lines: list[bytes]) -> None:
        if self.failing:
            raise ConnectionError("nowhere to ship to")
        self.batches.append(list(lines))

    @property
    def lines(self) -> list[bytes]:
        return [line for batch in self.batches for line in batch]


def files(directory: Path, suffix: str) -> list[Path]:
    return sorted(directory.glob(f"*{suffix}"))


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def journal_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "beacon-journal"]


def test_lines_are_on_disk_when_append_returns_and_gone_once_shipped(tmp_path):
    shipments = Shipments()
    journal = EventJournal(tmp_path, shipments, interval=HOUR)
    lines = [b'{"id":"%d"}\n' % number for number in range(3)]
    for line in lines:
        journal.append(line)

    [segment] = files(tmp_path, ".journal")
    assert segment.read_bytes() == b"".join(lines)
    assert shipments.batches == []

    journal.flush()
    assert shipments.batches == [lines]
    assert list(tmp_path.iterdir()) == []

    journal.append(b"later\n")
    journal.flush()
    assert shipments.batches == [lines, [b"later\n"]]
    assert list(tmp_path.iterdir()) == []


def test_the_shipper_thread_ships_every_interval_and_ends_when_idle(tmp_path):
    shipments = Shipments()
    done_in = []
    journal = EventJournal(
        tmp_path, shipments, interval=0.02, shipper_done=lambda: done_in.append(threading.current_thread())
    )
    others = set(journal_threads())
    journal.append(b"one\n")
    [shipper] = set(journal_threads()) - others
    wait_for(lambda: shipments.lines == [b"one\n"])
    wait_for(lambda: not shipper.is_alive())
    assert list(tmp_path.iterdir()) == []
    assert done_in == [shipper]  # it released what it held, in its own thread

    journal.append(b"two\n")  # a new shipper starts for the next lines
    wait_for(lambda: shipments.lines == [b"one\n", b"two\n"])
    wait_for(lambda: list(tmp_path.iterdir()) == [])


def test_a_segment_takes_many_batches_until_it_is_full_or_idle(tmp_path, monkeypatch):
    """The shipper's own flushes (finished=False) keep writing the same segment, while there is traffic."""
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 100)
    shipments = Shipments()
    journal = EventJournal(tmp_path, shipments, interval=HOUR)
    journal.append(b"first batch\n")
    journal.flush(finished=False)
    [segment] = files(tmp_path, ".journal")
    journal.append(b"second batch\n")
    journal.flush(finished=False)
    assert files(tmp_path, ".journal") == [segment]
    assert segment.read_bytes() == b"first batch\nsecond batch\n"

    journal.append(b"x" * 99 + b"\n")  # over SEGMENT_BYTES: shipped, then deleted
    journal.flush(finished=False)
    assert not segment.exists()
    journal.append(b"into a new segment\n")
    [new_segment] = files(tmp_path, ".journal")
    assert new_segment.read_bytes() == b"into a new segment\n"
    journal.flush(finished=False)
    assert files(tmp_path, ".journal") == [new_segment]
    journal.flush(finished=False)  # a flush with nothing new: the process is idle, the segment goes
    assert list(tmp_path.iterdir()) == []
    assert shipments.batches == [[b"first batch\n"], [b"second batch\n"], [b"x" * 99 + b"\n"], [b"into a new segment\n"]]


def test_many_waiting_lines_wake_the_shipper_before_its_interval(tmp_path):
    shipments = Shipments()
    journal = EventJournal(tmp_path, shipments, interval=HOUR)
    for number in range(journal_module.EARLY_SHIP_LINES):
        journal.append(b"%d\n" % number)
    wait_for(lambda: len(shipments.lines) == journal_module.EARLY_SHIP_LINES)


def test_lines_appended_from_many_threads_are_all_shipped_once(tmp_path):
    shipments = Shipments()
    journal = EventJournal(tmp_path, shipments, interval=0.001)

    def append(thread: int) -> None:
        for number in range(500):
            journal.append(b"%d-%d\n" % (thread, number))

    threads = [threading.Thread(target=append, args=(thread,)) for thread in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.flush()
    assert sorted(shipments.lines) == sorted(b"%d-%d\n" % (t, n) for t in range(4) for n in range(500))
    assert list(tmp_path.iterdir()) == []


def test_a_failed_shipment_is_kept_for_replay(tmp_path):
    shipments = Shipments()
    shipments.failing = True
    journal = EventJournal(tmp_path, shipments, interval=HOUR)
    journal.append(b"a\n")
    journal.append(b"b\n")

    journal.flush()
    [kept] = files(tmp_path, ".replay")
    assert kept.read_bytes() == b"a\nb\n"
    assert files(tmp_path, ".journal") == []

    shipments.failing = False
    journal.append(b"c\n")
    journal.flush()
    assert shipments.lines == [b"c\n"]  # the kept lines are the replay's, not shipped twice
    assert files(tmp_path, ".replay") == [kept]


def test_a_line_that_cannot_be_written_raises_and_the_lines_before_it_still_ship(tmp_path, monkeypatch):
    shipments = Shipments()
    journal = EventJournal(tmp_path, shipments, interval=HOUR)
    journal.append(b"whole\n")
    real_write = os.write
    monkeypatch.setattr(journal_module.os, "write", lambda fd, data: real_write(fd, data[:3]))  # disk full
    with pytest.raises(OSError, match="short write"):
        journal.append(b"torn line\n")
    monkeypatch.setattr(journal_module.os, "write", real_write)
    journal.append(b"next\n")  # into a new segment: nothing follows a torn line

    journal.flush()
    assert shipments.lines == [b"whole\n", b"next\n"]
    assert list(tmp_path.iterdir()) == []


def test_a_directory_that_cannot_be_made_raises(tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    journal = EventJournal(not_a_directory / "spool", Shipments(), interval=HOUR)
    with pytest.raises(OSError):
        journal.append(b"line\n")


KILLED_WRITER = """
import os, signal, sys
from tracking.ingest.journal import EventJournal
journal = EventJournal(sys.argv[1], lambda lines: None, interval=3600)
for number in range(int(sys.argv[2])):
    journal.append(b"%d\\n" % number)
print("written", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_segments_of_a_killed_process_are_taken_for_replay_and_a_live_ones_are_not(tmp_path):
    live = EventJournal(tmp_path, Shipments(), interval=HOUR)
    live.append(b"alive\n")

    writer = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path), "250"], cwd=REPOSITORY, capture_output=True
    )
    assert writer.returncode == -signal.SIGKILL and writer.stdout == b"written\n", writer.stderr
    assert len(files(tmp_path, ".journal")) == 2

    assert take_orphaned_segments(tmp_path) == 1
    [orphan] = files(tmp_path, ".replay")
    assert orphan.read_bytes() == b"".join(b"%d\n" % number for number in range(250))
    [still_live] = files(tmp_path, ".journal")
    assert still_live.read_bytes() == b"alive\n"
    assert take_orphaned_segments(tmp_path) == 0


def test_a_forked_child_ships_its_own_lines_and_not_its_parents(tmp_path):
    shipped_by_child = tmp_path / "child-shipped"
    directory = tmp_path / "journal"
    shipments = Shipments()
    journal = EventJournal(directory, shipments, interval=HOUR)
    journal.append(b"parent\n")

    pid = os.fork()
    if pid == 0:  # the child: records what its journal ships, then leaves without cleanup
        try:
            journal.ship = lambda lines: shipped_by_child.write_bytes(b"".join(lines))
            journal.append(b"child\n")
            journal.flush()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    assert shipped_by_child.read_bytes() == b"child\n"
    journal.flush()
    assert shipments.lines == [b"parent\n"]
    assert list(directory.iterdir()) == []
