"""Basic auth for the backend's endpoints, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import contextlib
import secrets

from fastapi import Request

from backend.errors import BackendError
from backend.settings import Settings


class AuthError(BackendError):
    status_code = 401


def check_basic_auth(request: Request, settings: Settings) -> None:
    """Raise AuthError unless the request carries BASIC_AUTH_USER/PASS (no-op when auth is off)."""
    if not settings.basic_auth_user or not settings.basic_auth_pass:
        return
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    user = password = ""
    if scheme.lower() == "basic":
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    # Both comparisons always run, so timing does not tell which part was wrong.
    user_ok = secrets.compare_digest(user.encode(), settings.basic_auth_user.encode())
    password_ok = secrets.compare_digest(password.encode(), settings.basic_auth_pass.encode())
    if not (user_ok and password_ok):
        raise AuthError("authentication required: this ML backend uses basic auth")
