"""Signed tokens for the links in subscriber email (confirm, manage, unsubscribe, dashboard).

Owns the token format and its checks: a token is ``<payload>.<signature>``, both URL-safe
base64 without padding. The payload is compact JSON with the purpose, the subject (what the
token acts on, e.g. a subscription id), issue and expiry times in whole seconds and a nonce;
the signature is HMAC-SHA256 over a version prefix and the encoded payload, compared in
constant time.

A token proves that *we* issued it for this purpose and subject and that it has not expired.
It does not prove that it has not been used before: single use (confirmation links, dashboard
logins) is enforced by storage, which records the claims' ``nonce`` when the token is consumed
and refuses a nonce it has already seen. Idempotent actions (unsubscribe, manage) may accept a
token many times until it expires.

Key rotation: tokens are signed with the current secret and verified with the current one,
then with each previous one (as itsdangerous does), so links already mailed keep working
after the secret is changed, until they expire.

Nothing here reads the clock: ``now`` is an argument.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from network.errors import LibhubError

PURPOSE_CONFIRM = "confirm"
PURPOSE_MANAGE = "manage"
PURPOSE_UNSUBSCRIBE = "unsubscribe"
PURPOSE_DASHBOARD = "dashboard"
PURPOSES: frozenset[str] = frozenset(
    {PURPOSE_CONFIRM, PURPOSE_MANAGE, PURPOSE_UNSUBSCRIBE, PURPOSE_DASHBOARD}
)

MIN_SECRET_BYTES = 16
# Tokens travel in URLs and in List-Unsubscribe headers (lines of at most 998 octets); anything
# longer was not made by sign_token with a sensible subject, and refusing it early bounds the
# work an attacker can cause.
MAX_TOKEN_CHARS = 512
# Tolerated clock difference between the instance that issued a token and the one checking it.
CLOCK_SKEW = timedelta(minutes=5)

_VERSION = 1
_SIGNING_PREFIX = b"libhub-token-v1."
_PURPOSE_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_B64_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class TokenError(LibhubError, ValueError):
    """A link token cannot be accepted; the message says why in words a person understands."""


class TokenExpired(TokenError):
    """The token was valid but its lifetime is over: the person needs a fresh link."""


class TokenInvalid(TokenError):
    """The token is malformed, was not signed with our secret, or is for another purpose."""


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says. Times are aware UTC, whole seconds."""

    subject: str
    purpose: str
    issued_at: datetime
    expires_at: datetime
    nonce: str


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64_RE.match(text):
        raise TokenInvalid("the link is damaged (unexpected characters in the token)")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise TokenInvalid("the link is damaged (the token is not valid base64)") from e
    # Only the one encoding we write: the unused low bits of the last character would
    # otherwise let several spellings of a token pass as the same one.
    if _b64encode(data) != text:
        raise TokenInvalid("the link is damaged (the token is not valid base64)")
    return data


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes):
        raise TypeError("the token secret must be bytes (encode the environment value)")
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"the token secret is {len(secret)} bytes; use at least {MIN_SECRET_BYTES} random "
            "bytes (for example `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )


def _check_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime (use datetime.now(UTC))")


def _signature(secret: bytes, payload_b64: str) -> bytes:
    return hmac.new(secret, _SIGNING_PREFIX + payload_b64.encode("ascii"), hashlib.sha256).digest()


def sign_token(
    secret: bytes,
    *,
    purpose: str,
    subject: str,
    now: datetime,
    ttl: timedelta,
    nonce: str | None = None,
) -> str:
    """A URL-safe token for ``purpose`` on ``subject``, valid from ``now`` for ``ttl``.

    Without a ``nonce`` a random one is drawn, so every token is distinct and can be marked
    used by storage. Raises ValueError for a short secret, a naive ``now``, a non-positive
    ``ttl`` or a malformed purpose.
    """
    _check_secret(secret)
    _check_aware(now)
    if not _PURPOSE_RE.match(purpose):
        raise ValueError(
            f"token purpose {purpose!r} must be lower-case letters, digits and '-' "
            f"(the app uses {', '.join(sorted(PURPOSES))})"
        )
    if not subject:
        raise ValueError("token subject must not be empty")
    ttl_seconds = int(ttl.total_seconds())
    if ttl_seconds <= 0:
        raise ValueError(f"token ttl must be at least one second, got {ttl}")
    if nonce is None:
        nonce = secrets.token_urlsafe(12)
    issued = int(now.timestamp())
    payload = {
        "v": _VERSION,
        "p": purpose,
        "s": subject,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "n": nonce,
    }
    payload_b64 = _b64encode(
        json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    )
    token = f"{payload_b64}.{_b64encode(_signature(secret, payload_b64))}"
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(
            f"token would be {len(token)} characters (limit {MAX_TOKEN_CHARS}): "
            "use a shorter subject, such as a database id"
        )
    return token


def verify_token(
    secret: bytes,
    token: str,
    *,
    purpose: str,
    now: datetime,
    previous: Sequence[bytes] = (),
) -> TokenClaims:
    """The claims of ``token`` if we signed it for ``purpose`` and it is valid at ``now``.

    A token signed with one of the ``previous`` secrets (rotated out) is accepted too.
    Raises TokenInvalid (malformed, bad signature, wrong purpose) or TokenExpired. The
    signature is checked before anything in the payload is trusted.
    """
    keys = (secret, *previous)
    for key in keys:
        _check_secret(key)
    _check_aware(now)
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenInvalid("the link is damaged (the token is empty or far too long)")
    payload_b64, sep, signature_b64 = token.strip().partition(".")
    if not sep or not payload_b64 or not signature_b64:
        raise TokenInvalid("the link is damaged (the token is incomplete; was it cut off?)")
    given = _b64decode(signature_b64)
    # Every key is tried (no early exit), so the time taken does not tell which one matched.
    matches = [hmac.compare_digest(given, _signature(key, payload_b64)) for key in keys]
    if not any(matches):
        raise TokenInvalid("the link was not issued by this service or has been altered")

    try:
        claims = json.loads(_b64decode(payload_b64).decode("utf-8"))
        version = claims["v"]
        token_purpose = claims["p"]
        subject = claims["s"]
        issued = claims["iat"]
        expires = claims["exp"]
        nonce = claims["n"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise TokenInvalid("the token payload is malformed") from e
    if version != _VERSION:
        raise TokenInvalid(f"the token has an unsupported version {version!r}")
    if not (
        isinstance(token_purpose, str)
        and isinstance(subject, str)
        and isinstance(nonce, str)
        and isinstance(issued, int)
        and isinstance(expires, int)
    ):
        raise TokenInvalid("the token payload has fields of the wrong type")
    if token_purpose != purpose:
        raise TokenInvalid(
            f"this link is for {token_purpose!r}, not {purpose!r}; use the link from the "
            "matching email"
        )

    issued_at = datetime.fromtimestamp(issued, UTC)
    expires_at = datetime.fromtimestamp(expires, UTC)
    if issued_at > now + CLOCK_SKEW:
        raise TokenInvalid("the token claims to be issued in the future; check the server clock")
    if now >= expires_at:
        raise TokenExpired(
            f"this {purpose} link expired at {expires_at:%Y-%m-%d %H:%M} UTC; request a new one"
        )
    return TokenClaims(
        subject=subject,
        purpose=token_purpose,
        issued_at=issued_at,
        expires_at=expires_at,
        nonce=nonce,
    )


# -- webhook tokens ----------------------------------------------------------------------------
# A hook's URL is given once to a calendar or form tool and used for years: its token does
# not expire and is the same every time it is printed (``<hook id>.<signature>``). Changing
# the secret changes every hook URL; a previous secret keeps the old ones working.

_HOOK_PREFIX = b"libhub-hook-v1."
_HOOK_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def hook_token(secret: bytes, hook_id: str) -> str:
    """The token in the URL of the webhook ``hook_id``."""
    _check_secret(secret)
    if not _HOOK_ID_RE.match(hook_id):
        raise ValueError(f"hook id {hook_id!r} must be lower-case letters, digits, - and _")
    mac = hmac.new(secret, _HOOK_PREFIX + hook_id.encode("ascii"), hashlib.sha256).digest()
    return f"{hook_id}.{_b64encode(mac)}"


def hook_of_token(token: str) -> str | None:
    """The hook id a token names (not verified), or None when it is malformed."""
    hook_id, sep, _ = token.partition(".")
    return hook_id if sep and _HOOK_ID_RE.match(hook_id) else None


def hook_token_valid(secret: bytes, token: str, *, previous: Sequence[bytes] = ()) -> bool:
    """Whether ``token`` is the URL token of the hook it names, under any of the keys."""
    hook_id = hook_of_token(token)
    if hook_id is None or len(token) > MAX_TOKEN_CHARS:
        return False
    # Every key is tried (no early exit), so the time taken does not tell which one matched.
    given = token.encode("utf-8")
    matches = [
        hmac.compare_digest(given, hook_token(key, hook_id).encode("ascii"))
        for key in (secret, *previous)
    ]
    return any(matches)
