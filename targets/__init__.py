"""Fuzz targets: one small module per target, each defining TARGET (see harness.engine.registry)."""
