"""What a kernel of each ABI generation must refuse in a GET_FMAP reply (docs/famfs-format.md, section 3).

Written apart from `kernel.py` and `wire.py`: raw offsets, its own loop. `reasons(data, abi)` is
empty exactly when the kernel may accept the reply; otherwise it lists why it must not.
"""
from __future__ import annotations

from typing import Any


def _u(b: bytes, at: int, n: int) -> int:
    return int.from_bytes(b[at:at + n], "little")


def reasons(data: bytes, abi: Any) -> list[str]:
    """Why `data` must be refused by a kernel speaking `abi` (empty: acceptable)."""
    if len(data) < 32:
        return ["shorter than the header"]
    ext_type, n, fmap_size, size = _u(data, 4, 4), _u(data, 8, 4), _u(data, 12, 4), _u(data, 16, 8)
    out: list[str] = []
    strips: list[tuple[int, int, int]] = []
    at = 32
    if ext_type == 0:
        if not 1 <= n <= abi.max_extents:
            return [f"{n} extents"]
        if 32 + 24 * n > len(data):
            return ["extents run past the reply"]
        strips = [(_u(data, 32 + 24 * k, 4), _u(data, 40 + 24 * k, 8), _u(data, 48 + 24 * k, 8)) for k in range(n)]
        at = 32 + 24 * n
        covered = sum(s[2] for s in strips)
    elif ext_type == 1 and abi.interleave_ok:
        if not 1 <= n <= abi.max_extents:
            return [f"{n} interleaved extents"]
        covered = 0
        for _ in range(n):
            if at + 24 > len(data):
                return ["interleaved extent runs past the reply"]
            ns, chunk, nbytes = _u(data, at, 4), _u(data, at + 4, 4), _u(data, at + 8, 8)
            at += 24
            if not 1 <= ns <= abi.max_strips or at + 24 * ns > len(data):
                return [f"{ns} strips"]
            if chunk == 0 or chunk % abi.alignment or nbytes == 0:
                out.append("chunk size or nbytes")
            for _ in range(ns):
                strips.append((_u(data, at, 4), _u(data, at + 8, 8), _u(data, at + 16, 8)))
                at += 24
            covered += nbytes
    else:
        return [f"ext_type {ext_type}"]
    for dev, off, ln in strips:
        if dev >= abi.nslots:
            out.append(f"dev_index {dev}")
        if ln == 0 or off % abi.alignment or ln % abi.alignment:
            out.append("zero or unaligned extent")
        if off + ln >= 1 << 64:
            out.append("u64 overflow")
    if covered < size:
        out.append("extents do not cover the file")
    if abi.fmap_size_filled and fmap_size and fmap_size != at:
        out.append("fmap_size disagrees with the message")
    return out


def _maps(data: bytes) -> tuple[int, int, list[Any]] | None:
    """(ext_type, file size, maps) of a reply `reasons` accepts: simple, maps = [(dev, off, len)];
    interleave, maps = [(chunk, nbytes, [(dev, off, len), ...]), ...]. Raw offsets, as above."""
    ext_type, n, size = _u(data, 4, 4), _u(data, 8, 4), _u(data, 16, 8)
    if ext_type == 0:
        return 0, size, [(_u(data, 32 + 24 * k, 4), _u(data, 40 + 24 * k, 8), _u(data, 48 + 24 * k, 8))
                         for k in range(n)]
    at, out = 32, []
    for _ in range(n):
        ns, chunk, nbytes = _u(data, at, 4), _u(data, at + 4, 4), _u(data, at + 8, 8)
        at += 24
        strips = [(_u(data, at + 24 * k, 4), _u(data, at + 24 * k + 8, 8), _u(data, at + 24 * k + 16, 8))
                  for k in range(ns)]
        at += 24 * ns
        out.append((chunk, nbytes, strips))
    return ext_type, size, out


def file_indices(data: bytes) -> set[int]:
    """Every devindex an accepted reply references (all extents, all strips)."""
    parsed = _maps(data)
    if parsed is None:
        return set()
    ext_type, _, maps = parsed
    if ext_type == 0:
        return {d for d, _, _ in maps}
    return {d for _, _, strips in maps for d, _, _ in strips}


def read_runs(data: bytes, offset: int, length: int) -> list[tuple[int, int, int] | None]:
    """What a read of [offset, offset+length) of an accepted reply's file touches, in file order:
    (devindex, device offset, bytes) per run, and None for a piece the map does not reach (a
    strip too short for the chunks striped onto it: the kernel fails it with EIO). The read
    stops at the file size and at the first unmapped piece."""
    parsed = _maps(data)
    assert parsed is not None
    ext_type, size, maps = parsed
    end = min(size, offset + length)
    out: list[tuple[int, int, int] | None] = []
    while offset < end:
        base, hit = 0, None
        if ext_type == 0:
            for dev, off, ln in maps:
                if offset < base + ln:
                    hit = (dev, off + offset - base, base + ln - offset)
                    break
                base += ln
        else:
            for chunk, nbytes, strips in maps:
                span = min(nbytes, size)
                if offset < base + span:
                    row, within = divmod(offset - base, chunk * len(strips))
                    k, inner = divmod(within, chunk)
                    dev, off, ln = strips[k]
                    at = row * chunk + inner
                    hit = (dev, off + at, min(chunk - inner, ln - at)) if at < ln else None
                    break
                base += span
        if hit is None:
            out.append(None)
            return out
        n = min(hit[2], end - offset)
        out.append((hit[0], hit[1], n))
        offset += n
    return out
