"""Basic auth on the backend's routes: right credentials pass, anything else is a 401 without secrets."""

from __future__ import annotations

import base64

import pytest
from starlette.requests import Request

from backend.http.auth import AuthError, check_basic_auth
from backend.settings import Settings

SECURED = Settings(basic_auth_user="ann", basic_auth_pass="pw-77c1e0")


def request_with(authorization: str | None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode("latin-1"))]
    return Request({"type": "http", "method": "POST", "path": "/predict", "headers": headers})


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def test_no_auth_configured_lets_every_request_pass() -> None:
    assert check_basic_auth(request_with(None), Settings()) is None


def test_right_credentials_pass() -> None:
    assert check_basic_auth(request_with(basic("ann:pw-77c1e0")), SECURED) is None


def test_scheme_name_is_case_insensitive() -> None:
    assert check_basic_auth(request_with("basic " + basic("ann:pw-77c1e0")[6:]), SECURED) is None


@pytest.mark.parametrize(
    "authorization",
    [
        basic("ann:wrong"),
        basic("bob:pw-77c1e0"),
        basic("ann"),
        None,
        "Bearer pw-77c1e0",
        "Basic not*base64!",
        "Basic " + base64.b64encode(b"ann:\xff\xfe").decode(),
    ],
    ids=["wrong-password", "wrong-user", "no-colon", "missing-header", "bearer", "malformed-base64", "not-utf8"],
)
def test_bad_credentials_raise_a_401_without_the_password(authorization: str | None) -> None:
    with pytest.raises(AuthError) as raised:
        check_basic_auth(request_with(authorization), SECURED)

    assert raised.value.status_code == 401
    assert str(raised.value) == "authentication required: this ML backend uses basic auth"
    assert "pw-77c1e0" not in str(raised.value)
