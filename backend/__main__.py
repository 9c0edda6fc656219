"""`python -m backend`: start the HTTP server (PORT, default 9090) with the settings from the environment."""

from __future__ import annotations

import logging
import sys

import uvicorn

from backend.errors import SettingsError
from backend.http.app import create_app
from backend.logs import configure_logging
from backend.ml_backend import ALFAMixBackend
from backend.settings import Settings


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"alfamix-backend: invalid settings: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    logging.getLogger(__name__).info(
        "starting on %s:%d, jobs %s, MODEL_DIR=%s, encoder %s",
        settings.host,
        settings.port,
        "on RQ workers" if settings.redis_url else "in a thread of this server",
        settings.model_dir,
        settings.encoder,
    )
    uvicorn.run(
        create_app(ALFAMixBackend.from_settings(settings)),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=settings.log_level == "DEBUG",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
