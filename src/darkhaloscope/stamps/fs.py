"""Filesystems for tier URIs: a local folder or `s3://bucket/prefix`, through pyarrow / fsspec.

S3 settings come from command-line flags first, then the standard environment variables
(`AWS_ENDPOINT_URL`, `AWS_DEFAULT_REGION` / `AWS_REGION`, `DHS_S3_ANONYMOUS=1`). Credentials are read
by the AWS SDKs from their usual places and never printed: `S3Options.__repr__` hides nothing secret
because it holds nothing secret.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from darkhaloscope.errors import DataError
from darkhaloscope.redaction import redact  # noqa: F401 - also re-exported (stamps.fs.redact)

if TYPE_CHECKING:  # pyarrow is imported where it is used: `dhs --help` stays fast
    import pyarrow.fs as pafs

S3_CONNECT_TIMEOUT_S = 5.0  # seconds to open a TCP connection to the endpoint
S3_REQUEST_TIMEOUT_S = 30.0  # seconds a request may wait for the next bytes (read timeout); $DHS_S3_READ_TIMEOUT_S
S3_MAX_ATTEMPTS = 3  # tries per request before an error reaches the user (the only retry layer)
S3_MIN_WRITE_BYTES_S = 1_000_000  # bytes/s an upload may not fall below: its deadline grows 1 s per MB


def read_timeout_s() -> float:
    """The S3 read timeout in seconds: $DHS_S3_READ_TIMEOUT_S, else S3_REQUEST_TIMEOUT_S. An endpoint that
    accepts connections but never answers fails after about S3_MAX_ATTEMPTS x this."""
    try:
        return max(0.1, float(os.environ.get("DHS_S3_READ_TIMEOUT_S", S3_REQUEST_TIMEOUT_S)))
    except ValueError:
        return S3_REQUEST_TIMEOUT_S


def write_timeout_s(nbytes: int) -> float:
    """Wall-clock bound on one S3 upload of `nbytes`: S3_MAX_ATTEMPTS x the read timeout, plus 1 s per MB
    (S3_MIN_WRITE_BYTES_S). The SDK's timeouts do not cover a request body the endpoint never reads, so an
    endpoint that accepts and never answers would hold a write forever without it."""
    return S3_MAX_ATTEMPTS * read_timeout_s() + nbytes / S3_MIN_WRITE_BYTES_S


def call_with_deadline(fn, seconds: float, fault):
    """fn() run in a daemon thread; `fault()` (an exception to raise) when it has not returned within
    `seconds`. The abandoned call is left to the process's exit: a blocked socket cannot be interrupted."""
    import threading

    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e
    t = threading.Thread(target=run, name="dhs-deadline", daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise fault()
    if "error" in box:
        raise box["error"]
    return box.get("value")


# What an S3 failure is, told by its error code and exception class, never by free text: a message also
# carries the endpoint URL, and a port such as 40375 holds "403". botocore's ClientError has
# response["Error"]["Code"] and the HTTP status; botocore / aiohttp name connection and credential faults by
# class; pyarrow (AWS SDK for C++) raises OSError("... AWS Error <CODE> [(HTTP status <N>)] during ...").
_NO_CREDENTIALS = frozenset({"NoCredentialsError", "PartialCredentialsError", "NoAuthHandlerFound",
                             "MISSING_AUTHENTICATION_TOKEN", "MissingAuthenticationToken"})
_DENIED = frozenset({"AccessDenied", "ACCESS_DENIED", "InvalidAccessKeyId", "INVALID_ACCESS_KEY_ID",
                     "SignatureDoesNotMatch", "SIGNATURE_DOES_NOT_MATCH", "AllAccessDisabled", "AccountProblem",
                     "InvalidToken", "ExpiredToken", "UNRECOGNIZED_CLIENT", "Forbidden", "403"})
_NO_BUCKET = frozenset({"NoSuchBucket", "NO_SUCH_BUCKET"})
_UNREACHABLE = frozenset({"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                          "ConnectionClosedError", "ClientConnectorError", "ServerTimeoutError",
                          "ServerDisconnectedError", "ConnectionRefusedError", "ConnectionResetError",
                          "TimeoutError", "NETWORK_CONNECTION", "REQUEST_TIMEOUT", "SERVICE_UNAVAILABLE"})
_ARROW_CODE = re.compile(r"\bAWS Error ([A-Z_]+)(?: \(HTTP status (\d{3})\))? during ")


def s3_error_codes(e: BaseException) -> set[str]:
    """The codes an S3 failure carries, through its chain of causes: botocore error codes and HTTP
    statuses, exception class names (botocore, aiohttp, OS), and the code in pyarrow's "AWS Error CODE"."""
    codes: set[str] = set()
    seen: set[int] = set()
    while e is not None and id(e) not in seen and len(seen) < 8:
        seen.add(id(e))
        codes.update(c.__name__ for c in type(e).__mro__[:-2])  # not BaseException / object
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            codes.add(str((response.get("Error") or {}).get("Code") or ""))
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if status:
                codes.add(str(status))
        for m in _ARROW_CODE.finditer(str(e)):
            codes.add(m.group(1))
            if m.group(2):
                codes.add(m.group(2))
        e = e.__cause__ or e.__context__
    codes.discard("")
    return codes


def s3_fault(e: BaseException, uri: str, s3: "S3Options | None" = None):
    """The DHSError for a failed S3 request (None when `e` is not one): no credentials, access denied, missing
    bucket or an unreachable / silent endpoint, each said in one line naming `uri`. Told by error code."""
    from darkhaloscope.errors import EnvironmentFault, MissingInputError

    codes = s3_error_codes(e)
    endpoint = (s3.endpoint_url if s3 and s3.endpoint_url else None) or "the default AWS endpoint"
    if codes & _NO_CREDENTIALS:
        return EnvironmentFault(f"{uri}: no credentials for S3; set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                                "(or a profile), or pass --s3-anonymous for a public bucket")
    if codes & _NO_BUCKET:
        return MissingInputError(f"{uri}: the bucket does not exist at {redact(endpoint)}; check the URI and "
                                 "--s3-endpoint-url")
    if codes & _DENIED:
        return EnvironmentFault(f"{uri}: access denied by {redact(endpoint)}; check the credentials and the "
                                "bucket policy (or --s3-anonymous for a public bucket)")
    if codes & _UNREACHABLE:
        return EnvironmentFault(f"{uri}: S3 endpoint {redact(endpoint)} unreachable or not answering (connect "
                                f"timeout {S3_CONNECT_TIMEOUT_S:g} s, read timeout {read_timeout_s():g} s, "
                                f"{S3_MAX_ATTEMPTS} tries); check --s3-endpoint-url / AWS_ENDPOINT_URL and the network")
    return None


@dataclass
class S3Options:
    """Where and how to reach S3. Holds no credentials (the AWS SDK reads those itself), so its repr
    and every message built from it are safe to print."""

    endpoint_url: str | None = None  # e.g. http://127.0.0.1:5000 for a local S3 server
    region: str | None = None  # AWS region of the bucket
    anonymous: bool = False  # unsigned requests (public buckets)

    @classmethod
    def resolve(cls, endpoint_url: str | None = None, region: str | None = None,
                anonymous: bool | None = None) -> "S3Options":
        """Flags win over the environment. An endpoint URL carrying `user:password@` is refused (the AWS
        SDKs cannot use it, and it would end up in logs): credentials go in the AWS variables."""
        env = os.environ
        url = endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
        if "@" in url.partition("://")[2].partition("/")[0]:
            from darkhaloscope.errors import UsageError

            raise UsageError(f"S3 endpoint {redact(url)} carries credentials (user:password@); give the bare URL "
                             "and put the keys in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
        return cls(
            endpoint_url=endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            region=region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            anonymous=bool(anonymous) if anonymous is not None else env.get("DHS_S3_ANONYMOUS", "0") in ("1", "true"),
        )

    def fsspec_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"anon": self.anonymous,
                              "config_kwargs": {"connect_timeout": S3_CONNECT_TIMEOUT_S,
                                                "read_timeout": read_timeout_s(),
                                                "retries": {"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"}}}
        client: dict[str, Any] = {}
        if self.endpoint_url:
            client["endpoint_url"] = self.endpoint_url
        if self.region:
            client["region_name"] = self.region
        if client:
            kw["client_kwargs"] = client
        return kw


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def arrow_filesystem(uri: str, s3: S3Options | None = None) -> tuple[pafs.FileSystem, str]:
    """Return (pyarrow filesystem, path inside it) for a local path or s3:// URI."""
    import pyarrow.fs as pafs

    uri = str(uri)
    if is_s3(uri):
        s3 = s3 or S3Options.resolve()
        kw: dict[str, Any] = {"anonymous": s3.anonymous}
        if s3.endpoint_url:
            scheme, _, host = s3.endpoint_url.partition("://")
            kw["endpoint_override"] = host.rstrip("/") if host else s3.endpoint_url
            kw["scheme"] = scheme if host else "https"
        if s3.region:
            kw["region"] = s3.region
        elif s3.endpoint_url:
            kw["region"] = "us-east-1"
        # fail in seconds, not minutes, when the endpoint is down or wrong
        kw["connect_timeout"] = S3_CONNECT_TIMEOUT_S
        kw["request_timeout"] = read_timeout_s()
        kw["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=S3_MAX_ATTEMPTS)
        try:
            fs = pafs.S3FileSystem(**kw)
        except Exception as e:  # noqa: BLE001 - arrow raises plain ArrowInvalid etc.
            raise DataError(redact(f"cannot set up S3 access for {uri}: {e}".splitlines()[0])) from None
        return fs, uri[len("s3://"):].rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def fsspec_filesystem(uri: str, s3: S3Options | None = None):
    """Return (fsspec filesystem, path) for a local path or s3:// URI (used for checkpoint mirrors)."""
    import fsspec

    if is_s3(str(uri)):
        s3 = s3 or S3Options.resolve()
        fs = fsspec.filesystem("s3", **s3.fsspec_kwargs())
        fs.retries = 1  # botocore already retries (S3_MAX_ATTEMPTS); s3fs's own 5 x would multiply the wait
        return fs, str(uri)[len("s3://"):].rstrip("/")
    return fsspec.filesystem("file"), os.path.abspath(str(uri))


def add_s3_arguments(parser) -> None:
    """The S3 flags every command that takes DATA accepts."""
    g = parser.add_argument_group("S3")
    g.add_argument("--s3-endpoint-url", default=None,
                   help="S3 endpoint (default: $AWS_ENDPOINT_URL); e.g. http://127.0.0.1:5000")
    g.add_argument("--s3-region", default=None, help="S3 region (default: $AWS_REGION)")
    g.add_argument("--s3-anonymous", action="store_true", default=None, help="unsigned requests (public bucket)")


def s3_options_from_args(args) -> S3Options:
    return S3Options.resolve(getattr(args, "s3_endpoint_url", None), getattr(args, "s3_region", None),
                             getattr(args, "s3_anonymous", None))
