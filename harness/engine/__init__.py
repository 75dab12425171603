"""Campaigns and operations: targets, runners, crash store, reports, and the verbs the CLI delegates to."""
