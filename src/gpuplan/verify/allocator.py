"""A model of PyTorch's CUDA caching allocator, to replay a traced sequence of tensor allocations and frees and
read what ``torch.cuda.max_memory_reserved()`` would show for it (torch-free).

The rules are those of ``c10/cuda/CUDACachingAllocator.cpp`` with the default ``PYTORCH_CUDA_ALLOC_CONF`` (no
``max_split_size_mb``, no ``expandable_segments``, no ``roundup_power2_divisions``), on one stream:

- every request is rounded up to a multiple of 512 B (``kMinBlockSize``);
- requests up to 1 MiB (``kSmallSize``) come from the small pool, whose segments are 2 MiB (``kSmallBuffer``);
  larger ones from the large pool, whose new segment is 20 MiB (``kLargeBuffer``) for a request under 10 MiB
  (``kMinLargeAlloc``) and the request rounded up to 2 MiB (``kRoundLarge``) above;
- a request takes the smallest cached free block of its pool that is large enough (best fit, then the lowest
  address); a block is split when the rest is at least 512 B (small pool) or more than 1 MiB (large pool);
- a freed block merges with free neighbours of its segment and stays cached: reserved memory only grows, unless
  a new segment would not fit the device, when every wholly free segment is released first
  (``release_cached_blocks``) and the request retried;
- a segment belongs to the stream that opened it, and a request only takes cached blocks of its own stream
  (``get_free_block`` searches the pool in (stream, size, address) order): buffers a library allocates on side
  streams (FSDP2's all-gathers and reduce-scatters) keep cached pools of their own.

What this shows is fragmentation: a request larger than every cached free block takes a new segment even when
the free blocks add up to more than it needs.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

MIN_BLOCK_BYTES = 512
SMALL_REQUEST_BYTES = 1 << 20
SMALL_SEGMENT_BYTES = 2 << 20
LARGE_SEGMENT_BYTES = 20 << 20
MIN_LARGE_ALLOC_BYTES = 10 << 20
ROUND_LARGE_BYTES = 2 << 20


def rounded_bytes(nbytes: int) -> int:
    """A request rounded up to a multiple of 512 B (at least 512 B)."""
    return max(MIN_BLOCK_BYTES, -(-nbytes // MIN_BLOCK_BYTES) * MIN_BLOCK_BYTES)


def segment_bytes(rounded: int) -> int:
    """The size of the new segment (cudaMalloc) a request of ``rounded`` bytes opens when no cached block fits."""
    if rounded <= SMALL_REQUEST_BYTES:
        return SMALL_SEGMENT_BYTES
    if rounded < MIN_LARGE_ALLOC_BYTES:
        return LARGE_SEGMENT_BYTES
    return -(-rounded // ROUND_LARGE_BYTES) * ROUND_LARGE_BYTES


class _Block:
    __slots__ = ("segment", "offset", "size", "free", "prev", "next", "small", "stream")

    def __init__(self, segment: int, offset: int, size: int, small: bool, stream: int = 0) -> None:
        self.segment, self.offset, self.size, self.small, self.stream = segment, offset, size, small, stream
        self.free = True
        self.prev: _Block | None = None
        self.next: _Block | None = None

    def key(self) -> tuple[int, int, int]:
        return (self.size, self.segment, self.offset)


class CachingAllocator:
    """One device's caching allocator; ``capacity_bytes`` None: the device never runs out."""

    def __init__(self, capacity_bytes: int | None = None) -> None:
        self.capacity_bytes = capacity_bytes
        self._pools: dict[tuple[int, bool], list[tuple[tuple[int, int, int], _Block]]] = {}
        self._live: dict[object, _Block] = {}
        self._segments = 0
        self.allocated_bytes = 0
        self.reserved_bytes = 0
        self.peak_allocated_bytes = 0
        self.peak_reserved_bytes = 0

    def _pool(self, stream: int, small: bool) -> list[tuple[tuple[int, int, int], _Block]]:
        return self._pools.setdefault((stream, small), [])

    def malloc(self, key: object, nbytes: int, stream: int = 0) -> None:
        size = rounded_bytes(nbytes)
        small = size <= SMALL_REQUEST_BYTES
        pool = self._pool(stream, small)
        i = bisect.bisect_left(pool, ((size, -1, -1),))
        if i < len(pool):
            block = pool.pop(i)[1]
        else:
            block = self._new_segment(segment_bytes(size), small, stream)
        rest = block.size - size
        if (rest >= MIN_BLOCK_BYTES) if small else (rest > SMALL_REQUEST_BYTES):
            tail = _Block(block.segment, block.offset + size, rest, small, stream)
            tail.prev, tail.next = block, block.next
            if block.next is not None:
                block.next.prev = tail
            block.next, block.size = tail, size
            bisect.insort(pool, (tail.key(), tail))
        block.free = False
        self._live[key] = block
        self.allocated_bytes += block.size
        self.peak_allocated_bytes = max(self.peak_allocated_bytes, self.allocated_bytes)

    def free(self, key: object) -> None:
        block = self._live.pop(key)
        block.free = True
        self.allocated_bytes -= block.size
        pool = self._pool(block.stream, block.small)
        for other in (block.prev, block.next):
            if other is None or not other.free:
                continue
            pool.pop(bisect.bisect_left(pool, (other.key(),)))
            if other is block.prev:
                other.size += block.size
                other.next = block.next
                if block.next is not None:
                    block.next.prev = other
                block = other
            else:
                block.size += other.size
                block.next = other.next
                if other.next is not None:
                    other.next.prev = block
        bisect.insort(pool, (block.key(), block))

    def reset_peaks(self) -> None:
        self.peak_allocated_bytes, self.peak_reserved_bytes = self.allocated_bytes, self.reserved_bytes

    def _new_segment(self, nbytes: int, small: bool, stream: int) -> _Block:
        if self.capacity_bytes is not None and self.reserved_bytes + nbytes > self.capacity_bytes:
            self._release_cached()
        self._segments += 1
        self.reserved_bytes += nbytes
        self.peak_reserved_bytes = max(self.peak_reserved_bytes, self.reserved_bytes)
        return _Block(self._segments, 0, nbytes, small, stream)

    def _release_cached(self) -> None:
        for pool_key, pool in self._pools.items():
            whole = [kb for kb in pool if kb[1].prev is None and kb[1].next is None]
            self.reserved_bytes -= sum(b.size for _, b in whole)
            self._pools[pool_key] = [kb for kb in pool if not (kb[1].prev is None and kb[1].next is None)]


@dataclass(frozen=True)
class StepPeaks:
    """Peaks of one span of the replay (between two marks)."""

    name: str
    allocated_peak_bytes: int
    reserved_peak_bytes: int


def replay(events: Iterable[tuple], capacity_bytes: int | None = None) -> list[StepPeaks]:
    """Replay ``("alloc", key, bytes[, stream])``, ``("free", key, 0)`` and ``("mark", name, 0)`` events (stream 0,
    the default, when not given); returns the peaks of each span that ends at a mark (the span before the first
    mark is named ``"start"``). A free of a key never allocated (a tensor that existed before recording began) is
    ignored."""
    alloc = CachingAllocator(capacity_bytes)
    out: list[StepPeaks] = []
    name = "start"
    for op, key, nbytes, *stream in events:
        if op == "alloc":
            alloc.malloc(key, nbytes, *stream)
        elif op == "free":
            if key in alloc._live:
                alloc.free(key)
        elif op == "mark":
            out.append(StepPeaks(name, alloc.peak_allocated_bytes, alloc.peak_reserved_bytes))
            alloc.reset_peaks()
            name = str(key)
        else:
            raise ValueError(f"unknown allocator event {op!r}")
    out.append(StepPeaks(name, alloc.peak_allocated_bytes, alloc.peak_reserved_bytes))
    return out


@dataclass(frozen=True)
class SegmentOpened:
    """A request in the span that opened a new segment: its size, the segment's, and the cached free blocks of its
    stream at that moment (the largest and their sum), which show whether the free memory was there in pieces."""

    request_bytes: int
    segment_bytes: int
    largest_free_bytes: int
    free_bytes: int


def segments_opened(events: Iterable[tuple], span: str) -> list[SegmentOpened]:
    """Replay ``events`` (as :func:`replay`) and list the new segments opened during the span named ``span``."""
    alloc = CachingAllocator()
    out: list[SegmentOpened] = []
    name = "start"
    for op, key, nbytes, *stream in events:
        if op == "alloc":
            before = alloc.reserved_bytes
            small = rounded_bytes(nbytes) <= SMALL_REQUEST_BYTES
            blocks = [kb[1].size for kb in alloc._pool(stream[0] if stream else 0, small)]
            alloc.malloc(key, nbytes, *stream)
            if name == span and alloc.reserved_bytes > before:
                out.append(SegmentOpened(nbytes, alloc.reserved_bytes - before, max(blocks, default=0), sum(blocks)))
        elif op == "free":
            if key in alloc._live:
                alloc.free(key)
        elif op == "mark":
            name = str(key)
    return out
