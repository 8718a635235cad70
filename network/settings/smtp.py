"""Where outgoing mail goes: ``email.smtp_url`` parsed into an `SmtpTarget`.

``smtp://``, ``smtps://`` and ``smtp+starttls://`` are understood. Passwords never live in
the URL (it ends up in logs); the URL may name the environment variable that holds one
(``?password_env=NAME``). The settings check parses the URL at load, so a URL that could
not be used is refused by ``check-config`` instead of at the first send; the mail transport
(network/mail/) connects to the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from network.errors import ConfigError

# What a coordinator can copy, in every message about a URL that cannot be used.
_EXAMPLE = (
    "write smtp://host:port, smtps://host:port or smtp+starttls://user@host:port"
    "?password_env=NAME (IPv6 in brackets: smtp://[::1]:25)"
)

_SCHEMES = {
    # scheme: (default port, implicit TLS, STARTTLS)
    "smtp": (25, False, False),
    "smtps": (465, True, False),
    "smtp+starttls": (587, False, True),
}


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect. Holds the *name* of the password variable, never a password."""

    host: str
    port: int
    use_tls: bool
    starttls: bool
    username: str | None = None
    password_env: str | None = None

    def display(self) -> str:
        """The target as a URL that is safe to log."""
        scheme = "smtps" if self.use_tls else "smtp+starttls" if self.starttls else "smtp"
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}"


def parse_smtp_url(url: str, path: str = "email.smtp_url") -> SmtpTarget:
    """Parse ``smtp://[user@]host[:port][?password_env=NAME]`` (also ``smtps``,
    ``smtp+starttls``). Raises ConfigError naming ``path`` and what to write instead; the
    message never repeats a password."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        # urlsplit's reasons name the port or the brackets, never the user part.
        raise ConfigError(f"cannot parse the SMTP URL ({e}): {_EXAMPLE}", path=path) from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ConfigError(f"unsupported SMTP URL scheme {scheme!r}: {_EXAMPLE}", path=path)
    if parts.password is not None:
        raise ConfigError(
            "the SMTP URL must not contain a password (URLs end up in logs): put it in an "
            "environment variable and write smtp+starttls://user@host:port?password_env=NAME",
            path=path,
        )
    if not parts.hostname:
        raise ConfigError(f"the SMTP URL has no host name: {_EXAMPLE}", path=path)
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigError(f"the SMTP URL must not have a path or fragment: {_EXAMPLE}", path=path)
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"password_env"})
    if unknown:
        raise ConfigError(
            f"unknown SMTP URL parameter(s) {', '.join(unknown)}: only password_env is supported",
            path=path,
        )
    password_env = query.get("password_env", [""])[-1] or None
    default_port, use_tls, starttls = _SCHEMES[scheme]
    return SmtpTarget(
        host=parts.hostname,
        port=port or default_port,
        use_tls=use_tls,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password_env=password_env,
    )
