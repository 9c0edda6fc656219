"""The web process enqueues rounds but never loads the training stack (torch) to do so."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from fastapi.testclient import TestClient
    from backend.http.app import create_app
    from backend.ml_backend import ALFAMixBackend
    from backend.settings import Settings

    redis_url, model_dir, out = sys.argv[1:4]
    settings = Settings(redis_url=redis_url, model_dir=Path(model_dir))
    client = TestClient(create_app(ALFAMixBackend.from_settings(settings)))
    answers = [
        client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 7}}).json()["status"],
        client.get("/projects/7/status").status_code,
        client.get("/metrics").status_code,
        client.get("/versions").status_code,
    ]
    heavy = ("torch", "torchvision", "model.head", "backend.pipeline.rounds")
    loaded = sorted(name for name in heavy if name in sys.modules)
    Path(out).write_text(json.dumps({"answers": answers, "loaded": loaded}))
""")


def test_the_web_process_answers_webhooks_status_and_metrics_without_torch(redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    command = [sys.executable, "-c", SCRIPT, redis_url, str(tmp_path), str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == {"answers": ["queued", 200, 200, 200], "loaded": []}
