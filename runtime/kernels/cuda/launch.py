"""Launch geometry shared by the CUDA kernels: how many threads a block gets and how many blocks
cover a range.

Blocks shrink to the work (a power of two): a real GPU loses nothing on tiny launches, and Numba's
simulator runs every thread as a Python thread, so idle threads cost test time (and a block that
synchronises costs time per thread and barrier: the reductions give each thread several values
before they add threads).
"""

from __future__ import annotations

WARP = 32
#: threads per block for element-wise work and the reductions' shared-memory arrays
MAX_THREADS = 256
#: values each thread of a reducing block sums before the block's tree
VALUES_PER_THREAD = 4


def threads_for(n: int, most: int = MAX_THREADS, least: int = WARP) -> int:
    """The smallest power of two >= n, between ``least`` and ``most``."""
    threads = least
    while threads < n and threads < most:
        threads *= 2
    return threads


def elementwise(n: int) -> tuple[int, int]:
    """(blocks, threads) for one thread per element of n (at least one block)."""
    threads = threads_for(n)
    return max(1, -(-n // threads)), threads


def reduction_threads(n: int, most: int = MAX_THREADS) -> int:
    """Threads (a power of two) for a block that reduces n values, VALUES_PER_THREAD each."""
    return threads_for(-(-n // VALUES_PER_THREAD), most, least=1)
