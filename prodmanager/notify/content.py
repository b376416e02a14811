"""What a notification says: a plain-text e-mail (subject and body) and a thin JSON webhook body,
both rendered from the facts snapshot taken with the event, so every retry sends the same."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

SUBJECTS = {
    "completed": "completed",
    "failed": "FAILED",
    "aborted": "aborted",
    "attention": "needs attention",
}


def link(facts: dict[str, Any], monitor_url: str | None) -> str | None:
    if not monitor_url:
        return None
    return f"{monitor_url.rstrip('/')}/requests/{facts['request']['id']}"


def subject(facts: dict[str, Any]) -> str:
    r = facts["request"]
    return f"[prodmanager] request {r['name']} (#{r['id']}) {SUBJECTS.get(facts['event'], facts['event'])}"


def email_body(facts: dict[str, Any], monitor_url: str | None) -> str:
    r, c = facts["request"], facts["counters"]
    out = facts.get("output") or {}
    lines = [
        f"Request {r['name']} (#{r['id']}, {r['kind']}, owner {r['owner']}) is {facts['state']}.",
        f"Why: {facts['why']}",
        f"At: {datetime.fromtimestamp(facts['at'], UTC):%Y-%m-%d %H:%M:%SZ}",
        "",
        "Events:",
        f"  requested {c['events_requested']:,}",
        f"  produced  {c['events_produced']:,}",
        f"  merged    {c['events_merged']:,}",
        f"  failed    {c['events_failed']:,}",
        f"  running   {c['events_in_progress']:,}",
        "",
        f"Output dataset: {out.get('dataset', '-')} (tier {out.get('tier', '-')})",
        f"  unmerged files {c['files_unmerged']:,}, {_size(c['bytes_produced'])}",
        f"  merged files   {c['files_merged']:,}, {_size(c['bytes_merged'])}",
        "",
        "Allocations: " + _counts(c["allocations"]),
    ]
    if c.get("jobs"):
        lines.append("Jobs (as agents reported): " + _counts(c["jobs"]))
    if facts.get("failures"):
        lines += ["", "Failures by reason:"]
        lines += [f"  {n:>6}  {reason[:200]}" for reason, n in facts["failures"]]
    lines += ["", "To act:", f"  {facts['act']}"]
    url = link(facts, monitor_url)
    if url:
        lines += ["", f"Monitor: {url}"]
    return "\n".join(lines) + "\n"


def webhook_body(facts: dict[str, Any], msg_id: str, monitor_url: str | None) -> bytes:
    """Standard Webhooks' envelope: type, timestamp, data (thin: counts and links, no spec)."""
    c = facts["counters"]
    data = {
        "request_id": facts["request"]["id"],
        "request_name": facts["request"]["name"],
        "owner": facts["request"]["owner"],
        "state": facts["state"],
        "why": facts["why"],
        "events": {
            k: c[f"events_{k}"]
            for k in ("requested", "produced", "merged", "failed", "in_progress")
        },
        "output": facts.get("output") or {},
        "bytes": {"produced": c["bytes_produced"], "merged": c["bytes_merged"]},
        "failures": [{"reason": r, "count": n} for r, n in facts.get("failures", [])],
        "act": facts["act"],
        "link": link(facts, monitor_url),
    }
    envelope = {
        "type": f"request.{facts['event']}",
        "timestamp": datetime.fromtimestamp(facts["at"], UTC).isoformat(),
        "id": msg_id,
        "data": data,
    }
    return json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode()


def _counts(counts: dict[str, int]) -> str:
    shown = [f"{k} {v:,}" for k, v in sorted(counts.items()) if v]
    return ", ".join(shown) or "none"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"
