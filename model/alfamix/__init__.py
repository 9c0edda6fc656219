"""ALFA-Mix active learning (Parvaneh et al., CVPR 2022, arXiv:2203.07034) as pure tensor functions.

Public entry points: ``query`` (labels and a trained head) and ``cold_start``
(no labels yet). Both return a ``QueryResult`` with the batch and a full queue.
"""

from model.alfamix.learned import LearnedAlphaConfig
from model.alfamix.query import DEFAULT_CAP_STEP, QueryConfig, QueryResult, cold_start, query
from model.alfamix.selection import KMeansConfig

__all__ = [
    "DEFAULT_CAP_STEP",
    "KMeansConfig",
    "LearnedAlphaConfig",
    "QueryConfig",
    "QueryResult",
    "cold_start",
    "query",
]
