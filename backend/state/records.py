"""What a round leaves in the project's history: one typed record, and the stage names.

The pipeline writes RoundRecords; the status route, the status page, /metrics and the
learning curve read them. Fields keep their JSON names, so old histories still load:
``from_dict`` ignores keys it does not know and defaults the ones it lacks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, Literal


class Stage(StrEnum):
    """What a running job is doing, as the status page shows it."""

    READING = "reading"
    EMBEDDING = "embedding"
    TRAINING = "training"
    SCORING = "scoring"
    PUSHING = "pushing"
    PRUNING = "pruning"
    FINETUNING = "finetuning"


# The parts of a round that are timed, each kept as "<part>_seconds" in its record.
TIMED_PARTS = ("read", "embed", "train", "query", "push")


@dataclass(frozen=True)
class RoundRecord:
    status: Literal["done", "failed"]
    finished_at: float
    started_at: float | None = None
    model_version: str | None = None  # None: the round failed, or found nothing to rank
    error: str | None = None  # why a failed round failed
    worker: str | None = None  # host:pid of the process that ran it
    device: str | None = None  # where it embedded: "cuda:0 (NVIDIA H200)" or "cpu"
    strategy: str | None = None  # ALFAMIX_STRATEGY the queue was ordered with
    training: str | None = None  # ALFAMIX_TRAINING: "head", "projection" or "finetune"
    encoder_version: str | None = None  # the fine-tuned encoder whose embeddings it used; None: pretrained
    n_tasks: int = 0
    n_labeled_tasks: int = 0
    n_unlabeled_tasks: int = 0  # ranked in the queue
    n_unembedded: int = 0  # waiting for an embed job
    n_embedded: int = 0  # embedded by this round
    n_predictions: int = 0  # written to Label Studio
    n_candidates: int = 0  # ALFA-Mix candidates in the pool
    batch_kind: str | None = None  # "alfamix" or "diversity"
    batch_event: str | None = None  # "kept", "new", "stale" ...
    n_batch: int = 0
    n_prelabeled: int = 0  # labels that judged the previous version's pre-label
    prelabel_accuracy: float | None = None
    head_agreement: float | None = None  # previous and new version agree on the new batch
    n_audited: int = 0  # of those labels, on audit tasks drawn at random
    audit_hits: int = 0
    tasks_listed: int | None = None  # tasks the ledger read from Label Studio in this round; None: not read
    labeled_listed: int | None = None  # labeled tasks read; None: annotations not read
    skipped_tasks: dict[str, str] = field(default_factory=dict)  # task id -> why its image failed
    rejected_annotations: dict[str, str] = field(default_factory=dict)  # task id -> why its label was refused
    queue_head: list[int] = field(default_factory=list)  # the first task ids of the new queue
    read_seconds: float | None = None
    embed_seconds: float | None = None
    train_seconds: float | None = None
    query_seconds: float | None = None
    push_seconds: float | None = None

    @property
    def done(self) -> bool:
        return self.status == "done"

    def seconds(self, part: str) -> float | None:
        """How long one of TIMED_PARTS took."""
        value = getattr(self, f"{part}_seconds")
        return float(value) if isinstance(value, int | float) else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RoundRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in raw.items() if key in known})
