"""A process's event journal: handing an event on is one write() to a local file.

A write() into the page cache survives the crash of the process that made it, as Redis's own
append-only file survives Redis's. It costs one system call, where a synchronous XADD also wakes
Redis and puts the worker to sleep until it answers: on a busy web machine, that sleep and wake-up
cost more CPU than the rest of a click (bench/RESULTS.md). A thread of the process ships the lines
written every `interval` seconds, in one batch, through the `ship` callable.

The journal is a series of segment files in `directory`, named `journal-<pid>-<random>-<n>.journal`;
the process holds an flock on each while it is open. A segment is written until it reaches
SEGMENT_BYTES or its process is idle for an interval, and deleted once all of it is shipped:
creating and deleting a file costs more than shipping a batch, so a segment outlives many batches.

- A segment whose lines could not be shipped is fsync'd and renamed `.replay`, for the spool's replay.
- A process that dies leaves its segments unlocked: ``take_orphaned_segments`` renames them `.replay`
  too. Their lines shipped already are stored again then, which the event ids make harmless.
"""
import atexit
import fcntl
import itertools
import logging
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".journal"
REPLAY_SUFFIX = ".replay"
# A segment is created under this suffix, then renamed once locked: replay never sees it unlocked.
CREATING_SUFFIX = ".creating"
SEGMENT_BYTES = 1 << 20
# So many lines waiting wake the shipper before its interval is up.
EARLY_SHIP_LINES = 2000


class _Segment:
    __slots__ = ("fd", "path", "size", "lines")

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path
        self.size = 0
        self.lines: list[bytes] = []  # written, not shipped yet


class EventJournal:
    """Lines written by `append` are shipped by a background thread, in order, at least once."""

    def __init__(
        self,
        directory: Path,
        ship: Callable[[list[bytes]], None],
        *,
        interval: float,
        shipper_done: Callable[[], None] | None = None,
    ) -> None:
        """`shipper_done` is called by the shipper thread as it ends, to release what `ship` left
        open in it (a database connection, say)."""
        self.directory = Path(directory)
        self.ship = ship
        self.interval = interval
        self.shipper_done = shipper_done
        self._start_afresh()
        _journals.add(self)

    def _start_afresh(self) -> None:
        self._lock = threading.Lock()  # guards the segments, their lines, _open and _thread
        self._ship_lock = threading.Lock()  # one shipment at a time
        self._wake = threading.Event()
        self._current: _Segment | None = None  # the one written to
        self._sealed: list[_Segment] = []  # no longer written to, not deleted yet
        self._open: set[int] = set()
        self._thread: threading.Thread | None = None
        self._prefix = f"journal-{os.getpid()}-{os.urandom(4).hex()}-"
        self._numbers = itertools.count()

    def append(self, line: bytes) -> None:
        """Writes one line (ending in a newline). Once this returns, the line outlives this process;
        raises OSError if it could not be written, and then nothing of it will be shipped."""
        with self._lock:
            segment = self._current
            if segment is None:
                segment = self._current = self._open_segment()
            try:
                written = os.write(segment.fd, line)
                if written != len(line):
                    raise OSError(f"short write to {segment.path}: {written} of {len(line)} bytes")
            except OSError:
                # The lines before are whole and will be shipped; nothing more goes after a torn one.
                self._current = None
                self._sealed.append(segment)
                raise
            finally:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._ship_until_idle, name="beacon-journal", daemon=True)
                    self._thread.start()
            segment.size += written
            segment.lines.append(line)
            waiting = len(segment.lines)
        if waiting == EARLY_SHIP_LINES:
            self._wake.set()

    def flush(self, *, finished: bool = True) -> None:
        """Ships every line written so far; what could not be shipped is kept for replay. A segment
        stays open for more lines if `finished` is false (the shipper's own calls) and it is not full."""
        with self._ship_lock:
            with self._lock:
                sealed, self._sealed = self._sealed, []
                current = self._current
                if current is not None and (finished or not current.lines or current.size >= SEGMENT_BYTES):
                    sealed.append(current)
                    current = self._current = None
                batches = [(segment, segment.lines) for segment in sealed]
                if current is not None:
                    batches.append((current, current.lines))
                for segment, _ in batches:
                    segment.lines = []
            for segment, lines in batches:
                if not self._shipped(segment, lines):
                    self._keep_for_replay(segment)
                elif segment is not current:
                    self._delete(segment)

    def _open_segment(self) -> _Segment:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{self._prefix}{next(self._numbers)}"
        creating = self.directory / (name + CREATING_SUFFIX)
        path = self.directory / (name + JOURNAL_SUFFIX)
        fd = os.open(creating, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(creating, path)
        except OSError:
            os.close(fd)
            raise
        self._open.add(fd)
        return _Segment(fd, path)

    def _shipped(self, segment: _Segment, lines: list[bytes]) -> bool:
        if not lines:
            return True
        try:
            self.ship(lines)
            return True
        except Exception:
            logger.exception("Could not ship %d journaled events; keeping %s for replay", len(lines), segment.path)
            return False

    def _keep_for_replay(self, segment: _Segment) -> None:
        with self._lock:
            if self._current is segment:  # no more lines go into a file handed to the replay
                self._current = None
        try:
            os.fsync(segment.fd)
            os.rename(segment.path, segment.path.with_suffix(REPLAY_SUFFIX))
        except OSError:
            # Still named .journal: unlocked once closed, it is taken as an orphan.
            logger.exception("Could not keep %s for replay", segment.path)
        self._close(segment)

    def _delete(self, segment: _Segment) -> None:
        try:
            os.unlink(segment.path)
        except OSError:
            logger.exception("Could not delete the shipped segment %s; its events will be stored twice, once", segment.path)
        self._close(segment)

    def _close(self, segment: _Segment) -> None:
        with self._lock:
            self._open.discard(segment.fd)
        os.close(segment.fd)

    def _ship_until_idle(self) -> None:
        """The shipper: ships every interval; ends once nothing is left, and `append` starts another."""
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush(finished=False)
            except Exception:
                logger.exception("The event journal's shipper failed; retrying")
            with self._lock:
                if self._current is None and not self._sealed:
                    self._thread = None
                    break
        if self.shipper_done is not None:
            try:
                self.shipper_done()
            except Exception:
                logger.exception("The event journal's shipper could not clean up")

    def _forget_after_fork(self) -> None:
        """In a forked child: the parent ships what it wrote; the child starts a journal of its own."""
        for fd in self._open:
            try:
                os.close(fd)
            except OSError:
                pass
        self._start_afresh()


def take_orphaned_segments(directory: Path) -> int:
    """Renames `.replay` the segments whose process died before shipping them; returns how many."""
    taken = 0
    for path in Path(directory).glob(f"*{JOURNAL_SUFFIX}"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # shipped meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(path, path.with_suffix(REPLAY_SUFFIX))
            taken += 1
        except (BlockingIOError, FileNotFoundError):
            pass  # its process is alive and will ship it, or has just shipped it
        finally:
            os.close(fd)
    return taken


_journals: "weakref.WeakSet[EventJournal]" = weakref.WeakSet()


def _flush_all() -> None:
    for journal in list(_journals):
        try:
            journal.flush()
        except Exception:
            logger.exception("Could not ship the event journal at exit; its segments are replayed later")


def _forget_all_after_fork() -> None:
    for journal in list(_journals):
        journal._forget_after_fork()


atexit.register(_flush_all)
os.register_at_fork(after_in_child=_forget_all_after_fork)
