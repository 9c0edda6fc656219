"""How a project is doing, for people and scripts: JSON, a self-refreshing page, the learning-curve plot."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

from backend.http.deps import BackendDep
from backend.http.plots import plot_png
from backend.http.schemas import StatusResponse
from backend.http.status_page import render_status_page
from backend.ml_backend import ALFAMixBackend
from backend.state.learning_curve import stop_signal

router = APIRouter()


@router.get("/projects/{project_id}/status", response_model=StatusResponse)
def status(project_id: int, backend: BackendDep) -> StatusResponse:
    """Jobs pending or running, the running stage, the live model version, counts, learning curve, recent rounds."""
    return project_status(backend, project_id)


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def status_page(project_id: int, backend: BackendDep) -> str:
    """The same, as a page for people; it refreshes itself."""
    return render_status_page(project_status(backend, project_id))


@router.get("/projects/{project_id}/learning-curve.png", response_class=Response)
def learning_curve_png(project_id: int, backend: BackendDep) -> Response:
    """Pre-label accuracy against the labels each model version was trained on, with a 95% band."""
    summary = backend.store(project_id).summary()
    live = backend.live_version(project_id)
    return Response(
        plot_png(summary.points(), f"project {project_id}, live: {live or 'none yet'}"), media_type="image/png"
    )


def project_status(backend: ALFAMixBackend, project_id: int) -> StatusResponse:
    """Read from the history summary, so its cost does not grow with the number of rounds."""
    store = backend.store(project_id)
    live = store.live() or {}
    summary = store.summary()
    last = summary.last_done
    points = summary.points()
    coordinator = backend.dispatcher.coordinator
    audit = summary.audit.estimate()
    return StatusResponse(
        project=project_id,
        live_model_version=live.get("model_version"),
        live_since=live.get("since"),
        jobs=backend.dispatcher.status(project_id),
        stage=coordinator.stage(project_id),
        behind=coordinator.behind(project_id),
        counts={
            "tasks": last.n_tasks if last else 0,
            "labeled": last.n_labeled_tasks if last else 0,
            "ranked": last.n_unlabeled_tasks if last else 0,
            "skipped": len(last.skipped_tasks) if last else 0,
        },
        learning_curve=[asdict(p) for p in points],
        stop_signal=stop_signal(points),
        pool_accuracy=asdict(audit) if audit else None,
        strategy=(last.strategy if last else None) or backend.settings.strategy,
        training=(last.training if last else None) or backend.settings.training,
        encoder_version=last.encoder_version if last else None,
        n_rounds=summary.n_rounds,
        rounds=[r.to_dict() for r in summary.recent],
    )
