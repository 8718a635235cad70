"""Settings: valid and invalid files, exact error texts, exit status 2, example in sync."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest

from network.errors import ConfigError
from network.settings.model import Settings, parse_settings
from network.subscriptions.topics import SubscriptionError, parse_address

REPO = Path(__file__).resolve().parents[1]

MINIMAL = """
[matrix]
homeserver = "http://127.0.0.1:8008"
user_id = "@libhub:localhost"
password_env = "PW"
"""


def test_minimal_file_gets_documented_defaults() -> None:
    s = parse_settings(MINIMAL)
    assert s.database_location == s.database_path == Path("var/libhub.db")
    assert s.polling.default_interval.total_seconds() == 1800
    assert s.feeds == () and s.channels == {}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[[feeds]]\nid = "a"\nurl = "http://x/f.xml"\nkind = "blog"\n',
            "feeds[0].kind: expected one of 'news', 'webinar', 'cohort-update', got 'blog'",
        ),
        ('[databse]\npath = "x"\n', "databse: unknown key (expected one of: "),
        (
            '[database]\npth = "x"\n',
            "database.pth: unknown key (expected one of: password_env, path, url)",
        ),
        (
            '[database]\npath = "x.db"\nurl = "postgresql://libhub@db/libhub"\n',
            "database.url: set either database.path (SQLite) or database.url (PostgreSQL)",
        ),
        (
            '[database]\nurl = "postgresql://libhub:hunter2@db/libhub"\n',
            "database.url: the password does not belong in the file",
        ),
        ('[database]\nurl = "mysql://db/libhub"\n', "database.url: expected a URL like"),
        ('[[feeds]]\nid = "a"\n', "feeds[0].url: missing required key, expected a string"),
        (
            '[[feeds]]\nid = "a"\nurl = "http://x"\ninterval = "often"\n',
            'feeds[0].interval: expected a duration like "90s", "15m", "1h30m" or "2d", got \'often\'',
        ),
        (
            '[[feeds]]\nid = "a"\nurl = "http://x"\nrooms = "#r:x"\n',
            "feeds[0].rooms: expected a list of strings, got a string '#r:x'",
        ),
        (
            '[[feeds]]\nid = "a"\nurl = "http://x"\nrooms = ["general"]\n',
            "feeds[0].rooms[0]: 'general' is not a room: expected '#alias:server' or '!roomid:server'",
        ),
        (
            '[[feeds]]\nid = "a"\nurl = "http://x"\nchannels = ["social"]\n',
            "feeds[0].channels[0]: unknown channel 'social': define it as [channels.social]",
        ),
        (
            '[[feeds]]\nid = "a"\nurl = "http://x"\n[[feeds]]\nid = "a"\nurl = "http://y"\n',
            "feeds[1].id: duplicate feed id 'a'",
        ),
        (
            '[web]\nlisten = "8080"\n',
            "web.listen: expected 'host:port' like '127.0.0.1:8080', got '8080'",
        ),
        (
            '[network]\ntimezone = "Mars/Base"\n',
            "network.timezone: unknown time zone 'Mars/Base': use an IANA name like 'America/Chicago'",
        ),
        (
            '[polling]\nconcurrency = "many"\n',
            "polling.concurrency: expected an integer, got a string 'many'",
        ),
        (
            "[polling]\nconcurrency = true\n",
            "polling.concurrency: expected an integer, got a boolean True",
        ),
        (
            '[channels.social]\nurls = ["json://${NOT_SET_ANYWHERE}@h"]\n',
            "channels.social.urls[0]: environment variable NOT_SET_ANYWHERE is not set",
        ),
        (
            '[email]\nsmtp_url = "mail.example.org"\n',
            "email.smtp_url: expected smtp://host:port, smtps://host:port or smtp+starttls://host:port",
        ),
        (
            '[email]\nsmtp_url = "smtp://[::1"\nfrom = "n@example.org"\n',
            "email.smtp_url: cannot parse the SMTP URL (Invalid IPv6 URL): write smtp://host:port",
        ),
        (
            '[email]\nsmtp_url = "smtp://mail.example.org:2x5"\nfrom = "n@example.org"\n',
            "email.smtp_url: cannot parse the SMTP URL (Port could not be cast",
        ),
        (
            '[email]\nsmtp_url = "smtp://news@mail.example.org"\nfrom = "n@example.org"\n',
            "email.smtp_url: SMTP user 'news' needs a password: add ?password_env=NAME",
        ),
        (
            '[email]\nsmtp_url = "smtp://mail.example.org?tls=yes"\nfrom = "n@example.org"\n',
            "email.smtp_url: unknown SMTP URL parameter(s) tls",
        ),
        (
            '[assistance]\nworkdays = ["mon", "monkey"]\n',
            "assistance.workdays[1]: unknown day 'monkey': use mon, tue, wed, thu, fri, sat or sun",
        ),
        (
            '[assistance]\nteam_email = "the Need Assistance team"\n',
            "assistance.team_email: 'the Need Assistance team' is not an email address like "
            "'need-assistance@example.org'",
        ),
        (
            '[[cohorts]]\nid = "a"\nname = "A"\nroom = "#a:x"\nmembers = ["ana@example..org"]\n',
            "cohorts[0].members[0]: 'ana@example..org' is neither a Matrix user id",
        ),
        (
            '[email]\nfrom = "News <news@example..org>"\n',
            "email.from: 'News <news@example..org>' has no email address",
        ),
        ('[[routes]]\nkinds = ["news"]\n', "routes[0]: a route needs rooms or channels to send to"),
        (
            '[[cohorts]]\nid = "a"\nname = "A"\nroom = "#a:x"\n'
            '[[cohorts]]\nid = "b"\nname = "B"\nroom = "#a:x"\n',
            "cohorts[1].room: room '#a:x' is already used by cohorts[0].room",
        ),
        (
            '[[community.rooms]]\nroom = "#help:x"\n'
            '[[cohorts]]\nid = "a"\nname = "A"\nroom = "#help:x"\n',
            "cohorts[0].room: room '#help:x' is already used by community.rooms[0].room",
        ),
        (
            '[community]\nspace = "#net:x"\n[[community.rooms]]\nroom = "#net:x"\n',
            "community.rooms[0].room: room '#net:x' is already used by community.space",
        ),
        (
            '[community]\nwelcome = "Hi {name:{cohort}}"\n',
            "community.welcome: placeholder format '{cohort}' uses a placeholder",
        ),
        (
            '[community]\nwelcome = "Hi {name!x}"\n',
            "community.welcome: broken placeholder: Unknown conversion specifier x",
        ),
        (
            '[community]\nwelcome = "Hi {name:d}"\n',
            "community.welcome: broken placeholder: Unknown format code 'd'",
        ),
        ('[webinars]\nduration = "0s"\n', "webinars.duration: expected a duration above 0"),
        ('[dashboard]\ntoken_ttl = "0s"\n', "dashboard.token_ttl: expected at least 1 minute"),
        ('[dashboard]\ntoken_ttl = "59s"\n', "dashboard.token_ttl: expected at least 1 minute"),
        ("[dashboard]\nsession_ttl = 0\n", "dashboard.session_ttl: expected at least 5 minutes"),
        ('[web]\nlisten = "127.0.0.1:99999"\n', "web.listen: port 99999 is not 1 to 65535"),
        ('[web]\nlisten = "127.0.0.1:0"\n', "web.listen: port 0 is not 1 to 65535"),
        ('[web]\nlisten = "::1:8080"\n', "web.listen: write an IPv6 address in brackets"),
        ('[web]\nlisten = "[nope]:8080"\n', "web.listen: [nope] is not an IPv6 address"),
        (
            '[web]\nforms_window = "0s"\n',
            "web.forms_window: expected a window above 0 (or set forms_per_client = 0",
        ),
        (
            '[web]\nforms_window = "1000000000d"\n',
            "web.forms_window: duration '1000000000d' is too long",
        ),
        ("[web]\nforms_window = 1e300\n", "web.forms_window: duration 1e+300 is too long"),
        (
            "[web]\nforms_window = 100000000000000000000\n",
            "web.forms_window: duration 100000000000000000000 is too long",
        ),
        ("[web]\nforms_window = nan\n", "web.forms_window: expected a positive duration, got nan"),
        ("[web]\nforms_window = inf\n", "web.forms_window: duration inf is too long"),
        (
            '[email]\nfrom = "Libraries\\r\\nBcc: x@evil.example <news@example.org>"\n',
            "email.from: 'Libraries\\r\\nBcc: x@evil.example <news@example.org>' contains "
            "a line break",
        ),
        ('[email]\nlist_id = "digests\\n.example.org"\n', "email.list_id: 'digests\\n.example"),
        ('[network]\nname = "Prairie\\nLibraries"\n', "network.name: 'Prairie\\nLibraries'"),
        ('[digests]\nnetwork_name = "A\\rB"\n', "digests.network_name: 'A\\rB' contains"),
        (
            '[web]\npublic_url = "https://biblioth\u00e8que..example/"\n',
            "web.public_url: 'https://biblioth\u00e8que..example/' cannot be written in ASCII",
        ),
    ],
)
def test_invalid_files_name_the_key_path(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_settings(MINIMAL + extra, env={})
    assert str(e.value).startswith(message)


def test_smtp_url_with_a_password_is_refused_without_repeating_it() -> None:
    url = "smtp://news:Hunter2x@mail.example.org"
    with pytest.raises(ConfigError) as e:
        parse_settings(MINIMAL + f'[email]\nsmtp_url = "{url}"\nfrom = "n@example.org"\n')
    message = str(e.value)
    assert message.startswith("email.smtp_url: the SMTP URL must not contain a password")
    assert "?password_env=NAME" in message and "Hunter2x" not in message


def test_smtp_url_may_name_the_password_variable_in_either_place() -> None:
    in_url = '[email]\nsmtp_url = "smtp://news@h?password_env=PW"\nfrom = "n@example.org"\n'
    assert parse_settings(MINIMAL + in_url).email.smtp_url
    in_key = '[email]\nsmtp_url = "smtp://news@h"\npassword_env = "PW"\nfrom = "n@example.org"\n'
    assert parse_settings(MINIMAL + in_key).email.password_env == "PW"


@pytest.mark.parametrize(
    "address",
    [
        "ana@example.org",
        "Ana.B+news@lib.example.org",
        "ana@bücherei.example",
        "ana@example..org",
        "ana@example",
        "ana,bob@example.org",
        "ana@exa_mple.org",
        "a@b@example.org",
    ],
)
def test_settings_and_subscriptions_agree_on_email_addresses(address: str) -> None:
    """A cohort member's address check-config accepts is one a subscriber could use."""
    cohort = f'[[cohorts]]\nid = "a"\nname = "A"\nroom = "#a:x"\nmembers = ["{address}"]\n'
    try:
        parse_settings(MINIMAL + cohort, env={})
    except ConfigError:
        accepted_by_settings = False
    else:
        accepted_by_settings = True
    try:
        parse_address(address, schemes=None)
    except SubscriptionError:
        accepted_by_subscriptions = False
    else:
        accepted_by_subscriptions = True
    assert accepted_by_settings == accepted_by_subscriptions


@pytest.mark.parametrize(
    ("top", "message"),
    [
        ('channels = "x"\n', "channels: expected a table, got a string 'x'"),
        ("channels = [1]\n", "channels: expected a table, got a list [1]"),
    ],
)
def test_top_level_channels_must_be_a_table(top: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_settings(top + MINIMAL, env={})
    assert str(e.value).startswith(message)


def test_an_international_public_url_is_written_in_ascii_for_mail_headers() -> None:
    s = parse_settings(
        MINIMAL + '[web]\npublic_url = "https://biblioth\u00e8que.example/caf\u00e9"\n'
    )
    assert s.web.public_url == "https://xn--bibliothque-59a.example/caf%C3%A9"


def test_listen_takes_a_bracketed_ipv6_address() -> None:
    web = parse_settings(MINIMAL + '[web]\nlisten = "[::1]:8080"\n', env={}).web
    assert (web.host, web.port) == ("::1", 8080)  # what TCPSite binds
    assert parse_settings(MINIMAL + '[web]\nforms_per_client = 0\nforms_window = "0s"\n')


def test_welcome_may_use_plain_format_specs() -> None:
    s = parse_settings(MINIMAL + '[community]\nwelcome = "Hi {name!r:>8}, {cohort:.5}"\n')
    assert s.community.welcome.startswith("Hi {name!r")


def test_matrix_needs_a_secret_source() -> None:
    with pytest.raises(ConfigError, match=r"^matrix: set password_env or access_token_env"):
        parse_settings('[matrix]\nhomeserver = "http://h"\nuser_id = "@a:h"\n')


def test_missing_matrix_table() -> None:
    with pytest.raises(ConfigError, match=r"^matrix: missing required key, expected a table"):
        parse_settings("")


def test_not_toml() -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_settings("[matrix\n")


def test_env_placeholders_fill_channel_urls() -> None:
    s = parse_settings(
        MINIMAL + '[channels.social]\nurls = ["json://${TOKEN}@h/"]\n', env={"TOKEN": "t0k"}
    )
    assert s.channels["social"].urls == ("json://t0k@h/",)


def _keys(cls: type, prefix: str = "") -> set[str]:
    """Every key path the settings model accepts (lists and tables collapsed)."""
    out: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "base_dir":
            continue
        key = f.name.rstrip("_")
        path = f"{prefix}{key}"
        out.add(path)
        tp = hints[f.name]
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        inner = args[0] if origin is tuple else args[1] if origin is dict else tp
        if dataclasses.is_dataclass(inner):
            out |= _keys(inner, f"{path}.")  # type: ignore[arg-type]
    return out


def _doc_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in data.items():
        if prefix == "channels.":  # channel names are the user's, not keys
            out |= {f"channels.{key}" for key in v}
            continue
        path = f"{prefix}{k}"
        out.add(path)
        if isinstance(v, dict):
            out |= _doc_keys(v, f"{path}.")
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for entry in v:
                out |= _doc_keys(entry, f"{path}.")
    return out


def test_example_documents_every_key() -> None:
    text = (REPO / "config" / "example.toml").read_text()
    data = tomllib.loads(text)
    assert _keys(Settings) == _doc_keys(data)
    # and every key has a comment above it somewhere in the file
    parse_settings(text, env={"MASTODON_TOKEN": "x"})


def test_demo_config_is_valid() -> None:
    parse_settings((REPO / "config" / "demo.toml").read_text())


def test_check_config_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + '[[feeds]]\nid = "a"\nurl = "http://x"\nkind = "blog"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "network.cli", "check-config", "-c", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "libhub: config error: feeds[0].kind: expected one of 'news', 'webinar', "
        "'cohort-update', got 'blog'"
    ]
    assert "Traceback" not in proc.stderr


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "network.cli", "check-config", "-c", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert re.search(r"does not exist: copy config/example.toml", proc.stderr)


def test_postgresql_url_and_password_variable() -> None:
    s = parse_settings(
        MINIMAL + '[database]\nurl = "postgresql://libhub@db:5432/libhub"\npassword_env = "DB"\n'
    )
    assert s.database_location == "postgresql://libhub@db:5432/libhub"
    assert s.database.password_env == "DB"
