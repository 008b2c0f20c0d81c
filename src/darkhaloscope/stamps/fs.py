"""Filesystems for tier URIs: a local folder or `s3://bucket/prefix`, through pyarrow / fsspec.

S3 settings come from command-line flags first, then the standard environment variables
(`AWS_ENDPOINT_URL`, `AWS_DEFAULT_REGION` / `AWS_REGION`, `DHS_S3_ANONYMOUS=1`). Credentials are read
by the AWS SDKs from their usual places and never printed: `S3Options.__repr__` hides nothing secret
because it holds nothing secret.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from darkhaloscope.errors import DataError
from darkhaloscope.redaction import SECRET_ENV_VARS, redact  # noqa: F401 - re-exported

if TYPE_CHECKING:  # pyarrow is imported where it is used: `dhs --help` stays fast
    import pyarrow.fs as pafs

S3_CONNECT_TIMEOUT_S = 5.0  # seconds to open a TCP connection to the endpoint
S3_REQUEST_TIMEOUT_S = 60.0  # seconds a request may stall (a 100 MB parquet row group over a slow link)
S3_MAX_ATTEMPTS = 3  # tries per request before an error reaches the user


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
        """Flags win over the environment."""
        env = os.environ
        return cls(
            endpoint_url=endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            region=region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            anonymous=bool(anonymous) if anonymous is not None else env.get("DHS_S3_ANONYMOUS", "0") in ("1", "true"),
        )

    def fsspec_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"anon": self.anonymous,
                              "config_kwargs": {"connect_timeout": S3_CONNECT_TIMEOUT_S,
                                                "read_timeout": S3_REQUEST_TIMEOUT_S,
                                                "retries": {"max_attempts": S3_MAX_ATTEMPTS}}}
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
        kw["request_timeout"] = S3_REQUEST_TIMEOUT_S
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
        return fsspec.filesystem("s3", **s3.fsspec_kwargs()), str(uri)[len("s3://"):].rstrip("/")
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
