"""Warm worker pools: reuse, and discarding one."""

from sufra.utils.pools import discard_pool, process_pool

PRELOAD = ("json",)


def test_pool_is_reused_and_a_discarded_one_can_be_waited_for():
    pool = process_pool(2, PRELOAD)
    assert list(pool.map(abs, [-1, -2])) == [1, 2]
    assert process_pool(2, PRELOAD) is pool
    workers = list(pool._processes.values())
    discard_pool(2, PRELOAD, wait=True)
    assert len(workers) == 2 and not any(p.is_alive() for p in workers)  # ended before discard_pool returned
    fresh = process_pool(2, PRELOAD)
    assert fresh is not pool and list(fresh.map(abs, [-3])) == [3]
    discard_pool(2, PRELOAD, wait=True)
