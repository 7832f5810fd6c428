"""Passwords, secrets, roles and permissions, CSRF, and what an upload may be.

One permission table: a route names the permission it needs and `allowed(role, perm)`
decides; no view compares roles itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PERMISSIONS: dict[str, frozenset[str]] = {
    "cockpit.view": frozenset({"officer", "supervisor", "operator", "admin"}),
    "cases.view": frozenset({"officer", "supervisor", "operator"}),
    "cases.decide": frozenset({"officer", "supervisor"}),
    "cases.second_signature": frozenset({"supervisor"}),
    "cases.export": frozenset({"officer", "supervisor"}),
    "users.manage": frozenset({"admin"}),
    "account.own": frozenset({"officer", "supervisor", "operator", "admin"}),
}

_hasher = PasswordHasher()


def allowed(role: str, permission: str) -> bool:
    """Whether a role holds a permission (unknown permissions are held by no one)."""
    return role in PERMISSIONS.get(permission, frozenset())


def hash_password(password: str) -> str:
    """argon2id hash of a password; refuses passwords shorter than 10 characters."""
    if len(password) < 10:
        raise ValueError("a password needs at least 10 characters")
    return _hasher.hash(password)


def check_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# A real hash to check against when the user name is unknown, so both cases take as long.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def check_unknown_user(password: str) -> bool:
    check_password(_DUMMY_HASH, password)
    return False


def new_secret() -> str:
    """A random, unguessable token (256 bits) for a cookie, an API token or a party link."""
    return secrets.token_urlsafe(32)


def secret_hash(token: str) -> str:
    """What the database keeps of a secret."""
    return hashlib.sha256(token.encode()).hexdigest()


# -- CSRF ---------------------------------------------------------------------------------

CSRF_COOKIE = "cw_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = b"x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CSRFMiddleware:
    """Refuse every state-changing request whose token does not match its cookie.

    Double-submit: the `cw_csrf` cookie (SameSite=Strict) holds a random value that each
    form repeats in a hidden field (or a script in the X-CSRF-Token header); another site
    can neither read nor set it. Requests signed with an API token (Authorization:
    Bearer, no cookies) need none. The body is read once here and replayed to the app.
    """

    def __init__(self, app, max_body: int):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in UNSAFE_METHODS:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if headers.get(b"authorization", b"").lower().startswith(b"bearer "):
            return await self.app(scope, receive, send)
        cookie = _cookie(headers.get(b"cookie", b"").decode("latin-1"), CSRF_COOKIE)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return await _refuse(send, 413, "request too large")
        sent = headers.get(CSRF_HEADER, b"").decode() or await _form_token(scope, body)
        if not cookie or not sent or not hmac.compare_digest(cookie, sent):
            return await _refuse(send, 403, "CSRF check failed: reload the page and try again")
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _form_token(scope, body: bytes) -> str | None:
    """The CSRF field of a urlencoded or multipart form body, parsed by Starlette."""
    from starlette.requests import Request

    async def once():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, once).form()
    except Exception:  # a malformed body carries no token; the app would refuse it anyway
        return None
    try:
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    finally:
        await form.close()


async def _refuse(send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# -- uploads ------------------------------------------------------------------------------

IMAGE_TYPES = {b"\xff\xd8\xff": ("image/jpeg", ".jpg"), b"\x89PNG\r\n\x1a\n": ("image/png", ".png")}


class UploadRefused(ValueError):
    """An upload that is not accepted; the message says why, for the person uploading."""


def check_image(data: bytes, filename: str, max_bytes: int) -> tuple[str, str]:
    """(content type, suffix) of an acceptable photo; UploadRefused otherwise.

    The bytes decide, not the name or the browser's claim: the file must start like a
    JPEG or PNG and decode as one."""
    if not data:
        raise UploadRefused(f"{filename or 'the file'} is empty")
    if len(data) > max_bytes:
        raise UploadRefused(f"{filename} is {len(data):,} bytes; the limit is {max_bytes:,} bytes")
    kind = next((v for magic, v in IMAGE_TYPES.items() if data.startswith(magic)), None)
    if kind is None:
        raise UploadRefused(f"{filename} is not a JPEG or PNG photo (its content says otherwise"
                            " whatever its name); please send a photo")
    import cv2
    import numpy as np

    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
        raise UploadRefused(f"{filename} starts like a photo but cannot be read as one (damaged?)")
    return kind
