"""Published versions: read the check file, download the artifact and its signature, verify both,
install them beside the current version, and remember versions that failed so they are not tried
again.

The check file (`<storage url>/<check location>`, e.g. delegateprod.txt) holds one line:
`<version> <relative path> <sha256>`. The artifact is `<storage url>/<relative path>`, its signature
`<storage url>/<relative path>.sig` (`watcher/trust.py`). Installed artifacts live in
`<work dir>/versions/<kind>/<version>/<kind>.pyz` with their `.sig`; the current and the previous
version are kept (rollback), older ones are removed. What is installed is only a cache: it is
verified again before every start (`Store.load`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from watcher import fetch, trust

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_ARTIFACT_BYTES = 512 * 1024 * 1024
MAX_CHECK_BYTES = 4096


class UpgradeError(Exception):
    """A check or download failed; the running processes carry on."""


class Refused(UpgradeError):
    """The published artifact is not trustworthy (signature, kind, version, expiry)."""


class ChecksumMismatch(Refused):
    """The artifact's sha256 is not the one the check file names."""


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


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Orders versions like 1.9.0 < 1.10.0 (numbers as numbers, other parts as text after them)."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[._+-]", version))


@dataclass(frozen=True)
class Verified:
    version: str
    fd: int  # a sealed memfd holding exactly the verified bytes; the caller closes it
    keyid: str

    def close(self) -> None:
        os.close(self.fd)

    @property
    def path(self) -> str:
        """Where the child finds it: the fd is inherited under the same number."""
        return f"/proc/self/fd/{self.fd}"


class Store:
    """Installed versions of one artifact kind ("delegate" or "watcher")."""

    def __init__(self, root: Path, kind: str, keys: tuple[bytes, ...],
                 proxy: fetch.Proxy = fetch.NO_PROXY) -> None:
        self.kind = kind
        self.keys = keys
        self.proxy = proxy  # the reads below go through it (or not: NO_PROXY)
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

    def clear_current(self) -> None:
        self._state_path.unlink(missing_ok=True)

    # --- verifying ----------------------------------------------------------------------------

    def load(self, version: str, now: dt.datetime | None = None) -> Verified:
        """Read the installed `version`, verify it, and hand back a sealed copy to run. Expiry is
        checked only when `now` is given (at download; an installed version keeps running)."""
        path = self.artifact(version)
        try:
            data = path.read_bytes()
            signature = path.with_name(path.name + trust.SIG_SUFFIX).read_bytes()[:trust.MAX_SIG_BYTES]
        except OSError as exc:
            raise Refused(f"{self.kind} {version}: cannot read the installed files: {exc}") from None
        try:
            signed = trust.parse_signed(signature, f"{self.kind} {version} signature")
            trust.check(signed, self.kind, version, data, now)
            fd = trust.sealed_copy(data, f"{self.kind}-{version}.pyz")
            try:
                keyid = trust.verify_signatures(signed, self.keys)
            except BaseException:
                os.close(fd)
                raise
        except trust.Refused as exc:
            raise Refused(f"{self.kind} {version}: {exc}") from None
        return Verified(version, fd, keyid)

    # --- fetching -----------------------------------------------------------------------------

    async def check(self, storage_url: str, location: str, timeout_s: float) -> Published:
        url = f"{storage_url}/{location}"
        try:
            body = await fetch.fetch(url, timeout_s, MAX_CHECK_BYTES, proxy=self.proxy)
            text = body.decode("utf-8", "replace")
        except fetch.FetchError as exc:
            raise UpgradeError(str(exc)) from None
        return parse_check(text, fetch.redact(url))

    async def fetch(self, storage_url: str, published: Published, timeout_s: float) -> Verified:
        """Download `published` and its signature, verify them, install them; a sealed copy."""
        dest = self.artifact(published.version)
        dest.parent.mkdir(parents=True, exist_ok=True)
        url = f"{storage_url}/{published.path}"
        tag = os.urandom(4).hex()
        tmp = dest.with_name(f".{dest.name}.{tag}.part")
        sig_tmp = dest.with_name(f".{dest.name}.{tag}.sig.part")
        try:
            await fetch.fetch(url + trust.SIG_SUFFIX, timeout_s, trust.MAX_SIG_BYTES, sig_tmp,
                              proxy=self.proxy)
        except fetch.FetchError as exc:
            if exc.status == 404:
                raise Refused(f"{self.kind} {published.version}: unsigned: there is no signature "
                              f"file ({exc})") from None
            raise UpgradeError(str(exc)) from None
        try:
            await fetch.fetch(url, timeout_s, MAX_ARTIFACT_BYTES, tmp, proxy=self.proxy)
            data = tmp.read_bytes()
        except fetch.FetchError as exc:
            raise UpgradeError(str(exc)) from None
        finally:
            if not tmp.exists() or not sig_tmp.exists():
                tmp.unlink(missing_ok=True)
                sig_tmp.unlink(missing_ok=True)
        try:
            if hashlib.sha256(data).hexdigest() != published.sha256:
                raise ChecksumMismatch(f"{fetch.redact(url)}: sha256 differs from the check file's "
                              f"{published.sha256}")
            os.replace(sig_tmp, dest.with_name(dest.name + trust.SIG_SUFFIX))
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
            sig_tmp.unlink(missing_ok=True)
        try:
            return self.load(published.version, now=dt.datetime.now(dt.UTC))
        except Refused:
            shutil.rmtree(dest.parent, ignore_errors=True)
            raise
