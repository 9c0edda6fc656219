"""The project status as an HTML page for owners: server-rendered, no build step, refreshes itself."""

from __future__ import annotations

import html
import time
from typing import Any

from backend.learning_curve import CurvePoint

REFRESH_SECONDS = 5
HISTORY_ROWS = 20


def render_status_page(project_id: int, status: dict[str, Any], points: list[CurvePoint]) -> str:
    esc = html.escape
    stage = status.get("stage")
    if stage:
        done, total = stage.get("done"), stage.get("total")
        progress = f" {done:,}/{total:,}" if done is not None and total else ""
        running = f"<b>{esc(stage['name'])}</b>{progress}"
        if done is not None and total:
            running += f' <progress value="{done}" max="{total}"></progress>'
    else:
        running = "idle"
    pending = [name.removesuffix("_pending") for name, on in status["jobs"].items() if on and name != "running"]
    live = status.get("live_model_version") or "none yet"
    since = status.get("live_since")
    since_text = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if since else ""
    counts = status.get("counts") or {}
    rows = "".join(_history_row(r) for r in reversed(status["rounds"][-HISTORY_ROWS:]))
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
<dt>Is labeling more worth it?</dt><dd id="stop-signal">{esc(status.get("stop_signal") or "")}</dd>
<dt>Queue strategy</dt><dd id="strategy">{esc(status.get("strategy") or "")}</dd>
<dt>Accuracy on the whole pool</dt><dd id="pool-accuracy">{_pool_accuracy(status.get("pool_accuracy"))}</dd>
</dl>
<h2>Learning curve</h2>
<p>How often annotators kept the pre-selected class ({len(points)} points, each pooling the labels that judged
consecutive model versions). The queue serves the hardest tasks first, so this is lower than the accuracy on the
whole pool: read its trend.</p>
<img id="learning-curve" src="/projects/{project_id}/learning-curve.png" alt="learning curve" width="640" height="360">
<h2>Rounds</h2>
<table id="rounds"><tr><th>model version</th><th>finished</th><th>labels</th><th>strategy</th><th>batch</th>
<th>pre-label accuracy</th><th>agreement on queue head</th><th>seconds</th><th>status</th></tr>
{rows}
</table>
<p><a href="/projects/{project_id}/status">JSON</a> · <a href="/metrics">metrics</a></p>
</body></html>
"""


def _history_row(record: dict[str, Any]) -> str:
    esc = html.escape
    finished = time.strftime("%H:%M:%S", time.localtime(record.get("finished_at") or 0))
    seconds = sum(v for k, v in record.items() if k.endswith("_seconds") and isinstance(v, int | float))
    status = record.get("status", "")
    detail = esc(str(record.get("error", ""))[:120]) if status == "failed" else ""
    return (
        f'<tr class="{esc(status)}"><td>{esc(str(record.get("model_version") or "-"))}</td><td>{finished}</td>'
        f"<td>{record.get('n_labeled_tasks', '')}</td><td>{esc(str(record.get('strategy', '')))}</td>"
        f"<td>{esc(_batch(record))}</td><td>{_percent(record.get('prelabel_accuracy'))}</td>"
        f"<td>{_percent(record.get('head_agreement'))}</td><td>{seconds:.1f}</td>"
        f"<td>{esc(status)} {detail}</td></tr>\n"
    )


def _batch(record: dict[str, Any]) -> str:
    """What the head of the queue is and why, e.g. "alfamix, kept" or "diversity, new"."""
    if not record.get("batch_kind"):
        return ""
    return f"{record['batch_kind']}, {record.get('batch_event', '')}"


def _pool_accuracy(estimate: dict[str, Any] | None) -> str:
    if not estimate:
        return "no audit tasks labeled yet (set ALFAMIX_AUDIT_FRACTION, e.g. 0.05, to have some)"
    return (
        f"{estimate['accuracy']:.0%} (95% interval {estimate['low']:.0%} to {estimate['high']:.0%}), "
        f"from the pre-labels of the latest {estimate['n_judged']} audit tasks, drawn at random from the pool"
    )


def _percent(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else "-"
