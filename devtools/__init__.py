"""Harnesses that start a real Label Studio, backend processes, annotators, images: for tests, benches, the demo."""
