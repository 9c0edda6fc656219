"""The real Label Studio UI in headless Chromium (Debian's chromium and chromium-driver, no downloads).

An annotator logs in, clicks "Label All Tasks" and gets the backend's top-ranked task with the
model's class pre-selected; submits; a round follows; the next task served is the new queue's
head. The owner's status page shows the stage, counts and a learning curve. Screenshots are
kept next to the test's temporary files (the path is logged).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from devtools.backend_process import BackendProcesses
from devtools.images import write_mnist_pngs
from devtools.label_studio import LabelStudioServer
from devtools.project import backend_status, digits_project, wait_for, wait_until_idle

logger = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    assert shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER), ".ci/run installs Debian's chromium-driver"
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def shown_task(driver: WebDriver) -> int:
    """The task id the labeling screen shows ("#17" in its bottom bar; the "#" is drawn by CSS)."""
    script = "const e = document.querySelector('.lsf-current-task__task-id'); return e && e.firstChild.textContent;"

    def number() -> int | None:
        text = driver.execute_script(script)
        return int(text) if text and str(text).strip().isdigit() else None

    return int(WebDriverWait(driver, 60).until(lambda _: number()))


def preselected(driver: WebDriver) -> list[str]:
    return [
        box.get_attribute("name") or "" for box in driver.find_elements(By.CSS_SELECTOR, "input[type=checkbox]:checked")
    ]


def click_button(driver: WebDriver, text: str) -> None:
    button = WebDriverWait(driver, 60).until(
        lambda _: next((b for b in driver.find_elements(By.TAG_NAME, "button") if b.text.strip() == text), None)
    )
    driver.execute_script("arguments[0].click()", button)  # a toast may cover it; the click still counts


def test_an_annotator_in_the_ui_gets_the_alfamix_queue_and_the_owner_sees_progress(
    label_studio: LabelStudioServer, browser: WebDriver, tmp_path: Path
) -> None:
    files = write_mnist_pngs(tmp_path / "png", 40, random_state=6)
    project, truth = digits_project(label_studio, "browser", files)
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key}
    with BackendProcesses(tmp_path, env) as backend:
        project.connect(backend.url)
        wait_until_idle(backend.url, project.project_id)
        project.label_next(truth, 6)
        status = wait_until_idle(backend.url, project.project_id)
        live, head = status["live_model_version"], status["rounds"][-1]["queue_head"][0]
        predictions = {t["id"]: t["predictions"] for t in project.tasks()}
        predicted = next(p for p in predictions[head] if p["model_version"] == live)["result"][0]["value"]["choices"]

        # The annotator logs in and clicks "Label All Tasks".
        browser.get(f"{label_studio.url}/user/login/")
        browser.find_element(By.NAME, "email").send_keys(label_studio.username)
        browser.find_element(By.NAME, "password").send_keys(label_studio.password)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
        WebDriverWait(browser, 60).until(lambda d: "/user/login" not in d.current_url)
        browser.get(f"{label_studio.url}/projects/{project.project_id}/data")
        click_button(browser, "Label All Tasks")
        assert shown_task(browser) == head
        WebDriverWait(browser, 30).until(lambda d: preselected(d))
        assert preselected(browser) == predicted
        browser.save_screenshot(str(tmp_path / "label-studio-queue-head.png"))

        # Submitting in the UI starts a round.
        rounds_before = len(status["rounds"])
        click_button(browser, "Submit")
        after = wait_for(lambda: _new_round(backend, project.project_id, rounds_before), timeout=120, what="a round")
        assert after["rounds"][-1]["n_labeled_tasks"] == 7
        # Label Studio served (and locked) a task before that round ended; skipping it asks again,
        # and the new queue answers.
        locked = shown_task(browser)
        click_button(browser, "Skip")
        labeled = {t["id"] for t in project.tasks() if t["annotations"]}
        expected = next(t for t in after["rounds"][-1]["queue_head"] if t not in labeled)
        WebDriverWait(browser, 60).until(lambda d: shown_task(d) != locked)
        assert shown_task(browser) == expected

        # The owner's status page.
        browser.get(f"{backend.url}/projects/{project.project_id}")
        assert browser.find_element(By.ID, "live").text.startswith(after["live_model_version"])
        assert "40 tasks, 7 labeled" in browser.find_element(By.ID, "counts").text
        plot = browser.find_element(By.ID, "learning-curve")
        WebDriverWait(browser, 30).until(lambda d: d.execute_script("return arguments[0].naturalWidth", plot) == 640)
        browser.save_screenshot(str(tmp_path / "status-page.png"))
    logger.info("screenshots in %s", tmp_path)


def _new_round(backend: BackendProcesses, project_id: int, before: int) -> dict | None:
    status = backend_status(backend.url, project_id)
    idle = not any(status["jobs"].values())
    return status if idle and len(status["rounds"]) > before and status["rounds"][-1]["status"] == "done" else None
