import os
import threading

from tracking import randomness
from tracking.randomness import random_bytes


def test_bytes_are_handed_out_once_across_refills():
    chunks = [random_bytes(10) for _ in range(3 * randomness.POOL_SIZE // 10)]
    assert all(len(chunk) == 10 for chunk in chunks)
    assert len(set(chunks)) == len(chunks)
    assert len(random_bytes(2 * randomness.POOL_SIZE)) == 2 * randomness.POOL_SIZE


def test_a_forked_child_does_not_repeat_its_parents_bytes():
    random_bytes(1)  # the parent's pool is filled before the fork
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(writer, random_bytes(16))
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    from_child = os.read(reader, 16)
    os.close(reader)
    assert len(from_child) == 16
    assert from_child != random_bytes(16)


def test_threads_never_get_the_same_bytes():
    drawn = []

    def draw() -> None:
        drawn.extend(random_bytes(16) for _ in range(2000))

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(drawn)) == len(drawn) == 8000
