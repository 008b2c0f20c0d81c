"""S3 test helpers (a uniquely named module: `from conftest import ...` is ambiguous when several
test folders have a conftest.py). The server itself is the `s3_server` / `s3_bucket` fixtures in conftest."""

from __future__ import annotations

from pathlib import Path


def upload_folder(endpoint_url: str, bucket: str, folder: Path, prefix: str) -> str:
    """Copy a local folder into the bucket under `prefix`; return the s3:// URI."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1")
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            s3.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(folder).as_posix()}")
    return f"s3://{bucket}/{prefix}"
