"""The web process enqueues rounds but never loads the training stack (torch) to do so."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_handling_a_webhook_with_rq_jobs_does_not_import_torch() -> None:
    script = textwrap.dedent("""
        import sys, uuid
        from fastapi.testclient import TestClient
        from backend.http.app import create_app
        from backend.settings import Settings

        settings = Settings(redis_url="redis://127.0.0.1:6379/15", model_dir=__import__("pathlib").Path("/tmp"))
        client = TestClient(create_app(settings))
        project = 10**12 + uuid.uuid4().int % 10**9  # a project no worker will ever see
        answer = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": project}})
        assert answer.json()["status"] == "queued", answer.text
        import redis
        connection = redis.Redis.from_url(settings.redis_url)
        connection.delete(f"alfamix:pending:round:{project}")
        for key in connection.scan_iter("rq:*"):
            connection.delete(key)
        print(sorted(name for name in ("torch", "torchvision", "model.head") if name in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
