"""Bearer tokens with roles. Only the SHA-256 of a token is stored; the token itself is shown
once, when created.

Roles: `requester` sees and acts on its own requests only (another's request answers 404, as if
it did not exist), `operator` on everything, `agent` only pulls work and reports (and only for
agents registered with a token of the same name). A token may also carry `allow_commands`: the
permission to submit arbitrary `command` payloads (off by default; operators have it by role).

Authentication is one indexed read by the token's hash. With `cache_s` > 0 good tokens are
cached that long (a revoked token then works until its entry expires); the default is 0: no
cache, a revocation takes effect at the next call.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass

from prodmanager.db import queries as q
from prodmanager.db.engine import Database
from prodmanager.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from prodmanager.models import TOKEN_NAME_PATTERN, Role

TOKEN_PREFIX = "pm_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name and role, and whether it may submit commands."""

    name: str
    role: Role
    allow_commands: bool = False

    @property
    def may_run_commands(self) -> bool:
        return self.allow_commands or self.is_operator

    @property
    def is_operator(self) -> bool:
        return self.role == Role.OPERATOR


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def create_token(db: Database, name: str, role: str, allow_commands: bool = False) -> str:
    """Store a new token for `name` with `role`; returns the token (the only time it is seen)."""
    try:
        role = Role(role)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {role!r}; expected one of: {allowed}") from None
    if not re.fullmatch(TOKEN_NAME_PATTERN, name or ""):
        raise InvalidInput("token name must be 1 to 100 characters of letters, digits and _ . @ -")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.transaction(
        lambda conn: q.insert_token(
            conn, name, role.value, hash_token(raw), time.time(), allow_commands
        )
    )
    return raw


class Authenticator:
    """Turns an Authorization header into a Principal; with `cache_s` > 0 caches good tokens
    for that many seconds (so a revocation takes effect within that time)."""

    def __init__(self, db: Database, cache_s: float = 0.0) -> None:
        self.db = db
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def authenticate(self, authorization: str | None) -> Principal:
        raw = _bearer(authorization)
        digest = hash_token(raw)
        now = time.monotonic()
        if self.cache_s > 0:
            with self._lock:
                hit = self._cache.get(digest)
            if hit and hit[0] > now:
                return hit[1]
        row = self.db.read(lambda conn: q.token_by_hash(conn, digest))
        if row is None:
            raise Unauthorized("unknown or revoked token")
        principal = Principal(row.name, Role(row.role), bool(row.allow_commands))
        if self.cache_s <= 0:
            return principal
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
    if len(value) > 200:
        raise Unauthorized("unknown or revoked token")
    return value.strip()


def require_role(principal: Principal, *roles: Role) -> None:
    """Forbidden unless the caller has one of `roles` (operators may do anything)."""
    if principal.is_operator or principal.role in roles:
        return
    wanted = " or ".join(r.value for r in roles)
    raise Forbidden(
        f"token '{principal.name}' has role {principal.role.value}; this needs {wanted}"
    )


def may_see(principal: Principal, owner: str) -> bool:
    """Operators see every request; a requester only its own."""
    return principal.is_operator or (principal.role == Role.REQUESTER and principal.name == owner)


def require_visible(principal: Principal, request_id: int, owner: str) -> None:
    """Forbidden for roles that never see requests; NotFound (as for an unknown id, so that
    existence does not leak) for another requester's request."""
    require_role(principal, Role.REQUESTER)
    if not may_see(principal, owner):
        raise NotFound(f"no request {request_id}")
