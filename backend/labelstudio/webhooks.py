"""Make Label Studio's annotation webhooks carry the backend's basic-auth credentials.

Label Studio sends the ML backend's basic auth on /setup, /predict and START_TRAINING,
but creates the project webhook (ANNOTATION_CREATED and friends) with empty headers.
This job finds the webhooks that point at this backend and sets their Authorization header.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

from backend.labelstudio.client import LabelStudioClient

logger = logging.getLogger(__name__)

WEBHOOK_WAIT_SECONDS = 20.0  # /setup comes before Label Studio creates the webhook while connecting


def basic_auth_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def secure_webhooks(client: LabelStudioClient, project_id: int, user: str, password: str) -> dict[str, Any]:
    """Set ``Authorization`` on the project's webhooks to this backend; waits for them a while."""
    header = basic_auth_header(user, password)
    deadline = time.monotonic() + WEBHOOK_WAIT_SECONDS
    while not (hooks := _our_webhooks(client, project_id, user)):
        if time.monotonic() > deadline:
            logger.warning(
                "project %s: no webhook to this ML backend found after %.0f s; annotation events "
                "will be refused until /setup runs again",
                project_id,
                WEBHOOK_WAIT_SECONDS,
            )
            return {"status": "no webhook", "patched": 0}
        time.sleep(1.0)
    patched = 0
    for hook in hooks:
        headers = dict(hook.get("headers") or {})
        if headers.get("Authorization") != header:
            client.set_webhook_headers(int(hook["id"]), {**headers, "Authorization": header})
            patched += 1
    if patched:
        logger.info("project %s: set basic auth on %d webhook(s)", project_id, patched)
    return {"status": "done", "patched": patched, "webhooks": len(hooks)}


def _our_webhooks(client: LabelStudioClient, project_id: int, user: str) -> list[dict[str, Any]]:
    """Webhooks at <url>/webhook of an ML backend that logs in to us with our user name."""
    urls = {
        str(backend["url"]).rstrip("/") + "/webhook"
        for backend in client.ml_backends(project_id)
        if backend.get("auth_method") == "BASIC_AUTH" and backend.get("basic_auth_user") == user
    }
    return [hook for hook in client.project_webhooks(project_id) if str(hook.get("url")).rstrip("/") in urls]
