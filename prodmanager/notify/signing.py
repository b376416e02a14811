"""Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{ts}.{body}">`
with a `whsec_`-prefixed base64 secret per endpoint.

An endpoint without a secret of its own in the configuration gets one derived from the
operator's signing key and its URL, so a requester's webhook needs no secret in the request
document (`prodmanager notifications secret URL` prints it for the endpoint's owner)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Mapping

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(os.urandom(32)).decode()


def secret_key(secret: str) -> bytes:
    """The key bytes of a `whsec_` secret; ValueError unless it is base64 of 24 to 64 bytes."""
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except ValueError:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret holds 24 to 64 bytes")
    return key


def derive_secret(signing_key: str, url: str) -> str:
    digest = hmac.new(secret_key(signing_key), url.encode(), hashlib.sha256).digest()
    return PREFIX + base64.b64encode(digest).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
        "content-type": "application/json",
    }


def verify(
    secret: str, found: Mapping[str, str], body: bytes, tolerance_s: float = 300.0
) -> bool:
    """True when one of the space-separated v1 signatures matches and the timestamp is fresh."""
    try:
        msg_id, ts = found["webhook-id"], int(found["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    expected = sign(secret, msg_id, ts, body)
    return any(
        hmac.compare_digest(expected, candidate)
        for candidate in found.get("webhook-signature", "").split()
    )
