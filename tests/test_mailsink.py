"""The development mail sink keeps every message it receives as a file, across restarts."""

from __future__ import annotations

import smtplib
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path

from network.devtools.mailsink import MailSink


def _send(sink: MailSink, subject: str) -> None:
    msg = EmailMessage()
    msg["From"] = "news@libhub.localhost"
    msg["To"] = "reader@libhub.localhost"
    msg["Subject"] = subject
    msg.set_content(f"{subject}\n")
    with smtplib.SMTP(sink.host, sink.port, timeout=30) as smtp:
        smtp.send_message(msg)


def _subjects(folder: Path) -> dict[str, str]:
    return {
        p.name: str(message_from_bytes(p.read_bytes())["Subject"])
        for p in sorted(folder.glob("*.eml"))
    }


def test_mail_from_an_earlier_run_is_kept_and_numbering_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    for subject in ("first run, one", "first run, two"):
        sink = MailSink(folder=folder)
        sink.start()
        try:
            _send(sink, subject)
        finally:
            sink.stop()
    sink = MailSink(folder=folder)
    sink.start()
    try:
        _send(sink, "after a restart")
    finally:
        sink.stop()
    assert _subjects(folder) == {
        "00001.eml": "first run, one",
        "00002.eml": "first run, two",
        "00003.eml": "after a restart",
    }


def test_numbering_continues_after_the_highest_file_and_never_overwrites(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "00007.eml").write_bytes(b"Subject: kept by hand\n\nkept\n")
    (folder / "notes.txt").write_text("not mail")
    sink = MailSink(folder=folder)
    sink.start()
    try:
        # A file with the next number appears after start (a copy, another sink).
        (folder / "00008.eml").write_bytes(b"Subject: appeared meanwhile\n\nx\n")
        _send(sink, "new")
    finally:
        sink.stop()
    assert _subjects(folder) == {
        "00007.eml": "kept by hand",
        "00008.eml": "appeared meanwhile",
        "00009.eml": "new",
    }
