"""`GET /storage/...`: the files `devstack publish` writes under `<data dir>/storage/` (delegate and
watcher artifacts and their check files), so DELEGATE_STORAGE_URL / WATCHER_STORAGE_URL can point at
`<manager>/storage` and an upgrade can be tried end to end locally.
"""

from __future__ import annotations

from aiohttp import web

from manager.core import MANAGER


def add_routes(app: web.Application) -> None:
    root = app[MANAGER].settings.data_dir / "storage"
    root.mkdir(parents=True, exist_ok=True)
    app.router.add_static("/storage/", root, follow_symlinks=False, show_index=False)
