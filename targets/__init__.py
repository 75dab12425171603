"""Fuzz targets: one small module per target, each defining TARGET (see harness.engine.registry).

`SYSTEM` tells the generic engine (which imports nothing famfs-specific) what the system under
test is: plain data, so reading it imports no target and nothing of famfs (`registry.system()`).
"""

SYSTEM = {
    "package": "harness.famfs",                         # instrumented; its frames name a crash
    "also_instrumented": (                              # coverage signals of the targets that use them:
        "harness.faults.statecov",                      # the race targets' interleavings
        "harness.faults.shmcov",                        # shm_states' enumerated states
    ),
    "finding_kinds": {                                  # exception type -> signature kind
        "InvariantViolation": "invariant",              # harness.oracle.invariants: the oracle's verdict
        "InternalFinding": "internal-error",            # harness.oracle.lookups: famfs reported a handler error
        "DaemonDied": "daemon-death",                   # harness.cases.mount: the mount's daemon died
    },
}
