"""HTTP client of `dhs cutouts`: concurrent-safe GETs under a polite rate limit, with retries and a disk cache.

    client = CutoutClient(CutoutConfig(), cache_dir="cache/")
    res = client.fetch(url)        # FetchResult(body or None, reason, from_cache, permanent)

- One keep-alive connection per thread (no TCP/TLS handshake per cutout).
- A shared rate limiter spaces requests by 1 / `CutoutConfig.requests_per_s()`; a 429 pauses every thread for its
  Retry-After (seconds or an HTTP date; else exponential backoff).
- Retries with exponential backoff and jitter on 429, 5xx, timeouts, dropped connections and incomplete or
  non-FITS bodies, up to `max_tries`; other 4xx are permanent.
- Every request is bounded: a reply body over `max_reply_mb` is refused (by its Content-Length unread, else
  once that many bytes arrived) and never cached, final for that bound (a rerun with the same bound keeps the
  row; one with another bound, part of the chunk fingerprint, fetches it again); a reply not complete within
  `request_deadline_s` (a server dripping bytes, an endless chunked body) is cut off as a timeout. So one
  cutout costs at most max_tries x (timeout_s + request_deadline_s) plus the backoffs.
- The cache holds one file per request, named by the SHA-256 of the URL, written as a temp file + rename (a
  killed run leaves whole files only); a FITS body and a permanent error are cached, a transient failure is
  not (a rerun tries again).
"""

from __future__ import annotations

import email.utils
import hashlib
import heapq
import http.client
import os
import random
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from darkhaloscope.survey.fitsimage import FitsFormatError, read_fits_image


@dataclass
class FetchResult:
    body: bytes | None  # the FITS bytes; None on failure
    reason: str  # '' on success, else why it failed
    from_cache: bool = False
    permanent: bool = False  # a failure that a retry would repeat (4xx other than 429)


class Deadlines:
    """One watchdog thread for every request of a client: `arm(sock, seconds)` -> a ticket; when the time
    passes before `disarm(ticket)`, the socket is shut down (a blocked read returns at once) and the ticket's
    `late` flag is set. Cheaper than a timer thread per request (the 5 ms CPU budget per cutout)."""

    def __init__(self):
        self._heap: list = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._count = 0

    def arm(self, sock, seconds: float) -> dict:
        ticket = {"sock": sock, "late": False, "done": False}
        with self._cond:
            self._count += 1
            heapq.heappush(self._heap, (time.monotonic() + seconds, self._count, ticket))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dhs-cutout-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()
        return ticket

    def disarm(self, ticket: dict) -> None:
        with self._cond:
            ticket["done"] = True

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2]["done"]:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, ticket = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                ticket["late"] = True
            try:
                ticket["sock"].shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class RateLimiter:
    """Spaces calls of `wait()` by 1/rate seconds across threads; `pause(s)` holds everyone back s seconds."""

    def __init__(self, rate_per_s: float):
        self.interval = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            t = max(now, self._next)
            self._next = t + self.interval
        if t > now:
            time.sleep(t - now)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number, or an HTTP date; None if absent or unparseable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class CutoutClient:
    def __init__(self, cfg, cache_dir: str | Path | None):
        self.cfg = cfg
        self.cache = Path(cache_dir) if cache_dir else None
        self.limiter = RateLimiter(cfg.requests_per_s())
        self.deadlines = Deadlines()
        self._local = threading.local()
        self.stats = {"fetched": 0, "cached": 0, "retries": 0}
        self._stats_lock = threading.Lock()

    # --- cache
    def cache_path(self, url: str) -> Path | None:
        if self.cache is None:
            return None
        h = hashlib.sha256(url.encode()).hexdigest()
        return self.cache / h[:2] / f"{h}.fits"

    def _cache_put(self, path: Path | None, data: bytes) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def _cache_get(self, path: Path | None) -> FetchResult | None:
        if path is None:
            return None
        err = path.with_suffix(".err")
        if err.is_file():
            return FetchResult(None, err.read_text(), True, True)
        try:
            if path.stat().st_size > self.cfg.max_reply_mb * (1 << 20):
                return None  # (not written by this client under this bound: refetch, bounded)
            body = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            read_fits_image(body)
        except FitsFormatError:
            return None  # (cannot happen for files this client wrote; refetch rather than trust it)
        return FetchResult(body, "", True)

    # --- network
    def _connection(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.key != key:
            cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            conn = cls(parts.netloc, timeout=self.cfg.timeout_s)
            self._local.conn, self._local.key = conn, key
        return conn, parts.path + ("?" + parts.query if parts.query else "")

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def _get_once(self, url: str) -> tuple[int, bytes | None, str, float | None]:
        """(status, body, reason, retry_after); status 0 for a network failure, -1 for an unusable 200 reply,
        -2 for a reply over `max_reply_mb` (final: a retry would get the same)."""
        conn, target = self._connection(url)
        ticket = None
        try:
            if conn.sock is None:
                conn.connect()  # bounded by timeout_s; the deadline below covers everything after it
            ticket = self.deadlines.arm(conn.sock, self.cfg.request_deadline_s)
            conn.request("GET", target, headers={"User-Agent": self.cfg.user_agent, "Accept": "application/fits"})
            resp = conn.getresponse()
            body = self._read_bounded(resp)
            self.deadlines.disarm(ticket)  # from here `late` is final
            if body is None or resp.will_close or ticket["late"]:
                self._drop_connection()
            if ticket["late"]:
                raise TimeoutError
            if body is None:
                return -2, None, f"reply larger than max_reply_mb={self.cfg.max_reply_mb:g} MiB (not read further)", None
        except (OSError, http.client.HTTPException) as e:
            self._drop_connection()
            if ticket is not None and ticket["late"]:
                return 0, None, f"timed out: no whole reply within request_deadline_s=" \
                    f"{self.cfg.request_deadline_s:g} s", None  # the service answers: not 'unreachable'
            what = "timed out" if isinstance(e, (socket.timeout, TimeoutError)) else f"{type(e).__name__}: {e}"
            return 0, None, f"network error ({what})".splitlines()[0], None
        finally:
            if ticket is not None:
                self.deadlines.disarm(ticket)
        if resp.status == 200:
            try:
                read_fits_image(body)
            except FitsFormatError as e:
                return -1, None, f"invalid body: {e}", None
            return 200, body, "", None
        phrase = "".join(ch for ch in str(resp.reason)[:80] if ch.isprintable())  # the server's text: data
        return resp.status, None, f"HTTP {resp.status} {phrase}".strip(), \
            retry_after_seconds(resp.getheader("Retry-After"))

    def _read_bounded(self, resp: http.client.HTTPResponse) -> bytes | None:
        """The body, or None once it is known to exceed max_reply_mb (Content-Length, or bytes received)."""
        limit = int(self.cfg.max_reply_mb * (1 << 20))
        length = resp.getheader("Content-Length")
        if length is not None and length.strip().isascii() and length.strip().isdigit() and int(length) > limit:
            return None
        parts, got = [], 0
        while resp.length != 0:  # (None: chunked or until the server closes)
            part = resp.read1(1 << 16)  # returns what one read brings: a drip cannot hold the loop
            if not part:
                if resp.length:  # Content-Length not reached: the connection ended early
                    raise http.client.IncompleteRead(b"".join(parts), resp.length)
                break
            got += len(part)
            if got > limit:
                return None
            parts.append(part)
        resp.close()  # as read() does: the keep-alive connection is ready for the next request
        return b"".join(parts)

    def fetch(self, url: str, max_tries: int | None = None) -> FetchResult:
        path = self.cache_path(url)
        hit = self._cache_get(path)
        if hit is not None:
            self._count("cached")
            return hit
        tries = max_tries or self.cfg.max_tries
        reason = ""
        for attempt in range(tries):
            if attempt:
                self._count("retries")
            self.limiter.wait()
            status, body, reason, retry_after = self._get_once(url)
            if status == 200:
                self._cache_put(path, body)
                self._count("fetched")
                return FetchResult(body, "")
            if status == -2:  # final for this bound (the same bytes would come), never cached: a rerun with another
                return FetchResult(None, reason, permanent=True)  # max_reply_mb (in the chunk fingerprint) fetches it
            if 400 <= status < 500 and status not in (408, 429):
                if path is not None:
                    self._cache_put(path.with_suffix(".err"), reason.encode())
                return FetchResult(None, reason, permanent=True)
            if attempt + 1 < tries:
                delay = min(self.cfg.backoff_max_s, self.cfg.backoff_s * 2 ** attempt) * (0.5 + random.random() / 2)
                if retry_after is not None:
                    delay = min(max(delay, retry_after), self.cfg.backoff_max_s)
                    self.limiter.pause(delay)
                time.sleep(delay)
        return FetchResult(None, f"{reason} after {tries} tries")

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1
