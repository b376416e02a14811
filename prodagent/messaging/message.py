"""A message as a handler sees it, and the publish request a handler makes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Message(NamedTuple):
    """Immutable; a named tuple because a consumer builds one per message, thousands a second."""

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
