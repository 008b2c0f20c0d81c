"""S3 faults are told by error code and exception class, never by message text: the endpoint URL in a
message (a port such as 40375 holds "403") must not make a refused connection read as access denied.
Issue #25 item 4.1 (the hostile S3 test failed whenever its random port contained 403)."""

from __future__ import annotations

import http.server
import threading

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from darkhaloscope.errors import EnvironmentFault
from darkhaloscope.stamps.fs import S3Options, arrow_filesystem, fsspec_filesystem, s3_error_codes, s3_fault

URL = "http://127.0.0.1:40375"  # a port holding "403"


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"at {URL}/b/k"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "HeadObject")


def _kind(e: BaseException) -> str | None:
    """Which fault s3_fault makes of `e`, by the words of its one-line message (None: not an S3 fault)."""
    f = str(s3_fault(e, "s3://b/k", S3Options(endpoint_url=URL)) or "")
    kinds = {"no credentials": "credentials", "does not exist": "no-bucket", "access denied": "denied",
             "unreachable": "unreachable"}
    return next((k for words, k in kinds.items() if words in f), None)


@pytest.mark.parametrize("make,kind", [
    (lambda: EndpointConnectionError(endpoint_url=f"{URL}/b/k"), "unreachable"),
    (lambda: ReadTimeoutError(endpoint_url=f"{URL}/403/k"), "unreachable"),
    (lambda: OSError(f"AWS Error NETWORK_CONNECTION during HeadObject operation: 403 at {URL}"), "unreachable"),
    (lambda: _client_error("404", 404), None),
    (lambda: _client_error("NoSuchBucket", 404), "no-bucket"),
    (lambda: OSError("When listing 'k/' in bucket 'b': AWS Error NO_SUCH_BUCKET during ListObjectsV2 operation: "
                     "Forbidden 403"), "no-bucket"),
    (lambda: _client_error("AccessDenied", 403), "denied"),
    (lambda: _client_error("SomethingNew", 403), "denied"),  # the status says it
    (lambda: OSError("AWS Error ACCESS_DENIED during HeadObject operation: No response body."), "denied"),
    (lambda: OSError("AWS Error UNKNOWN (HTTP status 403) during GetObject operation: x"), "denied"),
    (lambda: NoCredentialsError(), "credentials"),
    (lambda: OSError(f"cannot read {URL}/b/k: 403 Forbidden AccessDenied"), None),  # text alone says nothing
    (lambda: ValueError("parquet magic bytes not found; 403"), None),
])
def test_s3_faults_are_told_by_code_not_text(make, kind):
    assert _kind(make()) == kind


def test_codes_follow_the_chain_of_causes():
    try:
        try:
            raise _client_error("AccessDenied", 403)
        except ClientError as inner:
            raise PermissionError("Forbidden") from inner  # what s3fs raises
    except PermissionError as e:
        assert {"AccessDenied", "403", "PermissionError", "ClientError"} <= s3_error_codes(e)
        assert isinstance(s3_fault(e, "s3://b/k"), EnvironmentFault)


@pytest.fixture(scope="module")
def denying_endpoint():
    """An 'S3 endpoint' that answers every request 403 AccessDenied, as a bucket policy would."""
    class Deny(http.server.BaseHTTPRequestHandler):
        def _deny(self):
            body = b'<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>'
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        do_GET = do_HEAD = do_PUT = do_POST = _deny

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Deny)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()  # quick shutdown
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_a_real_403_reads_as_access_denied_through_both_clients(denying_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    s3 = S3Options(endpoint_url=denying_endpoint, region="us-east-1")
    fs, path = fsspec_filesystem("s3://b/k.pt", s3)
    with pytest.raises(Exception) as fsspec_err:
        fs.open(path, "rb").read()
    afs, apath = arrow_filesystem("s3://b/k.pt", s3)
    with pytest.raises(OSError) as arrow_err:
        afs.open_input_file(apath)
    for e in (fsspec_err.value, arrow_err.value):
        fault = s3_fault(e, "s3://b/k.pt", s3)
        assert isinstance(fault, EnvironmentFault) and "access denied" in str(fault), repr(e)
