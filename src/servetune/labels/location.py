"""Where the label store is: `--labels-db` as a SQLite path (or `sqlite:///PATH`) or a PostgreSQL URL.

The URL may carry a password; `redacted()` is the only form that logs, run.json, reports and manifests
may show (a manifest takes the URL from a Secret).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from servetune.errors import ServetuneError

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SECRET_QUERY_KEYS = {"password", "sslpassword"}


class StoreLocationError(ServetuneError):
    """A --labels-db value that names no usable store."""


@dataclass(frozen=True)
class StoreLocation:
    kind: Literal["sqlite", "postgresql"]
    target: str  # the SQLite file, or the PostgreSQL URL with its password

    def redacted(self) -> str:
        return self.target if self.kind == "sqlite" else redact_url(self.target)

    def __repr__(self) -> str:  # a location in a traceback or log line never shows the password
        return f"StoreLocation({self.kind!r}, {self.redacted()!r})"

    __str__ = redacted


def parse_location(value: str) -> StoreLocation:
    value = value.strip()
    if not value:
        raise StoreLocationError("--labels-db: empty; give a SQLite file or a postgresql:// URL")
    if value.startswith(POSTGRES_SCHEMES):
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - parsing the port is what may fail
        except ValueError as error:
            raise StoreLocationError(f"--labels-db {redact_url(value)}: not a valid URL ({error})") from None
        if not parts.hostname and "host=" not in parts.query:
            raise StoreLocationError(f"--labels-db {redact_url(value)}: no host in the PostgreSQL URL")
        return StoreLocation("postgresql", value)
    if value.startswith("sqlite:"):
        path = re.sub(r"^sqlite:(//)?", "", value)
        if not path or path == "/":
            raise StoreLocationError(f"--labels-db {value}: no file after sqlite://")
        return StoreLocation("sqlite", str(Path(path)))
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value):
        scheme = value.split("://", 1)[0]
        raise StoreLocationError(
            f"--labels-db: unsupported scheme {scheme!r}; give a SQLite file or a postgresql:// URL"
        )
    return StoreLocation("sqlite", value)


def redact_url(url: str) -> str:
    """The URL with its password (in the user info or the query) replaced by ***."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":***"
            netloc = f"{userinfo}@{host}"
        query = urlencode(
            [(k, "***" if k in SECRET_QUERY_KEYS else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return url.split("://", 1)[0] + "://***"
