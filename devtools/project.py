"""A Label Studio project driven through the same API the UI uses, for end-to-end tests."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from devtools.images import import_images
from devtools.label_studio import LabelStudioServer

DIGITS = [str(d) for d in range(10)]


def choices_config(labels: list[str], choice: str = "single") -> str:
    options = "".join(f'<Choice value="{label}"/>' for label in labels)
    return (
        f'<View><Image name="image" value="$image"/>'
        f'<Choices name="label" toName="image" choice="{choice}">{options}</Choices></View>'
    )


def choice_result(labels: list[str]) -> list[dict[str, Any]]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": labels}}]


@dataclass
class Project:
    server: LabelStudioServer
    project_id: int

    @classmethod
    def create(cls, server: LabelStudioServer, title: str, label_config: str) -> Project:
        answer = server.session().post(
            f"{server.url}/api/projects", json={"title": title, "label_config": label_config}, timeout=30
        )
        answer.raise_for_status()
        return cls(server, int(answer.json()["id"]))

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.server.session().request(method, f"{self.server.url}{path}", timeout=60, **kwargs)
        if answer.status_code >= 400:
            raise AssertionError(f"{method} {path} answered {answer.status_code}: {answer.text[:500]}")
        return answer.json() if answer.content else None

    def connect(self, backend_url: str, auth: tuple[str, str] | None = None) -> int:
        body: dict[str, Any] = {"project": self.project_id, "url": backend_url, "title": "ALFA-Mix"}
        if auth:
            body |= {"auth_method": "BASIC_AUTH", "basic_auth_user": auth[0], "basic_auth_pass": auth[1]}
        return int(self.api("POST", "/api/ml", json=body)["id"])

    def settings(self) -> dict[str, Any]:
        return dict(self.api("GET", f"/api/projects/{self.project_id}"))

    def tasks(self) -> list[dict[str, Any]]:
        """All tasks with annotations and predictions (pages of 500: larger ones fail on SQLite)."""
        tasks: list[dict[str, Any]] = []
        while True:
            params: dict[str, str | int] = {
                "project": self.project_id,
                "fields": "all",
                "page": len(tasks) // 500 + 1,
                "page_size": 500,
                "resolve_uri": "false",
            }
            answer = self.server.session().get(f"{self.server.url}/api/tasks", params=params, timeout=60)
            if answer.status_code == 404:  # past the last page
                return tasks
            answer.raise_for_status()
            page = answer.json()["tasks"]
            tasks.extend(page)
            if len(page) < 500:
                return tasks

    def next_task(self) -> dict[str, Any]:
        return dict(self.api("GET", f"/api/projects/{self.project_id}/next"))

    def submit(self, task_id: int, labels: list[str]) -> dict[str, Any]:
        """What the UI's Submit button sends."""
        body = {"result": choice_result(labels), "lead_time": 2.5, "project": self.project_id}
        return dict(self.api("POST", f"/api/tasks/{task_id}/annotations/", json=body))

    def label_next(self, truth: dict[int, int], n: int) -> list[int]:
        """Label the next n tasks "Label All Tasks" serves with their true digit; returns their ids."""
        done = []
        for _ in range(n):
            task = self.next_task()
            self.submit(task["id"], [str(truth[task["id"]])])
            done.append(int(task["id"]))
        return done

    def webhooks(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/api/webhooks/", params={"project": self.project_id}))


def pushed_and_served(
    project: Project, backend_url: str, model_version: str, labels: list[str]
) -> tuple[dict[int, str], dict[int, str], set[str]]:
    """The class ``model_version`` pushed to Label Studio for each task at the queue's front, the
    class ``/predict`` answers for the same tasks, and the model versions of those answers."""
    pushed = {
        task["id"]: prediction["result"][0]["value"]["choices"][0]
        for task in project.tasks()
        for prediction in task["predictions"]
        if prediction["model_version"] == model_version
    }
    tasks = [{"id": task_id, "data": project.api("GET", f"/api/tasks/{task_id}")["data"]} for task_id in pushed]
    answer = requests.post(
        f"{backend_url}/predict",
        json={"tasks": tasks, "project": f"{project.project_id}.0", "label_config": choices_config(labels)},
        timeout=60,
    )
    answer.raise_for_status()
    results = answer.json()["results"]
    served = {
        task["id"]: result["result"][0]["value"]["choices"][0] for task, result in zip(tasks, results, strict=True)
    }
    return pushed, served, {result["model_version"] for result in results}


def digits_project(
    server: LabelStudioServer, title: str, files: list[tuple[Path, int]]
) -> tuple[Project, dict[int, int]]:
    """A digit-classification project with these PNGs uploaded; returns it and {task id: true digit}."""
    project = Project.create(server, title, choices_config(DIGITS))
    digit_of = {path.name: digit for path, digit in files}
    names = import_images(server.url, server.api_key, project.project_id, [path for path, _ in files])
    return project, {task_id: digit_of[name] for task_id, name in names.items()}


def placeholder_project(server: LabelStudioServer, title: str, n_tasks: int) -> tuple[Project, list[int]]:
    """A digit project of n tasks whose image URLs nothing serves, for tests that never load images;
    returns it and the task ids in import order."""
    project = Project.create(server, title, choices_config(DIGITS))
    created = project.api(
        "POST",
        f"/api/projects/{project.project_id}/import",
        params={"return_task_ids": "true"},
        json=[{"image": f"http://127.0.0.1:9/img/{i}.png"} for i in range(n_tasks)],
    )["task_ids"]
    return project, [int(task) for task in created]


def backend_status(backend_url: str, project_id: int, auth: tuple[str, str] | None = None) -> dict[str, Any]:
    answer = requests.get(f"{backend_url}/projects/{project_id}/status", auth=auth, timeout=10)
    answer.raise_for_status()
    return dict(answer.json())


def wait_until_idle(
    backend_url: str, project_id: int, auth: tuple[str, str] | None = None, timeout: float = 300.0
) -> dict[str, Any]:
    """Waits until no job of the project is pending or running; returns the status then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = backend_status(backend_url, project_id, auth)
        if not any(status["jobs"].values()):
            return status
        time.sleep(0.25)
    raise AssertionError(f"project {project_id} still busy after {timeout} s: {status['jobs']}")


def webhook_events(backend_url: str, auth: tuple[str, str] | None = None) -> Counter[str]:
    """Webhook events the backend's server has handled since it started, by Label Studio action (all projects)."""
    answer = requests.get(f"{backend_url}/metrics", auth=auth, timeout=10)
    answer.raise_for_status()
    events: Counter[str] = Counter()
    for family in text_string_to_metric_families(answer.text):
        if family.name == "alfamix_webhook_events":
            for sample in family.samples:
                if sample.name == "alfamix_webhook_events_total":
                    events[sample.labels["action"]] += int(sample.value)
    return events


def wait_for_label_events(
    backend_url: str, n_labels: int, auth: tuple[str, str] | None = None, timeout: float = 60.0
) -> None:
    """Waits until the backend has handled the ANNOTATION_CREATED webhooks of ``n_labels`` submits.

    Label Studio gives up on a webhook after 1 s and answers the submit all the same, so on a busy
    machine an event can reach the backend after the submit returned.
    """
    wait_for(
        lambda: webhook_events(backend_url, auth)["ANNOTATION_CREATED"] >= n_labels,
        timeout,
        f"the backend to handle {n_labels} ANNOTATION_CREATED webhooks",
    )


def wait_for_labels(
    backend_url: str, project_id: int, n_labels: int, auth: tuple[str, str] | None = None, timeout: float = 300.0
) -> dict[str, Any]:
    """Waits until the backend has handled the webhooks of ``n_labels`` submits and no job of the project is
    pending or running; returns the status then. A round started after the last event came, so the last
    round covers every label, unless it failed. Idle alone is not enough: a late webhook can come after it."""
    wait_for_label_events(backend_url, n_labels, auth, timeout)
    return wait_until_idle(backend_url, project_id, auth, timeout)


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
