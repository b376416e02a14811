"""The notification sender's configuration (a YAML file given to `prodmanager notify`):
SMTP, operator-wide rules by event and request owner, secrets, retry schedule, repeat window,
and the "needs attention" thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from prodmanager.notify.signing import secret_key
from prodrequest.spec import NOTIFY_EVENTS, EmailAddress, NotifyEvent, WebhookUrl

# Standard Webhooks' schedule: about three days of attempts.
STANDARD_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


def _secret(value: str) -> str:
    secret_key(value)
    return value


Secret = Annotated[str, AfterValidator(_secret)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Smtp(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    sender: EmailAddress = "prodmanager@localhost"
    starttls: bool = False
    username: str | None = None
    password_file: Path | None = None
    timeout_s: float = Field(30.0, gt=0, le=300)


class Rule(_Strict):
    """Send `events` of the requests of `owners` (every owner when empty) to these recipients."""

    events: list[NotifyEvent] = Field(default_factory=lambda: list(NOTIFY_EVENTS))
    owners: list[str] = Field(default_factory=list)
    email: list[EmailAddress] = Field(default_factory=list)
    webhooks: list[WebhookUrl] = Field(default_factory=list)
    owner: bool = False  # also mail the request's owner, at its address in `owner_email`

    def matches(self, event: str, owner: str) -> bool:
        return event in self.events and (not self.owners or owner in self.owners)


class NotifyConfig(_Strict):
    smtp: Smtp = Field(default_factory=Smtp)
    rules: list[Rule] = Field(default_factory=list)
    owner_email: dict[str, EmailAddress] = Field(default_factory=dict)  # token name -> address
    monitor_url: str | None = None  # links point at {monitor_url}/requests/{id}
    signing_key: Secret | None = None  # derives the secret of endpoints not listed below
    webhook_secrets: dict[str, Secret] = Field(default_factory=dict)
    repeat_window_s: float = Field(86_400.0, ge=0)
    retry_schedule_s: list[float] = Field(
        default_factory=lambda: list(STANDARD_SCHEDULE), min_length=1, max_length=50
    )
    jitter: float = Field(0.2, ge=0, lt=1)
    stall_after_s: float = Field(6 * 3600.0, gt=0)  # "no progress" for this long: attention
    poll_s: float = Field(5.0, gt=0)
    scan_every_s: float = Field(60.0, gt=0)
    http_timeout_s: float = Field(15.0, gt=0, le=120)
    claim_s: float = Field(120.0, gt=0)  # a delivery being attempted is held this long

    @classmethod
    def load(cls, path: Path | None) -> NotifyConfig:
        if path is None:
            return cls()
        return cls.model_validate(yaml.safe_load(path.read_text()) or {})

    def webhook_secret(self, url: str) -> str | None:
        from prodmanager.notify.signing import derive_secret

        if url in self.webhook_secrets:
            return self.webhook_secrets[url]
        return derive_secret(self.signing_key, url) if self.signing_key else None
