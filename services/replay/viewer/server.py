"""`earpiece viewer`: the web session viewer, a small aiohttp server.

Pages and assets are plain HTML/JS/CSS shipped in this package (static/); nothing is fetched
from anywhere at run time. The pages call a JSON API here, which takes the same API keys as the
gRPC API (`Authorization: Bearer ep_...`; the page asks for the key once and keeps it in the
tab's sessionStorage). Analyst or admin keys only; an analyst sees its own tenant; every read
is audited with the key, the tenant and the browser's address, exactly like the gRPC reads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from services.auth.keys import KeyRefused, resolve_key
from services.gateway.validation import InvalidField
from services.replay import validate
from services.replay.access import ALL_TENANTS, ANALYST, AccessDenied, Caller
from services.replay.messages import analysis_json
from services.replay.service import ReplayReader
from services.runtime.config import Settings
from services.store.event_store import EventStore
from services.store.pool import scoped_to

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
READER: web.AppKey[ReplayReader] = web.AppKey("reader", ReplayReader)
CALLER = web.RequestKey("caller", Caller)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def resolve_caller(reader: ReplayReader, request: web.Request) -> Caller:
    """The caller behind the request's API key (services/auth's keys), or 401/403."""
    header = request.headers.get("Authorization", "")
    token = header.removeprefix("Bearer ").strip()
    if not token:
        raise web.HTTPUnauthorized(text="an API key is needed: Authorization: Bearer ep_...")
    try:
        principal = await resolve_key(reader.pool, token)
    except KeyRefused as exc:
        raise web.HTTPUnauthorized(text=str(exc)) from None
    caller = Caller(
        principal.key_id, principal.tenant_id, principal.role.value, f"http:{request.remote}"
    )
    try:
        caller.require(ANALYST)
    except AccessDenied as exc:
        raise web.HTTPForbidden(text=str(exc)) from None
    return caller


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API calls need a key; each runs scoped to its caller's tenant (row-level security)."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    caller = await resolve_caller(request.app[READER], request)
    request[CALLER] = caller
    with scoped_to(ALL_TENANTS if caller.all_tenants else caller.tenant_id):
        return await handler(request)


def _int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number") from None


def _time(request: web.Request, name: str) -> datetime | None:
    value = request.query.get(name, "").strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an ISO date or time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def api_whoami(request: web.Request) -> web.Response:
    caller = request[CALLER]
    return web.json_response(
        {"key_id": caller.key_id, "tenant_id": caller.tenant_id, "role": caller.role}
    )


async def api_sessions(request: web.Request) -> web.Response:
    reader = request.app[READER]
    caller = request[CALLER]
    q = request.query
    try:
        tenant = caller.acting_tenant(validate.tenant("tenant", q.get("tenant", "")))
    except InvalidField as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    except AccessDenied as exc:
        raise web.HTTPForbidden(text=str(exc)) from None
    try:
        filters = validate.search_filters(
            tenant_id=tenant or None,
            created_after=_time(request, "since"),
            created_before=_time(request, "until"),
            status=q.get("status", ""),
            prompt_hash=q.get("prompt_hash", ""),
            persona=q.get("persona", ""),
            tool_name=q.get("tool", ""),
            error_kind=q.get("error", ""),
            min_first_audio_latency_ms=_int(request, "min_latency_ms") or 0,
            min_interruptions=_int(request, "min_interruptions") or 0,
            words=q.get("text", ""),
            page_size=_int(request, "limit") or 0,
            token=q.get("page_token", ""),
        )
    except InvalidField as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    result = await reader.search(filters)
    await reader.audit(caller, "search_sessions", detail={"viewer": dict(q)})
    rows = [{**asdict(r), "created_at": r.created_at.isoformat()} for r in result.sessions]
    return web.json_response({"sessions": rows, "next_page_token": result.next_page_token})


async def _visible(request: web.Request, action: str) -> tuple[ReplayReader, Any, Caller]:
    reader = request.app[READER]
    caller = request[CALLER]
    session_id = request.match_info["session_id"]
    if not validate.SESSION_ID.match(session_id):
        raise web.HTTPNotFound(text="no such session")
    record = await reader.session(caller, session_id)
    if record is None:
        raise web.HTTPNotFound(text=f"no session {session_id!r}")
    await reader.audit(caller, action, session_id=session_id, detail={"via": "viewer"})
    return reader, record, caller


async def api_analysis(request: web.Request) -> web.Response:
    reader, record, _ = await _visible(request, "get_timeline")
    analysis, _ = await reader.analyse(record)
    purged = await reader.audio_purged(record.session_id)
    body = analysis_json(analysis, audio_purged=purged)
    return web.json_response(body, dumps=lambda v: json.dumps(v, default=str))


async def api_audio(request: web.Request) -> web.StreamResponse:
    reader, record, _ = await _visible(request, "export_audio")
    _, audio = await reader.export_audio(record)
    markers = [asdict(m) for m in audio.markers]
    response = web.StreamResponse(
        headers={
            "Content-Type": "audio/wav",
            "Content-Length": str(audio.wav_size),
            "X-Earpiece-Markers": json.dumps(markers),
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    for chunk in audio.wav_chunks():
        await response.write(chunk)
    await response.write_eof()
    return response


def _page(name: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})

    return handler


def make_app(reader: ReplayReader) -> web.Application:
    app = web.Application(middlewares=[authenticate])
    app[READER] = reader
    app.router.add_get("/", _page("index.html"))
    app.router.add_get("/session/{session_id}", _page("session.html"))
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/api/whoami", api_whoami)
    app.router.add_get("/api/sessions", api_sessions)
    app.router.add_get("/api/sessions/{session_id}/analysis", api_analysis)
    app.router.add_get("/api/sessions/{session_id}/audio.wav", api_audio)
    return app


@asynccontextmanager
async def serving_viewer(
    store: EventStore, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serves the viewer until the block ends; yields its base URL."""
    runner = web.AppRunner(make_app(ReplayReader(store)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    try:
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()


async def run_viewer(settings: Settings, *, host: str, port: int) -> int:
    from services.cli import interrupted
    from services.runtime.app import database

    async with (
        database(settings) as (url, dev_key_file),
        await EventStore.open(url) as store,
        serving_viewer(store, host=host, port=port) as base,
    ):
        stop = interrupted()
        print(f"session viewer on {base}/ (an analyst or admin API key); Ctrl-C stops it")
        if dev_key_file is not None:
            print(f"  the development key (admin) is in {dev_key_file}")
        await stop.wait()
    return 0
