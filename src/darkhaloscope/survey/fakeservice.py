"""A loopback stand-in for the Legacy Surveys FITS cutout service, with injectable faults (tests, benchmarks).

    with FakeCutoutService(cutout_dir="../shared/data/dr10_cutouts", faults={"429": 0.1}) as svc:
        dhs cutouts targets.parquet --out tier --service-url svc.url

Serves `GET /fits-cutout?ra=..&dec=..&size=..&bands=..` on 127.0.0.1 (stdlib http.server, one thread per
connection) with a (bands, size, size) float32 cube whose header names the bands (BAND0, ...) like the real
service. Pixels: a real DR10 cutout from `cutout_dir` (chosen by a hash of ra/dec, centre-cropped) plus
Gaussian noise seeded by ra/dec, or pure sky noise without one; the same request always gets the same bytes.

Faults, chosen per request by a seeded hash of (ra, dec, attempt): `faults` maps a kind to its probability,
or `fault_for` maps the exact `ra` string of a request to a kind for every attempt, or for the first
`fault_times` attempts only. Kinds: `429` (with Retry-After: 1), `500`, `slow` (waits `slow_s` first),
`truncate` (drops the connection half-way through the body), `nan` (band g all NaN), `two_band` (a g,r cube),
`small` (a 12x12 cube whatever the size asked). Hostile replies (issue #26): `404`; `huge` (a FITS header then `huge_bytes` of zeros, Content-Length given);
`endless` (a chunked body that never ends); `drip` (the body one byte every `drip_s`, Content-Length given);
and cubes whose header lies: `bscale_text` (BSCALE = 'abc'), `naxis_text` (NAXIS1 = 'abc'), `naxis_negative`
(NAXIS1 = -64), `naxis_overflow` (axes whose product overflows int64), `naxis_huge` (3x30000x30000 claimed);
`odd_length` (a good cube whose Content-Length is '\u00b3', a digit to `str.isdigit`, not to `int`).
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

FAULTS = ("429", "500", "slow", "truncate", "nan", "two_band", "small", "404", "huge", "endless", "drip", "bscale_text",
          "naxis_text", "naxis_negative", "naxis_overflow", "naxis_huge", "odd_length")
# header cards a hostile reply rewrites (key -> 70-character value field), per fault kind
_LIES = {"bscale_text": {"BSCALE": "'abc'"}, "naxis_text": {"NAXIS1": "'abc'"}, "naxis_negative": {"NAXIS1": "-64"},
         "naxis_overflow": {"NAXIS1": str(2 ** 62), "NAXIS2": str(2 ** 62)},
         "naxis_huge": {"NAXIS1": "30000", "NAXIS2": "30000", "NAXIS3": "3"}}
NOISE_NMGY = {"g": 0.0018, "r": 0.0030, "z": 0.0080}  # robust sky sigma of the shared DR10 cutouts


def _fits_bytes(cube: np.ndarray, bands: str) -> bytes:
    from astropy.io import fits

    hdu = fits.PrimaryHDU(cube.astype(np.float32))
    for i, b in enumerate(bands):
        hdu.header[f"BAND{i}"] = b
    hdu.header["CTYPE1"], hdu.header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


class FakeCutoutService:
    def __init__(self, cutout_dir: str | Path | None = None, faults: dict[str, float] | None = None,
                 fault_for: dict[str, str] | None = None, fault_times: int | None = None, slow_s: float = 0.3,
                 seed: int = 0, latency_s: float = 0.0, huge_bytes: int = 64 << 20, drip_s: float = 0.2):
        self.images = []
        if cutout_dir is not None and Path(cutout_dir).is_dir():
            for p in sorted(Path(cutout_dir).glob("*.npz")):
                with np.load(p) as d:
                    if "cutout" in d.files:
                        self.images.append(np.moveaxis(np.nan_to_num(d["cutout"].astype(np.float32)), 2, 0))
        self.faults = dict(faults or {})
        self.fault_for = dict(fault_for or {})
        unknown = sorted((set(self.faults) | set(self.fault_for.values())) - set(FAULTS))
        if unknown:  # a misspelt kind would otherwise inject nothing, and the test using it could not fail
            raise ValueError(f"unknown fault kind(s) {unknown}; choose from {', '.join(FAULTS)}")
        self.fault_times = fault_times
        self.slow_s, self.seed, self.latency_s = slow_s, seed, latency_s
        self.huge_bytes, self.drip_s = huge_bytes, drip_s
        self.requests: Counter = Counter()  # ra string -> requests served
        self.times: dict[str, list[float]] = {}  # ra string -> time.monotonic() of each request
        self.served: Counter = Counter()  # fault kind (or 'ok') -> count
        self._lock = threading.Lock()
        self._cache: dict[tuple, bytes] = {}
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/fits-cutout"

    def __enter__(self) -> "FakeCutoutService":
        svc = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                svc._handle(self)

            def log_message(self, *a):  # quiet
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # a client that hung up: nothing to report
                pass

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # shutdown() waits for the loop to look at its flag: every 0.05 s, not the default 0.5 s
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def cube(self, ra: str, dec: str, size: int, bands: str) -> bytes:
        key = (ra, dec, size, bands)
        if key not in self._cache:
            h = int.from_bytes(hashlib.sha256(f"{self.seed}:{ra}:{dec}".encode()).digest()[:8], "little")
            rng = np.random.default_rng(h)
            cube = np.stack([rng.normal(0, NOISE_NMGY.get(b, 0.003), (size, size)) for b in bands]).astype(np.float32)
            if self.images:
                img = self.images[h % len(self.images)]
                y0 = (img.shape[1] - size) // 2
                if y0 >= 0:
                    idx = ["grz".index(b) for b in bands]
                    cube += img[idx, y0:y0 + size, y0:y0 + size]
            self._cache[key] = _fits_bytes(cube, bands)
        return self._cache[key]

    def _fault(self, ra: str, attempt: int) -> str | None:
        if ra in self.fault_for:
            return self.fault_for[ra] if self.fault_times is None or attempt < self.fault_times else None
        for kind, p in sorted(self.faults.items()):
            u = int.from_bytes(hashlib.sha256(f"{self.seed}:{kind}:{ra}:{attempt}".encode()).digest()[:8],
                               "little") / 2.0 ** 64
            if u < p:
                return kind
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        q = {k: v[0] for k, v in parse_qs(urlsplit(h.path).query).items()}
        ra, dec = q.get("ra", ""), q.get("dec", "")
        size, bands = int(q.get("size", 64)), q.get("bands", "grz")
        with self._lock:
            attempt = self.requests[ra]
            self.requests[ra] += 1
            self.times.setdefault(ra, []).append(time.monotonic())
        kind = self._fault(ra, attempt)
        with self._lock:
            self.served[kind or "ok"] += 1
        if self.latency_s:
            time.sleep(self.latency_s)
        if kind in ("429", "500", "404"):
            body = {"429": b"busy", "500": b"server error", "404": b"no such cutout"}[kind]
            h.send_response(int(kind))
            if kind == "429":
                h.send_header("Retry-After", "1")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        if kind == "slow":
            time.sleep(self.slow_s)
        if kind == "two_band":
            bands = bands[:2]
        if kind == "small":
            size = 12
        body = self.cube(ra, dec, size, bands)
        if kind == "nan":
            body = self._nan_band(body, size, len(bands))
        if kind in _LIES:
            body = self._lie(body, _LIES[kind])
        if kind in ("huge", "endless", "drip"):
            return self._hostile_body(h, kind, body)
        h.send_response(200)
        h.send_header("Content-Type", "application/fits")
        h.send_header("Content-Length", "\u00b3" if kind == "odd_length" else str(len(body)))
        h.end_headers()
        if kind == "odd_length":  # the body then ends where the connection does
            h.close_connection = True
        if kind == "truncate":
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(body)

    def _hostile_body(self, h: BaseHTTPRequestHandler, kind: str, body: bytes) -> None:
        """Replies that never end, or end after far too many bytes or far too long (until the client hangs up)."""
        h.close_connection = True
        h.send_response(200)
        h.send_header("Content-Type", "application/fits")
        if kind == "endless":
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Content-Length", str(len(body) + self.huge_bytes if kind == "huge" else len(body)))
        h.end_headers()
        try:
            if kind == "drip":
                for i in range(len(body)):
                    h.wfile.write(body[i:i + 1])
                    h.wfile.flush()
                    time.sleep(self.drip_s)
            elif kind == "huge":
                h.wfile.write(body)
                zeros = bytes(1 << 20)
                for start in range(0, self.huge_bytes, len(zeros)):
                    h.wfile.write(zeros[: min(len(zeros), self.huge_bytes - start)])
            else:
                chunk = bytes(1 << 16)
                while True:
                    h.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except OSError:  # the client hung up: what a bounded client does
            pass

    @staticmethod
    def _lie(body: bytes, cards: dict[str, str]) -> bytes:
        """`body` with the header cards in `cards` rewritten (value field right-justified like FITS does)."""
        out, todo = bytearray(body), dict(cards)
        for i in range(0, 2880 * 4, 80):
            key = out[i:i + 8].decode("ascii").strip()
            if key in todo:
                out[i + 10:i + 80] = todo.pop(key).rjust(20).ljust(70).encode("ascii")
            elif key == "END":  # cards the header lacks go where END was (blank cards follow it in its block)
                for k, (name, value) in enumerate(todo.items()):
                    out[i + 80 * k:i + 80 * (k + 1)] = f"{name:<8}= {value:>20}".ljust(80).encode("ascii")
                j = i + 80 * len(todo)
                out[j:j + 80] = b"END".ljust(80)
                break
        return bytes(out)

    @staticmethod
    def _nan_band(body: bytes, size: int, planes: int) -> bytes:
        start = len(body) - 2880 * (-(-(planes * size * size * 4) // 2880))  # data starts after the header blocks
        nan = np.full(size * size, np.nan, dtype=">f4").tobytes()
        return body[:start] + nan + body[start + len(nan):]


def main(argv: list[str] | None = None) -> None:
    """`python -m darkhaloscope.survey.fakeservice [CUTOUT_DIR]`: serve until killed; the URL is the first line
    of stdout (benchmarks read it), how to use it goes to stderr. `--help` prints help and serves nothing."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m darkhaloscope.survey.fakeservice",
                                 description="A loopback stand-in for the Legacy Surveys FITS cutout service: serves "
                                 "cutouts built from real DR10 stamps + noise on 127.0.0.1 until killed, for trying "
                                 "`dhs cutouts` offline.")
    ap.add_argument("cutout_dir", nargs="?", default=None,
                    help="folder of DR10 cutout .npz files (e.g. ../shared/data/dr10_cutouts); without it, sky noise")
    ap.add_argument("--faults", default="", metavar="KIND=P,...",
                    help=f"inject faults with these probabilities per request; kinds: {', '.join(FAULTS)}")
    args = ap.parse_args(argv)
    if args.cutout_dir is not None and not Path(args.cutout_dir).is_dir():
        ap.error(f"{args.cutout_dir}: no such folder (give the folder of DR10 cutout .npz files, or nothing)")
    try:
        faults = {k.strip(): float(v) for k, _, v in (f.partition("=") for f in args.faults.split(",") if f.strip())}
        svc = FakeCutoutService(args.cutout_dir, faults=faults)
    except ValueError as e:
        ap.error(f"--faults {args.faults!r}: {e}")
    with svc:
        print(svc.url, flush=True)
        print(f"serving on {svc.url} until killed (Ctrl-C); try:\n  dhs cutouts targets.parquet --out tier "
              f"--service-url {svc.url}", file=sys.stderr, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
