"""The real-DAX lane: famfs on NVDIMM-backed devdax inside qemu guests (kit, agent, lanes, fuzz lane)."""
