"""The CLI's device-argument syntax (`PATH` or `PATH=LOCALNAME`, split at the last '=')."""
from __future__ import annotations

import errno

import pytest

from harness.famfs.devices import DaxDeviceError
from harness.famfs.invariants import Invariant
from harness.tools.devargs import parse_device_arg


def test_parse_device_arg() -> None:
    assert parse_device_arg("img0=dax0.0") == ("img0", "dax0.0")
    assert parse_device_arg("/dev/dax1.0") == ("/dev/dax1.0", None)
    assert parse_device_arg("img0=") == ("img0", None)
    assert parse_device_arg("a=b/c=dax2.0") == ("a=b/c", "dax2.0")
    for bad in ("", "=dax0.0"):
        with pytest.raises(DaxDeviceError) as e:
            parse_device_arg(bad)
        assert e.value.errno == errno.EINVAL and e.value.invariant is Invariant.IDX_RESOLVE, e.value
