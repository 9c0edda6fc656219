"""`python -m backend.jobs.worker`: an RQ worker for this backend's queue (needs REDIS_URL).

A SimpleWorker runs jobs in its own process, so the encoder loads once and stays
loaded between rounds instead of being rebuilt in a fork for every job.
"""

from __future__ import annotations

import sys

from rq import SimpleWorker

from backend.errors import SettingsError
from backend.jobs.dispatch import RQ_QUEUE
from backend.logs import configure_logging
from backend.settings import Settings
from backend.state.redis_state import redis_connection


def main() -> int:
    try:
        settings = Settings.from_env()
        if not settings.redis_url:
            raise SettingsError("REDIS_URL is not set: a worker takes jobs from Redis")
    except SettingsError as error:
        print(f"alfamix-worker: invalid settings: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    connection = redis_connection(settings.redis_url)
    SimpleWorker([RQ_QUEUE], connection=connection).work(with_scheduler=False, logging_level=settings.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
