"""famfs-fuzz: a fuzzing and fault-injection harness for famfs (see docs/architecture.md)."""
