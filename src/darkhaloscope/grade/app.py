"""The web app of `dhs grade serve`: a Starlette application over one grades database (grade.store).

Routes (JSON unless said; every POST passes grade.security's CSRF check):

    GET  /                        the page (grade/static/page.html; its script and style under /static/)
    GET  /api/session             sets the session cookie; {csrf, grades, tags, orders, views, total}
    GET  /api/queue?grader=&order=score|disagreement|random&seed=   {ids: the grader's queue, progress}
    GET  /api/candidate?id=&grader=   {candidate_id, rank, score, ids, metadata, stamp_error, image, views, mine}
    GET  /api/image?id=           the PNG strip of a candidate's panels (grade.images.VIEWS, side by side)
    GET  /api/progress            {grader: graded, ..., total}
    POST /api/grade   {candidate_id, grader, grade, tag, client_token}  -> {row}
    POST /api/undo    {grader, client_token}                            -> {candidate_id}

A POST answers as soon as its row is committed; progress (a count over every grade: ~0.25 s with 8,000 grades
on the dev box) is a separate GET the page makes at most every PROGRESS_EVERY_MS.

Ids come from the query string and are looked up in the database; nothing from a request becomes a path.
Bad input is a 4xx with {"error": one line}; the store's own checks (grader name, grade key, tag, client
token reuse) give the messages. Database work runs in Starlette's thread pool; the store gives each thread
its own SQLite connection.

Exercised by `dhs grade serve` and tests/grade/test_app.py.
"""

from __future__ import annotations

import inspect
import json
from importlib import resources
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from darkhaloscope.errors import DHSError, EnvironmentFault, UsageError
from darkhaloscope.grade.images import VIEWS
from darkhaloscope.grade.pixels import PixelCache
from darkhaloscope.grade.security import SESSION_COOKIE, Guard, new_session
from darkhaloscope.grade.store import GRADES, ORDERS, TAGS

STATIC = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}
IMAGE_MAX_AGE_S = 3600  # the browser keeps a candidate's panels: going back is instant
MAX_SEED = 2**31 - 1


class NotFound(Exception):
    """An id that is not in the database: 404."""


def _static(name: str) -> bytes:
    return resources.files("darkhaloscope.grade").joinpath("static", name).read_bytes()


def _error(e: Exception) -> JSONResponse:
    status = 503 if isinstance(e, EnvironmentFault) else 400 if isinstance(e, UsageError) else 409
    return JSONResponse({"error": " ".join(str(e).split())}, status_code=status, headers={"cache-control": "no-store"})


def _json(doc, status: int = 200) -> JSONResponse:
    return JSONResponse(doc, status_code=status, headers={"cache-control": "no-store"})


def standing_grade(history: list[dict], grader: str) -> dict | None:
    """This grader's standing grade among a candidate's history rows (store.history): the latest row that is
    not a retraction and not retracted; None when there is none."""
    retracted = {r["retracts"] for r in history if r.get("retracts") is not None}
    mine = [r for r in history if r["grader"] == grader and r.get("retracts") is None and r["id"] not in retracted]
    if not mine:
        return None
    last = max(mine, key=lambda r: r["id"])
    return {"grade": last["grade"], "tag": last["tag"]}


def create_app(store, *, token: str | None = None, host: str = "127.0.0.1") -> Guard:
    """The ASGI application (Starlette wrapped in grade.security.Guard) serving `store`."""
    pixels = PixelCache()
    page = {name: _static(name) for name in ("page.html", *STATIC)}
    guard: Guard

    def candidate_or_404(request: Request) -> dict:
        cid = request.query_params.get("id")
        if not cid:
            raise UsageError("give ?id=CANDIDATE_ID")
        try:
            return store.candidate(cid)
        except UsageError as e:
            raise NotFound(" ".join(str(e).split())) from None

    async def index(request: Request) -> Response:
        return Response(page["page.html"], media_type="text/html; charset=utf-8", headers={"cache-control": "no-store"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return _json({"error": "not found"}, 404)
        return Response(page[name], media_type=STATIC[name], headers={"cache-control": "no-store"})

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204, headers={"cache-control": "max-age=86400"})

    def session(request: Request) -> Response:
        sid = request.cookies.get(SESSION_COOKIE) or new_session()
        resp = _json({"csrf": guard.csrf_for(sid), "grades": list(GRADES), "tags": list(TAGS),
                      "orders": list(ORDERS), "views": list(VIEWS), "total": store.count()})
        resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", path="/")
        return resp

    def queue(request: Request) -> Response:
        q = request.query_params
        try:
            seed = int(q.get("seed", "0"))
        except ValueError:
            raise UsageError(f"seed {q.get('seed')!r} is not an integer") from None
        if not 0 <= seed <= MAX_SEED:
            raise UsageError(f"seed {seed} out of range 0..{MAX_SEED}")
        ids = store.queue(q.get("grader", ""), order=q.get("order", "score"), seed=seed)
        return _json({"ids": ids, "progress": store.progress()})

    def candidate(request: Request) -> Response:
        c = candidate_or_404(request)
        views = pixels.views(c)
        grader = request.query_params.get("grader")
        mine = standing_grade(store.history(c["candidate_id"]), grader) if grader else None
        image = None if views.error else "/api/image?" + urlencode({"id": c["candidate_id"]})
        keep = ("candidate_id", "rank", "score", "split", "checkpoint_hash", "source_file", "source_row", "ra", "dec")
        return _json({**{k: c.get(k) for k in keep}, "metadata": c.get("metadata") or {},
                      "stamp_error": views.error, "image": image, "views": list(VIEWS), "mine": mine})

    async def image(request: Request) -> Response:
        if not request.query_params.get("id"):
            raise UsageError("give ?id=CANDIDATE_ID")
        views = pixels.cached(request.query_params.get("id", ""))  # rendered for /api/candidate a moment ago
        if views is None:
            views = await run_in_threadpool(lambda: pixels.views(candidate_or_404(request)))
        if views.error:
            return _json({"error": views.error}, 404)
        return Response(views.png, media_type="image/png",
                        headers={"cache-control": f"private, max-age={IMAGE_MAX_AGE_S}"})

    def progress(request: Request) -> Response:
        return _json(store.progress())

    async def body(request: Request) -> dict:
        try:
            doc = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise UsageError("the request body is not JSON") from None
        if not isinstance(doc, dict):
            raise UsageError("the request body must be a JSON object")
        try:  # JSON escapes can spell lone surrogates ("\\ud800"): text no database or page can hold
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError("the request body holds text that is not valid Unicode (a lone surrogate)") from None
        return doc

    async def post_grade(request: Request) -> Response:
        d = await body(request)
        cid = d.get("candidate_id")
        if not isinstance(cid, str):
            raise UsageError("candidate_id must be a string")
        row = await run_in_threadpool(store.grade, cid, d.get("grader"), d.get("grade"), d.get("tag"),
                                      d.get("client_token"))
        return _json({"row": row})

    async def post_undo(request: Request) -> Response:
        d = await body(request)
        cid = await run_in_threadpool(store.undo, d.get("grader"), d.get("client_token"))
        return _json({"candidate_id": cid})

    def guarded(fn):
        """Turn DHSErrors into one-line JSON answers (404 for an id that is not in the database)."""

        async def endpoint(request: Request) -> Response:
            try:
                if inspect.iscoroutinefunction(fn):
                    return await fn(request)
                return await run_in_threadpool(fn, request)
            except NotFound as e:
                return _json({"error": str(e)}, 404)
            except DHSError as e:
                return _error(e)
        return endpoint

    routes = [Route("/", guarded(index), methods=["GET", "HEAD"]),
              Route("/static/{name}", guarded(static), methods=["GET", "HEAD"]),
              Route("/favicon.ico", no_icon, methods=["GET"]),
              Route("/api/session", guarded(session), methods=["GET"]),
              Route("/api/queue", guarded(queue), methods=["GET"]),
              Route("/api/candidate", guarded(candidate), methods=["GET"]),
              Route("/api/image", guarded(image), methods=["GET"]),
              Route("/api/progress", guarded(progress), methods=["GET"]),
              Route("/api/grade", guarded(post_grade), methods=["POST"]),
              Route("/api/undo", guarded(post_undo), methods=["POST"])]
    guard = Guard(Starlette(routes=routes), token=token, host=host)
    return guard
