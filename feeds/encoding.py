"""Byte-level repair of feed documents before parsing: what feedparser does not do itself.

Owns gzip bodies served without Content-Encoding (with a zip-bomb cap), BOMs and leading
whitespace, feeds wrapped in an HTML page, the base URL for relative links, and the headers
handed to the parser, including the fix for "ISO-8859-1" (or any legacy charset) declared
over bytes that are really UTF-8.
"""

from __future__ import annotations

import html
import re
import zlib
from collections.abc import Mapping
from urllib.parse import urlsplit

from feeds.errors import ParseError

__all__ = [
    "GZIP_MAGIC",
    "HTML_ROOT",
    "MAX_DECOMPRESSED_BYTES",
    "XML_DECL_ENCODING",
    "DecompressionError",
    "base_url",
    "charset_of",
    "feedparser_headers",
    "gunzip_capped",
    "header",
    "looks_like_html",
    "prepare_bytes",
]

GZIP_MAGIC = b"\x1f\x8b"
MAX_DECOMPRESSED_BYTES = 50 * 2**20


class DecompressionError(ValueError):
    """A gzip body could not be unpacked, or unpacks to more than the allowed size."""

    def __init__(self, message: str, *, too_large: bool) -> None:
        super().__init__(message)
        self.too_large = too_large


def gunzip_capped(body: bytes, max_bytes: int) -> bytes:
    """Unpack a gzip stream, refusing to produce more than `max_bytes` (zip-bomb guard)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as e:
        raise DecompressionError(f"the body is not valid gzip ({e})", too_large=False) from e
    if len(out) > max_bytes:
        raise DecompressionError(
            f"the gzip body unpacks to more than {max_bytes / 2**20:g} MiB", too_large=True
        )
    if not inflater.eof:
        raise DecompressionError("the gzip body is truncated", too_large=False)
    return out


XML_DECL_ENCODING = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
HTML_ROOT = re.compile(
    rb"^(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*(?:<!doctype\s+html[^>]*>\s*)?"
    rb"(?:<!--.*?-->\s*)*<html[\s>]",
    re.IGNORECASE | re.DOTALL,
)
_EMBEDDED_FEED = re.compile(rb"<(feed|rss|rdf:RDF)[\s>]")
_SELF_LINK = re.compile(
    rb"""<(?:[A-Za-z0-9]+:)?link\b[^>]*\brel\s*=\s*["']self["'][^>]*>""", re.IGNORECASE
)
_HREF = re.compile(rb"""\bhref\s*=\s*["']([^"']+)["']""")


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def charset_of(content_type: str | None) -> str | None:
    if not content_type:
        return None
    match = re.search(r"charset\s*=\s*[\"']?([^\s;\"']+)", content_type, re.IGNORECASE)
    return match.group(1).lower() if match else None


def prepare_bytes(body: bytes, warnings: list[str]) -> tuple[bytes, bool]:
    """Gunzip, drop BOM and leading whitespace, unwrap an HTML-wrapped feed.
    Returns the bytes and whether a UTF-8 BOM was seen."""
    if body[:2] == GZIP_MAGIC:
        try:
            body = gunzip_capped(body, MAX_DECOMPRESSED_BYTES)
        except DecompressionError as e:
            raise ParseError(f"could not read the feed: {e}") from e
    had_bom = body.startswith(b"\xef\xbb\xbf")
    if had_bom:
        body = body[3:]
    # UTF-16/32 bodies start with a BOM or a NUL byte; stripping ASCII space would corrupt them.
    if body[:2] not in (b"\xff\xfe", b"\xfe\xff") and not body.startswith(b"\x00"):
        body = body.lstrip(b" \t\r\n")
    if HTML_ROOT.match(body[:4096]):
        found = _EMBEDDED_FEED.search(body)
        if found:
            tag = found.group(1)
            end = body.rfind(b"</" + tag + b">")
            if end > found.start():
                decl = re.match(rb"<\?xml[^>]*\?>", body)
                prefix = decl.group(0) + b"\n" if decl else b""
                body = prefix + body[found.start() : end + len(tag) + 3]
                warnings.append(
                    f"the feed is wrapped in an HTML page; read the embedded <{tag.decode()}>"
                )
    return body, had_bom


def looks_like_html(body: bytes) -> bool:
    head = body[:2048].lower()
    return any(tag in head for tag in (b"<html", b"<!doctype html", b"<head", b"<body"))


def base_url(url: str, body: bytes) -> str | None:
    """Base for relative links: the URL the document came from (RFC 3986 §5.1.3), or the
    feed's own rel="self" link when that URL is not an absolute http(s) address."""
    if urlsplit(url).scheme in ("http", "https"):
        return url
    for tag in _SELF_LINK.finditer(body[:65536]):
        href = _HREF.search(tag.group(0))
        if href:
            candidate = html.unescape(href.group(1).decode("utf-8", "replace"))
            if urlsplit(candidate).scheme in ("http", "https"):
                return candidate
    return None


def feedparser_headers(
    body: bytes,
    url_base: str | None,
    headers: Mapping[str, str] | None,
    had_bom: bool,
    warnings: list[str],
) -> dict[str, str]:
    content_type = header(headers, "content-type")
    media_type = (content_type or "application/xml").split(";")[0].strip().lower()
    if media_type == "text/xml":
        # RFC 7303 dropped text/xml's us-ascii default; let the document declare its charset.
        media_type = "application/xml"
    charset = charset_of(content_type)
    decl = XML_DECL_ENCODING.match(body[:512])
    declared = charset or (decl.group(1).decode().lower() if decl else None)
    if had_bom:
        charset = "utf-8"
    elif declared and not declared.startswith("utf") and not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            # Non-ASCII text in a legacy charset is practically never valid UTF-8 as a whole,
            # so the label is wrong; trusting it would produce mojibake ("Â©").
            charset = "utf-8"
            warnings.append(
                f"the document declares {declared.upper()} but its bytes are UTF-8; read as UTF-8"
            )
    result = {"content-type": media_type + (f"; charset={charset}" if charset else "")}
    if url_base:
        result["content-location"] = url_base
    language = header(headers, "content-language")
    if language:
        result["content-language"] = language
    return result
