"""Harness for bosun's tests and benchmarks (daemons they start), not used by bosun."""
