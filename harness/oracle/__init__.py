"""The independent reference model, the invariant catalog, and the index-lookup checker."""
