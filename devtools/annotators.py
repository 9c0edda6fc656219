"""Annotator accounts in a running Label Studio, and several of them labeling at once through /next.

Accounts are made the way a person joins an organization in the Community edition: the
admin's invite link (``GET /api/invite``), the signup form it leads to
(``POST /user/signup/?token=<invite token>``), then ``GET /api/current-user/token`` for the
legacy API token the signup created. ``POST /api/users/`` is no use here: the user it makes
has no password, no active organization and no token anyone can read.

:func:`label_continuously` runs one thread per annotator, each with its own token and HTTP
session, through ``GET /api/projects/{id}/next`` and ``POST /api/tasks/{id}/annotations/``,
and records every call. Only the standard library, ``requests`` and ``numpy`` are used here.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests

from devtools.label_studio import LabelStudioServer
from devtools.project import Project, choice_result

NEXT = "next"
SUBMIT = "submit"
ENDPOINTS = (NEXT, SUBMIT)
DETAIL_CHARS = 200
# What Label Studio on SQLite logs when a write waited too long for the database file.
DATABASE_LOCKED = "database is locked"
# What the backend's server logs when it answers 5xx: the BackendError handler (>= 500), an
# unhandled exception (uvicorn answers 500) and the Redis handler (503).
_BACKEND_5XX_RE = re.compile(r"ERROR backend\.app: [A-Z]+ /|Exception in ASGI application|Redis unreachable")


class AnnotatorSetupError(RuntimeError):
    """Label Studio refused a step of making an annotator account."""


@dataclass(frozen=True)
class Annotator:
    """A member of the admin's organization, authenticated by its own legacy API token."""

    user_id: int
    email: str
    organization: int | None  # the active one
    token: str = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def session(self) -> requests.Session:
        """A new ``requests`` session (its own connection pool and cookies) sending :attr:`headers`."""
        session = requests.Session()
        session.headers.update(self.headers)
        return session


def create_annotators(
    server: LabelStudioServer, n: int, *, prefix: str | None = None, timeout: float = 30.0
) -> list[Annotator]:
    """Signs up ``n`` annotators through the admin's invite link; they can label every project of the organization.

    Emails are ``<prefix>-<i>@example.com``; the default prefix is random, so a shared server
    can take several calls.
    """
    if n < 1:
        raise ValueError(f"n={n} should be >= 1")
    prefix = prefix or f"annotator-{secrets.token_hex(4)}"
    with server.session() as admin:
        me = _json(admin.get(f"{server.url}/api/current-user/whoami", timeout=timeout), 200)
        invite = _json(admin.get(f"{server.url}/api/invite", timeout=timeout), 200)["token"]
        annotators = [_sign_up(server.url, invite, f"{prefix}-{i}@example.com", timeout) for i in range(n)]
        members = {user["id"] for user in _json(admin.get(f"{server.url}/api/users/", timeout=timeout), 200)}
    organization = me["active_organization"]
    for annotator in annotators:
        if annotator.user_id not in members or annotator.organization != organization:
            raise AnnotatorSetupError(
                f"{annotator.email} (id {annotator.user_id}, active organization {annotator.organization}) "
                f"is not a member of the admin's organization {organization}"
            )
    return annotators


def _sign_up(url: str, invite: str, email: str, timeout: float) -> Annotator:
    with requests.Session() as browser:
        # The form page sets the csrftoken cookie that the POST must echo.
        form = browser.get(f"{url}/user/signup/", params={"token": invite}, timeout=timeout)
        if form.status_code != 200 or "csrftoken" not in browser.cookies:
            raise AnnotatorSetupError(f"GET /user/signup/ answered {form.status_code} without a csrftoken cookie")
        signed_up = browser.post(
            f"{url}/user/signup/",
            params={"token": invite},
            data={
                "email": email,
                "password": secrets.token_urlsafe(16),
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
            headers={"Referer": f"{url}/user/signup/"},
            allow_redirects=False,
            timeout=timeout,
        )
        if signed_up.status_code != 302:  # the form page again, with the form's errors in it
            raise AnnotatorSetupError(
                f"POST /user/signup/ for {email} answered {signed_up.status_code}, not a redirect: "
                f"{signed_up.text[:DETAIL_CHARS]}"
            )
        token = str(_json(browser.get(f"{url}/api/current-user/token", timeout=timeout), 200)["token"])
    me = _json(
        requests.get(f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"}, timeout=timeout),
        200,
    )
    return Annotator(user_id=int(me["id"]), email=email, organization=me["active_organization"], token=token)


def _json(answer: requests.Response, expected: int) -> Any:
    if answer.status_code != expected:
        raise AnnotatorSetupError(
            f"{answer.request.method} {answer.url} answered {answer.status_code}: {answer.text[:DETAIL_CHARS]}"
        )
    return answer.json()


@dataclass(frozen=True)
class Call:
    """One HTTP call an annotator made."""

    endpoint: str  # NEXT or SUBMIT
    status: int  # the HTTP status; 0 when no answer came (timeout, refused connection)
    seconds: float  # until the whole answer was read, or until the client gave up
    thread: int  # index of the annotator
    at: float  # when it was sent, in seconds since the run started
    task_id: int | None = None  # the task submitted (SUBMIT only)
    retry: bool = False  # the second try of a submit whose first try failed
    detail: str = ""  # the first 200 characters of a non-2xx body, or the client's error

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class LoadResult:
    """Everything one :func:`label_continuously` run did."""

    calls: tuple[Call, ...]  # in the order they ended
    labeled: tuple[int, ...]  # task ids of the annotations Label Studio saved, in saving order
    seconds: float
    stop_reasons: tuple[str, ...]  # why each annotator stopped, by thread index

    @property
    def labels(self) -> int:
        return len(self.labeled)

    @property
    def server_errors(self) -> int:
        """Answers >= 500."""
        return sum(call.status >= 500 for call in self.calls)

    @property
    def duplicate_tasks(self) -> list[int]:
        """Tasks that got more than one saved annotation (served to two annotators at once)."""
        return sorted(task for task, n in Counter(self.labeled).items() if n > 1)

    def failures(self) -> list[Call]:
        """Calls that got no 2xx answer; a /next 404 (nothing left to label) among them."""
        return [call for call in self.calls if not call.ok]

    def latency(self, endpoint: str) -> dict[str, float]:
        """Seconds per call of ``endpoint``, failed calls included: count, p50, p95, p99, max."""
        seconds = np.array([call.seconds for call in self.calls if call.endpoint == endpoint])  # (n,)
        if len(seconds) == 0:
            return {"count": 0}
        p50, p95, p99 = (float(p) for p in np.percentile(seconds, [50, 95, 99]))
        return {"count": len(seconds), "p50": p50, "p95": p95, "p99": p99, "max": float(seconds.max())}

    def summary(self) -> dict[str, Any]:
        """A JSON-ready digest: labels, rates, latencies (rounded to 0.1 ms), status counts, the first failures."""
        statuses = Counter(f"{call.endpoint} {call.status}" for call in self.calls)
        return {
            "labels": self.labels,
            "seconds": round(self.seconds, 2),
            "labels_per_second": round(self.labels / self.seconds, 2) if self.seconds else None,
            "latency": {
                endpoint: {
                    key: value if key == "count" else round(value, 4) for key, value in self.latency(endpoint).items()
                }
                for endpoint in ENDPOINTS
            },
            "server_errors": self.server_errors,
            "statuses": dict(sorted(statuses.items())),
            "duplicate_tasks": len(self.duplicate_tasks),
            "stop_reasons": list(self.stop_reasons),
            "failures": [
                {"endpoint": c.endpoint, "status": c.status, "at": round(c.at, 2), "retry": c.retry, "detail": c.detail}
                for c in self.failures()[:20]
            ],
        }


class _Run:
    """What the annotator threads share: the label quota, the deadline and the call log."""

    def __init__(self, labels: int, timeout: float, request_timeout: float) -> None:
        self.started = time.perf_counter()
        self.deadline = time.monotonic() + timeout
        self.request_timeout = request_timeout
        self.aborted = threading.Event()  # a thread died of a bug: the others stop too
        self._lock = threading.Lock()
        self._quota = labels
        self._reserved = 0
        self.calls: list[Call] = []
        self.labeled: list[int] = []

    def reserve(self) -> bool:
        """Claims one of the labels still to do; False when all are done or claimed."""
        with self._lock:
            if self._reserved >= self._quota:
                return False
            self._reserved += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._reserved -= 1

    def saved(self, task_id: int) -> None:
        with self._lock:
            self.labeled.append(task_id)

    def call(
        self,
        http: requests.Session,
        method: str,
        url: str,
        endpoint: str,
        thread: int,
        *,
        task_id: int | None = None,
        retry: bool = False,
        json: Any = None,
    ) -> requests.Response | None:
        """Sends one request and records it; None when no answer came. Never raises for HTTP trouble."""
        sent = time.perf_counter()
        answer: requests.Response | None
        try:
            answer = http.request(method, url, json=json, timeout=self.request_timeout)
            status = answer.status_code
            detail = "" if 200 <= status < 300 else answer.text[:DETAIL_CHARS]
        except requests.RequestException as error:
            answer, status, detail = None, 0, f"{type(error).__name__}: {error}"[:DETAIL_CHARS]
        seconds = time.perf_counter() - sent
        with self._lock:
            self.calls.append(Call(endpoint, status, seconds, thread, sent - self.started, task_id, retry, detail))
        return answer


_QUEUE_EMPTY = -1
_FAILED = -2


def label_continuously(
    project: Project,
    annotators: Sequence[Annotator],
    truth: Mapping[int, int | str],
    *,
    labels: int,
    timeout: float,
    request_timeout: float = 60.0,
    max_failures: int = 20,
) -> LoadResult:
    """Every annotator labels what /next serves with its true label, in parallel, until ``labels`` are saved.

    One thread per annotator loops: ``GET /api/projects/{id}/next``, then
    ``POST /api/tasks/{id}/annotations/`` with ``truth[task id]`` as the one choice of the
    project's "label" control. A failed submit is tried once more, as an annotator would;
    both tries are recorded. A thread stops when the shared total is reached, at the
    deadline (``timeout`` seconds from now; a call under way still finishes), when /next
    answers 404 (nothing left), or after ``max_failures`` labels that failed. Non-2xx answers
    are recorded, never raised.
    """
    if labels < 1:
        raise ValueError(f"labels={labels} should be >= 1")
    if not annotators:
        raise ValueError("at least one annotator is needed")
    if timeout <= 0 or request_timeout <= 0:
        raise ValueError(f"timeout={timeout} and request_timeout={request_timeout} should be > 0")
    run = _Run(labels, timeout, request_timeout)

    def annotate(thread: int) -> str:
        try:
            return _annotate(run, thread, annotators[thread], project, truth, max_failures)
        except BaseException:
            run.aborted.set()
            raise

    with ThreadPoolExecutor(len(annotators), thread_name_prefix="annotator") as pool:
        futures = [pool.submit(annotate, thread) for thread in range(len(annotators))]
        reasons = tuple(future.result() for future in futures)
    return LoadResult(tuple(run.calls), tuple(run.labeled), time.perf_counter() - run.started, reasons)


def _annotate(
    run: _Run, thread: int, annotator: Annotator, project: Project, truth: Mapping[int, int | str], max_failures: int
) -> str:
    """One annotator's loop; returns why it stopped."""
    failures = 0
    with annotator.session() as http:
        while True:
            if run.aborted.is_set():
                return "another annotator failed"
            if time.monotonic() >= run.deadline:
                return "deadline"
            if failures >= max_failures:
                return f"{failures} failed labels"
            if not run.reserve():
                return "labels reached"
            task_id = _label_one(run, thread, http, project, truth)
            if task_id >= 0:
                run.saved(task_id)
                continue
            run.release()
            if task_id == _QUEUE_EMPTY:
                return "queue empty"
            failures += 1


def _label_one(run: _Run, thread: int, http: requests.Session, project: Project, truth: Mapping[int, int | str]) -> int:
    """The saved task's id, or _QUEUE_EMPTY, or _FAILED."""
    base = project.server.url
    served = run.call(http, "GET", f"{base}/api/projects/{project.project_id}/next", NEXT, thread)
    if served is None or served.status_code != 200:
        return _QUEUE_EMPTY if served is not None and served.status_code == 404 else _FAILED
    task_id = int(served.json()["id"])
    body = {"result": choice_result([str(truth[task_id])]), "lead_time": 2.5, "project": project.project_id}
    for retry in (False, True):
        answer = run.call(
            http,
            "POST",
            f"{base}/api/tasks/{task_id}/annotations/",
            SUBMIT,
            thread,
            json=body,
            task_id=task_id,
            retry=retry,
        )
        if answer is not None and answer.status_code == 201:
            return task_id
    return _FAILED


def database_locked_errors(log: str) -> list[str]:
    """The logged errors of a Label Studio log that say SQLite's "database is locked", one line each.

    Only a record's first line counts, not the traceback under it. Label Studio on SQLite
    retries such a request (``DatabaseIsLockedRetryMiddleware``: up to 15 times, sleeping 1 s,
    then 1.5 times longer each time), so each one costs an annotator a second or more even
    when the answer that finally comes is a 200.
    """
    return [line for line in log.splitlines() if line.startswith("[") and DATABASE_LOCKED in line]


def backend_5xx_lines(log: str) -> list[str]:
    """Lines of the backend server's log that mark an answer >= 500 (its access log is off below DEBUG)."""
    return [line for line in log.splitlines() if _BACKEND_5XX_RE.search(line)]
