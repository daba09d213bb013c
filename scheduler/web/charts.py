"""Inline SVG charts for the dashboard. Pure functions: data in, escaped markup out.

No script and no style attribute (the Content-Security-Policy forbids inline styles):
colours are presentation attributes or classes from the dashboard's stylesheet."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

STATUS_COLOURS = {
    "success": "#2e9e5b",
    "failed": "#d64545",
    "timeout": "#e8772e",
    "lost": "#8b1e1e",
    "revoked": "#a07ab8",
    "missed": "#c9a227",
    "skipped": "#b3b3b3",
    "running": "#2f80ed",
    "retrying": "#b84fd6",
    "queued": "#7fb2f0",
    "pending": "#9db4cc",
}
STACK_ORDER = tuple(STATUS_COLOURS)


def colour(status: str | None) -> str:
    return STATUS_COLOURS.get(status or "", "#999999")


def _svg(width: int, height: int, body: str, label: str, css: str = "chart") -> Markup:
    return Markup(
        f'<svg class="{css}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}">{body}</svg>'
    )


def sparkline(runs: Sequence[dict[str, Any]], *, width: int = 150, height: int = 24) -> Markup:
    """The last runs oldest to newest: bar height is the duration, colour the outcome. One
    path per outcome (not one element per run), so a page of 50 rows stays small."""
    ordered = list(reversed(runs))
    if not ordered:
        return Markup('<span class="muted">no runs</span>')
    longest = max((r["duration_ms"] or 0) for r in ordered) or 1
    step = width / max(len(ordered), 50)
    bar = max(step - 1, 1)
    paths: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for i, run in enumerate(ordered):
        h = max(2.0, (run["duration_ms"] or 0) / longest * (height - 2))
        paths.setdefault(run["status"], []).append(
            f"M{i * step:.1f} {height - h:.1f}h{bar:.1f}v{h:.1f}h-{bar:.1f}z"
        )
        counts[run["status"]] = counts.get(run["status"], 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    body = f"<title>last {len(ordered)} runs: {escape(summary)}; longest {longest} ms</title>"
    body += "".join(
        f'<path d="{"".join(parts)}" fill="{colour(status)}"/>' for status, parts in paths.items()
    )
    return _svg(width, height, body, "last runs: duration and outcome", "spark")


def runs_per_hour(
    rows: Sequence[dict[str, Any]], *, now: datetime, hours: int = 24, width: int = 720,
    height: int = 160,
) -> Markup:  # fmt: skip
    """Stacked bars of runs per hour by status for the last `hours` hours."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    buckets: list[dict[str, int]] = [{} for _ in range(hours)]
    for row in rows:
        index = int((row["hour"] - start).total_seconds() // 3600)
        if 0 <= index < hours:
            buckets[index][row["status"]] = buckets[index].get(row["status"], 0) + row["runs"]
    top = max((sum(b.values()) for b in buckets), default=0) or 1
    plot_h = height - 20
    step = width / hours
    parts = []
    for i, bucket in enumerate(buckets):
        y = float(plot_h)
        hour = start + timedelta(hours=i)
        for status in STACK_ORDER:
            n = bucket.get(status, 0)
            if not n:
                continue
            h = n / top * (plot_h - 4)
            y -= h
            parts.append(
                f'<rect x="{i * step + 1:.1f}" y="{y:.1f}" width="{step - 2:.1f}" height="{h:.1f}" '
                f'fill="{colour(status)}"><title>{hour:%H:00} UTC: {n} {escape(status)}</title></rect>'
            )
        if i % 3 == 0:
            parts.append(
                f'<text x="{i * step + 2:.1f}" y="{height - 5}" class="axis">{hour:%H:00}</text>'
            )
    parts.append(f'<text x="{width - 4}" y="12" class="axis" text-anchor="end">max {top}/h</text>')
    return _svg(width, height, "".join(parts), "runs per hour by status, last 24 hours")


def history(runs: Sequence[dict[str, Any]], *, width: int = 720, height: int = 140) -> Markup:
    """A schedule's runs over time, oldest left: one bar per run (height: duration)."""
    ordered = list(reversed(runs))
    if not ordered:
        return Markup('<p class="muted">No runs yet.</p>')
    longest = max((r["duration_ms"] or 0) for r in ordered) or 1
    plot_h = height - 20
    step = width / max(len(ordered), 1)
    parts = []
    for i, run in enumerate(ordered):
        h = max(2.0, (run["duration_ms"] or 0) / longest * (plot_h - 4))
        when = run["created_at"].strftime("%Y-%m-%d %H:%M:%S")
        title = f"{when} UTC {run['status']} {run['duration_ms'] if run['duration_ms'] is not None else '-'} ms"
        parts.append(
            f'<rect x="{i * step:.1f}" y="{plot_h - h:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="{colour(run["status"])}"><title>{escape(title)}</title></rect>'
        )
    first = ordered[0]["created_at"].strftime("%Y-%m-%d %H:%M")
    last = ordered[-1]["created_at"].strftime("%Y-%m-%d %H:%M")
    parts.append(f'<text x="2" y="{height - 4}" class="axis">{first} UTC</text>')
    parts.append(
        f'<text x="{width - 2}" y="{height - 4}" class="axis" text-anchor="end">{last} UTC</text>'
    )
    parts.append(
        f'<text x="{width - 2}" y="12" class="axis" text-anchor="end">max {longest} ms</text>'
    )
    return _svg(width, height, "".join(parts), "history: duration and outcome of each run")


def timeline(run: dict[str, Any], *, now: datetime, width: int = 720, height: int = 50) -> Markup:
    """Created, queued, started, completed on one time axis."""
    points = [
        (label, run.get(key))
        for label, key in (
            ("created", "created_at"),
            ("queued", "queued_at"),
            ("started", "started_at"),
            ("completed", "completed_at"),
        )
    ]
    known = [(label, when) for label, when in points if when is not None]
    if not known:
        return Markup("")
    begin = known[0][1]
    end = run.get("completed_at") or now
    span = max((end - begin).total_seconds(), 0.001)
    parts = [f'<line x1="10" y1="20" x2="{width - 10}" y2="20" stroke="#888" />']
    for i, (label, when) in enumerate(known):
        x = 10 + (when - begin).total_seconds() / span * (width - 20)
        anchor = "start" if i == 0 else "end" if i == len(known) - 1 else "middle"
        parts.append(f'<circle cx="{x:.1f}" cy="20" r="5" fill="{colour(run["status"])}" />')
        parts.append(
            f'<text x="{x:.1f}" y="{40 + (i % 2) * 10}" class="axis" text-anchor="{anchor}">'
            f"{label} +{(when - begin).total_seconds():.3f}s</text>"
        )
    return _svg(width, height + 10, "".join(parts), "timeline of the run")
