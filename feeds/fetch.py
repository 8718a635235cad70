"""HTTP retrieval of feeds: conditional GET, limits, redirects and error classification.

`Fetcher` wraps one shared aiohttp session. It sends the stored validators (If-None-Match,
If-Modified-Since), bounds concurrency overall and per host, enforces connect/read timeouts
and a body size cap while streaming (the cap applies to the decompressed bytes, and also to
gzip bodies sent without Content-Encoding, which are unpacked here), reports 301/308 so the
caller can update the stored URL, refuses redirects from a feed on the internet to a private
or local address (`feeds.addresses`), and turns every failure into a `FetchError` that says
whether trying again later can help. It does not parse: an HTML page served with 200 is a
successful fetch and `feeds.parse` rejects it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import aiohttp
from yarl import URL

from feeds.addresses import (
    GuardedConnector,
    IPAddress,
    PrivateAddressRefused,
    guarded_fetch,
    is_private_address,
)
from feeds.encoding import GZIP_MAGIC, DecompressionError, gunzip_capped
from feeds.errors import FetchError
from feeds.schedule import parse_cache_control_max_age, parse_http_date, parse_retry_after

__all__ = ["FetchResult", "Fetcher", "make_session"]

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchResult:
    """Outcome of one successful request.

    `status` is "ok" (new body), "not_modified" (304; no body) or "unchanged" (200 whose
    body hashes to `previous_hash`; the body is dropped since nothing needs parsing).
    `etag`/`last_modified` are the validators to store: the response's, or on 304 the ones
    sent when the server did not repeat them. `permanent_redirect` is the URL reached through
    301/308 hops only, when it differs from the requested one.
    """

    status: Literal["ok", "not_modified", "unchanged"]
    url: str
    body: bytes | None
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    headers: Mapping[str, str] = field(repr=False)
    permanent_redirect: str | None
    retry_after_s: float | None
    cache_max_age_s: float | None
    expires: datetime | None
    http_status: int


def make_session(
    *,
    limit: int = 100,
    limit_per_host: int = 4,
    is_private: Callable[[IPAddress], bool] = is_private_address,
) -> aiohttp.ClientSession:
    """A session for polling: bounded connection pool, cached DNS, no cookies shared between
    feeds, transparent gzip/deflate, and connections checked against `is_private` (see
    `feeds.addresses`). Create it inside the running event loop; close it on shutdown."""
    connector = GuardedConnector(
        is_private=is_private, limit=limit, limit_per_host=limit_per_host, ttl_dns_cache=300
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
        raise_for_status=False,
    )


def _flat_headers(headers: Mapping[str, str]) -> dict[str, str]:
    flat: dict[str, str] = {}
    items = headers.items()
    for name, value in items:
        key = name.lower()
        flat[key] = f"{flat[key]}, {value}" if key in flat else value
    return flat


_STATUS_ADVICE = {
    401: "the server wants a login; feeds behind authentication are not supported",
    403: "the server refuses access (it may block automated clients)",
    404: "there is no feed at this address (any more); check the URL",
    410: "the publisher removed this feed for good; unsubscribe or find its new address",
}


class Fetcher:
    """Fetches feeds through one aiohttp session with concurrency, time and size limits."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        user_agent: str,
        max_bytes: int = 10 * 2**20,
        connect_timeout: float = 10,
        read_timeout: float = 30,
        max_concurrency: int = 20,
        per_host: int = 2,
        total_timeout: float | None = 120,
        max_redirects: int = 5,
    ) -> None:
        if max_bytes < 1 or max_concurrency < 1 or per_host < 1:
            raise ValueError("max_bytes, max_concurrency and per_host must be positive")
        if not isinstance(session.connector, GuardedConnector):
            raise ValueError(
                "the session must come from make_session (its connector checks "
                "where redirects lead)"
            )
        self._session = session
        self._user_agent = user_agent
        self._max_bytes = max_bytes
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._total_timeout = total_timeout
        self._max_redirects = max_redirects
        # sock_read is an inactivity timeout; `total` also stops a server that drips bytes.
        self._timeout = aiohttp.ClientTimeout(
            total=total_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._overall = asyncio.Semaphore(max_concurrency)
        self._per_host_limit = per_host
        self._hosts: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    def _host_key(self, url: str) -> str:
        parsed = URL(url)
        return f"{parsed.scheme}://{parsed.host}:{parsed.port}"

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        previous_hash: str | None = None,
        now: datetime | None = None,
        allow_private: bool = True,
    ) -> FetchResult:
        """GET `url` conditionally. Raises `FetchError` (see its `transient` flag). With
        ``allow_private=False`` a feed on a private or local address is refused too, not
        only redirects there (see `feeds.addresses`)."""
        try:
            host = self._host_key(url)
        except (ValueError, TypeError) as e:
            raise FetchError(f"{url!r} is not a valid URL", url=url, transient=False) from e
        # Per-host slots are refcounted so the table only holds hosts being fetched right now.
        semaphore, users = self._hosts.get(host, (asyncio.Semaphore(self._per_host_limit), 0))
        self._hosts[host] = (semaphore, users + 1)
        try:
            # Host first, then the global slot: a feed waiting for its busy host must not
            # hold one of the global slots meanwhile.
            async with semaphore, self._overall:
                try:
                    return await self._fetch(
                        url, etag, last_modified, previous_hash, now, allow_private=allow_private
                    )
                except FetchError as e:
                    if e.status != 403:
                        raise
                    # Some firewalls refuse any client that does not look like a browser.
                    # Ask once more with a compatible User-Agent that still names libhub
                    # and its contact page (lemon24/reader's ua_fallback does the same).
                    return await self._fetch(
                        url,
                        etag,
                        last_modified,
                        previous_hash,
                        now,
                        fallback_ua=True,
                        allow_private=allow_private,
                    )
        finally:
            semaphore, users = self._hosts[host]
            if users <= 1:
                del self._hosts[host]
            else:
                self._hosts[host] = (semaphore, users - 1)

    async def _fetch(
        self,
        url: str,
        etag: str | None,
        last_modified: str | None,
        previous_hash: str | None,
        now: datetime | None,
        *,
        fallback_ua: bool = False,
        allow_private: bool = True,
    ) -> FetchResult:
        agent = f"Mozilla/5.0 (compatible; {self._user_agent})" if fallback_ua else self._user_agent
        headers = {"User-Agent": agent, "Accept": ACCEPT}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            with guarded_fetch(allow_private=allow_private):
                async with self._session.get(
                    url,
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=True,
                    max_redirects=self._max_redirects,
                ) as resp:
                    moment = now or datetime.now(UTC)
                    body = await self._read_body(url, resp, moment)
                    return self._result(url, resp, body, etag, last_modified, previous_hash, moment)
        except FetchError:
            raise
        except PrivateAddressRefused as e:
            if URL(e.url).host == URL(url).host:
                raise FetchError(
                    f"{url} is at {e.ip}, a private or local address; feeds added from a room "
                    "or the dashboard must be on the internet (a coordinator can allow local "
                    "feeds with feeds_admin.allow_private, or add the feed to the config file)",
                    url=url,
                    transient=False,
                ) from e
            raise FetchError(
                f"{url}: the server redirects to {e.url}, which is at {e.ip}, an address on a "
                "private network or this machine; a feed on the internet may not lead libhub "
                "there, so it was not followed. Ask the publisher to fix the redirect, or "
                "configure the feed's final address if it really is on your network",
                url=url,
                transient=False,
            ) from e
        except TimeoutError as e:
            total = f", total {self._total_timeout:g} s" if self._total_timeout else ""
            raise FetchError(
                f"{url}: no response within the time limit (connect {self._connect_timeout:g} s, "
                f"read {self._read_timeout:g} s{total}); the server is slow or down",
                url=url,
                transient=True,
            ) from e
        except aiohttp.TooManyRedirects as e:
            raise FetchError(
                f"{url}: more than {self._max_redirects} redirects (a redirect loop?)",
                url=url,
                transient=False,
            ) from e
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as e:
            raise FetchError(
                f"{url}: not an http(s) URL that can be fetched ({e})", url=url, transient=False
            ) from e
        except aiohttp.ClientConnectorCertificateError as e:
            raise FetchError(
                f"{url}: the server's TLS certificate is not valid ({e.certificate_error})",
                url=url,
                transient=False,
            ) from e
        except aiohttp.ClientConnectorError as e:
            raise FetchError(
                f"{url}: could not connect to {e.host}:{e.port} ({e.os_error})",
                url=url,
                transient=True,
            ) from e
        except aiohttp.ClientPayloadError as e:
            raise FetchError(
                f"{url}: the connection broke while reading the body ({e})",
                url=url,
                transient=True,
            ) from e
        except aiohttp.ClientError as e:
            raise FetchError(
                f"{url}: request failed ({type(e).__name__}: {e})", url=url, transient=True
            ) from e

    def _too_large(self, url: str, status: int) -> FetchError:
        return FetchError(
            f"{url}: the response is larger than {self._max_bytes / 2**20:g} MiB, the limit for "
            "one feed; not reading it",
            url=url,
            status=status,
            transient=False,
        )

    async def _read_body(
        self, url: str, resp: aiohttp.ClientResponse, now: datetime
    ) -> bytes | None:
        status = resp.status
        if status == 304:
            return None
        if status >= 300:
            self._raise_for_status(url, resp, now)
        declared = resp.content_length
        if declared is not None and declared > self._max_bytes:
            raise self._too_large(url, status)
        chunks: list[bytes] = []
        size = 0
        # Stream and count: Content-Length may be absent, wrong, or describe compressed bytes.
        async for chunk in resp.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > self._max_bytes:
                raise self._too_large(url, status)
            chunks.append(chunk)
        body = b"".join(chunks)
        if body[:2] == GZIP_MAGIC:
            # A gzip file served without Content-Encoding (static .xml.gz, misconfigured server).
            try:
                body = gunzip_capped(body, self._max_bytes)
            except DecompressionError as e:
                if e.too_large:
                    raise self._too_large(url, status) from e
                raise FetchError(f"{url}: {e}", url=url, status=status, transient=False) from e
        return body

    def _raise_for_status(self, url: str, resp: aiohttp.ClientResponse, now: datetime) -> None:
        status = resp.status
        reason = f"HTTP {status} {resp.reason or ''}".strip()
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), now)
        if status in (408, 425, 429) or status >= 500:
            wait = f"; the server asks to wait {retry_after:g} s" if retry_after else ""
            problem = "too many requests" if status == 429 else "a temporary server problem"
            raise FetchError(
                f"{url}: {reason} ({problem}){wait}",
                url=url,
                status=status,
                transient=True,
                retry_after=retry_after,
            )
        advice = _STATUS_ADVICE.get(status)
        if advice is None:
            advice = (
                "a redirect without a usable Location header"
                if 300 <= status < 400
                else "the server rejected the request"
            )
        raise FetchError(
            f"{url}: {reason}: {advice}",
            url=url,
            status=status,
            transient=False,
            retry_after=retry_after,
            gone=status == 410,
        )

    def _result(
        self,
        url: str,
        resp: aiohttp.ClientResponse,
        body: bytes | None,
        etag: str | None,
        last_modified: str | None,
        previous_hash: str | None,
        now: datetime,
    ) -> FetchResult:
        headers = _flat_headers(resp.headers)
        max_age = parse_cache_control_max_age(headers.get("cache-control"))
        age = headers.get("age", "").strip()
        if max_age is not None and age.isdigit():
            # max-age counts from when the origin generated the response, not from now.
            max_age = max(0.0, max_age - int(age))
        if body is None:
            status: Literal["ok", "not_modified", "unchanged"] = "not_modified"
            body_hash = previous_hash
            # A 304 need not repeat the validators; keep the ones that produced it.
            etag = headers.get("etag") or etag
            last_modified = headers.get("last-modified") or last_modified
        else:
            body_hash = hashlib.sha256(body).hexdigest()
            status = "unchanged" if body_hash == previous_hash else "ok"
            if status == "unchanged":
                body = None
            etag = headers.get("etag")
            last_modified = headers.get("last-modified")
        return FetchResult(
            status=status,
            url=str(resp.url),
            body=body,
            etag=etag,
            last_modified=last_modified,
            body_hash=body_hash,
            headers=headers,
            permanent_redirect=_permanent_target(url, resp),
            retry_after_s=parse_retry_after(headers.get("retry-after"), now),
            cache_max_age_s=max_age,
            expires=parse_http_date(headers.get("expires")),
            http_status=resp.status,
        )


def _permanent_target(requested: str, resp: aiohttp.ClientResponse) -> str | None:
    """The URL reached by following only the leading 301/308 hops of the redirect chain."""
    target: str | None = None
    hops = list(resp.history)
    for i, hop in enumerate(hops):
        if hop.status not in (301, 308):
            break
        target = str(hops[i + 1].url) if i + 1 < len(hops) else str(resp.url)
    if target is None or target == requested:
        return None
    return target
