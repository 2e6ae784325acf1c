"""The manager: the agent API of `docs/protocol.md` on aiohttp + SQLite.

Modules by role:

| module | role |
|---|---|
| `cli.py` | `harness-manager serve|task`: settings, logging, signals, exit codes |
| `app.py` | `ROUTES` (the one place routes are registered), `ManagerServer` lifecycle, `delegate.env` |
| `settings.py` | the one settings object |
| `core.py` | `Manager`: state shared by handlers, cross-part rules, the periodic `tick` |
| `db.py` | SQLite schema, connection (WAL, synchronous=NORMAL), the account |
| `auth.py` | delegate JWE check (via `protocol.auth.decrypt`) and the setup API key |
| `envelope.py` | `{resource, responseMessages, metaData}`, `ApiError`, body parsing, 400/413 |
| `delegates.py` | register / keep-alive / heartbeat / unregister, ECS slots, connected status |
| `hub.py`, `stream.py` | open websockets by delegate id; the stream endpoint |
| `dispatch.py` | eligibility, broadcast rounds, why a task found no delegate |
| `tasks.py` | task state transitions, each one conditional UPDATE |
| `agent_api.py` | `/api/agent/...` handlers |
| `profiles.py` | profile check / result and their setup calls |
| `setup_api.py` | `/api/setup/...` for people and scripts |
| `pages.py` | the HTML pages |
| `task_cli.py` | `harness-manager task submit|show` |
"""
