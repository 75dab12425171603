"""The system under test: a complete famfs in Python. Nothing here imports the fuzzing side."""
