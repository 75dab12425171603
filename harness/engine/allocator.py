"""The C allocator's settings for a fuzzing process: large buffers kept, not returned per case.

A structured case allocates and frees buffers of a few hundred KiB to a few MiB (each 1 MiB read
the kernel side returns, the bytes a check compares). glibc serves such sizes with a fresh
`mmap` and unmaps them on `free`, so every one costs a page fault per 4 KiB page touched; that
was about a third of a structured case's CPU time. With the mmap threshold raised above the
largest buffer a case uses (and trimming off), freed memory stays in the heap and is reused hot.
The process keeps what it once used (its peak), not more. `tune()` does this once per process;
it does nothing where the C library is not glibc.
"""
from __future__ import annotations

M_TRIM_THRESHOLD = -1      # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
_DONE: list[bool] = []


def tune(mmap_threshold: int = 32 << 20) -> bool:
    """Raise glibc's mmap threshold (32 MiB is its own maximum) and stop heap trimming; True if
    the settings took effect."""
    if _DONE:
        return _DONE[0]
    ok = False
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        ok = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        ok = False
    _DONE.append(ok)
    return ok
