"""Signed link tokens: round trip, expiry, tampering, wrong purpose, wrong secret."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from network.errors import LibhubError
from network.tokens import (
    PURPOSES,
    TokenClaims,
    TokenError,
    TokenExpired,
    TokenInvalid,
    sign_token,
    verify_token,
)

SECRET = b"0123456789abcdef-test-secret"
OTHER_SECRET = b"fedcba9876543210-other-secret"
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _sign(**kw: object) -> str:
    args: dict[str, object] = {"purpose": "confirm", "subject": "sub:42", "now": T0, "ttl": 3 * DAY}
    args.update(kw)
    return sign_token(SECRET, **args)  # type: ignore[arg-type]


def test_round_trip_gives_back_the_claims() -> None:
    token = _sign(nonce="n-1")
    claims = verify_token(SECRET, token, purpose="confirm", now=T0 + DAY)
    assert claims == TokenClaims(
        subject="sub:42",
        purpose="confirm",
        issued_at=T0,
        expires_at=T0 + 3 * DAY,
        nonce="n-1",
    )


def test_token_is_url_safe_without_padding() -> None:
    token = _sign(subject="ünïcode subject/with+odd=chars?&")
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    claims = verify_token(SECRET, token, purpose="confirm", now=T0)
    assert claims.subject == "ünïcode subject/with+odd=chars?&"


def test_random_nonce_makes_each_token_distinct_for_single_use() -> None:
    first, second = _sign(), _sign()
    assert first != second
    nonces = {verify_token(SECRET, t, purpose="confirm", now=T0).nonce for t in (first, second)}
    assert len(nonces) == 2 and all(nonces)


def test_all_app_purposes_round_trip() -> None:
    for purpose in sorted(PURPOSES):
        token = _sign(purpose=purpose)
        assert verify_token(SECRET, token, purpose=purpose, now=T0).purpose == purpose


def test_non_utc_now_is_accepted_and_claims_are_utc() -> None:
    from zoneinfo import ZoneInfo

    berlin = T0.astimezone(ZoneInfo("Europe/Berlin"))
    token = _sign(now=berlin)
    claims = verify_token(SECRET, token, purpose="confirm", now=berlin)
    assert claims.issued_at == T0 and claims.issued_at.tzinfo is UTC


def test_expired_token_says_when_it_expired() -> None:
    token = _sign(ttl=DAY)
    assert verify_token(SECRET, token, purpose="confirm", now=T0 + DAY - timedelta(seconds=1))
    with pytest.raises(TokenExpired, match="expired at 2025-03-02 12:00 UTC"):
        verify_token(SECRET, token, purpose="confirm", now=T0 + DAY)


def test_wrong_purpose_is_invalid_even_with_a_good_signature() -> None:
    token = _sign(purpose="unsubscribe")
    with pytest.raises(TokenInvalid, match="for 'unsubscribe', not 'confirm'"):
        verify_token(SECRET, token, purpose="confirm", now=T0)


def test_other_secret_is_rejected() -> None:
    token = _sign()
    with pytest.raises(TokenInvalid, match="not issued by this service"):
        verify_token(OTHER_SECRET, token, purpose="confirm", now=T0)


def test_tampered_payload_is_rejected_before_it_is_read() -> None:
    token = _sign(subject="sub:42")
    payload_b64, signature = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)))
    payload["s"] = "sub:43"
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenInvalid, match="altered"):
        verify_token(SECRET, f"{forged}.{signature}", purpose="confirm", now=T0)


def test_flipped_signature_character_is_rejected() -> None:
    token = _sign()
    last = token[-1]
    flipped = token[:-1] + ("A" if last != "A" else "B")
    with pytest.raises(TokenInvalid):
        verify_token(SECRET, flipped, purpose="confirm", now=T0)


@pytest.mark.parametrize(
    "token",
    ["", "no-dot-here", ".sig", "payload.", "a.b.c", "pay load.sig", "x" * 5000, "abc.!!!"],
)
def test_malformed_tokens_are_invalid(token: str) -> None:
    with pytest.raises(TokenInvalid):
        verify_token(SECRET, token, purpose="confirm", now=T0)


def test_token_from_the_future_is_invalid() -> None:
    token = _sign(now=T0 + timedelta(hours=1))
    # Within the tolerated clock skew it is fine...
    assert verify_token(SECRET, _sign(now=T0 + timedelta(minutes=4)), purpose="confirm", now=T0)
    with pytest.raises(TokenInvalid, match="future"):
        verify_token(SECRET, token, purpose="confirm", now=T0)


def test_errors_belong_to_the_service_tree_and_are_value_errors() -> None:
    assert issubclass(TokenExpired, TokenError) and issubclass(TokenInvalid, TokenError)
    assert issubclass(TokenError, ValueError) and issubclass(TokenError, LibhubError)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"ttl": timedelta(0)}, "ttl"),
        ({"purpose": "Bad Purpose"}, "purpose"),
        ({"subject": ""}, "subject"),
        ({"now": datetime(2025, 1, 1)}, "timezone-aware"),
        ({"subject": "s" * 400}, "shorter subject"),
    ],
)
def test_bad_arguments_to_sign_are_refused(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _sign(**kw)


def test_short_secret_is_refused_with_advice() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        sign_token(b"short", purpose="confirm", subject="s", now=T0, ttl=DAY)
    with pytest.raises(ValueError, match="at least 16"):
        verify_token(b"short", _sign(), purpose="confirm", now=T0)


def test_every_other_spelling_of_the_last_character_is_rejected() -> None:
    """Base64 leaves the last character's low bits unused: only the canonical spelling of a
    token is accepted, whatever its random nonce happens to make that character."""
    import string

    for _ in range(20):
        token = _sign()
        alphabet = string.ascii_letters + string.digits + "-_"
        for other in alphabet.replace(token[-1], ""):
            with pytest.raises(TokenInvalid):
                verify_token(SECRET, token[:-1] + other, purpose="confirm", now=T0)
        assert verify_token(SECRET, token, purpose="confirm", now=T0)


def test_after_rotation_a_token_of_a_previous_secret_still_verifies() -> None:
    old = _sign()
    new = sign_token(OTHER_SECRET, purpose="confirm", subject="sub:42", now=T0, ttl=DAY)
    rotated = {"purpose": "confirm", "now": T0 + timedelta(hours=1), "previous": [SECRET]}
    assert verify_token(OTHER_SECRET, old, **rotated).subject == "sub:42"  # type: ignore[arg-type]
    assert verify_token(OTHER_SECRET, new, **rotated).subject == "sub:42"  # type: ignore[arg-type]
    stranger = sign_token(b"x" * 32, purpose="confirm", subject="sub:42", now=T0, ttl=DAY)
    with pytest.raises(TokenInvalid, match="not issued by this service"):
        verify_token(OTHER_SECRET, stranger, **rotated)  # type: ignore[arg-type]
    # Without the previous secret listed, the old token is refused.
    with pytest.raises(TokenInvalid, match="not issued by this service"):
        verify_token(OTHER_SECRET, old, purpose="confirm", now=T0 + timedelta(hours=1))
