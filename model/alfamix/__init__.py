"""ALFA-Mix active learning (Parvaneh et al., CVPR 2022, arXiv:2203.07034) as pure tensor functions.

Public entry points: ``query`` (one query as the paper runs it: labels and a trained head, a
``QueryResult`` with the batch and a full queue) and ``stream_queue`` (the queue for a live
stream of labels, from zero labels on, with the batch carried across rounds).
"""

from model.alfamix.learned import LearnedAlphaConfig
from model.alfamix.query import DEFAULT_CAP_STEP, QueryConfig, QueryResult, query
from model.alfamix.selection import KMeansConfig
from model.alfamix.stream import CarriedBatch, StreamConfig, StreamQueue, stream_queue

__all__ = [
    "DEFAULT_CAP_STEP",
    "CarriedBatch",
    "KMeansConfig",
    "LearnedAlphaConfig",
    "QueryConfig",
    "QueryResult",
    "StreamConfig",
    "StreamQueue",
    "query",
    "stream_queue",
]
