"""The CLI's device-argument syntax: `PATH` or `PATH=NODE_LOCAL_NAME`, primary first.

The name after the '=' is the device's node-local name (``dax0.0``), which the kernel side's
`by_name` answers; without it the file's base name is used.
"""
from __future__ import annotations

import errno

from harness.famfs.devices import DaxDeviceError

def parse_device_arg(arg: str) -> tuple[str, str | None]:
    """``PATH=LOCALNAME`` -> (path, name); ``PATH`` or ``PATH=`` -> (path, None). The split is at
    the last '=', so a path may contain '=' and a name may not."""
    path, sep, name = arg.rpartition("=")
    if not sep:
        path, name = arg, ""
    if not path:
        raise DaxDeviceError.cannot_open(arg, errno.EINVAL, f"device argument {arg!r} has no path")
    return path, name or None
