"""Benchmark harnesses. These, and only these, read a dataset's ``labels.json``."""
