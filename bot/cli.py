"""The ``onwatch`` command. Each subcommand is a thin shell over a domain function; errors are one line."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from bot.errors import ConfigError, DatabaseError, ListenError, OnwatchError
from bot.masking import mask
from bot.operator_cli import run_on_database
from bot.store.db import Database

Command = Callable[[argparse.Namespace], int]
T = TypeVar("T")


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from bot.config import load_settings

    return load_settings(getattr(args, "config", None))


# ------------------------------------------------------------------ foundation commands


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.app import serve
    from bot.logs import setup_logging

    settings = _settings(args)
    setup_logging(settings.server.log_level, settings.server.json_logs or args.json_logs)
    asyncio.run(serve(settings))
    return 0


# The verbs an operator is likely to write for the remediation job kinds.
KIND_ALIASES = {"execute": "execution", "verify": "verification"}


def job_kinds(text: str) -> list[str]:
    """``--kinds``: comma-separated job kinds, each one onwatch knows, or an alias in ``KIND_ALIASES`` (argparse
    exits 2 naming the unknown ones)."""
    from bot.app import JOB_KINDS

    kinds = [KIND_ALIASES.get(k.strip(), k.strip()) for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in JOB_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown job kind(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(JOB_KINDS)} "
            f"(execute and verify name execution and verification)")
    return list(dict.fromkeys(kinds))


def cmd_worker(args: argparse.Namespace) -> int:
    from bot.app import work
    from bot.logs import setup_logging

    settings = _settings(args)
    setup_logging(settings.server.log_level, settings.server.json_logs or args.json_logs)
    asyncio.run(work(settings, args.kinds))
    return 0


def version() -> str:
    try:
        return importlib.metadata.version("onwatch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def cmd_migrate(args: argparse.Namespace) -> int:
    from bot.store.db import DEFAULT_SQLITE, open_database
    from bot.store.migrate import head_revision, upgrade

    settings = _settings(args)
    url = settings.database.url or DEFAULT_SQLITE

    async def _ping() -> None:
        db = await open_database(url)
        await db.dispose()

    asyncio.run(_ping())
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        upgrade(url)
    except (CommandError, SQLAlchemyError, OSError) as exc:
        raise DatabaseError(f"migration failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    print(f"database at {head_revision()} (head)")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from bot.config import exposure_problems
    from bot.remediate.catalog import load_catalog

    settings = _settings(args)
    problems: list[str] = exposure_problems(settings)
    try:
        load_catalog(settings.runbooks.dir, settings)
    except ConfigError as exc:
        problems.extend(exc.errors)
    if problems:
        raise ConfigError(problems)
    print("configuration is valid")
    return 0


def _with_db(args: argparse.Namespace, fn: Callable[[Database], Awaitable[T]]) -> T:
    return run_on_database(_settings(args), fn)


def _chain_key(args: argparse.Namespace) -> bytes | None:
    settings = _settings(args)
    key = settings.audit.chain_key
    return key.get_secret_value().encode() if key is not None else None


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Verify the chain in the database, or an export (``--file``), optionally against a checkpoint kept
    outside the database (``--checkpoint COUNT:HEAD`` or ``--checkpoint-file`` holding the logged line)."""
    from bot.audit import Checkpoint, last_checkpoint_in, read_export, verify_chain, verify_rows

    try:
        cp = Checkpoint.parse(args.checkpoint) if args.checkpoint else None
        if args.checkpoint_file:
            cp = last_checkpoint_in(Path(args.checkpoint_file).read_text(errors="replace"))
    except (ValueError, OSError) as exc:
        raise ConfigError([f"--checkpoint: {exc}"]) from None
    key = _chain_key(args)
    if args.file:
        try:
            res = verify_rows(read_export(args.file), key, cp)
        except (ValueError, OSError) as exc:
            raise ConfigError([f"--file: {exc}"]) from None
    else:
        res = _with_db(args, lambda db: verify_chain(db, cp, key))  # type: ignore[assignment]
    where = args.file or "database"
    if res.ok:  # type: ignore[attr-defined]
        extra = f" ({res.unkeyed} before the key was set, not keyed)" if res.unkeyed else ""  # type: ignore[attr-defined]
        against = f", matches checkpoint {cp.count}:{cp.head[:12]}…" if cp else ""
        keyed = "keyed" if key else "NOT keyed (audit.chain_key unset)"
        print(f"audit chain intact: {res.checked} rows{extra} in {where}, {keyed}{against}")  # type: ignore[attr-defined]
        return 0
    at = f"row seq={res.bad_seq}" if res.bad_seq is not None else "its end"  # type: ignore[attr-defined]
    print(f"audit chain BROKEN at {at}: {res.reason}", file=sys.stderr)  # type: ignore[attr-defined]
    return 1


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    """Print the chain's COUNT:HEAD now, to keep outside the database."""
    from bot.audit import current_checkpoint

    cp = _with_db(args, current_checkpoint)
    print(cp.token)  # type: ignore[attr-defined]
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    from bot.audit import iter_rows

    out = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115

    async def _export(db) -> int:  # type: ignore[no-untyped-def]
        n = 0
        async for row in iter_rows(db):
            out.write(json.dumps(row.model_dump(), sort_keys=True, ensure_ascii=False) + "\n")
            n += 1
        return n

    try:
        n = _with_db(args, _export)
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"exported {n} audit rows", file=sys.stderr)
    return 0


def cmd_incidents_list(args: argparse.Namespace) -> int:
    from sqlmodel import col, select

    from bot.reports.times import iso, zone
    from bot.store.models import Incident

    tz = zone(_settings(args).reports.timezone)

    async def _list(db) -> list[dict]:  # type: ignore[no-untyped-def]
        async with db.session() as s:
            rows = (await s.exec(select(Incident).order_by(col(Incident.opened_at).desc()).limit(args.limit))).all()
        return [
            {"id": r.id, "title": r.title, "status": r.status, "severity": r.severity, "services": r.services,
             "alert_count": r.alert_count, "opened_at": r.opened_at, "opened": iso(r.opened_at, tz)}
            for r in rows
        ]

    rows = _with_db(args, _list)
    assert isinstance(rows, list)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['id']:<12} {r['opened']}  {r['severity']:<9} {r['status']:<10} {r['alert_count']:>4}  {r['title']}")
    return 0


def cmd_noise(args: argparse.Namespace) -> int:
    from bot.triage.noise import noise_report

    async def _report(db) -> list[dict]:  # type: ignore[no-untyped-def]
        return [d.as_dict() for d in await noise_report(db, days=args.days)]

    days = _with_db(args, _report)
    assert isinstance(days, list)
    if args.json:
        print(json.dumps(days, indent=2))
        return 0
    print(f"{'day':<11} {'received':>8} {'dupes':>6} {'suppr':>6} {'incid':>6} {'pages':>6}  shifts over 2 pages")
    for d in days:
        print(f"{d['day']:<11} {d['received']:>8} {d['duplicates']:>6} {d['suppressed']:>6} {d['incidents']:>6} "
              f"{d['pages']:>6}  {d['shifts_over_budget']}")
    return 0


def cmd_auto(args: argparse.Namespace) -> int:
    from bot.remediate.killswitch import main as killswitch_main

    return killswitch_main(args)


def cmd_silences_change(args: argparse.Namespace) -> int:
    """``silences add|remove``, with the note in the incident channels that chat-made silences get."""
    from bot import silences_cli
    from bot.app import post_incident_note

    change = silences_cli.add_main if args.sub == "add" else silences_cli.remove_main
    return change(args, notify=post_incident_note)


def cmd_watch_close(args: argparse.Namespace) -> int:
    """``watch close``, with the reply under the item's post that the server's watch would give."""
    from bot import watch_cli
    from bot.app import close_watch_item

    return watch_cli.close_main(args, close=close_watch_item)


def _lazy(module: str, func: str = "main") -> Command:
    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), func)(args))

    return run


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="onwatch", description="An AI SRE for Slack and Microsoft Teams.")
    p.add_argument("--config", help="settings YAML file (default: $ONWATCH_CONFIG)")
    p.add_argument("--version", action="version", version=f"onwatch {version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Command, help_: str, parent: argparse._SubParsersAction = sub) -> argparse.ArgumentParser:  # type: ignore[type-arg]
        sp = parent.add_parser(name, help=help_, description=help_)
        sp.add_argument("--config", default=argparse.SUPPRESS, help="settings YAML file")
        sp.set_defaults(func=fn)
        return sp

    sp = add("serve", cmd_serve, "run the server: webhooks, chat adapters, durable jobs")
    sp.add_argument("--json-logs", action="store_true", help="log JSON lines")
    sp = add("worker", cmd_worker, "run only durable jobs of some kinds, no HTTP: with runbooks.execute_in: worker, "
             "the process that holds the write credential and runs approved runbooks (docs/runbooks.md)")
    sp.add_argument("--kinds", type=job_kinds, default=["execution", "verification"], metavar="KIND,KIND",
                    help="job kinds to run (default: execution,verification)")
    sp.add_argument("--json-logs", action="store_true", help="log JSON lines")
    add("migrate", cmd_migrate, "upgrade the database schema to head")

    cfg = sub.add_parser("config", help="settings tools").add_subparsers(dest="sub", required=True)
    add("check", cmd_config_check, "validate the settings file and the runbook catalog", cfg)

    aud = sub.add_parser("audit", help="audit trail tools").add_subparsers(dest="sub", required=True)
    sp = add("verify", cmd_audit_verify, "check the audit hash chain; non-zero exit names the first bad row", aud)
    sp.add_argument("--file", help="verify an export (onwatch audit export --jsonl) instead of the database")
    sp.add_argument("--checkpoint", metavar="COUNT:HEAD", help="a checkpoint kept outside the database")
    sp.add_argument("--checkpoint-file", metavar="FILE", help="a file holding checkpoints (the last one is used)")
    add("checkpoint", cmd_audit_checkpoint, "print the chain's COUNT:HEAD now (keep it outside the database)", aud)
    sp = add("export", cmd_audit_export, "write the audit trail out", aud)
    sp.add_argument("--jsonl", action="store_true", default=True, help="JSON lines (the only format)")
    sp.add_argument("-o", "--output", help="file to write (default: stdout)")

    inc = sub.add_parser("incidents", help="incident tools").add_subparsers(dest="sub", required=True)
    sp = add("list", cmd_incidents_list, "list incidents, newest first", inc)
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--limit", type=int, default=100)
    sp = add("show", _lazy("bot.reports.cli", "show_main"), "one incident's full timeline (the web page, in text)", inc)
    sp.add_argument("id", help="incident id, e.g. INC-1A2B3C")
    sp.add_argument("--json", action="store_true")

    sp = add("confirm", _lazy("bot.memory.cli", "feedback_main"),
             "confirm an incident's leading cause (and say what fixed it); docs/memory.md", inc)
    sp.add_argument("id", help="incident id, e.g. INC-1A2B3C")
    sp.add_argument("--fix", help="what fixed it")
    sp.add_argument("--note", help="why, in a sentence")
    sp.add_argument("--json", action="store_true")
    sp = add("correct", _lazy("bot.memory.cli", "feedback_main"),
             "name an incident's real cause: one of its ranked causes or a service and kind; docs/memory.md", inc)
    sp.add_argument("id", help="incident id, e.g. INC-1A2B3C")
    sp.add_argument("--rank", type=int, help="the ranked cause that was right (2, 3, ...)")
    sp.add_argument("--service", help="the cause's service")
    sp.add_argument("--kind", help="the cause's kind, e.g. deploy, cpu_saturation, dependency_failure")
    sp.add_argument("--fix", help="what fixed it")
    sp.add_argument("--note", help="why, in a sentence")
    sp.add_argument("--json", action="store_true")

    mem = sub.add_parser("memory", help="remembered incidents and postmortems (docs/memory.md)").add_subparsers(
        dest="sub", required=True)
    sp = add("import", _lazy("bot.memory.cli", "import_main"),
             "import Markdown postmortems (front matter: date, services, cause, fix, tags) as confirmed memories", mem)
    sp.add_argument("dir", type=Path)
    sp.add_argument("--json", action="store_true")
    sp = add("list", _lazy("bot.memory.cli", "list_main"), "remembered incidents, newest first", mem)
    sp.add_argument("--limit", type=int, default=100)
    sp.add_argument("--json", action="store_true")
    sp = add("show", _lazy("bot.memory.cli", "show_main"), "one memory: cause, fix, grade, signature, text", mem)
    sp.add_argument("ref", help="an incident id or PM-<postmortem file stem>")
    sp.add_argument("--json", action="store_true")
    sp = add("forget", _lazy("bot.memory.cli", "forget_main"), "delete one memory (audited; not remembered again)", mem)
    sp.add_argument("ref")

    slo = sub.add_parser("slo", help="service level objectives (slos: in the settings)").add_subparsers(
        dest="sub", required=True)
    add("rules", _lazy("bot.slo_cli", "rules_main"),
        "the SLOs as Prometheus recording and alerting rules (multiwindow, multi-burn-rate)", slo)
    sp = add("status", _lazy("bot.slo_cli", "status_main"),
             "each SLO now: budget left, burn rate per window pair, state (ok, ticket, page, no data); docs/proactive.md",
             slo)
    sp.add_argument("--at", metavar="TIME", help="evaluate at this time (RFC 3339 or Unix seconds) instead of now")
    sp.add_argument("--json", action="store_true")

    sp = add("report", _lazy("bot.reports.cli", "report_main"),
             "time to detect / acknowledge / mitigate / resolve, change fail rate, pages per shift (docs/reports.md)")
    sp.add_argument("--days", type=int, default=7)
    sp.add_argument("--json", action="store_true")

    sil = sub.add_parser("silences", help="silences: list, add, remove (audited)").add_subparsers(
        dest="sub", required=True)
    sp = add("list", _lazy("bot.silences_cli", "list_main"), "the active silences", sil)
    sp.add_argument("--json", action="store_true")
    sp = add("add", cmd_silences_change,
             "mute alerts matching every MATCHER (label=value, label=~regex, label=!value) for a while", sil)
    sp.add_argument("matchers", nargs="+", metavar="MATCHER")
    sp.add_argument("--for", dest="duration", required=True, help="30m, 2h, 1d (at most silences.max_duration_s)")
    sp.add_argument("--comment", default="")
    sp.add_argument("--confirm-all", action="store_true", help="allow matchers that match every alert")
    sp = add("remove", cmd_silences_change, "end a silence now", sil)
    sp.add_argument("id", type=int)

    wat = sub.add_parser("watch", help="early warnings (watch items): list, close (docs/proactive.md)").add_subparsers(
        dest="sub", required=True)
    sp = add("list", _lazy("bot.watch_cli", "list_main"), "the live early warnings (open or escalated)", wat)
    sp.add_argument("--json", action="store_true")
    sp = add("close", cmd_watch_close, "end a live early warning by hand (audited; a reply under its post)", wat)
    sp.add_argument("id", type=int)
    sp.add_argument("--reason", default="", help="why, shown in the reply and the audit row")

    sp = add("noise", cmd_noise, "daily triage noise: received, duplicates, suppressed, incidents, pages per shift")
    sp.add_argument("--days", type=int, default=7)
    sp.add_argument("--json", action="store_true")

    sp = add("investigate", _lazy("bot.investigate.cli"), "investigate a case bundle or an alert on live sources")
    sp.add_argument("--case", type=Path, help="case bundle directory (replay source)")
    sp.add_argument("--alert", type=Path, help="Alertmanager webhook JSON file (live sources from --config)")
    sp.add_argument("--at", metavar="TIME", help="end the incident window here (RFC 3339 or Unix seconds); "
                    "default: the alert's start + 15 min, never past the clock")
    sp.add_argument("--json", action="store_true")

    srcs = sub.add_parser("sources", help="telemetry source tools").add_subparsers(dest="sub", required=True)
    sp = add("check", _lazy("bot.investigate.sources_check"),
             "show what the configured sources cover (catalog signals, named services, samples) and what to fix", srcs)
    sp.add_argument("--window", type=float, default=3600.0, help="seconds to look back (default 3600)")
    sp.add_argument("--at", metavar="TIME", help="end of the window (RFC 3339 or Unix seconds; default: now)")
    sp.add_argument("--json", action="store_true")

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="sub", required=True)
    sp = add("rca", _lazy("bot.benchmarks.rca"), "root-cause accuracy on a dataset of case bundles, vs BARO", bench)
    sp.add_argument("dataset", type=Path)
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--no-baro", action="store_true")
    sp.add_argument("--limit", type=int, default=None, help="only the first N cases")
    sp.add_argument("--llm", action="store_true", help="also run the LLM investigator (llm: settings) per case")
    sp.add_argument("--transcripts", type=Path, default=None, help="with --llm: a folder for one transcript per case")
    sp = add("memory", _lazy("bot.benchmarks.memory"),
             "replay a dataset in time order with memory: recall@k and AC@1 with and without it", bench)
    sp.add_argument("dataset", type=Path)
    sp.add_argument("--json", action="store_true")
    sp = add("nab", _lazy("bot.benchmarks.nab"),
             "the degradation detector on NAB's files: results in NAB's format and the standard-profile score", bench)
    sp.add_argument("dir", type=Path, help="NAB corpus: data/<category>/*.csv and labels.json")
    sp.add_argument("--out", type=Path, required=True, metavar="RESULTS", help="folder for NAB's results files")
    sp.add_argument("--json", action="store_true")
    sp = add("ingest", _lazy("bot.benchmarks.ingest"), "an alert storm through the webhook, SQLite and PostgreSQL", bench)
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--alerts", type=int, default=10_000)
    sp.add_argument("--batch", type=int, default=100)
    sp.add_argument("--concurrency", type=int, default=4, help="senders, each with one request in flight")
    sp.add_argument("--postgres", default=None, help="PostgreSQL admin URL (default: ONWATCH_BENCH_PG or "
                                                     "postgresql://postgres@127.0.0.1:5432/postgres)")

    rep = sub.add_parser("replay", help="case bundle tools").add_subparsers(dest="sub", required=True)
    sp = add("export-openmetrics", _lazy("integrations.openmetrics", "main_export_openmetrics"),
             "write a case's metrics as OpenMetrics text for promtool", rep)
    sp.add_argument("case_dir", type=Path)
    sp.add_argument("-o", "--output", type=Path)

    sp = add("demo", _lazy("bot.demo.run"), "simulate a small shop's incident and show onwatch handle it")
    sp.add_argument("--seed", type=int, default=7)
    sp.add_argument("--keep", action="store_true", help="keep the temporary SQLite file")
    sp.add_argument("--scenario", choices=["rollout", "drift"], default="rollout",
                    help="rollout: a bad deploy pages within minutes (default); drift: checkout's latency creeps up "
                         "for half an hour and onwatch warns before the page")
    sp.add_argument("--serve", action="store_true",
                    help="then keep serving the web view and print the incident page's URL and a viewer token")
    sp.add_argument("--host", default="127.0.0.1", help="with --serve: the address to listen on")
    sp.add_argument("--port", type=int, default=8080, help="with --serve: the port (0: any free one)")

    sp = add("auto", cmd_auto, "the automatic-execution kill switch")
    sp.add_argument("state", choices=["on", "off", "status"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(mask(f"onwatch: {exc}"), file=sys.stderr)
        return 2
    except DatabaseError as exc:
        print(mask(f"onwatch: database: {exc}"), file=sys.stderr)
        return 3
    except ListenError as exc:
        print(mask(f"onwatch: {exc}"), file=sys.stderr)
        return 4
    except OnwatchError as exc:
        print(mask(f"onwatch: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
