"""Which RQ workers are alive, and on which device each runs: what /health reports.

A worker writes its device under its name when it starts; RQ's own registry says which
workers are alive (it drops one that stops, and one whose heartbeat lapsed).
"""

from __future__ import annotations

from redis import Redis
from rq import Worker

from backend.state.redis_state import KEY_PREFIX
from backend.state.redis_text import as_text

DEVICES_KEY = f"{KEY_PREFIX}:worker-devices"  # worker name -> "cuda:0 (NVIDIA H200)" or "cpu"


def register_worker(connection: Redis, name: str, device: str) -> None:
    connection.hset(DEVICES_KEY, name, device)


def live_workers(connection: Redis) -> list[dict[str, str]]:
    """[{"name", "device"}] of the workers RQ counts as alive; "unknown" for one that never said."""
    devices = {as_text(k): as_text(v) for k, v in connection.hgetall(DEVICES_KEY).items()}
    names = sorted(worker.name for worker in Worker.all(connection=connection))
    gone = set(devices) - set(names)
    if gone:
        connection.hdel(DEVICES_KEY, *gone)
    return [{"name": name, "device": devices.get(name, "unknown")} for name in names]
