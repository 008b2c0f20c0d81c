"""The web app of `dhs grade serve` through Starlette's TestClient: the routes, the grading round trip, and the
guard (host, access token, CSRF, body size, ids from the database only, escaping left to the page)."""

from __future__ import annotations

import json

import pytest
from webfactory import EVIL, grades_db

pytest.importorskip("starlette", reason="the web app needs the [grade] extra: pip install -e '.[grade]'")

from starlette.testclient import TestClient  # noqa: E402

from darkhaloscope.grade.app import create_app  # noqa: E402
from darkhaloscope.grade.images import VIEWS  # noqa: E402
from darkhaloscope.grade.security import MAX_BODY_BYTES  # noqa: E402

BASE = "http://127.0.0.1:8000"
TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def db(tmp_path):
    store, scores, tier = grades_db(tmp_path)
    yield store, tier
    store.close()


def client(store, **kw) -> TestClient:
    return TestClient(create_app(store, **kw), base_url=BASE)


def csrf(c: TestClient) -> dict:
    return {"x-dhs-csrf": c.get("/api/session").json()["csrf"]}


def post(c, path, doc, headers):
    return c.post(path, content=json.dumps(doc), headers={"content-type": "application/json", **headers})


def test_grading_round_trip(db):
    store, _ = db
    c = client(store)
    page = c.get("/")
    assert page.status_code == 200 and "/static/page.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    h = csrf(c)
    q = c.get("/api/queue", params={"grader": "ana"}).json()
    assert len(q["ids"]) == 30 and q["ids"][0] == EVIL and q["progress"]["total"] == 30
    cand = c.get("/api/candidate", params={"id": q["ids"][0], "grader": "ana"}).json()
    assert cand["candidate_id"] == EVIL and cand["rank"] == 1 and cand["stamp_error"] is None
    assert cand["views"] == list(VIEWS) and cand["mine"] is None
    png = c.get(cand["image"])
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG") and png.headers["content-type"] == "image/png"
    assert int.from_bytes(png.content[16:20], "big") == 64 * len(VIEWS)  # the panels side by side
    r = post(c, "/api/grade", {"candidate_id": EVIL, "grader": "ana", "grade": "B", "tag": "ring",
                                "client_token": "t-1"}, h)
    assert r.status_code == 200 and c.get("/api/progress").json() == {"ana": 1, "total": 30}
    again = post(c, "/api/grade", {"candidate_id": EVIL, "grader": "ana", "grade": "B", "tag": "ring",
                                    "client_token": "t-1"}, h)
    assert again.json()["row"] == r.json()["row"]  # a retried POST is stored once
    assert [(g["candidate_id"], g["grade"], g["tag"]) for g in store.latest_grades()] == [(EVIL, "B", "ring")]
    mine = c.get("/api/candidate", params={"id": EVIL, "grader": "ana"}).json()["mine"]
    assert mine == {"grade": "B", "tag": "ring"}
    assert EVIL not in c.get("/api/queue", params={"grader": "ana"}).json()["ids"]
    assert EVIL in c.get("/api/queue", params={"grader": "bo"}).json()["ids"]
    u = post(c, "/api/undo", {"grader": "ana", "client_token": "t-2"}, h).json()
    assert u["candidate_id"] == EVIL and c.get("/api/progress").json() == {"total": 30} and store.latest_grades() == []


def test_bad_requests_are_one_line_4xx(db):
    store, _ = db
    c = client(store)
    h = csrf(c)
    assert c.get("/api/candidate", params={"id": "../../etc/passwd"}).status_code == 404
    assert c.get("/api/image", params={"id": "../../etc/passwd"}).status_code == 404
    assert c.get("/api/image").status_code == 400
    assert c.get("/static/../app.py").status_code == 404 and c.get("/static/page.html").status_code == 404
    bad = post(c, "/api/grade", {"candidate_id": "cand-003", "grader": "ana", "grade": "Q"}, h)
    assert bad.status_code == 400 and "unknown grade key" in bad.json()["error"]
    bad = post(c, "/api/grade", {"candidate_id": "cand-003", "grader": "<b>x</b>", "grade": "A"}, h)
    assert bad.status_code == 400 and "grader name" in bad.json()["error"]
    bad = post(c, "/api/grade", {"candidate_id": "cand-003", "grader": "ana", "grade": "A", "tag": "blob"}, h)
    assert bad.status_code == 400 and "unknown tag" in bad.json()["error"]
    assert post(c, "/api/grade", {"candidate_id": "nope", "grader": "ana", "grade": "A"}, h).status_code == 400
    r = c.post("/api/grade", content=b"{not json", headers={"content-type": "application/json", **h})
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    for doc in (b'{"candidate_id": "\\ud800", "grader": "ana", "grade": "A"}',  # a lone surrogate, JSON-escaped
                b'{"candidate_id": "cand-003", "grader": "ana", "grade": "A", "client_token": "\\ud800"}'):
        r = c.post("/api/grade", content=doc, headers={"content-type": "application/json", **h})
        assert r.status_code == 400 and "lone surrogate" in r.json()["error"]  # it was a 500
    r = c.post("/api/undo", content=b'{"grader": "ana", "client_token": "\\ud800"}',
               headers={"content-type": "application/json", **h})
    assert r.status_code == 400
    assert c.get("/api/queue", params={"grader": "ana", "order": "alphabet"}).status_code == 400
    assert c.get("/api/queue", params={"grader": "ana", "seed": "-1"}).status_code == 400
    assert c.put("/api/grade").status_code == 405
    assert store.latest_grades() == []


def test_security_csrf_origin_and_size(db):
    store, _ = db
    c = client(store)
    h = csrf(c)
    doc = {"candidate_id": "cand-003", "grader": "ana", "grade": "A"}
    assert post(c, "/api/grade", doc, {}).status_code == 403  # no CSRF header
    assert post(c, "/api/grade", doc, {"x-dhs-csrf": "0" * 64}).status_code == 403
    assert post(c, "/api/grade", doc, {**h, "origin": "http://evil.example"}).status_code == 403
    assert post(c, "/api/grade", doc, {**h, "sec-fetch-site": "cross-site"}).status_code == 403
    r = c.post("/api/grade", content=json.dumps(doc), headers={"content-type": "text/plain", **h})
    assert r.status_code == 415  # a plain HTML form cannot send JSON
    big = {**doc, "tag": "x" * MAX_BODY_BYTES}
    assert post(c, "/api/grade", big, h).status_code == 413

    def chunks():
        yield json.dumps(big).encode()
    r = c.post("/api/grade", content=chunks(), headers={"content-type": "application/json", **h})
    assert r.status_code == 413  # no content-length: counted while read
    other = client(store)  # another browser: its own session, the first one's CSRF value is no good there
    other.get("/api/session")
    assert post(other, "/api/grade", doc, h).status_code == 403
    assert c.get("/api/progress", headers={"host": "evil.example:8000"}).status_code == 421  # DNS rebinding
    assert c.get("/api/progress", params={"x": "y" * 3000}).status_code == 414
    assert post(c, "/api/grade", doc, {**h, "origin": BASE}).status_code == 200
    assert len(store.latest_grades()) == 1


def test_security_access_token(db):
    store, _ = db
    c = TestClient(create_app(store, token=TOKEN, host="0.0.0.0"), base_url="http://grader-box:8000",
                   follow_redirects=False)
    assert c.get("/").status_code == 401 and c.get("/api/progress").status_code == 401
    assert c.get("/", params={"token": "wrong-token-wrong-token"}).status_code == 401
    assert c.get("/api/progress", headers={"authorization": "Bearer " + TOKEN}).status_code == 200
    r = c.get("/", params={"token": TOKEN})
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Strict" in r.headers["set-cookie"]
    assert c.get("/").status_code == 200 and c.get("/api/progress").json()["total"] == 30  # the cookie lets it in
    h = csrf(c)
    assert post(c, "/api/grade", {"candidate_id": "cand-004", "grader": "bo", "grade": "N"}, h).status_code == 200


def test_a_stamp_that_is_gone_is_shown_as_such(db, tmp_path):
    store, tier = db
    c = client(store)
    ids = c.get("/api/queue", params={"grader": "ana"}).json()["ids"]
    first = c.get("/api/candidate", params={"id": ids[0]}).json()
    victim = next(p for p in tier.rglob("*.parquet") if p.relative_to(tier).as_posix() != first["source_file"])
    victim.unlink()
    gone = [c.get("/api/candidate", params={"id": i}).json() for i in ids]
    missing = [g for g in gone if g["stamp_error"]]
    assert missing and all(g["image"] is None and "stamp not available" in g["stamp_error"] for g in missing)
    assert c.get("/api/image", params={"id": missing[0]["candidate_id"]}).status_code == 404
    assert c.get("/api/candidate", params={"id": ids[0]}).json()["stamp_error"] is None  # others still served
    h = csrf(c)
    assert post(c, "/api/grade", {"candidate_id": missing[0]["candidate_id"], "grader": "ana", "grade": "S"},
                h).status_code == 200  # and it can still be graded (skipped)


def test_page_builds_data_with_text_only():
    """Strings from the data reach the page only through textContent: no innerHTML, outerHTML,
    insertAdjacentHTML or document.write in its script, and no inline script or style in its HTML."""
    from importlib import resources

    static = resources.files("darkhaloscope.grade").joinpath("static")
    js = static.joinpath("page.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
    html = static.joinpath("page.html").read_text()
    assert html.count("<script") == 1 and 'src="/static/page.js"' in html and " style=" not in html
    assert " on" not in html.replace("<option", "").split("<body>")[1].replace("onl", "")  # no onclick= handlers


def test_queue_orders_through_the_route(db):
    store, _ = db
    c = client(store)
    h = csrf(c)
    by_score = c.get("/api/queue", params={"grader": "cy"}).json()["ids"]
    rand = c.get("/api/queue", params={"grader": "cy", "order": "random", "seed": "7"}).json()["ids"]
    assert sorted(rand) == sorted(by_score) and rand != by_score  # a permutation, not the score order
    assert c.get("/api/queue", params={"grader": "cy", "order": "random", "seed": "7"}).json()["ids"] == rand
    split = by_score[5]  # ana and bo disagree most on this one: it comes first for cy
    for grader, grade in (("ana", "A"), ("bo", "N"), ("ana", "C"), ("bo", "C")):
        cid = split if grader == "ana" or grade == "N" else by_score[6]
        assert post(c, "/api/grade", {"candidate_id": cid, "grader": grader, "grade": grade}, h).status_code == 200
    assert c.get("/api/queue", params={"grader": "cy", "order": "disagreement"}).json()["ids"][0] == split
