"""Upgrades, as a collaborator of the supervisor with its own state: which installed version the slot
runs (`artifact`), which verified version waits to be tried (`pending`), the watcher's own next
version (`self_pending`), and the check loops that find them.

The supervisor tells it what runs (`observe`) and what happened (`promoted`, `candidate_failed`,
`resumed`, `roll_back`); it answers with verified, sealed copies to start (`launch`). It never
touches the supervisor's processes or state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import watcher
from watcher.backoff import jittered
from watcher.log import log
from watcher.settings import Settings
from watcher.upgrade import ChecksumMismatch, Published, Refused, Store, UpgradeError, Verified, version_key

# constant event names, one per kind (grep-able; docs/watcher.md lists them)
CHECKSUM_MISMATCH = {"delegate": "upgrade.delegate_checksum_mismatch",
                     "watcher": "upgrade.watcher_checksum_mismatch"}
REFUSED = {"delegate": "upgrade.delegate_refused", "watcher": "upgrade.watcher_refused"}
CHECK_FAILED = {"delegate": "upgrade.delegate_check_failed", "watcher": "upgrade.watcher_check_failed"}
CHECK_CRASHED = {"delegate": "upgrade.delegate_check_crashed",
                 "watcher": "upgrade.watcher_check_crashed"}


class Upgrader:
    def __init__(self, settings: Settings, wake: Callable[[], None]) -> None:
        self.s = settings
        self._wake = wake
        self.store = Store(settings.versions_dir, "delegate", settings.trusted_keys, settings.proxy)
        self.self_store = Store(settings.versions_dir, "watcher", settings.trusted_keys, settings.proxy)
        self.artifact = self._installed()  # the installed version the slot starts; None = image's
        self.pending: str | None = None  # a verified, installed delegate version to try
        self.self_pending: str | None = None  # a verified, installed watcher version to exec
        self.checks = {"delegate": 0, "watcher": 0}  # completed checks (in the watcher's state file)
        self._running: str | None = None
        self._busy = False

    def _installed(self) -> str | None:
        current = self.store.installed()["current"]
        if current and current not in self.store.failed() and self.store.artifact(current).exists():
            return current
        return None

    def loops(self) -> list[tuple[Coroutine[Any, Any, None], str]]:
        """The check loops to run as named tasks (none without a storage URL or a trusted key)."""
        wanted = [(self.store, self.s.delegate_storage_url, self.s.delegate_check_location,
                   self._offer_delegate), (self.self_store, self.s.watcher_storage_url,
                                           self.s.watcher_check_location, self._offer_watcher)]
        loops = []
        for store, url, location, offer in wanted:
            if url is None:
                continue
            if not self.s.trusted_keys:
                log.warning("upgrade.disabled", kind=store.kind, why="no trusted signing key",
                            hint="set WATCHER_TRUSTED_KEYS (base64 Ed25519 public keys) or bake "
                                 "release keys into the image; see docs/watcher.md")
                continue
            loops.append((self._check_loop(store, url, location, offer), f"upgrade.{store.kind}_check"))
        return loops

    def observe(self, running_version: str | None, busy: bool) -> None:
        """What runs now (the current delegate's version) and whether a hand-over is in progress."""
        self._running, self._busy = running_version, busy

    # --- checking -----------------------------------------------------------------------------

    async def _check_loop(self, store: Store, url: str, location: str,
                          offer: Callable[[Published], Awaitable[None]]) -> None:
        await asyncio.sleep(self.s.upgrade_first_check_s)
        while True:
            try:
                await offer(await store.check(url, location, self.s.download_timeout_s))
            except ChecksumMismatch as exc:
                log.error(CHECKSUM_MISMATCH[store.kind], error=str(exc),
                          note="refused; the running process carries on")
            except Refused as exc:
                log.error(REFUSED[store.kind], error=str(exc),
                          note="refused; the running process carries on")
            except UpgradeError as exc:
                log.warning(CHECK_FAILED[store.kind], error=str(exc))
            except Exception:  # noqa: BLE001 - a checker bug must not stop supervision
                log.error(CHECK_CRASHED[store.kind], exc_info=True)
            self.checks[store.kind] += 1
            await asyncio.sleep(jittered(self.s.upgrade_check_interval_s, self.s.upgrade_check_jitter_s))

    def _older(self, version: str, running: str | None) -> bool:
        return running is not None and version_key(version) < version_key(running)

    async def _offer_delegate(self, published: Published) -> None:
        running = self._running
        if published.version in (running, self.artifact) or running is None:
            return
        if self.pending is not None or self._busy or published.version in self.store.failed():
            return
        if self._older(published.version, running):
            raise Refused(f"delegate {published.version} is older than the running {running}: "
                          "a rollback is refused; publish a newer version instead")
        log.info("upgrade.found", version=published.version, running=running)
        verified = await self.store.fetch(self.s.delegate_storage_url or "", published,
                                          self.s.download_timeout_s)
        verified.close()
        log.info("upgrade.verified", version=published.version, sha256=published.sha256,
                 keyid=verified.keyid)
        self.pending = published.version
        self._wake()

    async def _offer_watcher(self, published: Published) -> None:
        if published.version == watcher.__version__ or self.self_pending is not None:
            return
        if published.version in self.self_store.failed():
            return
        if self._older(published.version, watcher.__version__):
            raise Refused(f"watcher {published.version} is older than the running "
                          f"{watcher.__version__}: a rollback is refused")
        log.info("upgrade.watcher_found", version=published.version, running=watcher.__version__)
        verified = await self.self_store.fetch(self.s.watcher_storage_url or "", published,
                                               self.s.download_timeout_s)
        verified.close()
        log.info("upgrade.watcher_verified", version=published.version, keyid=verified.keyid)
        self.self_pending = published.version
        self._wake()

    # --- what the supervisor reports ----------------------------------------------------------

    def launch(self, version: str) -> Verified:
        """A verified, sealed copy of installed `version` to start (re-verified every time)."""
        return self.store.load(version)

    def candidate_failed(self, version: str | None, why: str) -> None:
        if version is None:
            return
        self.store.mark_failed(version)
        if self.pending == version:
            self.pending = None
        log.warning("upgrade.rolled_back", version=version, to=self._running or "image", why=why,
                    note="not tried again until another version is published")

    def promoted(self, new: str | None, old: str | None) -> None:
        """An upgraded process took over: it is what the slot starts from now on."""
        if new is not None:
            self.store.set_current(new, old)
            self.artifact = new
            self.pending = None

    def roll_back(self, why: str) -> None:
        """The installed version keeps failing (or fails verification): back to the previous one,
        or to the image's own."""
        bad = self.artifact
        if bad is None:
            return
        self.store.mark_failed(bad)
        previous = self.store.installed()["previous"]
        if previous and (previous in self.store.failed() or not self.store.artifact(previous).exists()):
            previous = None
        if previous:
            self.store.set_current(previous, None)
        else:
            self.store.clear_current()
        self.artifact = previous
        log.warning("upgrade.rolled_back", version=bad, to=previous or "image", why=why)

    def resumed(self, died: str | None, back: str | None, back_version: str | None) -> None:
        """The new version died while the old one drained; the old one is current again."""
        if died is None or died == back:
            return
        self.store.mark_failed(died)
        if back is None:
            self.store.clear_current()
        else:
            self.store.set_current(back, None)
        self.artifact = back
        log.warning("upgrade.rolled_back", version=died, to=back_version,
                    why="the new version died while the old one was draining")
