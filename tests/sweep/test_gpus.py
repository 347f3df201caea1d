"""GPU sharing between concurrent local jobs (caliban.sweep.gpus), against a
fake list of host GPUs: this machine has none."""

import threading
import time

import pytest

from caliban.errors import UsageError
from caliban.sweep.gpus import GpuPool, split_devices

UUIDS = [f"GPU-{i:08x}" for i in range(8)]


def _until(predicate, what):
    """Wait for another thread to reach a state; a safety bound, not a measurement."""
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)


def test_disjoint_sets_under_concurrency():
    pool = GpuPool(UUIDS)
    in_use: set[str] = set()
    guard = threading.Lock()
    overlaps, concurrency, done = [], [0], []

    def job(n):
        for _ in range(20):
            with pool.lease(3, f"job {n}") as devices:
                assert len(devices) == 3
                with guard:
                    if in_use & set(devices):
                        overlaps.append((n, devices))
                    in_use.update(devices)
                    concurrency[0] = max(concurrency[0], len(in_use) // 3)
                time.sleep(0)  # let other threads run while the GPUs are held
                with guard:
                    in_use.difference_update(devices)
        done.append(n)

    threads = [threading.Thread(target=job, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(done) == list(range(12))
    assert overlaps == []
    assert concurrency[0] <= 2  # 8 GPUs hold at most two sets of 3
    assert sorted(pool.acquire(8)) == sorted(UUIDS)  # everything came back


def test_a_job_waits_until_enough_gpus_are_released():
    pool = GpuPool(["0", "1"])
    held = pool.acquire(2)
    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(1)))
    waiter.start()
    _until(lambda: len(pool._queue) == 1, "the job queued")
    assert got == []
    pool.release([held[1]])
    waiter.join(30)
    assert got == [("1",)]
    pool.release(["0"])
    pool.release(got[0])
    assert pool.acquire(2) == ("0", "1")


def test_first_come_first_served():
    pool = GpuPool(["0", "1", "2", "3"])
    held = pool.acquire(3)
    order = []
    big = threading.Thread(target=lambda: order.append(("big", pool.acquire(4))))
    big.start()
    _until(lambda: len(pool._queue) == 1, "the big job queued")
    small = threading.Thread(target=lambda: order.append(("small", pool.acquire(1))))
    small.start()
    _until(lambda: len(pool._queue) == 2, "the small job queued behind it")
    assert order == []  # one GPU is free, but the big job came first
    pool.release(held)
    big.join(30)
    assert order == [("big", ("0", "1", "2", "3"))]
    pool.release(order[0][1])
    small.join(30)
    assert order[1] == ("small", ("0",))


def test_more_than_the_machine_has_is_refused_at_once():
    pool = GpuPool(["0", "1"])
    with pytest.raises(UsageError, match=r"^3 nodes x 2 GPUs per node needs 6 GPUs but this machine has "
                                         r"only 2 \(0, 1\)$"):
        pool.acquire(6, "3 nodes x 2 GPUs per node")
    with pytest.raises(UsageError, match="needs 1 GPUs but this machine has none"):
        GpuPool([]).check(1)
    with pytest.raises(UsageError, match="GPU count -1 must be a whole number"):
        pool.acquire(-1)
    assert pool.acquire(0) == ()
    assert pool.acquire(2) == ("0", "1")  # the refusals took nothing


def test_release_of_gpus_not_held_is_a_bug():
    pool = GpuPool(["0", "1"])
    with pytest.raises(ValueError, match="not held: 0"):
        pool.release(["0"])  # free already
    taken = pool.acquire(1)
    with pytest.raises(ValueError, match="not held: 7"):
        pool.release(["7"])
    pool.release(taken)
    with pytest.raises(ValueError, match="names a device twice: 0"):
        GpuPool(["0", "0"])


def test_lease_returns_gpus_on_error():
    pool = GpuPool(["0"])
    with pytest.raises(RuntimeError):
        with pool.lease(1):
            raise RuntimeError("training crashed")
    assert pool.acquire(1) == ("0",)


def test_split_devices_per_replica():
    assert split_devices(["0", "1", "2", "3", "4", "5"], 3) == [("0", "1"), ("2", "3"), ("4", "5")]
    with pytest.raises(ValueError):
        split_devices(["0", "1", "2"], 2)
