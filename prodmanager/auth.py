"""Bearer tokens with roles. Only the SHA-256 of a token is stored; the token itself is shown
once, when created.

Roles: `requester` acts on its own requests, `operator` on everything, `agent` only pulls work
and reports (and only for agents registered with a token of the same name).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from prodmanager.db import queries as q
from prodmanager.db.engine import Database
from prodmanager.errors import Forbidden, InvalidInput, Unauthorized
from prodmanager.models import Role

TOKEN_PREFIX = "pm_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name and role."""

    name: str
    role: Role

    @property
    def is_operator(self) -> bool:
        return self.role == Role.OPERATOR


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def create_token(db: Database, name: str, role: str) -> str:
    """Store a new token for `name` with `role`; returns the token (the only time it is seen)."""
    try:
        role = Role(role)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {role!r}; expected one of: {allowed}") from None
    if not name or len(name) > 100:
        raise InvalidInput("token name must be 1 to 100 characters")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.transaction(
        lambda conn: q.insert_token(conn, name, role.value, hash_token(raw), time.time())
    )
    return raw


class Authenticator:
    """Turns an Authorization header into a Principal; caches good tokens for `cache_s`
    seconds (so a revocation takes effect within that time)."""

    def __init__(self, db: Database, cache_s: float = 5.0) -> None:
        self.db = db
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def authenticate(self, authorization: str | None) -> Principal:
        raw = _bearer(authorization)
        digest = hash_token(raw)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit and hit[0] > now:
            return hit[1]
        row = self.db.read(lambda conn: q.token_by_hash(conn, digest))
        if row is None:
            raise Unauthorized("unknown or revoked token")
        principal = Principal(row.name, Role(row.role))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self.cache_s, principal)
        return principal


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'")
    return value.strip()


def require_role(principal: Principal, *roles: Role) -> None:
    """Forbidden unless the caller has one of `roles` (operators may do anything)."""
    if principal.is_operator or principal.role in roles:
        return
    wanted = " or ".join(r.value for r in roles)
    raise Forbidden(
        f"token '{principal.name}' has role {principal.role.value}; this needs {wanted}"
    )


def require_owner(principal: Principal, owner: str) -> None:
    """Forbidden unless the caller owns the request or is an operator."""
    require_role(principal, Role.REQUESTER)
    if not principal.is_operator and principal.name != owner:
        raise Forbidden(
            f"request belongs to '{owner}'; token '{principal.name}' may only act on its own"
        )
