"""The web monitor's sign-in: a bearer token (`prodmanager token create`) becomes a session
cookie, and state-changing forms carry a CSRF token derived from it.

The cookie holds the token itself (HttpOnly, so scripts cannot read it; SameSite=Strict, so
other sites' pages never send it; Secure under TLS). Each request authenticates it exactly as
an Authorization header (`auth.Authenticator`), so revoking the token ends the session at the
next click. The CSRF token is an HMAC of a fixed label keyed by the session token: a page of
another origin cannot compute it, and it needs no server-side state.
"""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import SimpleCookie

COOKIE = "pm_session"
CSRF_FIELD = "csrf"
MAX_AGE_S = 12 * 3600


def authorization_from_cookie(cookie_header: str | None) -> str | None:
    """An Authorization header value for the session cookie, or None without one."""
    token = session_token(cookie_header)
    return f"Bearer {token}" if token else None


def session_token(cookie_header: str | None) -> str | None:
    if not cookie_header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie_header)
    except Exception:  # a malformed Cookie header is no session
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel and morsel.value else None


def csrf_token(session: str) -> str:
    return hmac.new(session.encode(), b"prodmanager-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session: str | None, sent: str | None) -> bool:
    return bool(session and sent) and hmac.compare_digest(csrf_token(session or ""), sent or "")
