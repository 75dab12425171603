"""DAX backends: file / memfd emulated, /dev/daxX.Y real (the per-node resolver is `resolver.py`).

A `DaxDevice` is one DAX device as one node sees it: a node-local `name` (``dax0.0``, a path, any
label), a `size`, a `dev_t`, and a MAP_SHARED mapping of the whole device. Three backends give the
same object:

* `DaxDevice.emulated_file(path)`: a (sparse) file; every mapping of it, in any process, shares
  the same page-cache memory, as every node of a CXL cluster shares the memory of a device.
* `DaxDevice.memfd(size, name)`: anonymous shared memory (``memfd_create``). Its `fd` can be
  passed to another process (``pass_fds``, SCM_RIGHTS, ``/proc/<pid>/fd/<fd>``) or re-mapped here
  with `from_fd` / `alias`, so several "nodes" map the same bytes.
* `DaxDevice.real(path)`: a device-dax character device. devdax refuses read(2), MAP_PRIVATE and
  mappings whose length or offset is not a multiple of its alignment (2 MiB), and reports st_size
  0; so the size comes from sysfs (``/sys/dev/char/MAJ:MIN/size`` or
  ``/sys/bus/dax/devices/daxX.Y/size``) and is rounded down to the alignment, and nothing but the
  one whole-device MAP_SHARED mapping is ever used. msync is never called (EINVAL on devdax).

`flush` / `fence` / `invalidate` are the ordering calls of `shm.Port` (the master's flushes and
fences, a client's invalidation before it reads the log); they are no-ops on every backend, and
`shm.py` says why, and what checks cross-host visibility instead (`harness.faults.shm`).

Every access (`read`, `write`, `view`) is bounds-checked before memory is touched: ``0 <= offset``
and ``offset + length <= size``, or `DaxDeviceError` ERANGE / EXT-BOUNDS, never IndexError or
ValueError. An attached `on_access(node, name, offset, length, write)` callback hears of each
access that went through (default None: one attribute test).

Fault switches, for the fault-injection work (`harness.faults`): `fail_io` (every access EIO),
`vanished` (ENODEV on access, scan and resolve), `poison` (an access overlapping a poisoned range
fails with EHWPOISON where Python knows it, else EIO) and `fail_nth(op, n)` (the n-th "open",
"map", "read" or "write" after arming fails with EIO). The hot path pays one test of the cached
flag `_faulty`; the switches are only consulted when it is set.

Operations, as counted by `fail_nth`: "open" is a resolver scanning the device's superblock,
"map" is `view()`, "read" is `read()` or `read_view()`, "write" is `write()`.

Invariant IDs on errors: EXT-BOUNDS for out-of-range accesses; IDX-RESOLVE for devices that cannot
be opened, mapped or resolved (and for name/dev_t/UUID ambiguity); IDX-PRIMARY for `primary()`;
DATA for I/O faults on an access (the bytes cannot be what the spec wrote).

Caveats: emulated devices get a synthetic dev_t, ``makedev(250, m)`` with ``m`` a stable 20-bit
hash of (node, name); a collision on one node is reported by `by_devno` as ENOTUNIQ (pass an
explicit `dev_t` to avoid it).
"""
from __future__ import annotations

import errno
import hashlib
import mmap
import os
import stat
from typing import Callable, Iterable, Union

from harness.famfs.errors import DeviceError
from harness.famfs.invariants import Invariant

DEVDAX_ALIGN = 0x200000                        # devdax mapping granularity when sysfs gives none
FAKE_MAJOR = 250                               # synthetic dev_t major of emulated devices
EHWPOISON = getattr(errno, "EHWPOISON", errno.EIO)
ENOTUNIQ = getattr(errno, "ENOTUNIQ", errno.EEXIST)
OPS = ("open", "map", "read", "write")

AccessHook = Callable[[str, str, int, int, bool], None]
Bytes = Union[bytes, bytearray, memoryview]


class DaxDeviceError(DeviceError):
    """Raised by a DAX device or a node's resolver: an access out of bounds (EXT-BOUNDS), a device
    that cannot be opened, mapped or resolved (IDX-RESOLVE), no single primary (IDX-PRIMARY), or an
    injected or real I/O fault on an access (DATA)."""

    @classmethod
    def out_of_bounds(cls, name: str, offset: int, length: int, size: int) -> "DaxDeviceError":
        return cls(errno.ERANGE, Invariant.EXT_BOUNDS,
                   f"{name}: access [{offset:#x}, +{length:#x}) outside the device [0, {size:#x})")

    @classmethod
    def cannot_open(cls, name: str, err: int, why: str) -> "DaxDeviceError":
        return cls(err, Invariant.IDX_RESOLVE, f"{name}: {why}")

    @classmethod
    def io(cls, name: str, op: str, why: str, err: int = errno.EIO) -> "DaxDeviceError":
        return cls(err, Invariant.DATA, f"{name}: {op} failed: {why}")

    @classmethod
    def vanished(cls, name: str, op: str) -> "DaxDeviceError":
        return cls(errno.ENODEV, Invariant.IDX_RESOLVE, f"{name}: device vanished ({op})")

    @classmethod
    def closed(cls, name: str, op: str) -> "DaxDeviceError":
        return cls(errno.EBADF, Invariant.IDX_RESOLVE, f"{name}: {op} on a closed device")

    @classmethod
    def ambiguous(cls, node: str, what: str, names: list[str]) -> "DaxDeviceError":
        return cls(ENOTUNIQ, Invariant.IDX_RESOLVE,
                   f"node {node}: {what} matches {len(names)} local devices ({', '.join(names)})")

    @classmethod
    def no_primary(cls, node: str, err: int, why: str) -> "DaxDeviceError":
        return cls(err, Invariant.IDX_PRIMARY, f"node {node}: {why}")


def fake_dev_t(node: str, name: str) -> int:
    """A stable synthetic dev_t for an emulated device called `name` on `node`."""
    digest = hashlib.blake2b(f"{node}\0{name}".encode("utf-8", "surrogateescape"), digest_size=4).digest()
    return os.makedev(FAKE_MAJOR, int.from_bytes(digest, "little") & 0xFFFFF)


class DaxDevice:
    """One DAX device on one node: a name, a size, a dev_t and a MAP_SHARED mapping of all of it.

    Build one with `emulated_file`, `memfd`, `real`, `from_fd` or `open_device`; `alias` maps the
    same memory again under another name (another node's view). Close it, or use it as a context
    manager; a view still held elsewhere keeps the mapping alive until it is released.
    """

    def __init__(self, mm: mmap.mmap, fd: int, size: int, *, name: str, node: str = "", kind: str,
                 dev_t: int | None = None, path: str | None = None, readonly: bool = False):
        self._mm: mmap.mmap | None = mm
        self.fd = fd
        self.size = size
        self.name = name
        self.node = node
        self.kind = kind                       # "file", "memfd", "real" or "buffer"
        self.path = path
        self.readonly = readonly
        self.dev_t = fake_dev_t(node, name) if dev_t is None else dev_t
        self.on_access: AccessHook | None = None
        self._closed = False
        self._fail_io = False
        self._vanished = False
        self._poison: tuple[tuple[int, int], ...] = ()
        self._countdown: dict[str, list[int]] = {}
        self._faulty = False

    # -- constructors ---------------------------------------------------------------------------

    @classmethod
    def emulated_file(cls, path: Union[str, os.PathLike[str]], size: int | None = None,
                      name: str | None = None, *, node: str = "", dev_t: int | None = None,
                      readonly: bool = False) -> "DaxDevice":
        """A file as a DAX device. With `size`, the file is created or extended (sparse) to at least
        `size` bytes and the device is its first `size` bytes; without, the whole existing file."""
        path = os.fspath(path)
        label = name if name is not None else path
        flags = os.O_RDONLY if readonly else os.O_RDWR | (os.O_CREAT if size is not None else 0)
        try:
            fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise DaxDeviceError.cannot_open(label, e.errno or errno.EIO, f"open {path}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise DaxDeviceError.cannot_open(label, errno.ENODEV, f"{path} is not a regular file")
            if size is not None and st.st_size < size:
                if readonly:                   # a mapping past EOF would SIGBUS on access
                    raise DaxDeviceError.cannot_open(label, errno.EINVAL,
                                                     f"{path}: {st.st_size:#x} bytes, read-only, {size:#x} asked")
                os.ftruncate(fd, size)
            return cls._mapped(fd, st.st_size if size is None else size, name=label, node=node,
                               kind="file", dev_t=dev_t, path=path, readonly=readonly)
        except OSError as e:
            os.close(fd)
            raise DaxDeviceError.cannot_open(label, e.errno or errno.EIO, f"{path}: {e.strerror}") from None
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def memfd(cls, size: int, name: str, *, node: str = "", dev_t: int | None = None) -> "DaxDevice":
        """Anonymous shared memory of `size` bytes (``memfd_create``); `.fd` shares it."""
        try:
            fd = os.memfd_create(("dax:" + name.replace("/", "_"))[:200], os.MFD_CLOEXEC)
        except OSError as e:
            raise DaxDeviceError.cannot_open(name, e.errno or errno.EIO, f"memfd_create: {e.strerror}") from None
        try:
            os.ftruncate(fd, max(size, 0))
            return cls._mapped(fd, size, name=name, node=node, kind="memfd", dev_t=dev_t)
        except OSError as e:
            os.close(fd)
            raise DaxDeviceError.cannot_open(name, e.errno or errno.EIO,
                                             f"memfd of {size:#x} bytes: {e.strerror}") from None
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def in_memory(cls, buf: bytearray, name: str, *, node: str = "", dev_t: int | None = None) -> "DaxDevice":
        """Process memory as a DAX device (no fd, not shareable across processes): the cheapest
        emulated backend, for in-process fuzz cases. Other nodes' views: `in_memory` again on
        the same bytearray."""
        return cls(buf, -1, len(buf), name=name, node=node, kind="buffer", dev_t=dev_t)  # type: ignore[arg-type]

    @classmethod
    def from_fd(cls, fd: int, name: str, size: int | None = None, *, node: str = "",
                dev_t: int | None = None, readonly: bool = False) -> "DaxDevice":
        """Map memory received as an open fd (a memfd or file passed from another process). The fd
        is duplicated, so the caller keeps its own. Default size: the file's size."""
        try:
            own = os.dup(fd)
        except OSError as e:
            raise DaxDeviceError.cannot_open(name, e.errno or errno.EBADF, f"fd {fd}: {e.strerror}") from None
        try:
            st = os.fstat(own)
            kind = "memfd" if os.readlink(f"/proc/self/fd/{own}").startswith("/memfd:") else "file"
            if size is not None and size > st.st_size:   # a mapping past EOF would SIGBUS on access
                raise DaxDeviceError.cannot_open(name, errno.EINVAL, f"fd {fd}: {st.st_size:#x} bytes, {size:#x} asked")
            return cls._mapped(own, st.st_size if size is None else size, name=name, node=node,
                               kind=kind, dev_t=dev_t, readonly=readonly)
        except OSError as e:
            os.close(own)
            raise DaxDeviceError.cannot_open(name, e.errno or errno.EIO, f"fd {fd}: {e.strerror}") from None
        except BaseException:
            os.close(own)
            raise

    @classmethod
    def real(cls, path: Union[str, os.PathLike[str]], name: str | None = None, *, node: str = "",
             readonly: bool = False, sysfs: str = "/sys") -> "DaxDevice":
        """A device-dax character device; size and alignment from sysfs, dev_t from the inode."""
        path = os.fspath(path)
        label = name if name is not None else os.path.basename(path)
        try:
            st = os.stat(path)
        except OSError as e:
            raise DaxDeviceError.cannot_open(label, e.errno or errno.ENOENT, f"{path}: {e.strerror}") from None
        if not stat.S_ISCHR(st.st_mode):
            raise DaxDeviceError.cannot_open(label, errno.ENODEV, f"{path} is not a character device (devdax)")
        raw, align = _sysfs_geometry(path, st.st_rdev, sysfs, label)
        size = raw - raw % align
        if size <= 0:
            raise DaxDeviceError.cannot_open(label, errno.EINVAL,
                                             f"{path}: size {raw:#x} is below the {align:#x} alignment")
        try:
            fd = os.open(path, (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC)
        except OSError as e:
            raise DaxDeviceError.cannot_open(label, e.errno or errno.EIO, f"open {path}: {e.strerror}") from None
        try:
            return cls._mapped(fd, size, name=label, node=node, kind="real", dev_t=st.st_rdev,
                               path=path, readonly=readonly)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def _mapped(cls, fd: int, size: int, *, readonly: bool = False, **kw: object) -> "DaxDevice":
        name = str(kw["name"])
        if size <= 0:
            raise DaxDeviceError.cannot_open(name, errno.EINVAL, f"device size {size} (nothing to map)")
        prot = mmap.PROT_READ | (0 if readonly else mmap.PROT_WRITE)
        try:
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, prot)
        except (OSError, ValueError, OverflowError) as e:
            why = e.strerror if isinstance(e, OSError) else str(e)
            err = (e.errno if isinstance(e, OSError) else 0) or errno.EINVAL
            raise DaxDeviceError.cannot_open(name, err, f"mmap of {size:#x} bytes: {why}") from None
        return cls(mm, fd, size, readonly=readonly, **kw)  # type: ignore[arg-type]

    def alias(self, name: str, *, node: str = "", dev_t: int | None = None) -> "DaxDevice":
        """The same memory mapped again as device `name` (another node's view, or a duplicate)."""
        if self._closed:
            raise DaxDeviceError.closed(self.name, "alias")
        if self.kind == "real":
            assert self.path is not None
            return DaxDevice.real(self.path, name, node=node, readonly=self.readonly)
        if self.kind == "buffer":
            return DaxDevice.in_memory(self._mm, name, node=node, dev_t=dev_t)  # type: ignore[arg-type]
        dev = DaxDevice.from_fd(self.fd, name, self.size, node=node, dev_t=dev_t, readonly=self.readonly)
        dev.path = self.path
        return dev

    # -- access (hot path: bounds, one flag, one hook test) --------------------------------------

    @property
    def devno(self) -> int:
        """The dev_t (the kernel side's name for it)."""
        return self.dev_t

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes at device `offset`."""
        self._check_read(offset, length)
        return self._mm[offset:offset + length]  # type: ignore[index]

    def read_view(self, offset: int, length: int) -> memoryview:
        """`read` without the copy, for a caller that hands the bytes straight on (the FUSE read
        reply): the same checks and the same "read" for `fail_nth`, but a view of the mapping."""
        self._check_read(offset, length)
        return memoryview(self._mm)[offset:offset + length]  # type: ignore[arg-type]

    def _check_read(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise DaxDeviceError.out_of_bounds(self.name, offset, length, self.size)
        if self._faulty:
            self._trip("read", offset, length)
        if self.on_access is not None:
            self.on_access(self.node, self.name, offset, length, False)

    def write(self, offset: int, data: Bytes) -> None:
        """Store `data` at device `offset` (visible at once to every mapping of this memory)."""
        mv = memoryview(data)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        length = mv.nbytes
        if offset < 0 or offset + length > self.size:
            raise DaxDeviceError.out_of_bounds(self.name, offset, length, self.size)
        if self._faulty:
            self._trip("write", offset, length)
        if self.readonly:
            raise DaxDeviceError.io(self.name, "write", "device mapped read-only", errno.EROFS)
        if self.on_access is not None:
            self.on_access(self.node, self.name, offset, length, True)
        self._mm[offset:offset + length] = mv  # type: ignore[index]

    def view(self, offset: int, length: int) -> memoryview:
        """A zero-copy view of [offset, offset+length) (writable unless the device is read-only).
        The view is bounded, but faults armed after it was taken do not reach it."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise DaxDeviceError.out_of_bounds(self.name, offset, length, self.size)
        if self._faulty:
            self._trip("map", offset, length)
        if self.on_access is not None:
            self.on_access(self.node, self.name, offset, length, False)
        return memoryview(self._mm)[offset:offset + length]  # type: ignore[arg-type]

    # -- ordering (harness/famfs/shm.py: the Port calls, and what they are on each backend) ---

    def store(self, offset: int, data: Bytes) -> None:
        """`write`, under the name the master's metadata writers use (`shm.Port`)."""
        self.write(offset, data)

    def flush(self, offset: int, length: int) -> None:
        """Write back the cache lines of [offset, offset+length) (CLWB / clflushopt). A no-op on
        every backend: emulated memory is one host's coherent memory, and on real devdax Python
        has no cache-line flush instruction and msync is refused (EINVAL), while one host's
        mapping of devdax is coherent for every process on it. Bounds are still checked."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise DaxDeviceError.out_of_bounds(self.name, offset, length, self.size)

    def fence(self) -> None:
        """Order the flushes issued so far before later stores (sfence): a no-op, as `flush`."""
        return None

    def invalidate(self, offset: int, length: int) -> int:
        """Drop this node's cached copies of [offset, offset+length) so the next read comes from
        the device (a client's clflush before it reads the log); the number of lines dropped:
        0, as this node's mapping is coherent (see `flush`)."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise DaxDeviceError.out_of_bounds(self.name, offset, length, self.size)
        return 0

    def _scan(self, length: int) -> bytes | None:
        """What a resolver reads to identify the device: the first `length` bytes (None if the
        device is smaller), counted as an "open"."""
        if self._faulty:
            self._trip("open", 0, min(length, self.size))
        if length > self.size:
            return None
        return self._mm[0:length]  # type: ignore[index]

    # -- faults ---------------------------------------------------------------------------------

    def _trip(self, op: str, offset: int, length: int) -> None:
        """The slow path, taken only while `_faulty`: raise the fault this access meets, if any."""
        if self._closed:
            raise DaxDeviceError.closed(self.name, op)
        pending = self._countdown.get(op)
        if pending:
            for i in range(len(pending)):
                pending[i] -= 1
            if 0 in pending:
                pending[:] = [n for n in pending if n > 0]
                self._refresh()
                if op == "open":
                    raise DaxDeviceError.cannot_open(self.name, errno.EIO, "injected open failure")
                raise DaxDeviceError.io(self.name, op, "injected failure")
        if self._vanished:
            raise DaxDeviceError.vanished(self.name, op)
        if self._fail_io:
            if op == "open":
                raise DaxDeviceError.cannot_open(self.name, errno.EIO, "I/O error")
            raise DaxDeviceError.io(self.name, op, "I/O error")
        end = offset + length
        for start, stop in self._poison:
            if offset < stop and start < end:
                why = f"poisoned memory [{start:#x}, {stop:#x})"
                if op == "open":
                    raise DaxDeviceError.cannot_open(self.name, EHWPOISON, why)
                raise DaxDeviceError.io(self.name, op, why, EHWPOISON)

    def _refresh(self) -> None:
        self._faulty = (self._closed or self._fail_io or self._vanished or bool(self._poison)
                        or any(self._countdown.values()))

    @property
    def fail_io(self) -> bool:
        """Every access fails with EIO (and a resolver scan skips the device)."""
        return self._fail_io

    @fail_io.setter
    def fail_io(self, value: bool) -> None:
        self._fail_io = bool(value)
        self._refresh()

    @property
    def vanished(self) -> bool:
        """The device is gone: ENODEV on access, scan and resolve; absent from by_name/by_devno."""
        return self._vanished

    @vanished.setter
    def vanished(self, value: bool) -> None:
        self._vanished = bool(value)
        self._refresh()

    @property
    def poison(self) -> list[tuple[int, int]]:
        """Poisoned byte ranges [start, end); an access overlapping one fails (EHWPOISON or EIO).
        Returns a copy: assign a new list (or call `add_poison`) to change it."""
        return list(self._poison)

    @poison.setter
    def poison(self, ranges: Iterable[tuple[int, int]]) -> None:
        self._poison = tuple((int(s), int(e)) for s, e in ranges)
        self._refresh()

    def add_poison(self, start: int, end: int) -> None:
        self.poison = [*self._poison, (start, end)]

    def fail_nth(self, op: str, n: int) -> None:
        """Fail the `n`-th `op` ("open", "map", "read", "write") from now on (1 = the next one)
        with EIO, once. Several can be armed. Every op that passes the bounds check counts, whatever
        other fault then fails it."""
        if op not in OPS:
            raise ValueError(f"fail_nth: op must be one of {OPS}, not {op!r}")
        if n < 1:
            raise ValueError(f"fail_nth: n must be >= 1, not {n}")
        self._countdown.setdefault(op, []).append(n)
        self._refresh()

    def clear_faults(self) -> None:
        """Turn every fault switch off."""
        self._fail_io = self._vanished = False
        self._poison = ()
        self._countdown.clear()
        self._refresh()

    # -- lifetime -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Unmap and close. If a `view` is still held, the mapping goes when the last view does."""
        if self._closed:
            return
        self._closed = True
        self._refresh()
        mm, self._mm = self._mm, None
        if isinstance(mm, mmap.mmap):
            try:
                mm.close()
            except BufferError:
                pass                           # exported views: freed with the last of them
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass

    def __enter__(self) -> "DaxDevice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f" node={self.node!r}" if self.node else ""
        state = " closed" if self._closed else ""
        return (f"DaxDevice({self.name!r}{where} {self.kind} size={self.size:#x} "
                f"dev_t={os.major(self.dev_t)}:{os.minor(self.dev_t)}{state})")


def _sysfs_geometry(path: str, rdev: int, sysfs: str, label: str) -> tuple[int, int]:
    """(size, alignment) of a devdax character device, read from sysfs."""
    base = os.path.basename(os.path.realpath(path))
    dirs = [os.path.join(sysfs, "dev", "char", f"{os.major(rdev)}:{os.minor(rdev)}"),
            os.path.join(sysfs, "bus", "dax", "devices", base)]
    for d in dirs:
        size = _read_int(os.path.join(d, "size"))
        if size is not None:
            align = _read_int(os.path.join(d, "align"))
            return size, align if align and align > 0 else DEVDAX_ALIGN
    raise DaxDeviceError.cannot_open(label, errno.ENODEV,
                                     f"{path}: no devdax size in sysfs (looked in {', '.join(dirs)})")


def _read_int(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            return int(f.read().strip() or b"x", 0)
    except (OSError, ValueError):
        return None


def open_device(spec: Union[str, os.PathLike[str]], *, name: str | None = None, node: str = "",
                size: int | None = None, readonly: bool = False, sysfs: str = "/sys") -> DaxDevice:
    """Open `spec` as what it is: a character device -> `real`, a regular file (or a missing path
    when `size` is given) -> `emulated_file`. Anything else is a DaxDeviceError."""
    path = os.fspath(spec)
    label = name if name is not None else path
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if size is not None and not readonly:
            return DaxDevice.emulated_file(path, size, name, node=node)
        raise DaxDeviceError.cannot_open(label, errno.ENOENT, f"{path}: no such device or file") from None
    except OSError as e:
        raise DaxDeviceError.cannot_open(label, e.errno or errno.EIO, f"{path}: {e.strerror}") from None
    if stat.S_ISCHR(st.st_mode):
        return DaxDevice.real(path, name, node=node, readonly=readonly, sysfs=sysfs)
    if stat.S_ISREG(st.st_mode):
        return DaxDevice.emulated_file(path, size, name, node=node, readonly=readonly)
    raise DaxDeviceError.cannot_open(label, errno.ENODEV, f"{path}: neither a devdax character device nor a file")
