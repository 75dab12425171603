"""The per-node UUID resolver (IDX-RESOLVE): which local DAX device carries which famfs device UUID.

A `Resolver` is one node's view of its devices (`Node` is the same class): it reads the famfs
superblock at offset 0 of every device and maps device UUID -> local device. A device counts only
if its magic matches and its CRC is valid; primaries and SECONDARY-flagged devices both count.
`resolve(uuid)` returns the device, or None for a clean "missing"; two local devices claiming one
UUID raise ENOTUNIQ / IDX-RESOLVE when *that* UUID is resolved, so other UUIDs still resolve
(IDX-RESOLVE: exactly one local device, or a clean missing). It also answers the kernel side's
`by_name` / `by_devno` and the daemon's `primary()`, so it is the `host` a `Daemon` mounts.

The resolver ignores the superblock's `fs_uuid`: devices of two different file systems on one node
are matched by device UUID alone.
"""
from __future__ import annotations

import errno
import os
from typing import Iterable, Union

from harness.famfs.devices import ENOTUNIQ, DaxDevice, DaxDeviceError
from harness.famfs.errors import FamfsError
from harness.famfs.ids import Uuid, as_uuid, parse_uuid, uuid_str
from harness.famfs.invariants import Invariant
from harness.famfs.layout import SECONDARY_SB, SUPER_MAGIC, SUPERBLOCK, Superblock
from harness.famfs.probe import NULL_PROBE, Probe


def _uuid_bytes(uuid: Union[bytes, bytearray, memoryview, str], node: str) -> Uuid:
    """The UUID a caller named: raw bytes (a Uuid) or, from a command line, its text."""
    try:
        return parse_uuid(uuid) if isinstance(uuid, str) else as_uuid(uuid)
    except ValueError:
        pass
    raise DaxDeviceError(errno.EINVAL, Invariant.IDX_RESOLVE, f"node {node}: {uuid!r} is not a UUID")


class Resolver:
    """One node's devices, identified by the famfs superblock each carries (device UUID -> device).

    Construction scans every device (see `rescan`). Nothing ambiguous is refused up front: a UUID,
    name or dev_t that matches several local devices raises ENOTUNIQ / IDX-RESOLVE only when it is
    looked up, so everything else on the node still resolves. Every `resolve` and `primary` that
    succeeds, or finds a clean "missing", is reported as `probe.device_resolved(node, uuid, name)`.
    This is the `host` the daemon and the kernel side take: `node`, `primary()`, `resolve()`,
    `by_name()`, `by_devno()`.
    """

    def __init__(self, node: str, devices: Iterable[DaxDevice], probe: Probe | None = None):
        self.node = node
        self.probe = probe if probe is not None else NULL_PROBE
        self._devices: list[DaxDevice] = []
        self._labels: list[tuple[DaxDevice, Superblock]] = []
        self._claims: dict[Uuid, list[DaxDevice]] = {}
        self.ignored: list[tuple[DaxDevice, str]] = []     # devices without a usable superblock, why
        self.rescan(devices)

    def rescan(self, devices: Iterable[DaxDevice] = ()) -> None:
        """Add `devices` (ones that appeared late; each object once) and re-read the superblock of
        every device, so a device formatted, corrupted or vanished since the last scan is seen as
        it is now. A device whose scan fails (vanished, I/O fault, closed) is ignored."""
        known = {id(d) for d in self._devices}
        for dev in devices:
            if id(dev) not in known:
                self._devices.append(dev)
                known.add(id(dev))
        self._labels, self._claims, self.ignored = [], {}, []
        for dev in self._devices:
            try:
                head = dev._scan(SUPERBLOCK.size)
            except FamfsError as e:
                self.ignored.append((dev, str(e)))
                continue
            if head is None:
                self.ignored.append((dev, f"smaller than a superblock ({dev.size} bytes)"))
                continue
            sb = Superblock.decode(head)
            if sb.magic != SUPER_MAGIC:
                self.ignored.append((dev, f"no famfs superblock (magic {sb.magic:#x})"))
            elif sb.crc != sb.computed_crc():
                self.ignored.append((dev, f"superblock CRC {sb.crc:#x}, computed {sb.computed_crc():#x}"))
            else:
                self._labels.append((dev, sb))
                self._claims.setdefault(sb.dev_uuid, []).append(dev)

    # -- lookups --------------------------------------------------------------------------------

    def resolve(self, uuid: Uuid | str) -> DaxDevice | None:
        """The one local device carrying `uuid`, or None (cleanly missing on this node)."""
        key = _uuid_bytes(uuid, self.node)
        claims = self._claims.get(key)
        if not claims:
            if self.probe.enabled:
                self.probe.device_resolved(self.node, key, None)
            return None
        if len(claims) > 1:
            raise DaxDeviceError.ambiguous(self.node, f"UUID {uuid_str(key)}", [d.name for d in claims])
        dev = claims[0]
        if dev._faulty and (dev.vanished or dev.closed):
            raise DaxDeviceError.vanished(dev.name, f"resolve {uuid_str(key)}")
        if self.probe.enabled:
            self.probe.device_resolved(self.node, key, dev.name)
        return dev

    def primary(self) -> DaxDevice:
        """The device whose superblock holds the log: no SECONDARY flag and a nonzero log_len.
        None or several such devices on this node is IDX-PRIMARY (ENODEV / ENOTUNIQ)."""
        found = [(d, sb) for d, sb in self._labels if not sb.flags & SECONDARY_SB and sb.log_len != 0]
        if not found:
            skipped = "; ".join(f"{d.name}: {why}" for d, why in self.ignored)
            raise DaxDeviceError.no_primary(
                self.node, errno.ENODEV,
                f"no primary famfs device among {len(self._devices)}" + (f" (ignored: {skipped})" if skipped else ""))
        if len(found) > 1:
            names = ", ".join(d.name for d, _ in found)
            raise DaxDeviceError.no_primary(self.node, ENOTUNIQ, f"{len(found)} primary devices ({names})")
        dev, sb = found[0]
        if dev._faulty and (dev.vanished or dev.closed):
            raise DaxDeviceError.vanished(dev.name, "primary")
        if self.probe.enabled:
            self.probe.device_resolved(self.node, sb.dev_uuid, dev.name)
        return dev

    def by_name(self, name: str) -> DaxDevice | None:
        """The device called `name` on this node (None if there is none, or it vanished)."""
        return self._unique([d for d in self._present() if d.name == name], f"name {name!r}")

    def by_devno(self, devno: int) -> DaxDevice | None:
        """The device with dev_t `devno` on this node (None if there is none, or it vanished)."""
        return self._unique([d for d in self._present() if d.dev_t == devno],
                            f"dev_t {os.major(devno)}:{os.minor(devno)}")

    def _present(self) -> list[DaxDevice]:
        return [d for d in self._devices if not (d._faulty and (d.vanished or d.closed))]

    def _unique(self, matches: list[DaxDevice], what: str) -> DaxDevice | None:
        if len(matches) > 1:
            raise DaxDeviceError.ambiguous(self.node, what, [d.name for d in matches])
        return matches[0] if matches else None

    # -- introspection --------------------------------------------------------------------------

    @property
    def devices(self) -> tuple[DaxDevice, ...]:
        return tuple(self._devices)

    def label(self, device: DaxDevice) -> Superblock | None:
        """The valid superblock `device` carried at the last scan, or None."""
        return next((sb for d, sb in self._labels if d is device), None)

    def uuids(self) -> dict[str, Uuid]:
        """Local name -> UUID of every identified device (what the oracle's checker needs)."""
        return {d.name: sb.dev_uuid for d, sb in self._labels}

    def __repr__(self) -> str:
        return f"Resolver({self.node!r}, {len(self._devices)} devices, {len(self._labels)} identified)"


Node = Resolver
