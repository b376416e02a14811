"""Delivering one message: e-mail over SMTP and Standard Webhooks over HTTP. Called with no
database transaction open; each returns an Outcome the sender records."""

from __future__ import annotations

import smtplib
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

import httpx

from prodmanager.notify import signing
from prodmanager.notify.config import Smtp

THROTTLED = frozenset({429, 502, 504})


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    error: str | None = None
    gone: bool = False  # 410: never try this endpoint for this message again
    retry_after_s: float | None = None
    duration_s: float = 0.0


def send_email(smtp: Smtp, to: str, subject: str, body: str, msg_id: str) -> Outcome:
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{msg_id}@prodmanager>"
    message.set_content(body)
    started = time.monotonic()
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
            if smtp.starttls:
                client.starttls()
            if smtp.username and smtp.password_file:
                client.login(smtp.username, smtp.password_file.read_text().strip())
            client.send_message(message)
    except smtplib.SMTPResponseException as exc:
        return Outcome(False, exc.smtp_code, _text(exc), duration_s=time.monotonic() - started)
    except (OSError, smtplib.SMTPException) as exc:
        return Outcome(False, None, _text(exc), duration_s=time.monotonic() - started)
    return Outcome(True, 250, duration_s=time.monotonic() - started)


def send_webhook(
    client: httpx.Client, url: str, secret: str | None, msg_id: str, body: bytes
) -> Outcome:
    if secret is None:
        return Outcome(False, None, "no secret for this endpoint (set signing_key or webhook_secrets)")
    started = time.monotonic()
    try:
        response = client.post(url, content=body, headers=signing.headers(secret, msg_id, body))
    except httpx.HTTPError as exc:
        return Outcome(False, None, _text(exc), duration_s=time.monotonic() - started)
    took = time.monotonic() - started
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(True, code, duration_s=took)
    retry_after = _retry_after(response) if code in THROTTLED else None
    return Outcome(False, code, f"HTTP {code}", gone=code == 410, retry_after_s=retry_after, duration_s=took)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _text(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"[:500]
