"""Test helper: a famfs spec written onto memfd DAX devices, seen by several nodes with their own names."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from harness.famfs.daemon import Daemon
from harness.famfs.devices import DaxDevice
from harness.famfs.resolver import Resolver
from harness.famfs.ids import uuid_str
from harness.famfs.probe import NULL_PROBE
from harness.gen.spec import AddDaxdev, Built, Create, Device, Mkdir, Spec, build
from harness.oracle.lookups import LookupChecker

MiB = 1 << 20


def three_device_spec(log_len: int = 64 << 10) -> Spec:
    """Primary + 2 secondaries, a directory, files on each index and one striped over all three."""
    devs = tuple(Device(uuid.UUID(int=0x1000 + i).bytes, 64 * MiB) for i in range(3))
    return Spec(devs, (
        AddDaxdev(1), AddDaxdev(2), Mkdir("d", 0o750, 1000, 100),
        Create("d/a", 3 * MiB, 0o600, 1000, 100, devindex=1),
        Create("b", 5 * MiB + 7, strips=(0, 1, 2)),
        Create("c", 4096, devindex=2),
        Create("z", 0, devindex=0),
        Create("d/big", 9 * MiB + 123, 0o640, 0, 100, strips=(2, 1)),
    ), log_len=log_len)


@dataclass
class Cluster:
    """One memory (the built devices), and per node a list of DaxDevice views of it."""

    built: Built
    nodes: dict[str, list[DaxDevice]] = field(default_factory=dict)

    def add_node(self, node: str, order: list[int]) -> list[DaxDevice]:
        """Node `node` sees spec device order[k] as its local 'dax{k}.0' (same memory)."""
        views = []
        for local, i in enumerate(order):
            dev = self.shared[i].alias(f"dax{local}.0", node=node)
            views.append(dev)
        self.nodes[node] = views
        return views

    def __post_init__(self) -> None:
        self.shared = []
        for i, buf in enumerate(self.built.devices):
            d = DaxDevice.memfd(len(buf), f"mem{i}")
            d.write(0, bytes(buf))
            self.shared.append(d)

    def checker(self) -> LookupChecker:
        expected = {k: uuid_str(d.uuid) for k, d in enumerate(self.built.image.table)}
        names = {}
        for node, views in self.nodes.items():
            host = Resolver(node, views)
            names[node] = {v.name: uuid_str(sb.dev_uuid) for v in views if (sb := host.label(v))}
        return LookupChecker(expected=expected, names=names)

    def daemon(self, node: str, abi: str = "pull-devt", probe: object = None, **kw: object) -> Daemon:
        views = self.nodes[node]
        host = Resolver(node, views)
        return Daemon.mount(host, abi=abi, probe=probe or NULL_PROBE, primary=host.primary(), **kw)

    def close(self) -> None:
        for views in self.nodes.values():
            for v in views:
                v.close()
        for d in self.shared:
            d.close()


def cluster(spec: Spec | None = None) -> Cluster:
    return Cluster(build(spec or three_device_spec()))
