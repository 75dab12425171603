"""The generic fuzzing machinery: target registry, case runner, campaigns and their schedule, the
Atheris entry, signatures, crash store and triage. Imports nothing famfs-specific."""
