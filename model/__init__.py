"""ML core of the ALFA-Mix active-learning backend.

Knows nothing of Label Studio, HTTP, Redis or RQ: it takes tensors, arrays and
indices and returns scores and indices (see ``tests/model/test_layering.py``).
"""
