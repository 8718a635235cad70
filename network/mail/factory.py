"""The one place an SMTP sender is built from the settings: `smtp_sender`.

Digests and confirmations (network/subscriptions/postman.py), the Need Assistance team's
email (bots/cases/escalation.py) and cohort invitations (network/community/cohorts.py)
all send through a sender made here, so they agree on where the server is, which
environment variable holds its password (``?password_env=NAME`` in ``email.smtp_url``
first, else ``email.password_env``), the timeout and the name we greet the server with.
"""

from __future__ import annotations

from network.errors import ConfigError
from network.mail.pool import SmtpSender
from network.settings.model import EmailSettings, secret
from network.settings.smtp import SmtpTarget, parse_smtp_url

# Greeting name and Message-ID domain when ``email.from`` has no usable domain.
FALLBACK_DOMAIN = "libhub.invalid"


def sender_domain(email: EmailSettings) -> str:
    """The domain of ``email.from``: our EHLO name and the right side of Message-IDs."""
    return email.sender_address.rpartition("@")[2] or FALLBACK_DOMAIN


def smtp_password(email: EmailSettings, target: SmtpTarget) -> str | None:
    """The SMTP password from the environment, or None when the server needs no login.

    The URL's own ``?password_env=NAME`` wins over ``email.password_env``: it sits next to
    the user name it belongs to.
    """
    if not target.username:
        return None
    return secret(target.password_env or email.password_env)


def smtp_sender(email: EmailSettings, *, max_connections: int | None = None) -> SmtpSender:
    """A pooled sender for ``email.smtp_url``; ``max_connections`` defaults to the setting.

    Raises ConfigError (naming ``email.smtp_url``) when no server is configured or the
    login's password variable is not set.
    """
    if not email.smtp_url:
        raise ConfigError("no SMTP server: set email.smtp_url to send email", path="email.smtp_url")
    target = parse_smtp_url(email.smtp_url)
    password = smtp_password(email, target)
    if target.username and password is None:
        raise ConfigError(
            f"SMTP user {target.username!r} needs a password: set the environment variable "
            f"{target.password_env or email.password_env}",
            path="email.smtp_url",
        )
    return SmtpSender(
        target,
        password=password,
        max_connections=max_connections or email.max_connections,
        messages_per_connection=email.messages_per_connection,
        max_per_second=email.max_per_second,
        timeout=email.timeout.total_seconds(),
        # A name of our own: without one aiosmtplib asks socket.getfqdn(), which can stall.
        local_hostname=sender_domain(email),
    )
