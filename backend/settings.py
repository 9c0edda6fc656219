"""The one reader of the environment: every setting the backend uses, validated at start-up."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from backend.errors import SettingsError

T = TypeVar("T", int, float)

# Blocks each encoder has for ALFAMIX_FINETUNE_BLOCKS (model.finetune.split_encoder counts the same; a test checks).
ENCODER_BLOCKS = {"efficientnet_lite0": 16, "resnet18": 8, "resnet50": 16, "vit_b_16": 12}
ENCODER_NAMES = tuple(ENCODER_BLOCKS)
DEVICES = ("auto", "cpu", "cuda")
# model.alfamix.stream.STRATEGIES, repeated so that reading settings never imports torch (a test checks).
STRATEGIES = ("alfamix", "random", "entropy", "margin", "coreset")
# model.head.TRAINING_MODES, repeated for the same reason, and "finetune" (backend/pipeline/finetuning.py).
TRAINING_MODES = ("head", "projection", "finetune")


@dataclass(frozen=True)
class Settings:
    """Label Studio's own variable names where they exist; ALFAMIX_* for the rest."""

    label_studio_url: str | None = None  # LABEL_STUDIO_URL
    label_studio_api_key: str | None = field(default=None, repr=False)  # LABEL_STUDIO_API_KEY
    model_dir: Path = Path("data")  # MODEL_DIR
    basic_auth_user: str | None = None  # BASIC_AUTH_USER
    basic_auth_pass: str | None = field(default=None, repr=False)  # BASIC_AUTH_PASS
    redis_url: str | None = None  # REDIS_URL; unset = jobs run in a thread of the server
    host: str = "0.0.0.0"  # HOST
    port: int = 9090  # PORT
    log_level: str = "INFO"  # LOG_LEVEL
    encoder: str = "efficientnet_lite0"  # ALFAMIX_ENCODER
    encoder_weights: str | None = "DEFAULT"  # ALFAMIX_ENCODER_WEIGHTS; "none" = random init
    device: str = "auto"  # ALFAMIX_DEVICE
    n_query: int = 100  # ALFAMIX_BATCH_SIZE: tasks in one diverse batch, kept at the head until labeled
    strategy: str = "alfamix"  # ALFAMIX_STRATEGY: how the queue is ordered, to compare on one's own data
    # ALFAMIX_AUDIT_FRACTION: share of each new batch drawn at random, whose pre-labels estimate the
    # accuracy on the whole pool (0 = no audit).
    audit_fraction: float = 0.0
    # ALFAMIX_QUEUE_HEAD: predictions a round writes, the front of the queue. 50 outlast a round
    # at 10 labels per second when rounds take 5 s, and a prune job deletes them in about 5 s.
    queue_head: int = 50
    # ALFAMIX_TRAINING: what a round trains on the frozen embeddings: "head" (linear) or "projection"
    # (a 256-d layer and a linear head; ALFA-Mix mixes in the projected space); "finetune": a linear
    # head, and every finetune_every labels the encoder's last blocks are fine-tuned (meant for CUDA).
    training: str = "head"
    finetune_every: int = 100  # ALFAMIX_FINETUNE_EVERY: labeled tasks between two fine-tunings
    finetune_blocks: int = 1  # ALFAMIX_FINETUNE_BLOCKS: encoder blocks trained, from the last one
    finetune_epochs: int = 10  # ALFAMIX_FINETUNE_EPOCHS
    # ALFAMIX_FINETUNE_MAX_LABELS: labeled tasks a fine-tuning downloads at most (a random sample
    # beyond): their frozen prefix features stay in host memory while the last blocks train.
    finetune_max_labels: int = 2000
    # ALFAMIX_GPU_MEMORY_FRACTION: share of the GPU's memory this process may take; a fine-tuning
    # that needs more stops, logs it, and rounds go on training the head only.
    gpu_memory_fraction: float = 0.5
    # ALFAMIX_HEAD_EPOCHS: full-batch training steps of the head; None: the mode's own
    # (model.head.DEFAULT_EPOCHS: 300 for "head", 100 for "projection").
    head_epochs: int | None = None
    embed_batch_size: int = 64  # ALFAMIX_EMBED_BATCH_SIZE
    download_timeout: float = 30.0  # ALFAMIX_DOWNLOAD_TIMEOUT, seconds per image
    max_image_bytes: int = 32 * 1024 * 1024  # ALFAMIX_MAX_IMAGE_BYTES
    max_image_pixels: int = 64_000_000  # ALFAMIX_MAX_IMAGE_PIXELS, decompression-bomb guard
    round_timeout: int = 3600  # ALFAMIX_ROUND_TIMEOUT, seconds a job waits for its project's lock
    lock_seconds: int = 60  # ALFAMIX_LOCK_SECONDS, how long a dead worker's lock blocks its project
    reconcile_seconds: float = 30.0  # ALFAMIX_RECONCILE_SECONDS, between catch-up checks for missed rounds
    ledger_sync_seconds: float = 300.0  # ALFAMIX_LEDGER_SYNC_SECONDS, between listings of annotations
    write_pause: float = 0.05  # ALFAMIX_WRITE_PAUSE, seconds between two write requests to Label Studio
    local_files_document_root: Path | None = None  # LOCAL_FILES_DOCUMENT_ROOT (Label Studio's name)
    # ALFAMIX_ALLOWED_MEDIA_HOSTS: comma-separated host names or networks (CIDR) that image URLs
    # may point to although they are internal; the Label Studio host is always allowed.
    allowed_media_hosts: tuple[str, ...] = ()

    @property
    def basic_auth_enabled(self) -> bool:
        return bool(self.basic_auth_user)

    @property
    def label_studio_configured(self) -> bool:
        return bool(self.label_studio_url and self.label_studio_api_key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the environment; SettingsError names the variable at fault."""
        env = _Env(os.environ if environ is None else environ)
        user, password = env.text("BASIC_AUTH_USER"), env.text("BASIC_AUTH_PASS")
        if bool(user) != bool(password):
            raise SettingsError("BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together (only one of them is set)")
        url = env.text("LABEL_STUDIO_URL")
        if url is not None and not url.startswith(("http://", "https://")):
            raise SettingsError(f"LABEL_STUDIO_URL={url!r} must start with http:// or https://")
        weights = env.text("ALFAMIX_ENCODER_WEIGHTS", "DEFAULT")
        root = env.text("LOCAL_FILES_DOCUMENT_ROOT")
        encoder = env.choice("ALFAMIX_ENCODER", "efficientnet_lite0", ENCODER_NAMES)
        return cls(
            label_studio_url=url.rstrip("/") if url else None,
            label_studio_api_key=env.text("LABEL_STUDIO_API_KEY"),
            model_dir=Path(env.text("MODEL_DIR", "data") or "data"),
            basic_auth_user=user,
            basic_auth_pass=password,
            redis_url=env.text("REDIS_URL"),
            host=env.text("HOST", "0.0.0.0") or "0.0.0.0",
            port=env.integer("PORT", 9090, low=1, high=65535),
            log_level=env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
            encoder=encoder,
            encoder_weights=None if (weights or "").lower() == "none" else weights,
            device=env.choice("ALFAMIX_DEVICE", "auto", DEVICES),
            n_query=env.integer("ALFAMIX_BATCH_SIZE", 100, low=1, high=100_000),
            strategy=env.choice("ALFAMIX_STRATEGY", "alfamix", STRATEGIES),
            audit_fraction=env.number("ALFAMIX_AUDIT_FRACTION", 0.0, low=0.0, high=0.5),
            queue_head=env.integer("ALFAMIX_QUEUE_HEAD", 50, low=1, high=1_000_000),
            training=env.choice("ALFAMIX_TRAINING", "head", TRAINING_MODES),
            head_epochs=env.integer("ALFAMIX_HEAD_EPOCHS", 0, low=1, high=1_000_000) or None,
            finetune_every=env.integer("ALFAMIX_FINETUNE_EVERY", 100, low=1, high=1_000_000),
            finetune_blocks=env.integer("ALFAMIX_FINETUNE_BLOCKS", 1, low=1, high=ENCODER_BLOCKS[encoder]),
            finetune_epochs=env.integer("ALFAMIX_FINETUNE_EPOCHS", 10, low=1, high=1000),
            finetune_max_labels=env.integer("ALFAMIX_FINETUNE_MAX_LABELS", 2000, low=10, high=1_000_000),
            gpu_memory_fraction=env.number("ALFAMIX_GPU_MEMORY_FRACTION", 0.5, low=0.05, high=1.0),
            embed_batch_size=env.integer("ALFAMIX_EMBED_BATCH_SIZE", 64, low=1, high=4096),
            download_timeout=env.number("ALFAMIX_DOWNLOAD_TIMEOUT", 30.0, low=0.1, high=600.0),
            max_image_bytes=env.integer("ALFAMIX_MAX_IMAGE_BYTES", 32 * 1024 * 1024, low=1024, high=1 << 34),
            max_image_pixels=env.integer("ALFAMIX_MAX_IMAGE_PIXELS", 64_000_000, low=1024, high=1 << 34),
            round_timeout=env.integer("ALFAMIX_ROUND_TIMEOUT", 3600, low=10, high=7 * 24 * 3600),
            lock_seconds=env.integer("ALFAMIX_LOCK_SECONDS", 60, low=3, high=3600),
            reconcile_seconds=env.number("ALFAMIX_RECONCILE_SECONDS", 30.0, low=0.5, high=3600.0),
            ledger_sync_seconds=env.number("ALFAMIX_LEDGER_SYNC_SECONDS", 300.0, low=1.0, high=7 * 24 * 3600.0),
            write_pause=env.number("ALFAMIX_WRITE_PAUSE", 0.05, low=0.0, high=10.0),
            local_files_document_root=Path(root) if root else None,
            allowed_media_hosts=tuple(
                host.strip() for host in (env.text("ALFAMIX_ALLOWED_MEDIA_HOSTS") or "").split(",") if host.strip()
            ),
        )


class _Env:
    """Typed reads of one environment mapping; blank values count as unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or default

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        return self._bounded(name, default, int, "an integer", low, high)

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        return self._bounded(name, default, float, "a number", low, high)

    def _bounded(self, name: str, default: T, parse: Callable[[str], T], kind: str, low: T, high: T) -> T:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = parse(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not {kind}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}={value} must be between {low} and {high}")
        return value

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default) or default
        if name == "LOG_LEVEL":
            value = value.upper()
        if value not in allowed:
            raise SettingsError(f"{name}={value!r} must be one of {', '.join(allowed)}")
        return value
