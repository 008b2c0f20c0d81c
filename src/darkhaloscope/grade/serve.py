"""`dhs grade serve`: add a scores file's best candidates to the grades database and serve the grading page.

    dhs grade serve scores.parquet --db grades.sqlite --top 500              # http://127.0.0.1:8000/
    dhs grade serve scores.parquet --db grades.sqlite --host 0.0.0.0 --port 8080   # shared: prints a token URL

Bound to 127.0.0.1 by default. Any other --host needs an access token: `--token T`, or one generated here and
printed once in the address to open (`http://HOST:PORT/?token=...`). The port is bound before anything is
served, so a port in use is one `error:` line (exit 4). uvicorn serves the app (grade.app) in this process;
every grade is committed to the database before the page hears "saved".

Exercised by tests/grade/test_serve.py and the browser tests (tests/grade/test_browser.py).
"""

from __future__ import annotations

import errno
import secrets
import socket
import sys
import threading
from dataclasses import dataclass

from darkhaloscope.errors import EnvironmentFault, UsageError
from darkhaloscope.grade.security import is_loopback

TOKEN_BYTES = 18  # 24 url-safe characters: ~144 bits
MIN_TOKEN_CHARS = 16


@dataclass
class Served:
    """A running server: its address, the token (None on loopback without --token), and how to stop it."""

    url: str
    token: str | None
    server: object  # uvicorn.Server
    thread: threading.Thread | None = None

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)


def access_token(host: str, token: str | None) -> str | None:
    """The token to require: the one given (checked), a new one off loopback, None on loopback without one."""
    if token is not None:
        if len(token) < MIN_TOKEN_CHARS or not token.isprintable() or " " in token:
            raise UsageError(f"--token: give at least {MIN_TOKEN_CHARS} printable characters without spaces "
                             "(or leave it out and one is generated)")
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(TOKEN_BYTES)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); a port in use or a host that is not this machine is one error."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: give a port in 0..65535 (0 picks a free one)")
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise EnvironmentFault(f"port {port} on {host} is in use (another `dhs grade serve`?); stop it or "
                                   "give another --port") from None
        if isinstance(e, socket.gaierror) or e.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"--host {host}: not an address of this machine; use 127.0.0.1 (default) or "
                             "0.0.0.0") from None
        raise EnvironmentFault(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    return sock


def start(store, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None, background: bool = False,
          log_level: str = "warning", announce=None, sock: socket.socket | None = None) -> Served:
    """Serve `store`: in this thread until interrupted, or (`background`) in a daemon thread that
    `Served.stop()` ends. Port 0 picks a free port (tests, benchmarks). `announce(url, token)` is called once
    the port is bound, before the first request is served. `sock`: already bound by `bind(host, port)`."""
    import uvicorn

    from darkhaloscope.grade.app import create_app

    token = access_token(host, token)
    sock = sock if sock is not None else bind(host, port)
    port = sock.getsockname()[1]
    app = create_app(store, token=token, host=host)
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off",
                            limit_concurrency=256, timeout_keep_alive=30, server_header=False)
    server = uvicorn.Server(config)
    served = Served(_url(host, port), token, server)
    if announce is not None:
        announce(served.url, token)
    if background:
        served.thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        served.thread.start()
        while not server.started and served.thread.is_alive():
            served.thread.join(0.01)
        return served
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return served


def require_web_extra() -> None:
    """Starlette and uvicorn are the [grade] extra: say how to get them instead of a traceback."""
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise EnvironmentFault(f"the grading web app needs {' and '.join(missing)}: pip install "
                               "'darkhaloscope[grade]'")


def address_line(url: str, token: str | None, host: str) -> str:
    """What to open, printed once (the only place the generated token appears)."""
    where = f"{url}?token={token}" if token else url
    extra = " (graders elsewhere: this machine's name or address in place of 127.0.0.1)" \
        if host in ("0.0.0.0", "::") else ""
    return f"grade at {where}{extra}; Ctrl-C stops the server (every acknowledged grade is already saved)"


def run_serve(args) -> int:
    """The `dhs grade serve` handler."""
    from darkhaloscope.grade.ingest import read_candidates
    from darkhaloscope.grade.store import open_store

    require_web_extra()
    token = access_token(args.host, args.token)  # refused before any work: the token, the port, the scores
    sock = bind(args.host, args.port)
    try:
        rows = read_candidates(args.scores, top=args.top, data=args.data)
        with open_store(args.db, create=True) as store:
            n = store.put_candidates(rows)
            print(f"{args.db}: {n['added']:,} candidate(s) added, {n['updated']:,} updated; {store.count():,} to "
                  "grade", file=sys.stderr)
            start(store, host=args.host, token=token, sock=sock,
                  announce=lambda url, tok: print(address_line(url, tok, args.host), flush=True))
    finally:
        sock.close()
    return 0


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/"
