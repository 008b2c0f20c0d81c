"""The guard in front of `dhs grade serve`: one ASGI middleware that every request passes.

- **Host**: the Host header must name this server (loopback names when bound to loopback), so a web page
  elsewhere cannot reach the app through DNS rebinding.
- **Access token** (required off loopback, optional on it): `/?token=T` once sets an HttpOnly, SameSite=Strict
  cookie and redirects to `/` (the token leaves the address bar); scripts may send `Authorization: Bearer T`.
  Without either: 401. The token is compared in constant time.
- **CSRF**: a POST must carry `X-DHS-CSRF` equal to the HMAC of its session cookie (`GET /api/session` sets
  the cookie and returns the value: only a same-origin page can read it), a JSON content type, and an Origin
  (when the browser sends one) equal to this server; `Sec-Fetch-Site` other than same-origin is refused.
- **Sizes**: request bodies above `MAX_BODY_BYTES` are refused with 413 before the app sees them; URLs above
  `MAX_URL_BYTES` with 414.
- **Headers**: a strict Content-Security-Policy (scripts and styles from this server only, no inline code),
  no framing, no MIME sniffing, no referrer, no caching of API answers.

Exercised by `dhs grade serve` and tests/grade/test_app.py (test_security_*).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from urllib.parse import parse_qs

MAX_BODY_BYTES = 4096  # a grade is ~150 bytes of JSON
MAX_URL_BYTES = 2048
SESSION_COOKIE = "dhs_grade_session"
ACCESS_COOKIE = "dhs_grade_access"
CSRF_HEADER = "x-dhs-csrf"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"cross-origin-resource-policy", b"same-origin")]


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


class Guard:
    """ASGI middleware: host check, access token, CSRF on POST, body size bound, security headers."""

    def __init__(self, app, *, token: str | None, host: str, secret: bytes | None = None):
        self.app, self.token, self.bind_host = app, token, host
        self.secret = secret or secrets.token_bytes(32)
        self.access_value = self._mac("access:" + (token or "")) if token else None

    def _mac(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    def csrf_for(self, session: str) -> str:
        return self._mac("csrf:" + session)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = _cookies(headers.get("cookie", ""))

        async def send_secured(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + SECURITY_HEADERS}
            await send(message)

        refusal = self._refusal(scope, headers, cookies)
        if refusal is not None:
            return await _respond(send_secured, *refusal)
        if self.token and not hmac.compare_digest(cookies.get(ACCESS_COOKIE, ""), self.access_value or ""):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("token") or [""])[0]
            if scope["path"] == "/" and given and hmac.compare_digest(given.encode(), self.token.encode()):
                cookie = f"{ACCESS_COOKIE}={self.access_value}; HttpOnly; SameSite=Strict; Path=/"
                return await _respond(send_secured, 303, "signed in", [(b"location", b"/"),
                                                                       (b"set-cookie", cookie.encode())])
            bearer = headers.get("authorization", "")
            if not (bearer.startswith("Bearer ") and hmac.compare_digest(bearer[7:].encode(), self.token.encode())):
                return await _respond(send_secured, 401, "this grading server needs its access token: open the "
                                      "address `dhs grade serve` printed (it ends in ?token=...)")
        if scope["method"] == "POST":
            body = await _read_body(receive)
            if body is None:
                return await _respond(send_secured, 413, f"request body over {MAX_BODY_BYTES} bytes")
            if not self._csrf_ok(headers, cookies):
                return await _respond(send_secured, 403, "stale or missing page session: reload the page")
            receive = _replay(body, receive)
        return await self.app(scope, receive, send_secured)

    def _refusal(self, scope, headers, cookies) -> tuple[int, str] | None:
        if len(scope.get("raw_path", b"")) + len(scope.get("query_string", b"")) > MAX_URL_BYTES:
            return 414, f"address over {MAX_URL_BYTES} bytes"
        host = _hostname(headers.get("host", ""))
        if is_loopback(self.bind_host) and not is_loopback(host):
            return 421, "this server answers only to 127.0.0.1 / localhost"
        if scope["method"] not in ("GET", "HEAD", "POST"):
            return 405, "method not allowed"
        if scope["method"] == "POST":
            if int(headers.get("content-length") or 0) > MAX_BODY_BYTES:
                return 413, f"request body over {MAX_BODY_BYTES} bytes"
            if not headers.get("content-type", "").startswith("application/json"):
                return 415, "POST bodies are JSON"
            origin = headers.get("origin")
            if origin is not None and origin not in (f"http://{headers.get('host', '')}",
                                                     f"https://{headers.get('host', '')}"):
                return 403, "cross-origin request refused"
            if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return 403, "cross-site request refused"
        return None

    def _csrf_ok(self, headers, cookies) -> bool:
        session = cookies.get(SESSION_COOKIE, "")
        return bool(session) and hmac.compare_digest(headers.get(CSRF_HEADER, ""), self.csrf_for(session))


def new_session() -> str:
    return secrets.token_hex(16)


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[:host.find("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host


def _cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k:
            out[k] = v
    return out


async def _read_body(receive) -> bytes | None:
    """The whole request body, or None past MAX_BODY_BYTES (chunked bodies are counted as they come)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive):
    """A `receive` that hands the app the body already read, then the client's own messages (disconnect)."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _respond(send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store")] + (headers or [])})
    await send({"type": "http.response.body", "body": body})
