"""Published versions: read the check file, download the artifact, verify it, install it beside the
current one, and remember versions that failed so they are not tried again.

The check file (`<storage url>/<check location>`, e.g. delegateprod.txt) holds one line:
`<version> <relative path> <sha256>`. The artifact is `<storage url>/<relative path>`. Installed
artifacts live in `<work dir>/versions/<kind>/<version>/<kind>.pyz`; the current and the previous
version are kept (rollback), older ones are removed. Downloads run in a thread (urllib, loaded only
when first needed, so an idle watcher does not carry the HTTP and TLS modules).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_ARTIFACT_BYTES = 512 * 1024 * 1024
MAX_CHECK_BYTES = 4096


class UpgradeError(Exception):
    """A check or download failed; the running processes carry on."""


class ChecksumMismatch(UpgradeError):
    pass


@dataclass(frozen=True)
class Published:
    version: str
    path: str
    sha256: str


def parse_check(text: str, source: str) -> Published:
    parts = text.strip().split()
    if len(parts) != 3:
        raise UpgradeError(f"{source}: expected one line '<version> <relative path> <sha256>', "
                           f"got {len(parts)} field(s)")
    version, path, sha = parts
    if not _VERSION.match(version):
        raise UpgradeError(f"{source}: version {version[:64]!r} has characters other than "
                           "letters, digits and ._+-")
    if path.startswith("/") or "://" in path or ".." in path.split("/"):
        raise UpgradeError(f"{source}: path {path[:200]!r} must be relative to the storage URL")
    if not _SHA256.match(sha):
        raise UpgradeError(f"{source}: {sha[:80]!r} is not a sha256 (64 hex characters)")
    return Published(version, path, sha.lower())


def _open(url: str, timeout_s: float) -> Any:
    import urllib.request  # loaded on first use: keeps the idle watcher small

    request = urllib.request.Request(url, headers={"User-Agent": "harness-watcher"})  # noqa: S310
    return urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310 - URL from the task spec


def _fetch_text(url: str, timeout_s: float) -> str:
    try:
        with _open(url, timeout_s) as resp:
            return bytes(resp.read(MAX_CHECK_BYTES)).decode("utf-8", "replace")
    except OSError as exc:  # URLError, HTTPError and timeouts are OSErrors
        raise UpgradeError(f"cannot read {url}: {exc}") from exc


def _download(url: str, dest: Path, sha256: str, timeout_s: float) -> None:
    digest = hashlib.sha256()
    size = 0
    tmp = dest.with_name(dest.name + ".part")
    try:
        with _open(url, timeout_s) as resp, open(tmp, "wb") as out:
            while chunk := resp.read(1 << 16):
                size += len(chunk)
                if size > MAX_ARTIFACT_BYTES:
                    raise UpgradeError(f"{url} is larger than {MAX_ARTIFACT_BYTES} bytes")  # noqa: TRY301
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UpgradeError(f"cannot download {url}: {exc}") from exc
    except UpgradeError:
        tmp.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{url}: sha256 is {digest.hexdigest()}, the check file says {sha256}")
    os.replace(tmp, dest)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()


class Store:
    """Installed versions of one artifact kind ("delegate" or "watcher")."""

    def __init__(self, root: Path, kind: str) -> None:
        self.kind = kind
        self.root = root / kind
        self.root.mkdir(parents=True, exist_ok=True)
        self._failed_path = self.root / "failed.json"
        self._state_path = self.root / "installed.json"

    def artifact(self, version: str) -> Path:
        return self.root / version / f"{self.kind}.pyz"

    # --- failed versions (never tried again until something else is published) ----------------

    def failed(self) -> set[str]:
        try:
            value = json.loads(self._failed_path.read_text())
        except (FileNotFoundError, ValueError):
            return set()
        return {str(v) for v in value} if isinstance(value, list) else set()

    def mark_failed(self, version: str) -> None:
        versions = self.failed() | {version}
        self._failed_path.write_text(json.dumps(sorted(versions)))

    # --- current / previous -------------------------------------------------------------------

    def installed(self) -> dict[str, str | None]:
        try:
            value = json.loads(self._state_path.read_text())
        except (FileNotFoundError, ValueError):
            value = {}
        if not isinstance(value, dict):
            value = {}
        return {"current": value.get("current"), "previous": value.get("previous")}

    def set_current(self, version: str, previous: str | None) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"current": version, "previous": previous}))
        os.replace(tmp, self._state_path)
        keep = {version, previous}
        for child in self.root.iterdir():
            if child.is_dir() and child.name not in keep and not child.name.startswith("."):
                shutil.rmtree(child, ignore_errors=True)

    # --- fetching -----------------------------------------------------------------------------

    async def check(self, storage_url: str, location: str, timeout_s: float) -> Published:
        url = f"{storage_url}/{location}"
        text = await asyncio.to_thread(_fetch_text, url, timeout_s)
        return parse_check(text, url)

    async def fetch(self, storage_url: str, published: Published, timeout_s: float) -> Path:
        """Download and verify `published` unless a verified copy is already installed."""
        dest = self.artifact(published.version)
        if dest.exists():
            if await asyncio.to_thread(file_sha256, dest) == published.sha256:
                return dest
            dest.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(_download, f"{storage_url}/{published.path}", dest,
                                published.sha256, timeout_s)
        return dest
