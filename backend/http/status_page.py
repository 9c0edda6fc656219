"""The project status as an HTML page for owners: server-rendered, no build step, refreshes itself."""

from __future__ import annotations

import html
import time
from typing import Any

from backend.http.schemas import StatusResponse
from backend.state.records import TIMED_PARTS, RoundRecord

REFRESH_SECONDS = 5
HISTORY_ROWS = 20


def render_status_page(status: StatusResponse) -> str:
    esc = html.escape
    project_id = status.project
    stage = status.stage
    if stage:
        done, total = stage.get("done"), stage.get("total")
        progress = f" {done:,}/{total:,}" if done is not None and total else ""
        running = f"<b>{esc(stage['name'])}</b>{progress}"
        if done is not None and total:
            running += f' <progress value="{done}" max="{total}"></progress>'
    else:
        running = "idle"
    pending = [name.removesuffix("_pending") for name, on in status.jobs.items() if on and name != "running"]
    live = status.live_model_version or "none yet"
    since = status.live_since
    since_text = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if since else ""
    counts = status.counts
    rows = "".join(_history_row(RoundRecord.from_dict(r)) for r in reversed(status.rounds[-HISTORY_ROWS:]))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>ALFA-Mix: project {project_id}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; max-width: 64rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 0.3rem 0.6rem; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 0.3rem 0.6rem; }}
.failed {{ color: #b00; }} dt {{ font-weight: 600; }} dd {{ margin: 0 0 0.5rem 0; }}
</style></head><body>
<h1>ALFA-Mix active learning: project {project_id}</h1>
<dl>
<dt>Now</dt><dd id="stage">{running}</dd>
<dt>Waiting</dt><dd id="pending">{esc(", ".join(pending)) or "nothing"}</dd>
<dt>Live model version</dt><dd id="live">{esc(live)}{esc(since_text)}</dd>
<dt>Tasks</dt><dd id="counts">{counts.get("tasks", 0):,} tasks, {counts.get("labeled", 0):,} labeled,
{counts.get("ranked", 0):,} ranked in the queue, {counts.get("skipped", 0):,} skipped (image problems)</dd>
<dt>Is labeling more worth it?</dt><dd id="stop-signal">{esc(status.stop_signal)}</dd>
<dt>Queue strategy</dt><dd id="strategy">{esc(status.strategy)}</dd>
<dt>Training</dt><dd id="training">{esc(_training(status.training, status.encoder_version))}</dd>
<dt>Accuracy on the whole pool</dt><dd id="pool-accuracy">{_pool_accuracy(status.pool_accuracy)}</dd>
</dl>
<h2>Learning curve</h2>
<p>How often annotators kept the pre-selected class ({len(status.learning_curve)} points, each pooling the labels
that judged consecutive model versions). The queue serves the hardest tasks first, so this is lower than the
accuracy on the whole pool: read its trend.</p>
<img id="learning-curve" src="/projects/{project_id}/learning-curve.png" alt="learning curve" width="640" height="360">
<h2>Rounds</h2>
<table id="rounds"><tr><th>model version</th><th>finished</th><th>labels</th><th>strategy</th><th>training</th>
<th>batch</th><th>pre-label accuracy</th><th>agreement on queue head</th><th>seconds</th><th>status</th></tr>
{rows}
</table>
<p><a href="/projects/{project_id}/status">JSON</a> · <a href="/metrics">metrics</a></p>
</body></html>
"""


def _history_row(record: RoundRecord) -> str:
    esc = html.escape
    finished = time.strftime("%H:%M:%S", time.localtime(record.finished_at))
    seconds = sum(record.seconds(part) or 0.0 for part in TIMED_PARTS)
    detail = esc((record.error or "")[:120]) if not record.done else ""
    return (
        f'<tr class="{esc(record.status)}"><td>{esc(record.model_version or "-")}</td><td>{finished}</td>'
        f"<td>{record.n_labeled_tasks}</td><td>{esc(record.strategy or '')}</td>"
        f"<td>{esc(_training(record.training, record.encoder_version))}</td>"
        f"<td>{esc(_batch(record))}</td><td>{_percent(record.prelabel_accuracy)}</td>"
        f"<td>{_percent(record.head_agreement)}</td><td>{seconds:.1f}</td>"
        f"<td>{esc(record.status)} {detail}</td></tr>\n"
    )


def _training(training: str | None, encoder_version: str | None) -> str:
    """ "head", or "finetune, encoder ft2-20261202120000" once a fine-tuned encoder ranks the queue."""
    return f"{training or ''}, encoder {encoder_version}" if encoder_version else training or ""


def _batch(record: RoundRecord) -> str:
    """What the head of the queue is and why, e.g. "alfamix, kept" or "diversity, new"."""
    if not record.batch_kind:
        return ""
    return f"{record.batch_kind}, {record.batch_event or ''}"


def _pool_accuracy(estimate: dict[str, Any] | None) -> str:
    if not estimate:
        return "no audit tasks labeled yet (set ALFAMIX_AUDIT_FRACTION, e.g. 0.05, to have some)"
    return (
        f"{estimate['accuracy']:.0%} (95% interval {estimate['low']:.0%} to {estimate['high']:.0%}), "
        f"from the pre-labels of the latest {estimate['n_judged']} audit tasks, drawn at random from the pool"
    )


def _percent(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else "-"
