"""A message as a handler sees it, and the publish request a handler makes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    id: int
    msg_type: str
    payload: dict[str, Any]
    priority: int
    source: str | None
    created_at: float
    deliveries: int


@dataclass
class Outgoing:
    """A message to publish when the current transaction commits."""

    msg_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0
    priority: int = 0
