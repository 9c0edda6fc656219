"""Settings from the environment: defaults, one named error per bad value, no secrets in repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.errors import SettingsError
from backend.settings import Settings


def test_empty_environment_gives_the_defaults() -> None:
    settings = Settings.from_env({})

    assert settings == Settings()
    assert (settings.label_studio_url, settings.label_studio_api_key, settings.redis_url) == (None, None, None)
    assert (settings.model_dir, settings.host, settings.port, settings.log_level) == (
        Path("data"),
        "0.0.0.0",
        9090,
        "INFO",
    )
    assert (settings.encoder, settings.encoder_weights, settings.device) == ("efficientnet_lite0", "DEFAULT", "auto")
    assert (settings.n_query, settings.embed_batch_size, settings.round_timeout) == (100, 64, 3600)
    assert (settings.basic_auth_enabled, settings.label_studio_configured) == (False, False)


def test_blank_values_count_as_unset() -> None:
    assert Settings.from_env({"PORT": "  ", "LABEL_STUDIO_URL": ""}) == Settings()


def test_values_are_read_and_normalised() -> None:
    settings = Settings.from_env(
        {
            "LABEL_STUDIO_URL": "http://ls:8080/",
            "LABEL_STUDIO_API_KEY": "key",
            "PORT": "9100",
            "LOG_LEVEL": "debug",
            "ALFAMIX_BATCH_SIZE": "20",
            "ALFAMIX_DOWNLOAD_TIMEOUT": "2.5",
            "LOCAL_FILES_DOCUMENT_ROOT": "/srv/files",
        }
    )

    assert (settings.label_studio_url, settings.port, settings.log_level) == ("http://ls:8080", 9100, "DEBUG")
    assert (settings.n_query, settings.download_timeout) == (20, 2.5)
    assert settings.local_files_document_root == Path("/srv/files")
    assert settings.label_studio_configured is True


def test_encoder_weights_none_means_random_init() -> None:
    assert Settings.from_env({"ALFAMIX_ENCODER_WEIGHTS": "none"}).encoder_weights is None


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PORT": "abc"}, "PORT='abc' is not an integer"),
        ({"PORT": "0"}, "PORT=0 must be between 1 and 65535"),
        ({"ALFAMIX_BATCH_SIZE": "-1"}, "ALFAMIX_BATCH_SIZE=-1 must be between 1 and 100000"),
        ({"ALFAMIX_DOWNLOAD_TIMEOUT": "soon"}, "ALFAMIX_DOWNLOAD_TIMEOUT='soon' is not a number"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL='LOUD' must be one of DEBUG, INFO, WARNING, ERROR"),
        (
            {"ALFAMIX_ENCODER": "foo"},
            "ALFAMIX_ENCODER='foo' must be one of efficientnet_lite0, resnet18, resnet50, vit_b_16",
        ),
        ({"ALFAMIX_DEVICE": "tpu"}, "ALFAMIX_DEVICE='tpu' must be one of auto, cpu, cuda"),
        (
            {"ALFAMIX_STRATEGY": "bald"},
            "ALFAMIX_STRATEGY='bald' must be one of alfamix, random, entropy, margin, coreset",
        ),
        ({"ALFAMIX_AUDIT_FRACTION": "0.9"}, "ALFAMIX_AUDIT_FRACTION=0.9 must be between 0.0 and 0.5"),
        ({"ALFAMIX_TRAINING": "full"}, "ALFAMIX_TRAINING='full' must be one of head, projection, finetune"),
        (
            {"ALFAMIX_ENCODER": "resnet18", "ALFAMIX_FINETUNE_BLOCKS": "9"},
            "ALFAMIX_FINETUNE_BLOCKS=9 must be between 1 and 8",
        ),
        ({"ALFAMIX_GPU_MEMORY_FRACTION": "1.5"}, "ALFAMIX_GPU_MEMORY_FRACTION=1.5 must be between 0.05 and 1.0"),
        (
            {"LABEL_STUDIO_URL": "localhost:8080"},
            "LABEL_STUDIO_URL='localhost:8080' must start with http:// or https://",
        ),
        (
            {"BASIC_AUTH_USER": "ann"},
            "BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together (only one of them is set)",
        ),
        (
            {"BASIC_AUTH_PASS": "pw-77c1"},
            "BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together (only one of them is set)",
        ),
    ],
    ids=[
        "port-text",
        "port-zero",
        "batch-negative",
        "timeout-text",
        "log-level",
        "encoder",
        "device",
        "strategy",
        "audit-share",
        "training",
        "finetune-blocks",
        "gpu-memory",
        "url-scheme",
        "user-only",
        "pass-only",
    ],
)
def test_bad_value_raises_settings_error_naming_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(environ)

    assert str(raised.value) == message


def test_repr_hides_the_api_key_and_the_password() -> None:
    settings = Settings.from_env(
        {
            "LABEL_STUDIO_URL": "http://ls:8080",
            "LABEL_STUDIO_API_KEY": "key-9f3a61",
            "BASIC_AUTH_USER": "ann",
            "BASIC_AUTH_PASS": "pw-77c1e0",
        }
    )

    assert (settings.label_studio_api_key, settings.basic_auth_pass) == ("key-9f3a61", "pw-77c1e0")
    assert "key-9f3a61" not in repr(settings)
    assert "pw-77c1e0" not in repr(settings)
    assert "basic_auth_user='ann'" in repr(settings)


def test_strategy_and_audit_share_are_read() -> None:
    settings = Settings.from_env({"ALFAMIX_STRATEGY": "coreset", "ALFAMIX_AUDIT_FRACTION": "0.05"})
    assert (settings.strategy, settings.audit_fraction) == ("coreset", 0.05)
    assert (Settings().strategy, Settings().audit_fraction) == ("alfamix", 0.0)


def test_the_settings_know_every_strategy_of_the_model() -> None:
    from backend.settings import STRATEGIES
    from model.alfamix.stream import STRATEGIES as MODEL_STRATEGIES

    assert STRATEGIES == MODEL_STRATEGIES


def test_the_training_mode_is_read_and_the_settings_know_every_mode_of_the_model() -> None:
    from backend.settings import TRAINING_MODES
    from model.head import TRAINING_MODES as MODEL_TRAINING_MODES

    assert (*MODEL_TRAINING_MODES, "finetune") == TRAINING_MODES
    assert Settings.from_env({"ALFAMIX_TRAINING": "projection"}).training == "projection"
    assert Settings().training == "head"
    assert (Settings.from_env({"ALFAMIX_HEAD_EPOCHS": "40"}).head_epochs, Settings().head_epochs) == (40, None)


def test_fine_tuning_settings_are_read_and_block_counts_match_the_encoders() -> None:
    from backend.settings import ENCODER_BLOCKS
    from model.backbone import build_encoder
    from model.finetune import split_encoder

    environ = {
        "ALFAMIX_TRAINING": "finetune",
        "ALFAMIX_FINETUNE_EVERY": "50",
        "ALFAMIX_FINETUNE_BLOCKS": "2",
        "ALFAMIX_FINETUNE_EPOCHS": "5",
        "ALFAMIX_FINETUNE_MAX_LABELS": "500",
        "ALFAMIX_GPU_MEMORY_FRACTION": "0.3",
    }
    settings = Settings.from_env(environ)
    assert (settings.training, settings.finetune_every, settings.finetune_blocks) == ("finetune", 50, 2)
    assert (settings.finetune_epochs, settings.finetune_max_labels, settings.gpu_memory_fraction) == (5, 500, 0.3)
    defaults = Settings()
    assert (defaults.finetune_every, defaults.finetune_blocks, defaults.finetune_epochs) == (100, 1, 10)
    for name, blocks in ENCODER_BLOCKS.items():
        if name != "vit_b_16":  # 86M parameters to build; its count is checked in tests/model/test_finetune.py
            assert split_encoder(build_encoder(name, weights=None), 1).n_blocks_available == blocks
    assert ENCODER_BLOCKS["vit_b_16"] == 12
