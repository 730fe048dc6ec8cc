"""The ``/ui/`` pages: incident list, incident timeline, audit browser, reports, and their chart images.

Every page is a GET that reads the store; the only POST is the login form, which sets a session cookie.
Jinja2 escapes every value (autoescape on for all templates); links are shown as links only when they are
http(s). Responses carry a strict Content-Security-Policy (own styles, script and images only; no framing).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from aiohttp import web
from markupsafe import Markup
from sqlmodel import col, select

from bot.audit import verify_chain
from bot.context import AppContext
from bot.errors import NotFound
from bot.messages.chart import chart_for_report, spec_from_report
from bot.messages.format import fmt_num
from bot.reports.chart import report_png
from bot.reports.load import build_report
from bot.reports.timeline import actor_of, incident_timeline
from bot.reports.times import iso, zone
from bot.store.models import AuditEvent, Incident
from bot.web_ui.access import COOKIE, AccessDenied, Viewer, authenticate, session_value, token_ok

log = logging.getLogger(__name__)

PREFIX = "/ui"
PAGE = 100
SEVERITIES = ("critical", "high", "warning", "info")
STATUSES = ("open", "mitigated", "resolved")
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
CTX_KEY: web.AppKey[AppContext] = web.AppKey("onwatch_ui_ctx", AppContext)
ENV_KEY: web.AppKey[jinja2.Environment] = web.AppKey("onwatch_ui_env", jinja2.Environment)
VIEWER_KEY: web.RequestKey[Viewer] = web.RequestKey("onwatch_ui_viewer", Viewer)


def safe_link(url: Any) -> str:
    """The URL when it is http(s), else "" (a ``javascript:`` or ``replay://`` link is shown as text)."""
    text = str(url or "")
    try:
        scheme = urlsplit(text).scheme.lower()
    except ValueError:
        return ""
    return text if scheme in ("http", "https") else ""


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("bot.web_ui", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda v: fmt_num(v)
    env.filters["link"] = safe_link
    env.filters["pct"] = lambda v: "–" if v is None else f"{float(v):.0%}"
    env.filters["dur"] = duration
    return env


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _tz(request: web.Request, ctx: AppContext) -> dt.tzinfo:
    """The viewer's zone: ``?tz=`` or the ``tz`` cookie the page script sets, else the reports' zone."""
    return zone(request.query.get("tz") or request.cookies.get("tz") or ctx.settings.reports.timezone)


def _timefn(tz: dt.tzinfo) -> Callable[[float | None], Markup]:
    def t(ts: float | None) -> Markup:
        if ts is None:
            return Markup("–")
        return Markup('<time datetime="{}">{}</time>').format(iso(ts), iso(ts, tz))
    return t


def _parse_time(raw: str, tz: dt.tzinfo) -> float | None:
    """A filter bound typed by a person: ``2025-03-01`` or ``2025-03-01T14:00`` (viewer's zone) or with an offset."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise web.HTTPBadRequest(text=f"not a date or ISO 8601 time: {raw[:40]}") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)).timestamp()


async def _render(request: web.Request, template: str, **values: Any) -> web.Response:
    ctx = request.app[CTX_KEY]
    tz = _tz(request, ctx)
    body = request.app[ENV_KEY].get_template(template).render(
        t=_timefn(tz), tzname=str(tz), prefix=PREFIX, viewer=request.get(VIEWER_KEY), **values)
    return web.Response(text=body, content_type="text/html", charset="utf-8")


# ------------------------------------------------------------------ pages


async def incidents(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    tz = _tz(request, ctx)
    q = request.query
    status, severity, service = q.get("status", ""), q.get("severity", ""), q.get("service", "").strip()
    since, until = _parse_time(q.get("since", ""), tz), _parse_time(q.get("until", ""), tz)
    stmt = select(Incident).order_by(col(Incident.opened_at).desc())
    if status in STATUSES:
        stmt = stmt.where(Incident.status == status)
    if severity in SEVERITIES:
        stmt = stmt.where(Incident.severity == severity)
    if since is not None:
        stmt = stmt.where(col(Incident.opened_at) >= since)
    if until is not None:
        stmt = stmt.where(col(Incident.opened_at) < until)
    async with ctx.db.session() as s:
        rows = list((await s.exec(stmt.limit(2000))).all())
    if service:  # services are a JSON list: matched here so every database agrees
        rows = [r for r in rows if service in r.services]
    return await _render(request, "incidents.html", rows=rows[:500], more=len(rows) > 500,
                         f={"status": status, "severity": severity, "service": service,
                            "since": q.get("since", ""), "until": q.get("until", "")},
                         statuses=STATUSES, severities=SEVERITIES)


async def incident(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    try:
        tl = await incident_timeline(ctx.db, request.match_info["id"])
    except NotFound:
        raise web.HTTPNotFound(text=f"there is no incident {request.match_info['id'][:40]}") from None
    latest = tl.latest
    has_chart = latest is not None and spec_from_report(latest.report, tl.incident.title) is not None
    return await _render(request, "incident.html", tl=tl, inc=tl.incident, latest=latest, has_chart=has_chart)


async def incident_chart(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    try:
        tl = await incident_timeline(ctx.db, request.match_info["id"])
    except NotFound:
        raise web.HTTPNotFound() from None
    chart = None if tl.latest is None else await chart_for_report(tl.latest.report, title=f"{tl.incident.id}: "
                                                                                          f"{tl.incident.title}")
    if chart is None:
        raise web.HTTPNotFound(text="no chart for this incident")
    return web.Response(body=chart.png, content_type="image/png")


async def audit_page(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    tz = _tz(request, ctx)
    q = request.query
    incident_id, actor, action = q.get("incident", "").strip(), q.get("actor", "").strip(), q.get("action", "").strip()
    since, until = _parse_time(q.get("since", ""), tz), _parse_time(q.get("until", ""), tz)
    stmt = select(AuditEvent).order_by(col(AuditEvent.seq).desc())
    if incident_id:
        stmt = stmt.where(AuditEvent.incident_id == incident_id)
    if action:
        stmt = stmt.where(col(AuditEvent.action).startswith(action))
    if actor:
        stmt = stmt.where((AuditEvent.actor_id == actor) | (AuditEvent.actor_name == actor))
    if since is not None:
        stmt = stmt.where(col(AuditEvent.at) >= since)
    if until is not None:
        stmt = stmt.where(col(AuditEvent.at) < until)
    before = q.get("before", "")
    if before.isdigit():
        stmt = stmt.where(col(AuditEvent.seq) < int(before))
    async with ctx.db.session() as s:
        rows = list((await s.exec(stmt.limit(PAGE + 1))).all())
    chain = await verify_chain(ctx.db)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    nxt = ""
    if more and rows:
        keep = {k: v for k, v in q.items() if k != "before" and v}
        nxt = f"{PREFIX}/audit?" + urlencode({**keep, "before": str(rows[-1].seq)})
    return await _render(request, "audit.html", rows=rows, chain=chain, next_url=nxt, actor_of=actor_of,
                         f={"incident": incident_id, "actor": actor, "action": action,
                            "since": q.get("since", ""), "until": q.get("until", "")})


def _days(request: web.Request) -> int:
    raw = request.query.get("days", "7")
    if not raw.isdigit() or not 1 <= int(raw) <= 366:
        raise web.HTTPBadRequest(text="days must be a whole number from 1 to 366")
    return int(raw)


async def reports(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    days = _days(request)
    report = await build_report(ctx.db, ctx.settings.reports, days)
    return await _render(request, "reports.html", r=report, d=report.as_dict(iso), days=days,
                         shift_starts=ctx.settings.reports.shift_starts, report_tz=ctx.settings.reports.timezone)


async def reports_chart(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    report = await build_report(ctx.db, ctx.settings.reports, _days(request))
    return web.Response(body=await report_png(report, _tz(request, ctx)), content_type="image/png")


async def login_form(request: web.Request) -> web.Response:
    return await _render(request, "login.html", error="", next=_next(request.query.get("next", "")))


def _next(raw: str) -> str:
    """Only a path under /ui/ (never another site) is a place to go after signing in."""
    return raw if raw.startswith(PREFIX + "/") and not raw.startswith("//") and "\\" not in raw else PREFIX + "/"


async def login(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    cfg = ctx.settings.web
    form = await request.post()
    given = str(form.get("token", ""))
    nxt = _next(str(form.get("next", "")))
    if cfg.viewer_token is None or not token_ok(cfg.viewer_token.get_secret_value(), given):
        resp = await _render(request, "login.html", error="That is not the viewer token.", next=nxt)
        resp.set_status(401)
        return resp
    resp = web.HTTPSeeOther(nxt)
    resp.set_cookie(COOKIE, session_value(cfg.viewer_token.get_secret_value(), time.time(), cfg.session_ttl_s),
                    max_age=cfg.session_ttl_s, httponly=True, samesite="Strict", secure=request.secure,
                    path=PREFIX + "/")
    raise resp


# ------------------------------------------------------------------ guard and mounting


OPEN_PATHS = (f"{PREFIX}/login", f"{PREFIX}/static/")


@web.middleware
async def guard(request: web.Request,
                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Security headers on every /ui response; the viewer checked on every page but the login form and static files."""
    if not request.path.startswith(PREFIX + "/") and request.path != PREFIX:
        return await handler(request)
    try:
        if not request.path.startswith(OPEN_PATHS):
            try:
                request[VIEWER_KEY] = authenticate(request, request.app[CTX_KEY].settings.web)
            except AccessDenied as exc:
                resp = await _denied(request, exc)
                resp.headers.update(SECURITY_HEADERS)
                return resp
        resp = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    resp.headers.update(SECURITY_HEADERS)
    return resp


async def _denied(request: web.Request, exc: AccessDenied) -> web.StreamResponse:
    status = exc.why.value
    cfg = request.app[CTX_KEY].settings.web
    wants_html = "text/html" in request.headers.get("Accept", "")
    if status == 401 and cfg.viewer_token is not None and wants_html and "Authorization" not in request.headers:
        raise web.HTTPSeeOther(f"{PREFIX}/login?" + urlencode({"next": _next(request.path_qs)}))
    headers = {"WWW-Authenticate": 'Bearer realm="onwatch"'} if status == 401 else {}
    return web.Response(status=status, text=f"{status}: {exc.detail}\n", headers=headers)


async def root_redirect(_request: web.Request) -> web.Response:
    raise web.HTTPFound(PREFIX + "/")


def install(app: web.Application, ctx: AppContext) -> None:
    """Mount ``/ui/`` when ``web.enabled``; without it the paths do not exist (404)."""
    if not ctx.settings.web.enabled:
        return
    app[CTX_KEY] = ctx
    app[ENV_KEY] = environment()
    app.middlewares.append(guard)
    r = app.router
    r.add_get(PREFIX, root_redirect)
    r.add_get(PREFIX + "/", incidents)
    r.add_get(PREFIX + "/incidents/{id}", incident)
    r.add_get(PREFIX + "/incidents/{id}/chart.png", incident_chart)
    r.add_get(PREFIX + "/audit", audit_page)
    r.add_get(PREFIX + "/reports", reports)
    r.add_get(PREFIX + "/reports/chart.png", reports_chart)
    r.add_get(PREFIX + "/login", login_form)
    r.add_post(PREFIX + "/login", login)
    r.add_static(PREFIX + "/static/", __file__.rsplit("/", 1)[0] + "/static", append_version=False)
