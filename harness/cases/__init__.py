"""What one input does: the case drivers the targets call (in process, a stateful session, the
FUSE mount, an external program)."""
