"""Generators: Hypothesis strategies, Atheris byte decoders, corruption operators."""
