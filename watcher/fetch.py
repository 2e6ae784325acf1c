"""HTTP reads for upgrades: the check file, the signature, the artifact.

- Credentials in a storage URL (`https://user:pw@host/...`) are taken out of the URL and sent as a
  Basic Authorization header; every URL that reaches a log line or an error goes through `redact`.
- Only https is fetched, or http to a loopback host (development); a redirect elsewhere is refused.
- `WATCHER_DOWNLOAD_TIMEOUT_S` is a total deadline per read: the caller stops waiting when it passes
  (`asyncio.wait_for`), and the worker thread gives up at its next chunk and removes its partial file.
- Reads go through the configured proxy (PROXY_* or HTTPS_PROXY, `Proxy`) unless NO_PROXY matches the
  URL (`protocol.noproxy`, the matcher the delegate uses: `*`, suffixes, host:port, CIDR). Only that
  decision counts: urllib never picks a proxy from the environment itself (its own NO_PROXY check,
  which it still makes, understands a subset of these forms, so it can only agree). The
  proxy URL can carry credentials: it never reaches a log line or an error.
- urllib is loaded on first use, so an idle watcher does not carry the HTTP and TLS modules.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from protocol.noproxy import ProxyRules


class FetchError(Exception):
    """A read failed; the message names the (redacted) URL. `status`: the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


Proxy = ProxyRules  # the watcher's name for it
NO_PROXY = Proxy()


def redact(url: str) -> str:
    """`url` without its user and password (`***@` marks that there were some)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed(url: str) -> bool:
    """https anywhere, http only to loopback (a local manager in development)."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname))


def _split_credentials(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    host = parts.netloc.rpartition("@")[2]
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, "Basic " + base64.b64encode(pair).decode()


def _hide(message: str, *urls: str | None) -> str:
    """`message` without the passwords of `urls`."""
    for url in urls:
        if url and (password := urlsplit(url).password):
            message = message.replace(password, "***")
    return message


def _open(url: str, timeout_s: float, proxy: Proxy) -> Any:
    import urllib.request  # loaded on first use: keeps the idle watcher small

    class _Redirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                             newurl: str) -> Any:
            if not allowed(newurl):
                raise FetchError(f"{redact(req.full_url)} redirected ({code}) to {redact(newurl)}, "
                                 "which is not https: refused")
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    clean, auth = _split_credentials(url)
    headers = {"User-Agent": "harness-watcher"}
    if auth is not None:
        headers["Authorization"] = auth
    request = urllib.request.Request(clean, headers=headers)  # noqa: S310 - scheme checked by settings
    via = proxy.for_url(clean)
    # an explicit handler: {} also keeps urllib off the environment's own proxy variables
    proxies = urllib.request.ProxyHandler({"http": via, "https": via} if via else {})
    return urllib.request.build_opener(proxies, _Redirects()).open(request, timeout=timeout_s)


def _read(url: str, dest: Path | None, max_bytes: int, timeout_s: float,
          cancelled: threading.Event, proxy: Proxy) -> bytes:
    """The body (or, with `dest`, write it there and return b''); runs in a worker thread."""
    size = 0
    chunks: list[bytes] = []
    out = open(dest, "wb") if dest is not None else None  # noqa: SIM115 - closed below
    try:
        with _open(url, timeout_s, proxy) as resp:
            while chunk := resp.read(1 << 16):
                if cancelled.is_set():
                    raise FetchError(f"{redact(url)}: gave up (deadline passed)")  # noqa: TRY301
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"{redact(url)} is larger than {max_bytes} bytes")  # noqa: TRY301
                if out is not None:
                    out.write(chunk)
                else:
                    chunks.append(chunk)
        if out is not None:
            out.flush()
            os.fsync(out.fileno())
    except FetchError:
        raise
    except OSError as exc:  # URLError, HTTPError and socket timeouts are OSErrors
        message = _hide(str(exc), url, proxy.url)
        raise FetchError(f"cannot read {redact(url)}: {message}", getattr(exc, "code", None)) from None
    finally:
        if out is not None:
            out.close()
    return b"".join(chunks)


async def fetch(url: str, timeout_s: float, max_bytes: int, dest: Path | None = None,
                proxy: Proxy = NO_PROXY) -> bytes:
    """Read `url` within `timeout_s` in total; with `dest`, into that file (removed on failure)."""
    cancelled = threading.Event()
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(_read, url, dest, max_bytes, timeout_s, cancelled, proxy), timeout_s)
    except BaseException as exc:
        cancelled.set()  # a thread still reading stops at its next chunk
        if dest is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
        if isinstance(exc, TimeoutError):
            raise FetchError(f"{redact(url)}: not read within WATCHER_DOWNLOAD_TIMEOUT_S="
                             f"{timeout_s:g}") from None
        raise
