"""The review web app (Starlette, served by uvicorn): a queue page and a small JSON API over the review ledger.

Routes: `GET /` the page (`assets/index.html`, `app.js`, `app.css`); `GET /api/queue` a page of the queue
with each pair's state for the reviewer; `GET /api/item/{index}` one pair in full; `GET /api/next` the next
pair open to the reviewer; `POST /api/decide` and `POST /api/undo` change state.

Safety: every text reaches the page as JSON and is put in place with `textContent`, and a strict
Content-Security-Policy allows only this server's script; POSTs must be JSON, carry the per-start
`X-CSRF-Token` the page was served with, and come from this origin; on loopback only loopback Host headers
are served (no DNS rebinding); with an access token (required when binding beyond loopback) every request
needs it, given once as `?token=` and kept in a same-site cookie.
The app writes only its ledger, never inside a release.
"""
from __future__ import annotations

import asyncio
import difflib
import json
import re
import secrets
from dataclasses import dataclass, field
from importlib import resources
from string import Template

from starlette.applications import Starlette
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from curator.review.ledger import FIELDS, ReviewError, ReviewLedger
from curator.review.queue import Item

REVIEWER = re.compile(r"^[\w .@-]{1,64}$")
PAGE_LIMIT = 200
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def _asset(name: str) -> str:
    return resources.files("curator.review").joinpath("assets", name).read_text(encoding="utf-8")


def _json_for_html(obj: object) -> str:
    """JSON safe inside a <script type="application/json"> block."""
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _turn(messages: list[dict], role: str) -> int:
    """Index of the last message of `role`."""
    return max(i for i, m in enumerate(messages) if m["role"] == role)


@dataclass
class ReviewState:
    """What the app serves: the queue, its ledger, the reject reasons, and the tokens of this start."""

    items: list[Item]
    ledger: ReviewLedger
    reasons: list[str]
    title: str
    access_token: str | None = None
    allowed_hosts: tuple[str, ...] = ("*",)  # Host headers served (loopback names only, against DNS rebinding)
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    position: dict[str, int] = field(init=False)  # pair id -> queue index

    def __post_init__(self) -> None:
        self.position = {item.id: i for i, item in enumerate(self.items)}

    def status(self, item: Item, reviewer: str) -> dict:
        decisions = self.ledger.decisions.of_pair(item.id)
        mine = decisions.get(reviewer)
        others = sorted(r for r in decisions if r != reviewer)
        return {"mine": mine["decision"] if mine else None, "others": others,
                "open": mine is None and len(others) < item.want}

    def summary(self, index: int, reviewer: str) -> dict:
        item = self.items[index]
        return {"index": index, "id": item.id, "cell": list(item.cell), "why": item.why, "sample": item.sample,
                "want": item.want, "status": item.status, **self.status(item, reviewer)}

    def detail(self, index: int, reviewer: str) -> dict:
        item = self.items[index]
        prov = item.record.get("provenance") or {}
        mine = self.ledger.decisions.of_pair(item.id).get(reviewer)
        return {**self.summary(index, reviewer), "messages": item.record["messages"],
                "provenance": {k: prov.get(k) for k in ("source", "teacher_model", "strategy", "prompt_hash",
                                                        "prompt_template", "origin", "plan_slot")},
                "findings": [{"check": f.check, "detail": f.detail, "score": f.score, "threshold": f.threshold,
                              "flagged": f.flagged} for f in item.findings],
                "decision": {k: mine.get(k) for k in ("decision", "reason", "note", "field", "new_text", "diff",
                                                      "time")} if mine else None}

    def next_open(self, reviewer: str, after: int) -> int | None:
        for index in range(after + 1, len(self.items)):
            if self.status(self.items[index], reviewer)["open"]:
                return index
        return None

    def entry(self, body: dict) -> dict:
        """A ledger entry from a decision request; ValueError when it is malformed."""
        index = body.get("index")
        if not isinstance(index, int) or not 0 <= index < len(self.items):
            raise ValueError("index: not a queue position")
        item, decision = self.items[index], body.get("decision")
        entry = {"reviewer": body["reviewer"], "pair_id": item.id, "decision": decision, "reason": None,
                 "note": None, "field": None, "old_text": None, "new_text": None, "diff": None, "messages": None,
                 "cell": list(item.cell), "sample": item.sample,
                 "findings": item.flagged_by, "undoes": None}
        note = body.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > 2000):
            raise ValueError("note: text of at most 2000 characters")
        entry["note"] = (note.strip() or None) if isinstance(note, str) else None
        if decision == "reject":
            if body.get("reason") not in self.reasons:
                raise ValueError(f"reason: one of {self.reasons}")
            entry["reason"] = body["reason"]
        elif decision == "edit":
            target, text = body.get("field"), body.get("text")
            if target not in FIELDS or not isinstance(text, str) or not text.strip():
                raise ValueError(f"an edit needs field ({', '.join(FIELDS)}) and a non-empty text")
            messages = [dict(m) for m in item.record["messages"]]
            turn = _turn(messages, "assistant" if target == "response" else "user")
            old, new = messages[turn]["content"], text.strip()
            if new == old:
                raise ValueError("the edit changes nothing")
            messages[turn]["content"] = new
            diff = "\n".join(difflib.unified_diff(old.splitlines(), new.splitlines(), f"{item.id}/{target}",
                                                  f"edited/{target}", lineterm=""))
            entry.update(field=target, old_text=old, new_text=new, diff=diff, messages=messages)
        elif decision != "accept":
            raise ValueError("decision: accept, reject or edit")
        return entry


def _authorised(state: ReviewState, request: Request) -> bool:
    if state.access_token is None:
        return True
    given = request.cookies.get("review_token") or request.query_params.get("token") or ""
    return secrets.compare_digest(given.encode(), state.access_token.encode())


def _reviewer(value: object) -> str:
    if not isinstance(value, str) or not REVIEWER.match(value.strip()):
        raise ValueError("reviewer: a name of 1-64 letters, digits, spaces or . @ - _")
    return value.strip()


def build_app(state: ReviewState) -> Starlette:
    page = Template(_asset("index.html"))
    script, style = _asset("app.js"), _asset("app.css")

    def guard(request: Request) -> Response | None:
        if not _authorised(state, request):
            return PlainTextResponse("access token required (see the URL printed at start)", 403)
        return None

    async def index(request: Request) -> Response:
        if denied := guard(request):
            return denied
        if state.access_token and request.query_params.get("token"):
            target = request.url.remove_query_params("token")
            response = RedirectResponse(str(target), 303)
            response.set_cookie("review_token", state.access_token, httponly=True, samesite="strict")
            return response
        config = {"total": len(state.items), "reasons": state.reasons, "title": state.title,
                  "fields": list(FIELDS)}
        html = page.substitute(title=state.title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
                               csrf=state.csrf_token, config=_json_for_html(config))
        return Response(html, media_type="text/html; charset=utf-8")

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("app.js", "app.css"):
            return PlainTextResponse("not found", 404)
        body, kind = (script, "text/javascript") if name == "app.js" else (style, "text/css")
        return Response(body, media_type=f"{kind}; charset=utf-8")

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)

    async def queue_page(request: Request) -> Response:
        if denied := guard(request):
            return denied
        try:
            reviewer = _reviewer(request.query_params.get("reviewer"))
            offset = max(0, int(request.query_params.get("offset", 0)))
            limit = min(PAGE_LIMIT, max(1, int(request.query_params.get("limit", 50))))
        except ValueError as e:
            return JSONResponse({"error": str(e)}, 400)
        end = min(len(state.items), offset + limit)
        return JSONResponse({"total": len(state.items), "offset": offset,
                             "items": [state.summary(i, reviewer) for i in range(offset, end)]})

    async def item(request: Request) -> Response:
        if denied := guard(request):
            return denied
        try:
            reviewer, index = _reviewer(request.query_params.get("reviewer")), int(request.path_params["index"])
            if not 0 <= index < len(state.items):
                raise ValueError("no such queue position")
        except ValueError as e:
            return JSONResponse({"error": str(e)}, 400)
        return JSONResponse(state.detail(index, reviewer))

    async def next_open(request: Request) -> Response:
        if denied := guard(request):
            return denied
        try:
            reviewer, after = _reviewer(request.query_params.get("reviewer")), int(request.query_params.get("after", -1))
        except ValueError as e:
            return JSONResponse({"error": str(e)}, 400)
        return JSONResponse({"index": state.next_open(reviewer, after)})

    async def change(request: Request) -> tuple[dict | None, Response | None]:
        if denied := guard(request):
            return None, denied
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host')}":
            return None, JSONResponse({"error": "cross-origin request refused"}, 403)
        token = request.headers.get("x-csrf-token", "")
        if not secrets.compare_digest(token.encode(), state.csrf_token.encode()):
            return None, JSONResponse({"error": "missing or wrong X-CSRF-Token"}, 403)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return None, JSONResponse({"error": "send JSON"}, 415)
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("a JSON object")
            body["reviewer"] = _reviewer(body.get("reviewer"))
        except ValueError as e:
            return None, JSONResponse({"error": f"bad request: {e}"}, 400)
        return body, None

    async def commit(entry: dict) -> Response:
        try:
            line = await asyncio.wrap_future(state.ledger.submit(entry))
        except ReviewError as e:
            return JSONResponse({"error": str(e)}, 409)
        index = state.position.get(line["pair_id"])
        return JSONResponse({"seq": line["seq"], "decision": line["decision"], "index": index,
                             "next": state.next_open(line["reviewer"], index if index is not None else -1)})

    async def decide(request: Request) -> Response:
        body, denied = await change(request)
        if denied:
            return denied
        try:
            entry = state.entry(body)
        except ValueError as e:
            return JSONResponse({"error": str(e)}, 400)
        return await commit(entry)

    async def undo(request: Request) -> Response:
        body, denied = await change(request)
        if denied:
            return denied
        return await commit({"reviewer": body["reviewer"], "decision": "undo"})

    app = Starlette(routes=[
        Route("/", index), Route("/assets/{name:str}", asset), Route("/favicon.ico", no_icon),
        Route("/api/queue", queue_page), Route("/api/item/{index:int}", item), Route("/api/next", next_open),
        Route("/api/decide", decide, methods=["POST"]), Route("/api/undo", undo, methods=["POST"]),
    ])
    return SecurityHeaders(TrustedHostMiddleware(app, allowed_hosts=list(state.allowed_hosts)))


class SecurityHeaders:
    """ASGI middleware adding `SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app):
        self.app = app
        self.extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.extra
            await send(message)

        await self.app(scope, receive, with_headers)
