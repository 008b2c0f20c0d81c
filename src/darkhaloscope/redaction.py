"""Keep secrets out of everything darkhaloscope writes or prints: run.json / audit.json command lines,
logs, error messages.

Three kinds are redacted: the values of the AWS credential environment variables, the user:password
part of a URL (`http://user:SECRET@host` -> `http://***@host`), and the values of secret-looking URL
query parameters (`?token=SECRET` -> `?token=***`: names token, key, secret, sig, signature, password,
passwd, pwd, also as a suffix such as `api_key` / `access_token`, and every `X-Amz-*` of a presigned URL).
Exercised by every `dhs` command (the CLI redacts each error line; `config.run_info` redacts the recorded
command line; `dhs cutouts` redacts the `cutout_url` it stores and its manifest).
"""

from __future__ import annotations

import os
import re

SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
_SECRET_PARAM = re.compile(r"(?P<name>[?&;](?:[\w.-]*[_.-])?(?:token|key|apikey|secret|sig|signature|password|passwd|"
                           r"pwd)|[?&;]x-amz-[\w-]+)=[^&#\s]+", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with URL credentials and the values of the credential environment variables replaced by '***'."""
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}***@", str(text))
    text = _SECRET_PARAM.sub(lambda m: f"{m.group('name')}=***", text)
    for var in SECRET_ENV_VARS:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text

