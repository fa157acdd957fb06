"""zstd contexts, one set per thread.

python-zstandard's ZstdCompressor and ZstdDecompressor hold one native context each and are not
thread-safe; they release the GIL while they work. Module-level compressors shared by every caller
crashed the process when two threads encoded at once (four threads encoding `hil.fleet` batches:
a segmentation fault within seconds; a CI run of the tests: SIGABRT). The agent encodes in worker
threads (`asyncio.to_thread`), and `gateway.wire` is a library others call from their own threads.

A reused context is what makes the calls cheap (a 100-reading body: 1 us with a reused decompression
context, 26 us with a new one and a stream reader), so each thread keeps its own.
"""

from __future__ import annotations

import threading

import zstandard

_local = threading.local()


def compressor(level: int, *, content_size: bool = True) -> zstandard.ZstdCompressor:
    """This thread's compressor at `level`: no checksum (the signature covers the bytes), the content
    size in the frame header unless `content_size` is False."""
    contexts: dict[tuple[int, bool], zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if contexts is None:
        contexts = _local.compressors = {}
    context = contexts.get((level, content_size))
    if context is None:
        context = contexts[level, content_size] = zstandard.ZstdCompressor(
            level=level, write_checksum=False, write_content_size=content_size
        )
    return context


def decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompressor."""
    context: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if context is None:
        context = _local.decompressor = zstandard.ZstdDecompressor()
    return context
