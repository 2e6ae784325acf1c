"""Delegate profiles: a startup script managed in the manager, run at start and whenever it changes.

Every `DELEGATE_PROFILE_INTERVAL_S` (3 minutes) the delegate sends the profile id and lastUpdatedAt it
last ran; the manager answers null (unchanged), `NONE` (removed: local files deleted) or the profile.
The script runs with bash under a 10 minute timeout, stderr lines prefixed `ERROR: `; the output is kept
in `profile.result` beside `profile` (both 0600: they hold a script and its output), and uploaded
with `error = exit code != 0`. A profile that cannot run at all (a NUL byte in its script) is a
failed run, reported like any other; nothing a profile holds ends the delegate.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from delegate import files, log
from delegate.client import ManagerClient
from delegate.errors import DelegateError, TaskError
from delegate.identity import Registration
from delegate.tasks.process import ScriptResult, run_script
from protocol import wire

_log = log.get("delegate.profile")
PROFILE_TIMEOUT_S = 600.0
MAX_OUTPUT_CHARS = 1_000_000


class ProfileRunner:
    def __init__(self, client: ManagerClient, work_dir: Path, interval_s: float,
                 registration: Registration) -> None:
        self._client = client
        self._dir = work_dir
        self._interval = interval_s
        self._registration = registration
        self._profile_path = work_dir / "profile"
        self._result_path = work_dir / "profile.result"

    def _current(self) -> tuple[str, int]:
        try:
            meta = json.loads(self._profile_path.read_text(encoding="utf-8"))
            return str(meta["profileId"]), int(meta["profileLastUpdatedAt"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return "", 0

    async def run(self) -> None:
        while True:
            who = await self._registration.wait()
            try:
                await self.check_once(who.delegate_id)
            except DelegateError as exc:
                _log.warning("profile.check_failed", error=str(exc))
            except Exception as exc:  # noqa: BLE001 - a profile must never end the delegate
                _log.exception("profile.internal_error", error=repr(exc))
            await asyncio.sleep(self._interval)

    async def check_once(self, delegate_id: str) -> None:
        profile_id, updated_at = self._current()
        answer = await self._client.profile(delegate_id, profile_id, updated_at)
        if answer is None:
            _log.debug("profile.unchanged", profile_id=profile_id)
            return
        if answer.profile_id == "NONE":
            if profile_id:
                _log.info("profile.removed", profile_id=profile_id)
            # the result first: `profile` is the record that a profile applies, so it goes last
            for path in (self._result_path, self._profile_path):
                path.unlink(missing_ok=True)
            return
        await self._apply(delegate_id, answer)

    async def _apply(self, delegate_id: str, profile: wire.DelegateProfileParams) -> None:
        _log.info("profile.applying", profile_id=profile.profile_id, name=profile.name)
        lines: list[str] = []
        size = 0

        def keep(line: str) -> None:
            nonlocal size
            if size < MAX_OUTPUT_CHARS:
                lines.append(log.scrub(line))
                size += len(line) + 1

        try:
            result = await run_script(
                profile.script_content or "", timeout_s=PROFILE_TIMEOUT_S, on_stdout=keep,
                on_stderr=lambda line: keep(f"ERROR: {line}"), cwd=self._dir,
            )
        except TaskError as exc:
            keep(f"ERROR: {exc}")
            result = ScriptResult(exit_code=None, timed_out=False)
        if result.timed_out:
            keep(f"ERROR: profile script timed out after {PROFILE_TIMEOUT_S:.0f}s")
        error = result.timed_out or result.exit_code != 0
        output = "\n".join(lines)
        files.write_private(self._profile_path, json.dumps(
            {"profileId": profile.profile_id, "name": profile.name,
             "profileLastUpdatedAt": profile.profile_last_updated_at,
             "scriptContent": profile.script_content}))
        files.write_private(self._result_path, output)
        _log.info("profile.applied", profile_id=profile.profile_id, error=error,
                  exit_code=result.exit_code)
        await self._client.profile_result(delegate_id, wire.ProfileResult(
            profile_id=profile.profile_id, profile_last_updated_at=profile.profile_last_updated_at,
            error=error, output=output))
