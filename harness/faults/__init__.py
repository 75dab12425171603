"""Fault plans: device faults, torn log appends, schedules, daemon kills."""
