"""Plain HTML pages for people: delegates by group, tasks, one task's live log.

Every page needs a login (`manager/login.py` guards them). ECS delegates without a heartbeat
within the disconnect threshold drop out of the delegates page, as in the real manager; the setup
API still lists them as DISCONNECTED.
"""

from __future__ import annotations

import html
import json
import time

from aiohttp import web

from manager.core import MANAGER, Manager
from manager.login import PERSON, csrf_field
from manager.setup_api import grouped, task_view
from protocol.wire import TaskStatus

_STYLE = """body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}
details{margin:.6em 0}summary{cursor:pointer;font-weight:600}.CONNECTED,.SUCCEEDED{color:#070}
.DISCONNECTED,.FAILED,.ERRORED,.EXPIRED,.ABORTED{color:#a00}pre{background:#f6f6f6;padding:1em}
footer{margin-top:2em;color:#777;font-size:12px}nav a{margin-right:1em}"""


def _page(request: web.Request, title: str, body: str) -> web.Response:
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><nav><a href='/ui/delegates'>Delegates</a>"
        "<a href='/ui/tasks'>Tasks</a><a href='/ui/install-delegate'>Install Delegate</a></nav>"
        f"<h1>{html.escape(title)}</h1>{body}"
        f"<footer><form method='post' action='/ui/logout'>{csrf_field(request)}"
        f"{_e(request[PERSON].name)} ({_e(request[PERSON].role)}) "
        "<button type='submit'>Log out</button></form></footer></body></html>"
    )
    return web.Response(text=text, content_type="text/html")


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _when(ms: int | None) -> str:
    if not ms:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + "Z"


def _age(now: int, ms: int | None) -> str:
    if not ms:
        return ""
    seconds = max(0, (now - ms) // 1000)
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


async def delegates_page(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    now = int(time.time() * 1000)
    parts = []
    for group in grouped(manager, now):
        shown = [d for d in group["delegates"]
                 if not (d["delegateType"] == "ECS" and d["status"] == "DISCONNECTED")]
        name = _e(group["groupName"] or "(no group)")
        if not shown:  # every delegate of it went away: say so rather than drop the group
            gone = len(group["delegates"])
            parts.append(f"<details><summary>{name} (0 connected)</summary><p>No delegate left "
                         f"in this group ({gone} disconnected).</p></details>")
            continue
        rows = "".join(
            f"<tr><td>{_e(d['delegateName'] or d['hostName'])}</td><td>{_e(d['hostName'])}</td>"
            f"<td>{_e(d['ip'])}</td>"
            f"<td class='{_e(d['status'])}'>{_e(d['status'].title())}</td><td>{_e(d['version'])}</td>"
            f"<td>{_e(d['watcherVersion'] or '-')}</td>"
            f"<td>{'polling' if d['pollingModeEnabled'] else 'streaming'}</td>"
            f"<td title='{_e(_when(d['lastHeartBeat']))}'>{_e(_age(now, d['lastHeartBeat']))}</td>"
            f"<td>{_e(d['tokenName'])}</td><td>{_e(', '.join(d['tags']))}</td></tr>"
            for d in shown)
        connected = sum(d["status"] == "CONNECTED" for d in shown)
        parts.append(
            f"<details open><summary>{name} ({connected}/{len(shown)} connected)</summary>"
            "<table><tr><th>name</th><th>host</th><th>IP</th><th>status</th><th>version</th>"
            "<th>watcher</th><th>mode</th><th>last heartbeat</th><th>token</th><th>tags</th></tr>"
            f"{rows}</table></details>")
    return _page(request, "Delegates", "".join(parts) or "<p>No delegates yet.</p>")


def _host(manager: Manager, delegate_id: str | None) -> str:
    rec = manager.delegates.get(delegate_id)
    return rec.host_name if rec is not None else (delegate_id or "")


async def tasks_page(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    status = request.query.get("status") or None
    group = request.query.get("group") or None
    if status is not None and status not in {t.value for t in TaskStatus}:
        status = None
    views = [task_view(r) for r in manager.tasks.list(status)]
    if group is not None:
        views = [v for v in views if v["delegateGroupName"] == group]
    rows = "".join(
        f"<tr><td><a href='/ui/tasks/{_e(v['taskId'])}'>{_e(v['taskId'])}</a></td>"
        f"<td>{_e(v['taskType'])}</td><td class='{_e(v['status'])}'>{_e(v['status'])}</td>"
        f"<td>{_e(_host(manager, v['delegateId']))}</td><td>{_e(v['delegateGroupName'])}</td>"
        f"<td>{_e(_when(v['createdAt']))}</td><td>{_e(v['errorMessage'])}</td></tr>"
        for v in views)
    options = "".join(f"<option{' selected' if t.value == status else ''}>{t.value}</option>"
                      for t in TaskStatus)
    filters = ("<form method='get' action='/ui/tasks'>status <select name='status'><option value=''>"
               f"any</option>{options}</select> group <input name='group' value='{_e(group)}'>"
               " <button type='submit'>Filter</button></form>")
    return _page(request, "Tasks", filters + "<table><tr><th>task</th><th>type</th><th>status</th>"
                 "<th>delegate host</th><th>group</th><th>created</th><th>error</th></tr>"
                 f"{rows}</table>")


_LIVE_JS = """<script>
const id=%s;let next=-1;const log=document.getElementById('log'),st=document.getElementById('st');
async function poll(){const r=await fetch('/ui/tasks/'+id+'/poll?sinceSeq='+next);
if(r.ok){const t=await r.json();st.textContent=t.status+(t.errorMessage?': '+t.errorMessage:'');
st.className=t.status;for(const l of t.logLines){log.textContent+=new Date(l.ts).toISOString()
.slice(11,23)+' '+l.level.padEnd(5)+' '+l.message+'\\n';}
next=t.nextSeq;if(['QUEUED','VALIDATING','STARTED'].includes(t.status)){setTimeout(poll,700);}}
else{setTimeout(poll,3000);}}poll();</script>"""


async def task_page(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    row = manager.tasks.get(request.match_info["taskId"])
    if row is None:
        raise web.HTTPNotFound(text="no such task")
    v = task_view(row)
    body = (f"<p>type {_e(v['taskType'])}, delegate {_e(_host(manager, v['delegateId']))}, created "
            f"{_e(_when(v['createdAt']))}</p><p>status: <b id='st'>{_e(v['status'])}</b></p>"
            f"<pre id='log'></pre>" + _LIVE_JS % json.dumps(v["taskId"]))
    return _page(request, f"Task {v['taskId']}", body)


async def task_poll(request: web.Request) -> web.Response:
    """The page's own JSON feed, so the page needs no API key in the browser."""
    manager = request.app[MANAGER]
    row = manager.tasks.get(request.match_info["taskId"])
    if row is None:
        raise web.HTTPNotFound()
    try:
        since = int(request.query.get("sinceSeq", "-1"))
    except ValueError:
        since = -1
    lines = manager.tasks.logs(row["task_id"], since)
    v = task_view(row)
    return web.json_response({"status": v["status"], "errorMessage": v["errorMessage"],
                              "logLines": lines,
                              "nextSeq": lines[-1]["seq"] if lines else since})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", delegates_page)
    app.router.add_get("/ui/delegates", delegates_page)
    app.router.add_get("/ui/tasks", tasks_page)
    app.router.add_get("/ui/tasks/{taskId}", task_page)
    app.router.add_get("/ui/tasks/{taskId}/poll", task_poll)
