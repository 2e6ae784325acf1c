"""Install Delegate > ECS Task Spec: the download as an API and as a page form.

    GET /api/setup/delegates/ecs-task-spec?accountId=ID&delegateGroupName=G&awsvpc=false
        [&tokenName=default&profile=PROFILE_ID&hostname=H&region=R&awsAccountId=N
         &image=REGISTRY/REPO:TAG&taskRoleArn=ARN&executionRoleArn=ARN]
         (image: default MANAGER_DELEGATE_IMAGE)
        Authorization: Bearer <API key>                 -> harness-delegate-ecs.tar.gz

    GET /ui/install-delegate                            -> the form (a login, `manager/login.py`)
    GET /ui/install-delegate/ecs-task-spec?...          -> the same download (a login, admin)

The archive is built by `protocol.taskspec` (the installer uses the same code), filled with
this manager's account, its delegate token and its configured public URL (`MANAGER_PUBLIC_URL`;
never the request's Host header).
"""

from __future__ import annotations

import html

from aiohttp import web

from manager import db
from manager.auth import DEFAULT_TOKEN_NAME, check_api_key
from manager.core import MANAGER, Manager
from manager.envelope import ApiError
from manager.profiles import _profile
from protocol import taskspec

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ApiError(400, "INVALID_REQUEST", f"query '{name}': expected true or false, got {raw[:20]!r}")


def _token(manager: Manager, name: str) -> str:
    """The secret of the delegate token the user picked; it must be usable."""
    t = manager.tokens.by_name.get(name)
    if t is None or t.view(db.now_ms())["status"] != "ACTIVE":
        raise ApiError(400, "INVALID_REQUEST", f"query 'tokenName': {name[:64]!r} is not an active "
                       "delegate token; see GET /api/setup/delegate-tokens")
    return t.secret


def _download(request: web.Request, manager: Manager) -> web.Response:
    q = request.query
    account_id = q.get("accountId") or manager.account.account_id
    if account_id != manager.account.account_id:
        raise ApiError(404, "NOT_FOUND", f"account {account_id!r} is not this manager's account")
    profile_id = q.get("profile") or None
    if profile_id and _profile(manager.conn, profile_id) is None:
        raise ApiError(400, "INVALID_REQUEST",
                       f"query 'profile': no profile {profile_id!r}; create it with "
                       f"PUT /api/setup/profiles/{profile_id} or leave it empty for the primary one")
    storage = f"{manager.public_url}/storage"
    image = q.get("image") or manager.settings.delegate_image
    if not image:
        raise ApiError(400, "INVALID_REQUEST",
                       "query 'image': none given and this manager has no delegate image "
                       "(MANAGER_DELEGATE_IMAGE); push the image with `scripts/build-image --push "
                       "REGISTRY/REPO:TAG` and pass image=REGISTRY/REPO:TAG")
    inputs = taskspec.SpecInputs(
        account_id=account_id,
        delegate_token=_token(manager, q.get("tokenName") or DEFAULT_TOKEN_NAME),
        manager_host_and_port=manager.public_url,  # configured, never the caller's Host header
        delegate_group_name=q.get("delegateGroupName") or None,
        profile_id=profile_id,
        hostname=q.get("hostname") or None,
        awsvpc=_flag(request, "awsvpc"),
        image=image,
        region=q.get("region") or taskspec.DEFAULT_REGION,
        aws_account_id=q.get("awsAccountId") or None,
        task_role_arn=q.get("taskRoleArn") or None,
        execution_role_arn=q.get("executionRoleArn") or None,
        delegate_storage_url=storage if _flag(request, "storage") else None,
        watcher_storage_url=storage if _flag(request, "storage") else None,
    )
    try:
        body = taskspec.archive(inputs)
    except taskspec.SpecError as exc:
        raise ApiError(400, "INVALID_REQUEST", str(exc)) from None
    return web.Response(body=body, content_type="application/gzip", headers={
        "Content-Disposition": f'attachment; filename="{taskspec.ARCHIVE_NAME}"',
        "Cache-Control": "no-store",  # it carries the delegate token
    })


async def ecs_task_spec(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    check_api_key(request, manager.people, manager.account, "admin")
    return _download(request, manager)


async def ecs_task_spec_page_download(request: web.Request) -> web.Response:
    return _download(request, request.app[MANAGER])


_FORM = """<!doctype html><html><head><meta charset='utf-8'><title>Install Delegate</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}label{{display:block;margin:.6em 0}}
input[type=text]{{width:22em}}small{{color:#666}}footer{{margin-top:2em;color:#777;font-size:12px}}</style>
</head><body><nav><a href='/ui/delegates'>Delegates</a> <a href='/ui/tasks'>Tasks</a></nav>
<h1>Install Delegate</h1><form method='get' action='/ui/install-delegate/ecs-task-spec'>
<label>Download Type <select name='type'><option>ECS Task Spec</option></select></label>
<label>Delegate Group Name <input type='text' name='delegateGroupName' required
 pattern='[A-Za-z0-9][A-Za-z0-9._-]{{0,63}}'></label>
<label>Profile <select name='profile'><option value=''>Primary</option>{profiles}</select></label>
<label><input type='checkbox' name='awsvpc' value='true'> Use AWS VPC Mode
 <small>(Fargate: runs the task with the FARGATE launch type)</small></label>
<label>Hostname <input type='text' name='hostname' placeholder='Harness-ECS-Delegate'>
 <small>EC2 bridge mode only; empty means Harness-ECS-Delegate</small></label>
<label>AWS region (for awslogs) <input type='text' name='region' value='us-east-1'></label>
<label>Image <input type='text' name='image' value='{image}' required
 placeholder='123456789012.dkr.ecr.us-east-1.amazonaws.com/harness-delegate:1.0.0'>
 <small>where this project's image was pushed (scripts/build-image --push); not Docker Hub's
 harness/delegate, not latest</small></label>
<label>Task role ARN <input type='text' name='taskRoleArn'
 placeholder='arn:aws:iam::123456789012:role/HarnessDelegateTaskRole'>
 <small>the delegate's AWS permissions (HarnessECS policy); on EC2 empty: the instance role</small>
</label>
<label>Execution role ARN <input type='text' name='executionRoleArn'
 placeholder='arn:aws:iam::123456789012:role/ecsTaskExecutionRole'>
 <small>pulls the image, writes logs, reads secrets; Fargate default ecsTaskExecutionRole</small></label>
<label>AWS account id (for the default execution role ARN, optional)
 <input type='text' name='awsAccountId' pattern='[0-9]{{12}}'></label>
<input type='hidden' name='accountId' value='{account}'>
<button type='submit'>Download</button></form>
<p>Then: <code>tar -zxvf harness-delegate-ecs.tar.gz; cd harness-delegate-ecs</code> and follow
README.txt, or run <code>harness-delegate install-ecs --spec ecs-task-spec.json --cluster C
--service-name S</code>.</p>
<footer>The download holds a delegate token: it needs the admin role; keep the file like a
password.</footer></body></html>"""


async def install_page(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    rows = manager.conn.execute("SELECT profile_id, name FROM profiles ORDER BY name").fetchall()
    options = "".join(f"<option value='{html.escape(r['profile_id'])}'>{html.escape(r['name'])}"
                      "</option>" for r in rows)
    text = _FORM.format(profiles=options, account=html.escape(manager.account.account_id),
                        image=html.escape(manager.settings.delegate_image or ""))
    return web.Response(text=text, content_type="text/html")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/setup/delegates/ecs-task-spec", ecs_task_spec)
    app.router.add_get("/ui/install-delegate", install_page)
    app.router.add_get("/ui/install-delegate/ecs-task-spec", ecs_task_spec_page_download)
