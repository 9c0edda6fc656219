"""Request and response bodies of the ML backend protocol, as Label Studio 1.23 sends and reads them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SetupRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    project: str | int
    label_schema: str = Field(alias="schema")
    hostname: str | None = None
    access_token: str | None = Field(default=None, repr=False)
    extra_params: Any = None


class SetupResponse(BaseModel):
    model_version: str


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    tasks: list[dict[str, Any]] = Field(max_length=10_000)
    project: str | int
    label_config: str
    params: dict[str, Any] | None = None


class PredictionResult(BaseModel):
    result: list[dict[str, Any]]
    score: float
    model_version: str


class PredictResponse(BaseModel):
    results: list[PredictionResult]


class WebhookRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    action: str
    project: dict[str, Any] | int | str | None = None


class WebhookResponse(BaseModel):
    action: str
    project: int | None
    status: str  # "queued", "already queued", "noted" (ledger only), "deferred" (queue unreachable) or "ignored"


class HealthResponse(BaseModel):
    status: str
    model_class: str
    jobs: str  # "rq" or "embedded"
    label_studio: str  # "configured" or "missing"
    # RQ workers alive and the device each embeds on: [{"name", "device"}]; None without Redis, or when it is down
    workers: list[dict[str, str]] | None


class VersionsRequest(BaseModel):
    project: str | int | None = None


class VersionsResponse(BaseModel):
    versions: list[str]


class ErrorResponse(BaseModel):
    error: str


class StatusResponse(BaseModel):
    project: int
    live_model_version: str | None
    live_since: float | None  # unix time the live version went live
    # round_pending, embed_pending, finetune_pending, prune_pending, secure_webhooks_pending, running
    jobs: dict[str, bool]
    stage: dict[str, Any] | None  # the running job's {"name", "done", "total"}; names: reading, embedding, ...
    behind: bool  # round requests no finished round covers yet (the catch-up will ask again)
    counts: dict[str, int]  # tasks, labeled, ranked (in the queue), skipped (image problems), as of the last round
    learning_curve: list[dict[str, Any]]  # n_labels, model_version, n_judged, accuracy, low, high
    stop_signal: str  # whether more labels still raise pre-label accuracy, in words
    # Pre-label accuracy on the audit tasks (ALFAMIX_AUDIT_FRACTION): n_judged, accuracy, low, high
    pool_accuracy: dict[str, Any] | None
    strategy: str  # ALFAMIX_STRATEGY of the latest round
    training: str  # ALFAMIX_TRAINING of the latest round
    encoder_version: str | None  # the fine-tuned encoder the latest round ranked with; None: pretrained
    n_rounds: int  # rounds ended, done and failed
    rounds: list[dict[str, Any]]  # the latest RECENT_ROUNDS (50) round records, oldest first
