"""Harnesses that start a real Label Studio, backend processes, annotators and images, for tests, benchmarks and the demo."""
