"""Random bytes for the tracking endpoints, drawn from the OS a few kilobytes at a time.

A click takes 10 random bytes (for its event id). Asking the OS for them on every click costs a
system call, more than everything else the bytes are for; a pool refilled from
``os.urandom`` costs one call per hundred-odd clicks. The pool is per process: a forked child (a
gunicorn worker, a Celery worker) starts with an empty one, so no two processes hand out the same bytes.
"""
import os
import threading

POOL_SIZE = 4096

_lock = threading.Lock()
_pool = b""
_offset = 0


def random_bytes(count: int) -> bytes:
    """`count` bytes from the OS's cryptographic source, each handed out once."""
    global _pool, _offset
    with _lock:
        end = _offset + count
        if end > len(_pool):
            _pool, _offset, end = os.urandom(max(POOL_SIZE, count)), 0, count
        chunk = _pool[_offset:end]
        _offset = end
    return chunk


def _empty_pool_in_child() -> None:
    global _lock, _pool, _offset
    # A new lock too: another thread may have held the parent's at the fork.
    _lock, _pool, _offset = threading.Lock(), b"", 0


os.register_at_fork(after_in_child=_empty_pool_in_child)
