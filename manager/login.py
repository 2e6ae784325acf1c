"""The pages' login: a form that trades an API key for a session cookie, and the guard in front of
every page.

    GET  /ui/login      the form (with a CSRF token bound to a `hm_csrf` cookie)
    POST /ui/login      key + CSRF -> session cookie (`hm_session`: HttpOnly, SameSite=Strict,
                        Secure under TLS or a trusted X-Forwarded-Proto: https), 303 to the pages
    POST /ui/logout     CSRF -> the session ends

`page_guard` (a middleware) lets no page, page feed or page download through without a live
session: a browser is sent to the login form, a script gets 401. Every POST under /ui/ must carry
the session's CSRF token (`csrf` form field). A page that needs more than `viewer` says so in
`PAGE_ROLES`.
"""

from __future__ import annotations

import html
import secrets

from aiohttp import web
from aiohttp.typedefs import Handler

from manager import db
from manager.core import MANAGER
from manager.people import SESSION_COOKIE, SESSION_TTL_MS, Person

CSRF_COOKIE = "hm_csrf"
PERSON = web.RequestKey("person", Person)
#: pages that need more than viewer (the download holds a delegate token)
PAGE_ROLES = {"/ui/install-delegate/ecs-task-spec": "admin"}
_OPEN = {"/ui/login"}

_FORM = """<!doctype html><html><head><meta charset='utf-8'><title>Log in</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}input{{width:28em}}
.err{{color:#a00}}</style></head><body><h1>Harness manager</h1>{error}
<form method='post' action='/ui/login'><input type='hidden' name='csrf' value='{csrf}'>
<label>API key <input type='password' name='key' autocomplete='off' autofocus></label>
<button type='submit'>Log in</button></form>
<p><small>A key from <code>harness-manager key create</code>, or the first admin key in
<code>DATA_DIR/admin-api-key</code>.</small></p></body></html>"""


def _cookie(response: web.StreamResponse, request: web.Request, name: str, value: str,
            max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        samesite="Strict", secure=request.secure)


async def login_form(request: web.Request, error: str = "") -> web.Response:
    token = secrets.token_urlsafe(24)
    text = _FORM.format(csrf=token, error=f"<p class='err'>{html.escape(error)}</p>" if error
                        else "")
    response = web.Response(text=text, content_type="text/html",
                            status=401 if error else 200)
    _cookie(response, request, CSRF_COOKIE, token, 3600)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    presented = str(form.get("csrf", ""))
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(presented, expected):
        return await login_form(request, "The form expired; log in again.")
    manager = request.app[MANAGER]
    done = manager.people.login(str(form.get("key", "")).strip(), db.now_ms())
    if done is None:
        return await login_form(request, "That API key is not valid.")
    session, _person = done
    response = web.HTTPSeeOther("/ui/delegates")
    _cookie(response, request, SESSION_COOKIE, session, SESSION_TTL_MS // 1000)
    response.del_cookie(CSRF_COOKIE, path="/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    manager = request.app[MANAGER]
    manager.people.end_session(request.cookies.get(SESSION_COOKIE, ""))
    response = web.HTTPSeeOther("/ui/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


def csrf_field(request: web.Request) -> str:
    """The hidden field every page form carries."""
    token = request.app[MANAGER].people.csrf(request.cookies.get(SESSION_COOKIE, ""))
    return f"<input type='hidden' name='csrf' value='{token}'>"


@web.middleware
async def page_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if not (path == "/" or path.startswith("/ui/")) or path in _OPEN:
        return await handler(request)
    manager = request.app[MANAGER]
    session = request.cookies.get(SESSION_COOKIE, "")
    person = manager.people.by_session(session, db.now_ms())
    if person is None:
        if request.method == "GET" and not path.endswith("/poll"):
            raise web.HTTPSeeOther("/ui/login")
        raise web.HTTPUnauthorized(text="log in at /ui/login")
    if request.method == "POST":
        form = await request.post()
        if not manager.people.csrf_ok(session, str(form.get("csrf", ""))):
            raise web.HTTPForbidden(text="the form's CSRF token is missing or wrong; reload the page")
    needed = PAGE_ROLES.get(path, "viewer")
    if not person.may(needed):
        raise web.HTTPForbidden(text=f"this page needs the {needed} role; you are {person.role}")
    request[PERSON] = person
    return await handler(request)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ui/login", login_form)
    app.router.add_post("/ui/login", login)
    app.router.add_post("/ui/logout", logout)
