"""How Label Studio names a project on the wire."""

from __future__ import annotations

import re
from typing import Any

from backend.errors import BadRequestError

PROJECT_ID = re.compile(r"[0-9]{1,19}")


def project_id_of(project: str | int | dict[str, Any] | None) -> int:
    """Label Studio names a project "<id>.<created timestamp>" in /setup and /predict, {"id": ...} in webhooks."""
    if isinstance(project, dict):
        project = project.get("id")
    if isinstance(project, bool) or project is None:
        raise BadRequestError("the request names no project")
    head = str(project).split(".", 1)[0].strip()
    if not PROJECT_ID.fullmatch(head) or not 0 < int(head) < 2**63:  # ASCII digits only: "³".isdigit() is True
        raise BadRequestError(f"project {str(project)[:40]!r} is not a Label Studio project id")
    return int(head)
