"""`dhs grade serve` as a user runs it: the address printed once, loopback by default, a token off loopback,
and one `error:` line (with its exit code) for a port in use, a missing SCORES or a short token."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from webfactory import scored_tier

pytest.importorskip("uvicorn", reason="the web app needs the [grade] extra: pip install -e '.[grade]'")

from darkhaloscope.cli import main  # noqa: E402
from darkhaloscope.grade.serve import access_token  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src"


def _serve(args: list[str]) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    p = subprocess.Popen([sys.executable, "-m", "darkhaloscope", "grade", "serve", *args], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("grade at "):
        p.kill()
        raise AssertionError(f"no address line: {line!r} {p.stderr.read()}")
    return p, line.split()[2].rstrip(";")


def _get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow  # two `dhs` processes: ~10 s at load 6
def test_serve_on_loopback_and_off_it_with_a_token(tmp_path):
    _, scores = scored_tier(tmp_path)
    p, url = _serve([str(scores), "--db", str(tmp_path / "g.sqlite"), "--top", "12", "--port", "0"])
    try:
        assert url.startswith("http://127.0.0.1:") and "token" not in url
        assert _get(url + "api/progress") == (200, {"total": 12})
    finally:
        p.terminate()
        p.wait(10)
    p, url = _serve([str(scores), "--db", str(tmp_path / "g.sqlite"), "--host", "0.0.0.0", "--port", "0"])
    try:
        base, token = url.split("?token=")
        assert len(token) >= 16
        assert _get(base + "api/progress")[0] == 401
        assert _get(base + "api/progress", {"authorization": f"Bearer {token}"}) == (200, {"total": 30})
    finally:
        p.terminate()
        p.wait(10)


def test_serve_errors_are_one_line(tmp_path, capsys):
    _, scores = scored_tier(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["grade", "serve", str(scores), "--db", str(tmp_path / "g.sqlite"), "--port", str(port)]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: port ") and "in use" in err[-1] and "--port" in err[-1]
    assert main(["grade", "serve", str(tmp_path / "nope.parquet"), "--db", str(tmp_path / "h.sqlite")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nope.parquet" in err[0]
    assert main(["grade", "serve", str(scores), "--db", str(tmp_path / "g.sqlite"), "--token", "short"]) == 2
    assert "--token" in capsys.readouterr().err
    assert main(["grade", "serve", str(scores), "--db", str(tmp_path / "p.sqlite"), "--port", "70000"]) == 2
    assert main(["grade", "serve", str(scores), "--db", str(tmp_path / "p.sqlite"), "--host", "192.0.2.1"]) == 2
    assert not (tmp_path / "p.sqlite").exists()  # port and host refused before the database is made


def test_access_token_rules():
    assert access_token("127.0.0.1", None) is None and access_token("localhost", None) is None
    a, b = access_token("0.0.0.0", None), access_token("0.0.0.0", None)
    assert a != b and len(a) >= 24
    assert access_token("127.0.0.1", "given-token-1234567") == "given-token-1234567"


def test_start_in_a_thread_serves_real_http(tmp_path):
    """The in-process server the browser tests and the benchmark use: real uvicorn on a free port."""
    from webfactory import grades_db

    from darkhaloscope.grade.serve import start

    store, _, _ = grades_db(tmp_path)
    served = start(store, port=0, background=True)
    try:
        assert _get(served.url + "api/progress") == (200, {"total": 30})
        status, doc = _get(served.url + "api/candidate?id=cand-005")
        assert status == 200 and doc["candidate_id"] == "cand-005" and doc["stamp_error"] is None
    finally:
        served.stop()
        store.close()
    assert not served.thread.is_alive()
