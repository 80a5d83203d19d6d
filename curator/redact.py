"""Keeping secrets off disk and off the screen: API keys, bearer tokens and URL credentials scrubbed from text."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

MASK = "***"
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@?#]*@")
_AUTH = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str, *secrets: str | None) -> str:
    """`text` with every given secret (4 characters or more), every bearer/basic credential and every
    user:password@ of a URL replaced by ***."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _AUTH.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)


def has_credentials(url: str) -> bool:
    """Whether a URL carries user:password@ (or user@)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "@" in url
    return "@" in parts.netloc
