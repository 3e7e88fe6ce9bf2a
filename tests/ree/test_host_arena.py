"""node/ree/host_arena.py: an arena's buffer is reused only once nothing views it."""

import torch

from node.ree.host_arena import ArenaPool, rounded


def test_rounded_fits_a_slightly_larger_arena() -> None:
    for size in (0, 1, 4095, 65536, 26_300_000, 4_325_000):
        r = rounded(size)
        assert size <= r <= max(65536, size + size // 8)
    assert rounded(26_300_000) == rounded(26_300_000 + 50_000)  # a step later: same buffer


def test_buffer_reused_only_when_free() -> None:
    pool = ArenaPool()
    a = pool.take(100_000)
    a.fill_(7)
    view = a[10:20].view(torch.uint8)
    del a
    b = pool.take(100_000)  # the first arena's view still reads its buffer
    assert b.data_ptr() != view.data_ptr() - 10
    assert int(view.sum()) == 70
    assert pool.allocated == 2
    ptr = view.data_ptr() - 10
    del view
    c = pool.take(100_500)  # a little larger: the freed buffer still fits
    assert c.data_ptr() == ptr and c.numel() == 100_500 and pool.allocated == 2
    n = c.numpy()  # a NumPy view keeps it too
    del c
    d = pool.take(100_000)
    assert d.data_ptr() != ptr and pool.allocated == 3  # b's buffer is b's still
    del n
    assert pool.take(100_000).data_ptr() == ptr


def test_pool_keeps_at_most_max_free_idle_bytes() -> None:
    pool = ArenaPool(max_free=300_000)
    keep = [pool.take(100_000) for _ in range(6)]  # all in use: all pooled
    assert len(pool._bufs) == 6
    del keep
    big = pool.take(250_000)  # six idle too-small buffers: let go
    assert [b.nbytes for b in pool._bufs] == [rounded(250_000)] and big.numel() == 250_000
    del big
    keep = [pool.take(400_000) for _ in range(3)]
    del keep  # three idle ones of 458,752 bytes: too large for the next, over max_free
    small = pool.take(150_000)
    assert [b.nbytes for b in pool._bufs] == [rounded(150_000)]  # the idle three let go
    assert small.numel() == 150_000


def test_growing_arenas_do_not_pile_up() -> None:
    """A decode's arenas grow every step: buffers too small for the next ones are let go."""
    pool = ArenaPool()
    prev = None
    for step in range(400):
        cur = pool.take(1_000_000 + 90_000 * step)  # the last step's arena still read
        prev, cur = cur, None  # noqa: F841 - the executor keeps only the last step's
    assert len(pool._bufs) <= 4
    assert pool.allocated < 100  # about two a size step (1/16-1/8), not one a step


def test_take_picks_the_smallest_free_fit() -> None:
    """A free buffer of exactly the rounded size wins over a larger free one listed before
    it, and an in-use one of that size is passed over; with no exact fit the smallest
    larger free one is taken."""
    pool = ArenaPool()
    want = rounded(100_000)
    large = pool.take(150_000)  # rounds to more than `want`, at most 2·want: a fit
    busy = pool.take(100_000)
    exact = pool.take(100_000)
    p_large, p_exact = large.data_ptr(), exact.data_ptr()
    assert rounded(150_000) > want and pool.allocated == 3
    del large, exact
    got = pool.take(100_000)
    assert got.data_ptr() == p_exact and got.data_ptr() != busy.data_ptr()
    again = pool.take(100_000)  # no exact fit free: the larger one
    assert again.data_ptr() == p_large and pool.allocated == 3


def test_readers_wait_for_every_reader_added() -> None:
    """A stack rewrites its pinned logits rows only after the host tails reading them in
    place are done (`LaneStack.speculate`): `wait` returns once every reader added is, and
    a reader's error stays its own (its waiter raises it)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from node.ree.host_arena import Readers

    go = threading.Event()
    done: list[int] = []

    def read(k: int) -> None:
        go.wait(5)
        done.append(k)
        if k == 1:
            raise ValueError("a reader's own error")

    readers = Readers()
    with ThreadPoolExecutor(2) as pool:
        futs = [pool.submit(read, k) for k in range(2)]
        for f in futs:
            readers.add(f)
        threading.Timer(0.05, go.set).start()
        readers.wait()
        assert sorted(done) == [0, 1]
        readers.wait()  # nothing left to wait for
        assert futs[1].exception() is not None


def test_tails_read_in_place_only_rows_whose_writer_waits() -> None:
    """A batch's host tails read the logits in place only when every job's host copy names
    the same `Readers` (one stack's rows of one parity, `LaneStack.speculate`): a job whose
    copy names none, or another stack's, makes the batch copy them (`fastexec._readers_of`)."""
    from types import SimpleNamespace

    from node.ree.fastexec import _readers_of
    from node.ree.host_arena import Readers

    r = Readers()

    def job(readers: Readers | None) -> SimpleNamespace:
        return SimpleNamespace(host_copies={5: (None, None, readers)})

    assert _readers_of([job(r), job(r)], [5]) is r
    assert _readers_of([job(r), job(Readers())], [5]) is None
    assert _readers_of([job(r), job(None)], [5]) is None
    assert _readers_of([job(r), SimpleNamespace(host_copies={})], [5]) is None
    assert _readers_of([[0.0]], [5]) is None  # a plain list of outputs: no host copies
