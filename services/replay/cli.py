"""The analyst's commands: `earpiece replay`, `export`, `sessions search`, `audit`, `retention`,
`viewer` and `rerun`. `services/cli.py` owns the top-level parser and calls `add_replay_cli`.

They read the database directly (DATABASE_URL or the embedded default), so whoever runs them
holds the database's credentials; every read is still recorded in the audit trail, naming the
local user and process. Output is drawn with `rich`: coloured, aligned, and a progress bar on
anything that reads a session's log or audio.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from services.replay.access import local_caller
from services.replay.analysis import Analysis
from services.replay.service import AuditQuery, ReplayReader, SearchFilters
from services.runtime.config import Settings
from services.store.events import SessionRecord

WHO_STYLE = {
    "user": "bold cyan",
    "assistant": "bold green",
    "earpiece": "magenta",
    "client": "blue",
    "tool": "yellow",
    "model": "red",
}

Command = Callable[[Settings, argparse.Namespace], Awaitable[int]]


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=False)


@asynccontextmanager
async def _reader(settings: Settings) -> AsyncIterator[ReplayReader]:
    from services.runtime.app import database
    from services.store.event_store import EventStore

    # Migrated by the owner where the login may; logged in as the application role.
    async with database(settings) as (url, _), await EventStore.open(url) as store:
        yield ReplayReader(store)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


async def _load(
    reader: ReplayReader, session_id: str, action: str, *, with_audio: bool = False
) -> tuple[SessionRecord, Analysis] | None:
    caller = local_caller()
    record = await reader.session(caller, session_id)
    if record is None:
        _console(stderr=True).print(f"earpiece: no session {session_id!r}")
        return None
    await reader.audit(caller, action, session_id=session_id)
    total = await reader.store.last_seq(session_id)
    with _progress(_console(stderr=True)) as progress:
        task = progress.add_task(f"reading {total:,} events", total=total or None)
        analysis, _ = await reader.analyse(
            record, progress=lambda seq: progress.update(task, completed=seq)
        )
    return record, analysis


def _fmt_ms(value: int | None) -> str:
    return "-" if value is None else f"{value:,} ms"


def render_timeline(console: Console, a: Analysis, *, purged: bool = False) -> None:
    title = f"session {a.session_id}"
    subtitle = f"tenant {a.tenant_id} · prompt {a.prompt_hash[:12]}"
    if a.persona:
        subtitle += f" · persona {a.persona}"
    if a.rerun_of:
        subtitle += f" · re-run of {a.rerun_of}"
    table = Table(title=title, caption=subtitle, show_lines=False, expand=False)
    table.add_column("t (s)", justify="right", style="dim")
    table.add_column("who")
    table.add_column("what", overflow="fold")
    for e in a.entries:
        table.add_row(f"{e.at_ms / 1000:.2f}", Text(e.who, WHO_STYLE.get(e.who, "")), e.what)
    console.print(table)

    m = a.metrics
    assert m is not None
    turns = Table(title="turns", expand=False)
    for column in ("turn", "user said", "assistant (as heard)", "first audio", "earpiece"):
        turns.add_column(column, overflow="fold")
    for turn, tm in zip(a.turns, m.turns, strict=True):
        heard = " ".join(
            a.responses[rid].heard_transcript or "" for rid in turn.responses if rid in a.responses
        )
        if turn.barged_in:
            heard = "[red]✂ barge-in[/red] " + heard
        turns.add_row(
            str(turn.index),
            turn.user_transcript,
            heard,
            _fmt_ms(tm.first_audio_latency_ms),
            _fmt_ms(tm.earpiece_ms),
        )
    console.print(turns)
    if a.tools:
        tools = Table(title="tool calls", expand=False)
        for column in ("call", "requested", "held", "speech done", "started", "finished", "→"):
            tools.add_column(column)
        for c in a.tools.values():
            style = {"succeeded": "green", "failed": "red", "dropped": "yellow"}.get(c.outcome)
            tools.add_row(
                c.name,
                *(
                    "-" if v is None else f"{v / 1000:.2f}"
                    for v in (c.requested_ms, c.held_ms, c.speech_done_ms, c.started_ms)
                ),
                "-" if c.finished_ms is None else f"{c.finished_ms / 1000:.2f}",
                Text(c.outcome or "open", style or "bold red"),
            )
        console.print(tools)
    lines = [
        f"{a.event_count:,} events over {a.duration_ms / 1000:.1f} s; "
        f"user talked {m.user_talk_ms / 1000:.1f} s, assistant {m.assistant_talk_ms / 1000:.1f} s",
        f"first audio p50 {_fmt_ms(m.first_audio_latency_p50_ms)}, "
        f"max {_fmt_ms(m.first_audio_latency_max_ms)}; "
        f"Earpiece's part p50 {_fmt_ms(m.earpiece_p50_ms)}",
        f"{m.interruptions} interruption(s); {len(a.contexts)} context update(s); "
        f"{len(a.links)} link change(s); {len(a.errors)} error(s)",
        f"tokens in {m.usage.get('input_tokens', 0):,} / out {m.usage.get('output_tokens', 0):,};"
        f" cost ${m.cost_usd:.4f}",
    ]
    if purged:
        lines.append("[yellow]stored audio purged by retention (events kept)[/yellow]")
    console.print(Panel("\n".join(lines), title="summary", expand=False))


async def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    async with _reader(settings) as reader:
        loaded = await _load(reader, args.session_id, "get_timeline")
        if loaded is None:
            return 1
        _, analysis = loaded
        purged = await reader.audio_purged(args.session_id)
    if args.json:
        from services.replay.messages import analysis_json

        print(json.dumps(analysis_json(analysis, audio_purged=purged), default=str, indent=2))
    else:
        render_timeline(_console(), analysis, purged=purged)
    return 0


async def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    if not args.wav and not args.jsonl:
        print("earpiece export: give --wav FILE and/or --jsonl FILE", file=sys.stderr)
        return 2
    err = _console(stderr=True)
    caller = local_caller()
    async with _reader(settings) as reader:
        record = await reader.session(caller, args.session_id)
        if record is None:
            err.print(f"earpiece: no session {args.session_id!r}")
            return 1
        total = await reader.store.last_seq(args.session_id)
        if args.jsonl:
            await reader.audit(caller, "export_events", session_id=args.session_id)
            # Blocking writes are fine here: this one-shot command's loop serves nothing else.
            out_path = Path(args.jsonl)
            with _progress(err) as progress, out_path.open("w", encoding="utf-8") as out:  # noqa: ASYNC230
                task = progress.add_task("writing events", total=total or None)
                async for e in reader.events(args.session_id):
                    out.write(
                        json.dumps(
                            {
                                "seq": e.seq,
                                "kind": e.kind,
                                "source": e.source,
                                "receive_time": e.receive_time.isoformat(),
                                "producer_time": e.producer_time.isoformat()
                                if e.producer_time
                                else None,
                                "payload": json.loads(e.payload_json),
                            },
                            separators=(",", ":"),
                        )
                        + "\n"
                    )
                    if e.seq % 1000 == 0:
                        progress.update(task, completed=e.seq)
            err.print(f"wrote {total:,} events to {args.jsonl}")
        if args.wav:
            await reader.audit(caller, "export_audio", session_id=args.session_id)
            with _progress(err) as progress:
                task = progress.add_task("reading the log", total=total or None)
                _, audio = await reader.export_audio(
                    record, progress=lambda seq: progress.update(task, completed=seq)
                )
                progress.update(task, description="writing WAV", completed=0, total=None)
                with Path(args.wav).open("wb") as out:  # noqa: ASYNC230 (as above)
                    for chunk in audio.wav_chunks():
                        out.write(chunk)
            err.print(
                f"wrote {audio.duration_ms / 1000:.1f} s of stereo audio (user left, assistant "
                f"right) to {args.wav}"
            )
            for m in audio.markers:
                err.print(
                    f"[yellow]  {m.channel} audio {m.reason} from {m.start_ms / 1000:.2f} s "
                    f"to {m.end_ms / 1000:.2f} s (silence in the file, cue point marks it)"
                )
    return 0


def _when(text: str | None) -> datetime | None:
    """ISO time, or a span back from now such as 2h, 3d, 30m."""
    if not text:
        return None
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if text[-1] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{units[text[-1]]: int(text[:-1])})
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    filters = SearchFilters(
        tenant_id=args.tenant,
        created_after=_when(args.since),
        created_before=_when(args.until),
        status=args.status,
        prompt_hash=args.prompt_hash,
        persona=args.persona,
        tool_name=args.tool,
        error_kind=args.error,
        min_first_audio_latency_ms=args.min_latency_ms,
        min_interruptions=args.min_interruptions,
        text=args.text,
        page_size=args.limit,
    )
    caller = local_caller()
    async with _reader(settings) as reader:
        with _progress(_console(stderr=True)) as progress:
            progress.add_task("searching (summaries are rebuilt where stale)", total=None)
            result = await reader.search(filters)
        await reader.audit(
            caller, "search_sessions", detail={"cli": vars(args) | {"run": None, "func": None}}
        )
    if args.json:
        rows = [{**r.__dict__, "created_at": r.created_at.isoformat()} for r in result.sessions]
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"{len(result.sessions)} session(s)", expand=False)
    for column in ("session", "tenant", "created", "status", "turns", "first audio max",
                   "cut", "tools", "errors", "cost", "match"):  # fmt: skip
        table.add_column(column, overflow="fold")
    for r in result.sessions:
        latency = r.first_audio_max_ms
        table.add_row(
            r.session_id,
            r.tenant_id,
            f"{r.created_at:%Y-%m-%d %H:%M}",
            r.status,
            str(r.turns),
            Text(_fmt_ms(latency), "red" if latency is not None and latency > 1500 else ""),
            str(r.interruptions),
            ", ".join(r.tool_names),
            Text(", ".join(r.error_kinds), "red"),
            f"${r.cost_usd:.4f}",
            r.snippet,
        )
    _console().print(table)
    return 0


async def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    async with _reader(settings) as reader:
        rows = await reader.query_audit(
            AuditQuery(
                tenant_id=args.tenant,
                session_id=args.session,
                key_id=args.key,
                action=args.action,
                after=_when(args.since),
                limit=args.limit,
            )
        )
        await reader.audit(local_caller(), "query_audit", detail={"found": len(rows)})
    if args.json:
        print(json.dumps([{**r.__dict__, "at": r.at.isoformat()} for r in rows], indent=2))
        return 0
    table = Table(title=f"{len(rows)} read(s), newest first", expand=False)
    for column in ("#", "when", "key", "tenant", "role", "action", "session", "from"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            str(r.audit_id),
            f"{r.at:%Y-%m-%d %H:%M:%S}",
            r.key_id,
            r.tenant_id,
            r.role,
            Text(r.action, "bold"),
            r.session_id or "",
            r.peer,
        )
    _console().print(table)
    return 0


async def cmd_retention(settings: Settings, args: argparse.Namespace) -> int:
    from services.replay.retention import purge_expired_audio

    async with _reader(settings) as reader:
        if args.retention_command == "set":
            await reader.set_retention(args.tenant, args.days)
            await reader.audit(
                local_caller(),
                "set_retention",
                detail={"tenant_id": args.tenant, "audio_days": args.days},
            )
            print(f"tenant {args.tenant}: stored audio kept {args.days} day(s)")
            return 0
        if args.retention_command == "run":
            report = await purge_expired_audio(reader.pool, run_id=f"cli:{local_caller().peer}")
            print(
                f"purged {report.chunks} chunk(s), {report.bytes:,} bytes of audio "
                f"from {len(report.sessions)} session(s); events kept"
            )
            return 0
        rows = await reader.pool.fetch(
            "SELECT tenant_id, audio_days, updated_at FROM tenant_retention ORDER BY tenant_id"
        )
    table = Table(title="audio retention", expand=False)
    for column in ("tenant", "days", "set at"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["tenant_id"], str(row["audio_days"]), f"{row['updated_at']:%Y-%m-%d}")
    _console().print(table)
    return 0


async def cmd_viewer(settings: Settings, args: argparse.Namespace) -> int:
    from services.replay.viewer.server import run_viewer

    return await run_viewer(settings, host=args.host, port=args.port)


async def cmd_rerun(settings: Settings, args: argparse.Namespace) -> int:
    from services.replay.rerun import run_rerun_command

    return await run_rerun_command(settings, args)


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    func: Command,
    help_text: str,
    **kw: Any,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text, **kw)
    parser.set_defaults(run=func)
    return parser


def add_replay_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = _add(sub, "replay", cmd_replay, "print a session's timeline from the event log")
    replay.add_argument("session_id")
    replay.add_argument("--json", action="store_true", help="the whole analysis as JSON")

    export = _add(sub, "export", cmd_export, "export a session's audio (WAV) or events (JSONL)")
    export.add_argument("session_id")
    export.add_argument("--wav", metavar="FILE", help="stereo WAV: user left, assistant right")
    export.add_argument("--jsonl", metavar="FILE", help="every event, one JSON object a line")

    sessions = sub.add_parser("sessions", help="find sessions")
    sessions_sub = sessions.add_subparsers(dest="sessions_command", required=True)
    search = _add(sessions_sub, "search", cmd_search, "search sessions")
    search.add_argument("--tenant")
    search.add_argument("--since", help="ISO time, or a span back from now: 30m, 2h, 7d")
    search.add_argument("--until", help="ISO time, or a span back from now")
    search.add_argument("--status", choices=["active", "ended"])
    search.add_argument("--prompt-hash", help="prefix of the prompt's sha256")
    search.add_argument("--persona")
    search.add_argument("--tool", help="sessions that called this tool")
    search.add_argument("--error", help="sessions with this error kind or code")
    search.add_argument(
        "--min-latency-ms", type=int, help="a turn's first-audio latency at least this"
    )
    search.add_argument("--min-interruptions", type=int)
    search.add_argument("--text", help="words in the transcripts (full-text search)")
    search.add_argument("--limit", type=int, default=50)
    search.add_argument("--json", action="store_true")

    audit = _add(sub, "audit", cmd_audit, "who read which session, when, from where")
    audit.add_argument("--tenant")
    audit.add_argument("--session")
    audit.add_argument("--key")
    audit.add_argument("--action")
    audit.add_argument("--since", help="ISO time, or a span back from now: 30m, 2h, 7d")
    audit.add_argument("--limit", type=int, default=100)
    audit.add_argument("--json", action="store_true")

    retention = _add(sub, "retention", cmd_retention, "per-tenant audio retention")
    retention_sub = retention.add_subparsers(dest="retention_command")
    set_ = retention_sub.add_parser("set", help="keep a tenant's stored audio DAYS days")
    set_.add_argument("tenant")
    set_.add_argument("days", type=int)
    retention_sub.add_parser("run", help="purge stored audio past retention now")
    retention_sub.add_parser("show", help="list tenants' retention")

    viewer = _add(sub, "viewer", cmd_viewer, "the web session viewer")
    viewer.add_argument("--host", default="127.0.0.1")
    viewer.add_argument("--port", type=int, default=8765)

    rerun = _add(sub, "rerun", cmd_rerun, "replay a session's user side against another persona")
    rerun.add_argument("session_id")
    rerun.add_argument("--persona", required=True, metavar="FILE", help="persona YAML")
    rerun.add_argument("--tenant", help="tenant of the re-run (default: the source's)")
    rerun.add_argument("--address", help="an Earpiece gateway (default: start one here)")
    rerun.add_argument("--json", action="store_true", help="the comparison as JSON, for CI")
