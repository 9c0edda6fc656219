"""`python -m backend.jobs.worker`: an RQ worker for this backend's queue (needs REDIS_URL).

A SimpleWorker runs jobs in its own process, so the encoder loads once and stays
loaded between rounds instead of being rebuilt in a fork for every job. The worker process
is where the pipeline runs, so unlike the rest of jobs/ this module imports it: to settle
its device before it takes a job, and to say which in its log and in Redis (/health).
"""

from __future__ import annotations

import logging
import sys

from rq import SimpleWorker

from backend.errors import SettingsError
from backend.jobs.dispatch import RQ_QUEUE
from backend.jobs.workers import register_worker
from backend.logs import configure_logging
from backend.pipeline.embedder import describe_device
from backend.pipeline.rounds import WORKER
from backend.settings import Settings
from backend.state.redis_state import redis_connection
from model.embedding import pick_device
from model.errors import ModelInputError

logger = logging.getLogger(__name__)


def main() -> int:
    try:
        settings = Settings.from_env()
        if not settings.redis_url:
            raise SettingsError("REDIS_URL is not set: a worker takes jobs from Redis")
    except SettingsError as error:
        print(f"alfamix-worker: invalid settings: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        device = describe_device(pick_device(settings.device))
    except ModelInputError:
        print(
            "alfamix-worker: ALFAMIX_DEVICE=cuda, but torch sees no CUDA device: check the NVIDIA driver "
            "(the image needs R580 or newer), the container's GPU reservation and `nvidia-smi` in the container",
            file=sys.stderr,
        )
        return 2
    if device == "cpu" and settings.device == "auto":
        logger.warning("no CUDA device found: this worker embeds on the CPU (ALFAMIX_DEVICE=cuda refuses instead)")
    connection = redis_connection(settings.redis_url)
    register_worker(connection, WORKER, device)
    logger.info("worker %s takes jobs from queue %r on %s", WORKER, RQ_QUEUE, device)
    SimpleWorker([RQ_QUEUE], connection=connection, name=WORKER).work(
        with_scheduler=False, logging_level=settings.log_level
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
