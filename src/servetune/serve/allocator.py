"""Hand freed memory back to the system after large images (glibc's allocator).

glibc serves a large allocation with its own mmap, returned to the system on free, but it raises that
threshold to the size of any such block freed (up to 32 MiB), after which the 16 MiB blocks Pillow
allocates images in come from the heap arenas of the threads that decode, and freed memory stays in the
process: after a burst of large uploads a server kept 0.6-1.7 GB. A fixed threshold keeps large blocks on
mmap (returned at once); malloc_trim hands back what the arenas still hold after a large decode. Both are
no-ops where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD_BYTES = 1024 * 1024


def glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 (glibc only)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


LIBC = glibc()


def keep_large_blocks_returnable() -> None:
    """Blocks of MMAP_THRESHOLD_BYTES or more are mmapped and go back to the system when freed."""
    if LIBC is not None:
        LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def release_free_memory() -> None:
    if LIBC is not None:
        LIBC.malloc_trim(0)
